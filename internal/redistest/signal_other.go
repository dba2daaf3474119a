//go:build !unix

package redistest

import (
	"os"
	"syscall"
)

type signal = os.Signal

// Without SIGSTOP there is no faithful way to make a process hang; Pause then fails the test.
var (
	sigStop signal = syscall.Signal(-1)
	sigCont signal = syscall.Signal(-1)
)
