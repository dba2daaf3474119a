package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// TestE2EDev runs `portcullis dev` as a newcomer would and checks that its walkthrough is
// true: the public page, sign-in through the embedded provider, the identity the portal gets,
// and the refusals the walkthrough promises.
func TestE2EDev(t *testing.T) {
	base := startDev(t)

	anon := tlsClient()
	if resp, body := doGet(t, anon, base+"/"); resp.StatusCode != 200 || !strings.Contains(body, "demo customer portal") {
		t.Errorf("home: %d %.200s", resp.StatusCode, body)
	}
	if resp, _ := doGet(t, anon, base+"/admin/"); resp.StatusCode != 401 {
		t.Errorf("admin without a session: %d", resp.StatusCode)
	}
	if resp, body := doGet(t, anon, base+"/.portcullis/jwks.json"); resp.StatusCode != 200 || !strings.Contains(body, `"kty":"EC"`) {
		t.Errorf("jwks: %d %s", resp.StatusCode, body)
	}

	browse := signIn(t, base, "bob")
	p := browse("/headers", http.Header{"X-Portcullis-User": {"mallory"}, "X_Portcullis_Org": {"evil"}})
	if p.status != 200 || !strings.Contains(p.body, "X-Portcullis-User") || !strings.Contains(p.body, "demo-bob") ||
		strings.Contains(p.body, "mallory") || strings.Contains(p.body, "evil") {
		t.Errorf("headers page as bob: %d\n%s", p.status, p.body)
	}
	if p := browse("/billing/", nil); p.status != 403 || !strings.Contains(p.body, "role_missing") {
		t.Errorf("billing as bob: %d %.300s", p.status, p.body)
	}
	alice := signIn(t, base, "alice")
	if p := alice("/billing/", nil); p.status != 200 || !strings.Contains(p.body, "Billing") {
		t.Errorf("billing as alice: %d %.300s", p.status, p.body)
	}
	// The admin area demands a fresh second factor: a page explains and offers the step-up.
	if p := alice("/admin/", nil); p.status != 401 || !strings.Contains(p.body, "step-up") {
		t.Errorf("admin as alice without step-up: %d %.500s", p.status, p.body)
	}
	frank := signIn(t, base, "frank")
	if p := frank("/billing/", nil); p.status != 403 || !strings.Contains(p.body, "not_member") {
		t.Errorf("billing as frank: %d %.300s", p.status, p.body)
	}
	lena := signIn(t, base, "lena")
	if p := lena("/billing/", nil); p.status != 403 || !strings.Contains(p.body, "email_domain_not_verified") {
		t.Errorf("billing as lena: %d %.300s", p.status, p.body)
	}
	pat := signIn(t, base, "pat")
	if p := pat("/support/", nil); p.status != 200 || !strings.Contains(p.body, "Choose an organisation") {
		t.Errorf("support as pat (two orgs: picker expected): %d %.300s", p.status, p.body)
	}
}

// startDev runs `portcullis dev` on a free port until the test ends and returns its base URL.
func startDev(t *testing.T) string {
	t.Helper()
	listen := freePort(t)
	cmd := exec.Command(binPath, "dev", "--listen", listen)
	var mu sync.Mutex
	var buf bytes.Buffer
	out := &lockedBuf{mu: &mu, b: &buf}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	output := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(output(), "Portcullis demo is running"); {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start:\n%s", output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "https://" + listen
}

type devPage struct {
	status int
	body   string
}

// signIn signs in as user through the demo's provider and returns a browser that follows
// redirects from a path and returns the final page.
func signIn(t *testing.T, base, user string) func(path string, hdr http.Header) devPage {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(target string, hdr http.Header) *http.Response {
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		return resp
	}
	return func(path string, hdr http.Header) devPage {
		resp := get(base+path, hdr)
		for range 20 {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode/100 == 3:
				u, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
				resp = get(u.String(), hdr)
			case resp.StatusCode == 200 && bytes.Contains(b, []byte("devidp-login")):
				resp.Body = io.NopCloser(bytes.NewReader(b))
				r, err := devidptest.Login(context.Background(), c, resp, user, devPassword, "")
				if err != nil {
					t.Fatalf("login as %s: %v", user, err)
				}
				resp = r
			default:
				return devPage{resp.StatusCode, string(b)}
			}
		}
		t.Fatal("too many redirects")
		return devPage{}
	}
}

// TestE2EDevRecovery checks the walkthrough's promise about the guarded forgot-password form.
func TestE2EDevRecovery(t *testing.T) {
	base := startDev(t)
	c := tlsClient()
	for _, tc := range []struct {
		email, want string
		status      int
	}{
		{"bob@acme.example", "Check your inbox", 200},
		{"lena@oldcorp.example", "stale_domain", 403},
		{"frank@acme.example", "no_active_membership", 403},
		{"anyone@unknown.example", "unknown_domain", 403},
		{"Bob <bob@acme.example>", "identifier_invalid", 400},
	} {
		req, _ := http.NewRequest("POST", base+"/password/reset", strings.NewReader("email="+url.QueryEscape(tc.email)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d, want %d with %q:\n%s", tc.email, resp.StatusCode, tc.status, tc.want, body)
		}
	}
}
