package config

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the decoder: it must never panic, and every problem in
// a non-empty input must carry a position a user can go to.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, s := range seeds {
		if data, err := os.ReadFile(s); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a\n  <<: [*a, *a]\n  b: *a\n"))
	f.Add([]byte("routes: [&r {name: a, upstream: 'http://h', <<: *r}]\n"))
	f.Add([]byte("tls: {mode: ${X}}\nroutes:\n- {name: a, upstream: 'http://${X}'}\n"))
	f.Add([]byte("\xef\xbb\xbf---\n...\n"))
	l := Loader{
		LookupEnv: func(name string) (string, bool) { return "v$${" + name, len(name)%2 == 0 },
		ReadFile: func(name string) ([]byte, error) {
			if len(name)%2 == 0 {
				return []byte("content\n"), nil
			}
			return nil, fs.ErrNotExist
		},
		Stat: func(string) (fs.FileInfo, error) { return nil, fs.ErrPermission },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, warnings, err := l.Parse("fuzz.yaml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("no config and no error")
			}
			return
		}
		if cfg != nil {
			t.Fatal("config returned with an error")
		}
		errs, ok := err.(Errors)
		if !ok || len(errs) == 0 {
			t.Fatalf("error %T %v is not a non-empty Errors", err, err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return
		}
		for _, e := range append(errs, warnings...) {
			if e.Line < 1 || e.Column < 1 {
				t.Errorf("no position: %v", e)
			}
		}
	})
}
