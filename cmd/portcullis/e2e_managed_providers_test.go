package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/store"
)

// Providers managed through the admin API (issue 16) through the real binary, two replicas:
// an operator adds acme's own provider on one replica, bound to acme, with its secret by
// reference; the other replica signs acme's people in through it without a restart; the
// organisation's list and the binding hold; removing it takes it out of force everywhere.
func TestE2EManagedProviders(t *testing.T) {
	secrets := t.TempDir()
	admins := []string{freePort(t), freePort(t)}
	var idpC *devidptest.Server
	b := newAZBedWith(t, azOptions{
		oidc: "  managed_providers: {secrets_dir: " + secrets + "}\n",
		extra: func(b *azBed, i int) string {
			return fmt.Sprintf("admin_api:\n  listen: %s\n", admins[i])
		},
	})
	var redirects []string
	for _, px := range b.px {
		redirects = append(redirects, px.base+"/.portcullis/callback/acme-idp")
	}
	idpC = devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis-acme", Secret: "acme-client-secret", RedirectURIs: redirects}},
		Users:   []devidp.User{{Subject: "sub-anna", Username: "anna", Password: "pw-anna", Email: "anna@acme.example", EmailVerified: true}},
	})
	writeFile(t, filepath.Join(secrets, "acme-idp"), "acme-client-secret\n")
	ca, err := os.ReadFile(idpC.CAFile(t))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(secrets, "acme-idp-ca.pem"), string(ca))
	ctx := context.Background()
	op, _, err := b.orgs.CreateToken(ctx, store.Token{Name: "operators", Owner: "ops@portal.example", Operator: true, Expires: time.Now().Add(time.Hour)}, azActor, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	call := func(replica int, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "https://"+admins[replica]+"/api/v1"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+op)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	provider := func(extra string) string {
		return `{"reason": "acme brings its IdP (contract 2027-114)", "provider": {"name": "acme-idp", "issuer": "` + idpC.URL + `",
			"client_id": "portcullis-acme", "client_secret_file": "acme-idp", "ca_root_file": "acme-idp-ca.pem", "org": "acme",
			"verified_domains_only": true` + extra + `}}`
	}

	// Alice signs in while the portal's provider is the only one, and reaches acme.
	alice := b.newClient()
	alice.signIn(b.px[0], "alice")
	if r := alice.api(b.px[0], "/orgs/acme/home"); r.status != 200 {
		t.Fatalf("alice before: %d %s", r.status, r.body)
	}
	// Not a provider yet: acme cannot list it.
	if s, body := call(0, "PUT", "/orgs/acme/providers", `{"providers": ["acme-idp"], "reason": "r"}`); s != 400 {
		t.Fatalf("listing an unknown provider: %d %s", s, body)
	}
	// Secrets by reference only, and only under the secrets directory.
	if s, body := call(0, "PUT", "/providers/acme-idp", strings.Replace(provider(""), `"client_secret_file": "acme-idp"`, `"client_secret": "acme-client-secret"`, 1)); s != 400 || !strings.Contains(body, "by reference") || strings.Contains(body, "acme-client-secret") {
		t.Fatalf("a secret by value: %d %s", s, body)
	}
	if s, body := call(0, "PUT", "/providers/acme-idp", strings.Replace(provider(""), `"client_secret_file": "acme-idp"`, `"client_secret_file": "../secret"`, 1)); s != 400 {
		t.Fatalf("a secret out of the directory: %d %s", s, body)
	}
	if s, body := call(0, "PUT", "/providers/acme-idp", provider("")); s != 200 || !strings.Contains(body, `"in_force":true`) {
		t.Fatalf("add the provider: %d %s", s, body)
	}
	// The CLI through the API: a YAML file replaces it, and the list shows it.
	opsFile := filepath.Join(t.TempDir(), "ops.token")
	writeFile(t, opsFile, op+"\n")
	yamlFile := filepath.Join(t.TempDir(), "acme-idp.yaml")
	writeFile(t, yamlFile, "name: acme-idp\ndisplay_name: Acme (own IdP)\nissuer: "+idpC.URL+"\nclient_id: portcullis-acme\nclient_secret_file: acme-idp\n"+
		"ca_root_file: acme-idp-ca.pem\norg: acme\nverified_domains_only: true\n")
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"admin", "--server", "https://" + admins[0], "--insecure-skip-verify", "--token-file", opsFile}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := cli("provider", "put", "acme-idp", "--file", yamlFile, "--reason", "its display name"); code != 0 || !strings.Contains(out, "bound to acme") {
		t.Fatalf("provider put through the API: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := cli("--json", "provider", "list"); code != 0 || !strings.Contains(out, "Acme (own IdP)") || strings.Contains(out, "acme-client-secret") {
		t.Fatalf("provider list through the API: %d %s %s", code, out, errOut)
	}
	// The other replica hears of it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := call(1, "GET", "/providers", "")
		var l struct {
			Items []struct {
				Name    string `json:"name"`
				InForce bool   `json:"in_force"`
			} `json:"items"`
		}
		_ = json.Unmarshal([]byte(body), &l)
		found := false
		for _, it := range l.Items {
			found = found || it.Name == "acme-idp" && it.InForce
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica 2 never put the provider in force: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s, body := call(0, "PUT", "/orgs/beta/providers", `{"providers": ["acme-idp"], "reason": "r"}`); s != 403 {
		t.Fatalf("beta lists acme's bound provider: %d %s", s, body)
	}
	if s, body := call(0, "PUT", "/orgs/acme/providers", `{"providers": ["acme-idp"], "reason": "acme signs in with its own IdP"}`); s != 200 {
		t.Fatalf("acme lists its provider: %d %s", s, body)
	}
	anna := store.UserKey(idpC.URL, "sub-anna")
	if _, err := b.orgs.Grant(ctx, store.Membership{Org: "acme", User: anna, Kind: store.KindEmployee, Roles: []string{"user"}}, azActor, "e2e"); err != nil {
		t.Fatal(err)
	}

	// Anna signs in on the second replica, through home-realm discovery to acme's provider.
	c := b.newClient()
	p2 := b.px[1]
	form := url.Values{"email": {"anna@acme.example"}, "rd": {"/orgs/acme/home"}}
	r := c.do("POST", p2.base+"/.portcullis/login", "", form, http.Header{"Origin": {p2.base}, "Sec-Fetch-Site": {"same-origin"}, "Accept": {"text/html"}})
	for range 20 {
		if r.status/100 == 3 {
			u, _ := r.url.Parse(r.header.Get("Location"))
			if u.Path == "/orgs/acme/home" {
				break
			}
			r = c.do("GET", u.String(), "", nil, azBrowser)
			continue
		}
		if r.status != 200 || !strings.Contains(r.body, "devidp-login") {
			t.Fatalf("sign-in through the managed provider stuck at %s: %d %s", r.url, r.status, r.body)
		}
		resp, err := devidptest.Login(ctx, c.c, r.raw, "anna", "pw-anna", "")
		if err != nil {
			t.Fatal(err)
		}
		r = readAZResp(resp)
	}
	for _, px := range b.px {
		if r := c.api(px, "/orgs/acme/home"); r.status != 200 {
			t.Fatalf("anna on %s: %d %s", px.name, r.status, r.body)
		}
	}
	// Alice, of the portal's provider, no longer speaks for acme.
	if r := alice.api(b.px[0], "/orgs/acme/home"); r.status != 403 || r.reason() != "provider_not_trusted" {
		t.Fatalf("alice after acme listed only its own provider: %d %s", r.status, r.body)
	}

	// Removal: not while acme lists it; then gone on both replicas.
	if s, body := call(1, "POST", "/providers/acme-idp/delete", `{"reason": "r"}`); s != 409 {
		t.Fatalf("delete while listed: %d %s", s, body)
	}
	if s, body := call(1, "PUT", "/orgs/acme/providers", `{"providers": [], "reason": "contract ended"}`); s != 200 {
		t.Fatalf("clear acme's list: %d %s", s, body)
	}
	if s, body := call(1, "POST", "/providers/acme-idp/delete", `{"reason": "contract ended"}`); s != 200 {
		t.Fatalf("delete: %d %s", s, body)
	}
	for _, px := range b.px {
		deadline := time.Now().Add(10 * time.Second)
		for {
			// Her session speaks for nobody once its provider is gone.
			r := c.api(px, "/orgs/acme/home")
			if r.status == 401 && r.reason() == "no_session" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("anna on %s after her provider was removed: %d %s", px.name, r.status, r.body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
