package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpoolDirOwner: a spool directory with private modes but another user's is warned
// about too (it can read what Portcullis spools); Portcullis's own 0700 directory is not.
func TestSpoolDirOwner(t *testing.T) {
	dir := t.TempDir()
	mine, theirs := filepath.Join(dir, "mine"), filepath.Join(dir, "theirs")
	for _, d := range []string{mine, theirs} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	chowned := os.Chown(theirs, 65534, 65534) == nil // only root may give a directory away
	warned := func(spool string) string {
		t.Helper()
		yml := "tls: {mode: self_signed}\nredis: {address: 127.0.0.1:6379}\naudit: {spool_dir: " + spool +
			"}\nroutes:\n  - {name: app, upstream: http://10.0.0.5}\n"
		_, warns, err := testLoader().Parse("spool.yaml", []byte(yml))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, w := range warns {
			b.WriteString(w.Error())
		}
		return b.String()
	}
	if w := warned(mine); w != "" {
		t.Errorf("a private spool directory of Portcullis's own user: %s", w)
	}
	if !chowned {
		t.Skip("not root: cannot make a directory owned by another user")
	}
	if w := warned(theirs); !strings.Contains(w, "belongs to another user") {
		t.Errorf("a 0700 spool directory of another user: %q, want a warning", w)
	}
}
