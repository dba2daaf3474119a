package session_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// The sign-in handoff (session/handoff.go): the env's own address (127.0.0.1) is the sign-in
// host C; acme.example.com and beta.example.com are organisation hosts H, which every
// connection of these browsers reaches at the same listener (httptest's certificate covers
// *.example.com). example.com itself reaches the proxy too but no route names it.

const orgHostRoutes = `  - name: orgs
    hosts: ["*.example.com"]
    path: /
    upstream: UPSTREAM
`

// hoEnv is an env with organisation hosts.
type hoEnv struct {
	*env
	port string
	// locations are every Location header any handoff browser received.
	mu        sync.Mutex
	locations []string
}

func newHandoffEnv(t *testing.T) *hoEnv {
	t.Helper()
	return wrapHandoffEnv(newEnv(t, envOpts{routes: orgHostRoutes}))
}

// wrapHandoffEnv makes e, whose routes name organisation hosts, an hoEnv.
func wrapHandoffEnv(e *env) *hoEnv {
	_, port, _ := net.SplitHostPort(e.srv.Listener.Addr().String())
	return &hoEnv{env: e, port: port}
}

// origin is https://name:port on the test listener.
func (h *hoEnv) origin(name string) string { return "https://" + name + ":" + h.port }

// browser is a browser whose every connection goes to the proxy, whatever the host name, and
// which remembers the Location headers it was sent.
func (h *hoEnv) browser() *browser {
	b := h.env.browser()
	addr := h.srv.Listener.Addr().String()
	var d net.Dialer
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: h.caPool},
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(a); net.ParseIP(host) == nil {
				a = addr // a name: the proxy; addresses (the proxy, the provider) as they are
			}
			return d.DialContext(ctx, network, a)
		},
	}
	b.c.Transport = recordLocations{tr, h}
	return b
}

type recordLocations struct {
	base http.RoundTripper
	h    *hoEnv
}

func (r recordLocations) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req)
	if err == nil {
		if l := resp.Header.Get("Location"); l != "" {
			r.h.mu.Lock()
			r.h.locations = append(r.h.locations, l)
			r.h.mu.Unlock()
		}
	}
	return resp, err
}

var (
	codeField  = regexp.MustCompile(`name="code" value="([^"]+)"`)
	formAction = regexp.MustCompile(`<form id="portcullis-handoff" method="post" action="([^"]+)"`)
)

// codePage is the sign-in host's answer carrying a code: the form's action and the code.
type codePage struct {
	action, code string
	p            *page
}

