//go:build unix

package redistest

import (
	"os"
	"syscall"
)

type signal = os.Signal

var (
	sigStop signal = syscall.SIGSTOP
	sigCont signal = syscall.SIGCONT
)
