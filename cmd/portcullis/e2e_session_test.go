package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// sessionBed is the real binary with sign-in configured against devidp and a private
// redis-server, and a cookie-jar client that behaves like a browser.
type sessionBed struct {
	t     *testing.T
	base  string
	idp   *devidptest.Server
	redis *redistest.Server
	c     *http.Client
	proc  *proc
}

func newSessionBed(t *testing.T) *sessionBed { t.Helper(); return newSessionBedOn(t, oneServer) }

func newSessionBedOn(t *testing.T, top topology) *sessionBed {
	t.Helper()
	listen := freePort(t)
	base := "https://" + listen
	idp := devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis", Secret: "e2e-secret",
			RedirectURIs: []string{base + "/.portcullis/callback"}, PostLogoutRedirectURIs: []string{base + "/"}}},
		Users: []devidp.User{{Subject: "sub-alice", Username: "alice", Password: "alice-pw",
			Email: "alice@fresh.example", EmailVerified: true, Name: "Alice"}},
	})
	dir := t.TempDir()
	ca := idp.CAFile(t)
	rs := startE2ERedis(t, top)
	up := upstream(t, "portal")
	cfg := fmt.Sprintf(`server:
  listen: %[1]s
  public_url: %[2]s
  metrics_listen: "off"
tls:
  mode: self_signed
redis:
%[3]s
  read_timeout: 500ms
  dial_timeout: 500ms
oidc:
  issuer: %[4]s
  client_id: portcullis
  client_secret_file: %[5]s
  ca_root_file: %[6]s
routes:
  - name: public
    path: /public
    upstream: %[7]s
    public: true
  - name: app
    path: /app
    upstream: %[7]s
`, listen, base, rs.yaml(), idp.URL, filepath.Join(dir, "secret"), ca, up.URL)
	writeFile(t, filepath.Join(dir, "secret"), "e2e-secret\n")
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfgPath, cfg)
	p := startBinary(t, cfgPath)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar: jar,
		// The proxy's certificate is self-signed and the provider's is httptest's: this client
		// stands for a browser whose user accepted both.
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	return &sessionBed{t: t, base: base, idp: idp, redis: rs.server, c: c, proc: p}
}

// send makes a request with c: form, when not nil, as an url-encoded body; the headers as
// written (no canonicalisation of spoofed names). It returns the response with its body read
// and put back, and the body.
func send(t testing.TB, c *http.Client, method, target string, form url.Values, hdr http.Header) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, string(b)
}

type e2ePage struct {
	*http.Response
	body string
}

func (s *sessionBed) do(method, target string, form url.Values, hdr http.Header) *e2ePage {
	s.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = s.base + target
	}
	resp, body := send(s.t, s.c, method, target, form, hdr)
	return &e2ePage{resp, body}
}

var browserHeaders = http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}

