package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testEnv is the environment every golden file sees. The secret-looking values must never
// appear in any golden output.
var testEnv = map[string]string{
	"REDIS_ADDRESS":               "redis.internal:6379",
	"REDIS_PASSWORD":              "env-secret-0xBADC0DE",
	"REDIS_DB":                    "env-secret-0xBADC0DE",
	"PORTAL_UPSTREAM":             "http://10.0.0.7:8080",
	"LISTEN_HOST":                 "127.0.0.1",
	"LISTEN_PORT":                 "8443",
	"MAX_HEADER_BYTES":            "not-a-number-env-secret-0xBADC0DE",
	"TLS_MODE":                    "self_signed",
	"EMPTY":                       "",
	"PORTCULLIS_TEST_ACME_SECRET": "acme-secret-0xBEEF",
	"SECRET_URL":                  "http://user:env-secret-0xBADC0DE@10.0.0.5",
}

// secretValues are the values golden outputs must never contain.
var secretValues = []string{"env-secret-0xBADC0DE", "file-secret-0xC0FFEE", "inline-secret-value", "hunter2"}

// TestMain makes the spool directories the fixtures name: ${PRIVATE_SPOOL} (0700, for
// audit_sinks) and ${PUBLIC_SPOOL} (0755, for audit_spool_public). Git keeps no directory
// modes, so no directory in testdata has a known one.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-config-spool")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEnv["PRIVATE_SPOOL"] = dir // MkdirTemp makes it 0700
	public := filepath.Join(dir, "public")
	if err := os.Mkdir(public, 0o700); err != nil || os.Chmod(public, 0o755) != nil {
		fmt.Fprintln(os.Stderr, "public spool:", err)
		os.Exit(1)
	}
	testEnv["PUBLIC_SPOOL"] = public
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func testLoader() Loader {
	return Loader{LookupEnv: func(name string) (string, bool) {
		v, ok := testEnv[name]
		return v, ok
	}}
}

// render is what "portcullis check" prints: errors, then warnings marked as such.
func render(warnings Errors, err error) string {
	var b strings.Builder
	if err != nil {
		for _, e := range err.(Errors) {
			b.WriteString(e.Error() + "\n")
		}
	}
	for _, w := range warnings {
		b.WriteString(w.Error() + " (warning)\n")
	}
	return b.String()
}

// TestGolden decodes each testdata/NAME.yaml and compares every error and warning line with
// testdata/NAME.golden. Run "go test ./config -run TestGolden -update" to rewrite them.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, warnings, err := testLoader().Parse(filepath.Base(file), data)
			if (cfg == nil) == (err == nil) {
				t.Errorf("Parse returned config %v with error %v: want exactly one", cfg != nil, err)
			}
			got := render(warnings, err)
			for _, s := range secretValues {
				if strings.Contains(got, s) {
					t.Errorf("output leaks a secret value %q:\n%s", s, got)
				}
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, diff)
			}
		})
	}
}