// toCode goes from H's login to the sign-in host's code page, signing in as user at the
// provider when the browser has no session on the sign-in host ("" when it must not need to).
func (h *hoEnv) toCode(b *browser, host, rd, user string) codePage {
	h.t.Helper()
	p := b.nav(h.origin(host) + "/.portcullis/login?rd=" + url.QueryEscape(rd))
	if p.StatusCode != http.StatusFound || !strings.HasPrefix(p.loc(), h.base+"/.portcullis/handoff/start?t=") {
		h.t.Fatalf("login on %s: %d %q %s", host, p.StatusCode, p.loc(), p.body)
	}
	start := p.loc()
	if user != "" {
		cb := b.toCallback(start, user)
		p = b.nav(cb.String())
		if p.StatusCode != http.StatusFound || !strings.HasPrefix(p.loc(), "/.portcullis/handoff/start?t=") {
			h.t.Fatalf("callback: %d %q %s", p.StatusCode, p.loc(), p.body)
		}
		if strings.Contains(p.loc(), strings.TrimPrefix(start, h.base+"/.portcullis/handoff/start?t=")) {
			h.t.Error("the sign-in returned with the token of the first URL, not a fresh one")
		}
		start = h.base + p.loc()
	}
	p = b.nav(start)
	if p.StatusCode != http.StatusOK {
		h.t.Fatalf("handoff start: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	c, a := codeField.FindStringSubmatch(p.body), formAction.FindStringSubmatch(p.body)
	if c == nil || a == nil {
		h.t.Fatalf("no handoff form: %s", p.body)
	}
	return codePage{action: a[1], code: c[1], p: p}
}

// post posts a code to host's handoff endpoint as the sign-in host's page would.
func (h *hoEnv) post(b *browser, host, code string) *page {
	h.t.Helper()
	return b.do("POST", h.origin(host)+"/.portcullis/handoff", url.Values{"code": {code}},
		http.Header{"Origin": {h.base}, "Sec-Fetch-Site": {"cross-site"}, "Accept": {"text/html"}})
}

// whoami is the browser's whoami on host: status and the JSON.
func (h *hoEnv) whoami(b *browser, host string) (int, map[string]any) {
	h.t.Helper()
	p := b.do("GET", h.origin(host)+"/.portcullis/whoami", nil, http.Header{"Accept": {"application/json"}})
	var m map[string]any
	_ = json.Unmarshal([]byte(p.body), &m)
	return p.StatusCode, m
}

func (h *hoEnv) cookieOn(b *browser, host, name string) string {
	u, _ := url.Parse(h.origin(host))
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func wantReason(t *testing.T, p *page, status int, reason string) {
	t.Helper()
	if p.StatusCode != status || !strings.Contains(p.body, reason) {
		t.Errorf("got %d %s; want %d %s", p.StatusCode, p.body, status, reason)
	}
	if strings.Contains(p.body, "goroutine") || strings.Contains(p.body, "redis") {
		t.Errorf("internals in the refusal: %s", p.body)
	}
}

func TestHandoffSignsInOnOrganisationHost(t *testing.T) {
	h := newHandoffEnv(t)
	b := h.browser()

	// A navigation on H without a session goes to H's login, which hands over to C.
	p := b.nav(h.origin("acme.example.com") + "/app/x?y=1")
	if p.StatusCode != http.StatusFound || !strings.HasPrefix(p.loc(), "/.portcullis/login?rd=") {
		t.Fatalf("protected page on H: %d %q", p.StatusCode, p.loc())
	}
	login := b.nav(h.origin("acme.example.com") + p.loc())
	var nonceCookie *http.Cookie
	for _, c := range login.Cookies() {
		if c.Name == session.HandoffCookieName {
			nonceCookie = c
		}
		if c.Name == session.LoginCookieName {
			t.Error("H started an OIDC sign-in itself")
		}
	}
	if nonceCookie == nil || !nonceCookie.Secure || !nonceCookie.HttpOnly || nonceCookie.Path != "/" || nonceCookie.Domain != "" ||
		nonceCookie.SameSite != http.SameSiteNoneMode || nonceCookie.MaxAge <= 0 || nonceCookie.MaxAge > 600 {
		t.Fatalf("handoff cookie %+v", nonceCookie)
	}

	cp := h.toCode(b, "acme.example.com", "/app/x?y=1", "alice")
	if cp.action != h.origin("acme.example.com")+"/.portcullis/handoff" {
		t.Errorf("form posts to %q", cp.action)
	}
	csp := cp.p.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "form-action "+h.origin("acme.example.com")) || !strings.Contains(csp, "script-src 'sha256-") {
		t.Errorf("CSP %q", csp)
	}
	if !strings.Contains(cp.p.body, `<button type="submit">Continue</button>`) {
		t.Error("no Continue button for browsers without script")
	}
	if cp.p.Header.Get("Cache-Control") != "no-store" {
		t.Error("the code page may be cached")
	}

	p = h.post(b, "acme.example.com", cp.code)
	if p.StatusCode != http.StatusSeeOther || p.loc() != "/app/x?y=1" {
		t.Fatalf("handoff: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	var sess *http.Cookie
	for _, c := range p.Cookies() {
		if c.Name == session.CookieName {
			sess = c
		}
	}
	if sess == nil || !sess.Secure || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.Domain != "" {
		t.Fatalf("session cookie on H %+v", sess)
	}
	if v := h.cookieOn(b, "acme.example.com", session.HandoffCookieName); v != "" {
		t.Error("handoff cookie not expired after use")
	}
	cSess := h.cookieOn(b, "127.0.0.1", session.CookieName)
	if sess.Value == cSess || cSess == "" {
		t.Fatal("H's session is not a session of its own")
	}
	if s, who := h.whoami(b, "acme.example.com"); s != 200 || who["sub"] != "sub-alice" {
		t.Fatalf("whoami on H: %d %v", s, who)
	}
	if got := b.nav(h.origin("acme.example.com") + "/app/x?y=1"); got.StatusCode != 200 || !strings.Contains(got.body, "echo GET /app/x?y=1") {
		t.Errorf("page on H after the handoff: %d %s", got.StatusCode, got.body)
	}

	// Single sign-on: a second organisation host gets a session without the provider.
	cp2 := h.toCode(b, "beta.example.com", "/b", "")
	if p := h.post(b, "beta.example.com", cp2.code); p.StatusCode != http.StatusSeeOther || p.loc() != "/b" {
		t.Fatalf("second host: %d %q %s", p.StatusCode, p.loc(), p.body)
	}

	// No secret in any Location (invariant 5): codes, session ids.
	secrets := []string{cp.code, cp2.code, sess.Value, cSess, h.cookieOn(b, "beta.example.com", session.CookieName)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.locations {
		for _, s := range secrets {
			if s != "" && strings.Contains(l, s) {
				t.Errorf("a secret in Location %q", l)
			}
		}
	}
}

func TestHandoffCarriesNoElevationOrOrganisation(t *testing.T) {
	h := newHandoffEnv(t)
	b := h.browser()
	b.mustSignIn("alice")
	// The sign-in host's session earned an elevation and chose an organisation.
	rdb := h.redis.Client(t)
	ctx := context.Background()
	key := "pc:{s:" + session.HandleOf(b.sessionCookie()) + "}:sess"
	var rec map[string]any
	raw, err := rdb.Get(ctx, key).Bytes()
	if err != nil || json.Unmarshal(raw, &rec) != nil {
		t.Fatalf("read session: %v", err)
	}
	rec["active_org"] = "acme"
	rec["elevations"] = []map[string]any{{"acr": "urn:example:mfa", "org": "acme", "auth_time": time.Now(), "granted_at": time.Now(), "until": time.Now().Add(time.Hour)}}
	nb, _ := json.Marshal(rec)
	if err := rdb.Set(ctx, key, nb, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.Publish(ctx, "pc:sinval", session.HandleOf(b.sessionCookie())) // drop cached copies
	waitFor(t, "the changed record", func() bool {
		_, who := h.whoami(b, "127.0.0.1")
		return who["active_org"] == "acme" && who["elevations"] != nil
	})
	cp := h.toCode(b, "acme.example.com", "/", "")
	if p := h.post(b, "acme.example.com", cp.code); p.StatusCode != http.StatusSeeOther {
		t.Fatalf("handoff: %d %s", p.StatusCode, p.body)
	}
	_, who := h.whoami(b, "acme.example.com")
	if who["active_org"] != nil || who["elevations"] != nil || who["sub"] != "sub-alice" {
		t.Errorf("handed-off session %v", who)
	}
	cexp, _ := time.Parse(time.RFC3339Nano, rec["expires"].(string))
	hexp, _ := time.Parse(time.RFC3339Nano, who["expires"].(string))
	if hexp.After(cexp) {
		t.Errorf("H's session ends %v, after the sign-in host's %v", hexp, cexp)
	}
}

func TestHandoffAttacks(t *testing.T) {
	h := newHandoffEnv(t)
	alice := h.browser()
	alice.mustSignIn("alice")

	t.Run("replayed code", func(t *testing.T) {
		cp := h.toCode(alice, "acme.example.com", "/", "")
		if p := h.post(alice, "acme.example.com", cp.code); p.StatusCode != http.StatusSeeOther {
			t.Fatalf("first use: %d %s", p.StatusCode, p.body)
		}
		wantReason(t, h.post(alice, "acme.example.com", cp.code), 400, string(reason.HandoffInvalid))
	})
	t.Run("concurrent use", func(t *testing.T) {
		b := h.browser()
		b.mustSignIn("alice")
		cp := h.toCode(b, "acme.example.com", "/", "")
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for range 8 {
			wg.Go(func() {
				if p := h.post(b, "acme.example.com", cp.code); p.StatusCode == http.StatusSeeOther {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Errorf("%d posts of one code won", wins)
		}
	})
	t.Run("code posted to another host", func(t *testing.T) {
		cp := h.toCode(alice, "acme.example.com", "/", "")
		wantReason(t, h.post(alice, "beta.example.com", cp.code), 400, string(reason.HandoffWrongHost))
		// Spent by the attempt.
		wantReason(t, h.post(alice, "acme.example.com", cp.code), 400, string(reason.HandoffInvalid))
	})
	t.Run("login CSRF: attacker's code in the victim's browser", func(t *testing.T) {
		mallory := h.browser()
		mallory.mustSignIn("bob")
		cp := h.toCode(mallory, "acme.example.com", "/", "")
		victim := h.browser() // no handoff cookie at all
		wantReason(t, h.post(victim, "acme.example.com", cp.code), 400, string(reason.HandoffBrowser))

		cp = h.toCode(mallory, "acme.example.com", "/", "")
		victim = h.browser()
		victim.mustSignIn("alice")
		_ = h.toCode(victim, "acme.example.com", "/", "") // the victim holds a nonce of its own
		wantReason(t, h.post(victim, "acme.example.com", cp.code), 400, string(reason.HandoffBrowser))
		if s, _ := h.whoami(victim, "acme.example.com"); s != 401 {
			t.Errorf("victim has a session on H: %d", s)
		}
	})
	t.Run("expired code", func(t *testing.T) {
		cp := h.toCode(alice, "acme.example.com", "/", "")
		h.clock.advance(61 * time.Second)
		defer h.clock.set(0)
		wantReason(t, h.post(alice, "acme.example.com", cp.code), 400, string(reason.HandoffInvalid))
	})
	t.Run("expired request", func(t *testing.T) {
		p := alice.nav(h.origin("acme.example.com") + "/.portcullis/login?rd=/")
		h.clock.advance(11 * time.Minute)
		defer h.clock.set(0)
		wantReason(t, alice.nav(p.loc()), 400, string(reason.HandoffInvalid))
	})
	t.Run("parent session revoked before the post", func(t *testing.T) {
		b := h.browser()
		b.mustSignIn("alice")
		cp := h.toCode(b, "acme.example.com", "/", "")
		if err := h.st.DeleteSession(context.Background(), session.HandleOf(b.sessionCookie()), "", "", ""); err != nil {
			t.Fatal(err)
		}
		wantReason(t, h.post(b, "acme.example.com", cp.code), 401, string(reason.HandoffSessionEnded))
		if s, _ := h.whoami(b, "acme.example.com"); s != 401 {
			t.Errorf("session on H from a revoked one: %d", s)
		}
	})
	t.Run("forged and malformed tokens", func(t *testing.T) {
		for _, tk := range []string{strings.Repeat("A", 43), "short", "", strings.Repeat("A", 43) + "&t=" + strings.Repeat("B", 43)} {
			wantReason(t, alice.nav("/.portcullis/handoff/start?t="+tk), 400, string(reason.HandoffInvalid))
		}
		wantReason(t, h.post(alice, "acme.example.com", strings.Repeat("A", 43)), 400, string(reason.HandoffInvalid))
		wantReason(t, h.post(alice, "acme.example.com", "x"), 400, string(reason.HandoffInvalid))
	})
	t.Run("start on an organisation host", func(t *testing.T) {
		p := alice.nav(h.origin("acme.example.com") + "/.portcullis/login?rd=/")
		u, _ := url.Parse(p.loc())
		wantReason(t, alice.nav(h.origin("beta.example.com")+u.RequestURI()), 400, string(reason.HandoffInvalid))
	})
	t.Run("host not served", func(t *testing.T) {
		// example.com reaches the proxy but no route names it (*.example.com is one label more).
		p := alice.nav(h.origin("example.com") + "/.portcullis/login?rd=/")
		wantReason(t, p, 400, string(reason.HandoffHostUnknown))
		// A request record for such a host, however it got into storage, gets no code.
		tok := strings.Repeat("Z", 43)
		rec, _ := json.Marshal(map[string]any{"host": "example.com:" + h.port, "rd": "/", "browser": session.HandleOf(tok), "started": h.clock.now()})
		if err := h.st.SaveHandoff(context.Background(), session.HandleOf(tok), rec, time.Minute); err != nil {
			t.Fatal(err)
		}
		wantReason(t, alice.nav("/.portcullis/handoff/start?t="+tok), 400, string(reason.HandoffHostUnknown))
	})
	t.Run("open redirect payloads", func(t *testing.T) {
		b := h.browser()
		b.mustSignIn("alice")
		for _, rd := range openRedirects {
			if len(rd) > 1024 {
				continue // the front door refuses such a target before the login sees it (414)
			}
			cp := h.toCode(b, "acme.example.com", rd, "")
			p := h.post(b, "acme.example.com", cp.code)
			if p.StatusCode != http.StatusSeeOther || p.loc() != "/" {
				t.Errorf("rd %q: %d %q", rd, p.StatusCode, p.loc())
			}
		}
	})
	t.Run("step-up on a host no route names", func(t *testing.T) {
		p := alice.do("POST", h.origin("example.com")+"/.portcullis/step-up", url.Values{"ticket": {"x"}},
			http.Header{"Origin": {h.origin("example.com")}, "Accept": {"text/html"}})
		wantReason(t, p, 400, string(reason.StepUpHost))
	})
	t.Run("wrong methods", func(t *testing.T) {
		if p := alice.nav(h.origin("acme.example.com") + "/.portcullis/handoff"); p.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET handoff: %d", p.StatusCode)
		}
		if p := alice.do("POST", h.base+"/.portcullis/handoff/start", url.Values{}, nil); p.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST handoff/start: %d", p.StatusCode)
		}
	})
}

// handedOff signs b in on the sign-in host as user and hands the session to hosts.
func (h *hoEnv) handedOff(b *browser, user string, hosts ...string) {
	h.t.Helper()
	b.mustSignIn(user)
	for _, host := range hosts {
		cp := h.toCode(b, host, "/", "")
		if p := h.post(b, host, cp.code); p.StatusCode != http.StatusSeeOther {
			h.t.Fatalf("handoff to %s: %d %s", host, p.StatusCode, p.body)
		}
	}
}

// logout signs b out on host through the confirmation page's form.
func (h *hoEnv) logout(b *browser, host string) {
	h.t.Helper()
	p := b.nav(h.origin(host) + "/.portcullis/logout")
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		h.t.Fatalf("no sign-out form on %s: %s", host, p.body)
	}
	p = b.do("POST", h.origin(host)+"/.portcullis/logout", url.Values{"csrf": {m[1]}},
		http.Header{"Origin": {h.origin(host)}, "Sec-Fetch-Site": {"same-origin"}})
	if p.StatusCode != http.StatusOK && p.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("sign-out on %s: %d %s", host, p.StatusCode, p.body)
	}
	// The provider's sign-out form: the provider redirects on to the sign-in host's home page,
	// and browsers apply form-action to that redirect too (Chromium blocked it on organisation
	// hosts when only 'self' and the provider were allowed).
	if csp := p.Header.Get("Content-Security-Policy"); p.StatusCode == http.StatusOK &&
		!regexp.MustCompile(`form-action 'self' \S+ `+regexp.QuoteMeta(h.base)+`(;|$)`).MatchString(csp) {
		h.t.Errorf("sign-out on %s: CSP %q does not let the provider return to the sign-in host %s", host, csp, h.base)
	}
}

func TestHandoffFamilyEndsTogether(t *testing.T) {
	h := newHandoffEnv(t)
	hosts := []string{"127.0.0.1", "acme.example.com", "beta.example.com"}
	check := func(name string, b *browser, want int) {
		t.Helper()
		for _, host := range hosts {
			if h.cookieOn(b, host, session.CookieName) == "" && want == 200 {
				continue // never handed to this host
			}
			if s, _ := h.whoami(b, host); s != want {
				t.Errorf("%s: whoami on %s = %d, want %d", name, host, s, want)
			}
		}
	}

	b := h.browser()
	h.handedOff(b, "alice", "acme.example.com", "beta.example.com")
	other := h.browser() // alice in another browser: not of this family
	h.handedOff(other, "alice", "acme.example.com")
	check("set-up", b, 200)
	h.logout(b, "acme.example.com")
	check("after sign-out on H", b, 401)
	check("other browser", other, 200)

	b = h.browser()
	h.handedOff(b, "carol", "acme.example.com", "beta.example.com")
	h.logout(b, "127.0.0.1")
	check("after sign-out on the sign-in host", b, 401)

	// Offboarding ends every session of the person, handed off or not.
	b = h.browser()
	h.handedOff(b, "bob", "acme.example.com")
	check("bob", b, 200)
	if _, err := h.m.RevokeUser(context.Background(), store.UserKey(h.idpURL, "sub-bob")); err != nil {
		t.Fatal(err)
	}
	check("after RevokeUser", b, 401)
	check("alice's other browser", other, 200)
}
