//go:build !unix

package audit

import (
	"errors"
	"os"
)

// lockFile is not available here, so a spool cannot tell a live process's file from an
// abandoned one: audit.spool_dir needs a Unix system.
func lockFile(*os.File) error { return errors.New("audit spool needs file locks (a Unix system)") }
