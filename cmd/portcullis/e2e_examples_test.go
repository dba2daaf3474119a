package main

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// TestE2EExamples: the examples a newcomer starts from work as they are: `check` accepts
// each unchanged, and `serve` runs each against a real Redis and OpenID Provider with only
// the addresses swapped for the test's (ports, Redis, the issuer, the portal).
func TestE2EExamples(t *testing.T) {
	t.Setenv("OIDC_CLIENT_SECRET", "example-secret")
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("examples: %v %v", files, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if out, err := exec.Command(binPath, "check", "--config", file).CombinedOutput(); err != nil || !strings.Contains(string(out), "valid:") {
				t.Fatalf("check %s: %v\n%s", file, err, out)
			}
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			listen := freePort(t)
			base := "https://" + listen
			idp := devidptest.Start(t, devidp.Config{Clients: []devidp.Client{{ID: "portcullis", Secret: "example-secret",
				RedirectURIs: []string{base + "/.portcullis/callback"}}}})
			rs := redistest.Start(t)
			up := upstream(t, "portal")
			cfg := strings.NewReplacer(
				`listen: ":8443"`, "listen: "+listen,
				`redirect_listen: ":8080"`, "redirect_listen: "+freePort(t),
				"public_url: https://portal.example.com", "public_url: "+base,
				"metrics_listen: 127.0.0.1:9090", `metrics_listen: "off"`,
				"address: 127.0.0.1:6379", "address: "+rs.Addr,
				"issuer: https://idp.example.com/realms/portal", "issuer: "+idp.URL+"\n  ca_root_file: "+idp.CAFile(t),
				"http://127.0.0.1:9000", up.URL,
				"listen: 127.0.0.1:9443", "listen: "+freePort(t),
			).Replace(string(raw))
			path := filepath.Join(t.TempDir(), filepath.Base(file))
			writeFile(t, path, cfg)
			startBinary(t, path)
			c := tlsClient()
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp, body := doGet(t, c, base+"/.portcullis/readyz")
				if resp.StatusCode == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not ready: %d %s", resp.StatusCode, body)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if resp, body := doGet(t, c, base+"/static/app.css"); resp.StatusCode != 200 || !strings.Contains(body, "portal") {
				t.Errorf("a public route: %d %s", resp.StatusCode, body)
			}
			// A page that needs a session sends the browser to sign in.
			req, _ := http.NewRequest("GET", base+"/", nil)
			req.Host = "portal.example.com"
			req.Header.Set("Accept", "text/html")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
				t.Errorf("the portal without a session: %d, want a redirect to sign in", resp.StatusCode)
			}
		})
	}
}