// browse follows redirects from target like a browser, filling in the provider's login form as
// alice when it shows up, and returns the first page that is not a redirect.
func (s *sessionBed) browse(target string) *e2ePage {
	s.t.Helper()
	p := s.do("GET", target, nil, browserHeaders)
	for range 20 {
		switch {
		case p.StatusCode/100 == 3:
			u, _ := p.Request.URL.Parse(p.Header.Get("Location"))
			p = s.do("GET", u.String(), nil, browserHeaders)
		case p.StatusCode == 200 && strings.Contains(p.body, "devidp-login"):
			resp, err := devidptest.Login(context.Background(), s.c, p.Response, "alice", "alice-pw", "")
			if err != nil {
				s.t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p = &e2ePage{resp, string(b)}
		default:
			return p
		}
	}
	s.t.Fatal("too many redirects")
	return nil
}

func TestE2ESessionSignInAndOut(t *testing.T) { testSessionSignInAndOut(t, newSessionBed(t)) }

// TestE2ESessionSignInAndOutSentinel is TestE2ESessionSignInAndOut behind Redis Sentinel.
func TestE2ESessionSignInAndOutSentinel(t *testing.T) {
	testSessionSignInAndOut(t, newSessionBedOn(t, sentinel))
}

func testSessionSignInAndOut(t *testing.T, s *sessionBed) {
	// Not signed in: an API client gets 401, a browser is sent to sign in.
	if p := s.do("GET", "/app/x", nil, http.Header{"Accept": {"application/json"}}); p.StatusCode != 401 || !strings.Contains(p.body, "no_session") {
		t.Fatalf("API without session: %d %s", p.StatusCode, p.body)
	}
	p := s.browse("/app/dashboard?tab=1")
	if p.StatusCode != 200 || p.body != "portal GET /app/dashboard?tab=1 xff=127.0.0.1" {
		t.Fatalf("after sign-in: %d %q", p.StatusCode, p.body)
	}
	p = s.do("GET", "/.portcullis/whoami", nil, nil)
	var who map[string]any
	if json.Unmarshal([]byte(p.body), &who) != nil || who["sub"] != "sub-alice" || who["iss"] != s.idp.URL || who["email"] != "alice@fresh.example" {
		t.Fatalf("whoami: %d %s", p.StatusCode, p.body)
	}
	// Sign out: the confirmation page's form, posted from our origin.
	p = s.do("GET", "/.portcullis/logout", nil, browserHeaders)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("logout page: %d %s", p.StatusCode, p.body)
	}
	if p := s.do("POST", "/.portcullis/logout", url.Values{}, http.Header{"Origin": {s.base}}); p.StatusCode != 403 {
		t.Errorf("logout without the token: %d", p.StatusCode)
	}
	p = s.do("POST", "/.portcullis/logout", url.Values{"csrf": {m[1]}}, http.Header{"Origin": {s.base}, "Sec-Fetch-Site": {"same-origin"}})
	// The provider's sign-out is a form posted to its end_session, the ID token in the body:
	// no token in a Location (security case 0.2 #5).
	if p.StatusCode != http.StatusOK || p.Header.Get("Location") != "" ||
		!strings.Contains(p.body, `action="`+s.idp.URL+`/end_session"`) || !strings.Contains(p.body, `name="id_token_hint"`) {
		t.Fatalf("logout: %d %q %s", p.StatusCode, p.Header.Get("Location"), p.body)
	}
	if p := s.do("GET", "/.portcullis/whoami", nil, nil); p.StatusCode != 401 {
		t.Errorf("whoami after logout: %d", p.StatusCode)
	}
	if p := s.do("GET", "/app/x", nil, browserHeaders); p.StatusCode != 302 {
		t.Errorf("protected route after logout: %d", p.StatusCode)
	}
	// The log names no secret.
	s.proc.mu.Lock()
	logs := s.proc.raw.String()
	s.proc.mu.Unlock()
	if strings.Contains(logs, "e2e-secret") || strings.Contains(logs, "eyJ") {
		t.Error("a secret reached the log")
	}
}

func TestE2ESessionRedisStopped(t *testing.T) {
	s := newSessionBed(t)
	if p := s.browse("/app/x"); p.StatusCode != 200 {
		t.Fatalf("sign-in: %d %s", p.StatusCode, p.body)
	}
	s.redis.Stop()
	// A stopped server closes the session cache's subscription, which empties the cache; until
	// the process has seen that (milliseconds), a cached session may still be served (README,
	// Performance: at most the cache TTL).
	s.proc.waitLog(t, store.SessionSubscriptionLost, 2*time.Second)
	start := time.Now()
	p := s.do("GET", "/app/x", nil, http.Header{"Accept": {"application/json"}})
	if p.StatusCode != 503 || !strings.Contains(p.body, "store_unavailable") || strings.Contains(p.body, "portal GET") {
		t.Errorf("protected route with Redis stopped: %d %s", p.StatusCode, p.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 503 took %v", d)
	}
	if p := s.do("GET", "/app/x", nil, browserHeaders); p.StatusCode != 503 || !strings.Contains(p.body, "store_unavailable") {
		t.Errorf("browser with Redis stopped: %d", p.StatusCode)
	}
	if p := s.do("GET", "/public/x", nil, nil); p.StatusCode != 200 {
		t.Errorf("public route with Redis stopped: %d", p.StatusCode)
	}
	s.proc.waitLog(t, "session store unavailable", 5*time.Second)
}
