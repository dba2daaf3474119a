//go:build unix

package config

import (
	"os"
	"syscall"
)

// ownedByOther reports whether fi belongs to a user other than the one running Portcullis.
func ownedByOther(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) != os.Geteuid()
}
