package session_test

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
)

func TestSessionCookieAttacks(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, bob := e.browser(), e.browser()
	alice.mustSignIn("alice")
	bob.mustSignIn("bob")
	a, bv := alice.sessionCookie(), bob.sessionCookie()
	tampered := []byte(a)
	tampered[10] ^= 1
	if tampered[10] == '_' || tampered[10] == '-' {
		tampered[10] = 'Q'
	}
	json := http.Header{"Accept": {"application/json"}}
	for _, tc := range []struct {
		name, cookie string
		want         int
	}{
		{"valid", session.CookieName + "=" + a, 200},
		{"same value twice", session.CookieName + "=" + a + "; " + session.CookieName + "=" + a, 200},
		{"tampered", session.CookieName + "=" + string(tampered), 401},
		{"foreign (well-formed, unknown)", session.CookieName + "=" + strings.Repeat("x", 43), 401},
		{"not base64", session.CookieName + "=" + strings.Repeat("!", 43), 401},
		{"too long", session.CookieName + "=" + a + "A", 401},
		// SESS-03: never pick one of two.
		{"two different values", session.CookieName + "=" + bv + "; " + session.CookieName + "=" + a, 400},
		{"two different values, other order", session.CookieName + "=" + a + "; " + session.CookieName + "=" + bv, 400},
		// Only the exact name counts.
		{"lower-case prefix", "__host-portcullis=" + a, 401},
		{"no prefix", "portcullis=" + a, 401},
		{"no-prefix beside the real one", "portcullis=" + bv + "; " + session.CookieName + "=" + a, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.hits.Load()
			p := e.withCookie("/app/x", tc.cookie, json)
			if p.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", p.StatusCode, tc.want, p.body)
			}
			if tc.want != 200 && e.hits.Load() != before {
				t.Error("the upstream was reached")
			}
			if tc.want == 401 && (!strings.Contains(p.body, `"error":"no_session"`) || p.Header.Get("WWW-Authenticate") != `Bearer realm="portcullis"`) {
				t.Errorf("401 without the API shape: %v %s", p.Header, p.body)
			}
		})
	}
	// The same refusals for a browser: a tampered cookie sends it to sign in.
	p := e.withCookie("/app/x", session.CookieName+"="+string(tampered), navHeaders)
	if p.StatusCode != 302 || !strings.HasPrefix(p.loc(), "/.portcullis/login?rd=") {
		t.Errorf("browser with a tampered cookie: %d %q", p.StatusCode, p.loc())
	}
	// A non-navigation browser request (fetch, POST) gets the 401, not a redirect.
	b := e.browser()
	if p := b.do("POST", e.base+"/app/x", url.Values{}, navHeaders); p.StatusCode != 401 {
		t.Errorf("POST without session: %d", p.StatusCode)
	}
}

func TestSessionFixation(t *testing.T) {
	e := newEnv(t, envOpts{})
	// The attacker holds a real session V and plants it in the victim's browser (SESS-02).
	attacker := e.browser()
	attacker.mustSignIn("bob")
	v := attacker.sessionCookie()
	victim := e.browser()
	u, _ := url.Parse(e.base)
	victim.jar.SetCookies(u, []*http.Cookie{{Name: session.CookieName, Value: v, Path: "/", Secure: true}})
	// Logged in as bob through the planted cookie...
	if p := victim.api("/.portcullis/whoami"); !strings.Contains(p.body, "sub-bob") {
		t.Fatalf("planted cookie: %s", p.body)
	}
	// ...the victim signs in as alice: a new id, and the planted one is dead.
	victim.mustSignIn("alice")
	w := victim.sessionCookie()
	if w == v || w == "" {
		t.Fatalf("session id not rotated: %q", w)
	}
	if p := victim.api("/.portcullis/whoami"); !strings.Contains(p.body, "sub-alice") {
		t.Errorf("after sign-in: %s", p.body)
	}
	if s := e.whoamiWith(v); s != 401 {
		t.Errorf("the pre-sign-in cookie still works: %d", s)
	}
	// A made-up cookie value is not adopted either.
	made := strings.Repeat("F", 43)
	other := e.browser()
	other.jar.SetCookies(u, []*http.Cookie{{Name: session.CookieName, Value: made, Path: "/", Secure: true}})
	other.mustSignIn("alice")
	if other.sessionCookie() == made || e.whoamiWith(made) != 401 {
		t.Error("a made-up session id was adopted")
	}
}

func TestOpenRedirectThroughRD(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, rd := range []string{
		"//evil.example", "/\\evil.example", "https:evil.example", "/%5Cevil.example", "%5C/evil.example",
		"/%5C/evil.example", "%5C%5Cevil.example", "%2F%2Fevil.example", "///evil.example", "////%5C;@evil.example",
		"/%2F/evil.example", "/%09/evil.example", "/%20/evil.example", "/%0B/evil.example", "/%0A/evil.example",
		"/%0D/evil.example", "/%09%09/%09/evil.example", "/./%5Cevil.example", "/./../../%5Cevil.example",
		"/.%2E/%2Fevil.example", "/%2E/%2E%2E/%5Cevil.example", "javascript:alert(1)", "JaVaScRiPt:alert(1)",
		"data:text/html,<script>alert(1)</script>", "https:/%5Cevil.example", "https://evil.example/",
		"http://" + strings.TrimPrefix(e.base, "https://") + "/", "//evil%E3%80%82example", "https://evil%EF%BC%8Eexample/",
		"/%0D%0ASet-Cookie:%20__Host-portcullis=attacker", "/%0ALocation:%20https://evil.example",
		"/%252F/evil.example", "/%25252F%25252Fevil.example", "\t//evil.example", "/\t/evil.example",
	} {
		t.Run(rd, func(t *testing.T) {
			b := e.browser()
			// rd is sent as written (already encoded where it shows %), as an attacker's link would.
			p := b.signIn("/.portcullis/login?rd="+url.QueryEscape(mustUnescape(t, rd)), "alice")
			loc := p.Header.Values("Location")
			if p.StatusCode != 302 || len(loc) != 1 || loc[0] != "/" {
				t.Errorf("after sign-in: %d Location %q, want exactly \"/\"", p.StatusCode, loc)
			}
			if cs := p.Header.Values("Set-Cookie"); len(cs) != 2 {
				t.Errorf("Set-Cookie lines: %q", cs)
			}
		})
	}
	// Legitimate paths survive, with their query.
	for _, rd := range []string{"/app/x", "/app/x?y=1&z=%2F", "/app/caf%C3%A9/", "/"} {
		p := e.browser().signIn("/.portcullis/login?rd="+url.QueryEscape(rd), "alice")
		if p.loc() != rd {
			t.Errorf("rd %q came back as %q", rd, p.loc())
		}
	}
}

func mustUnescape(t *testing.T, s string) string {
	// The table is written as it would appear in a URL's query; decode once to get the value.
	v, err := url.QueryUnescape(strings.ReplaceAll(s, "+", "%2B"))
	if err != nil {
		return s
	}
	return v
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestLogout(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	b.mustSignIn("alice")
	v := b.sessionCookie()

	// GET shows a confirmation and changes nothing (SESS-04 b), even cross-site.
	p := b.do("GET", e.base+"/.portcullis/logout", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}, "Accept": {"text/html"}})
	m := csrfField.FindStringSubmatch(p.body)
	if p.StatusCode != 200 || m == nil || e.whoamiWith(v) != 200 {
		t.Fatalf("GET logout: %d %s", p.StatusCode, p.body)
	}
	token := m[1]
	post := func(form url.Values, hdr http.Header) *page {
		return b.do("POST", e.base+"/.portcullis/logout", form, hdr)
	}
	for _, tc := range []struct {
		name string
		form url.Values
		hdr  http.Header
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {strings.Repeat("A", 43)}}, nil},
		{"another session's token", url.Values{"csrf": {otherToken(t, e)}}, nil},
		{"cross-site with the token", url.Values{"csrf": {token}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"foreign Origin with the token", url.Values{"csrf": {token}}, http.Header{"Origin": {"https://evil.example"}}},
		{"null Origin with the token", url.Values{"csrf": {token}}, http.Header{"Origin": {"null"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if p := post(tc.form, tc.hdr); p.StatusCode != 403 || !strings.Contains(p.body, string(reason.CSRFFailed)) {
				t.Errorf("%d %s", p.StatusCode, p.body)
			}
			if e.whoamiWith(v) != 200 {
				t.Error("session ended")
			}
		})
	}
	p = post(url.Values{"csrf": {token}}, http.Header{"Origin": {e.base}, "Sec-Fetch-Site": {"same-origin"}})
	// RP-initiated logout: a page whose form the browser posts to the provider's end_session
	// (at once, by its one hashed script), so the ID token is in no URL (security case 0.2 #5).
	if p.StatusCode != http.StatusOK || p.loc() != "" {
		t.Fatalf("logout: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	end := endSessionForm(t, p.body)
	if end.action != e.idpURL+"/end_session" || end.fields.Get("id_token_hint") == "" ||
		end.fields.Get("post_logout_redirect_uri") != e.base+"/" || end.fields.Get("client_id") != clientID {
		t.Errorf("RP-initiated logout form: %+v", end)
	}
	for k, vs := range p.Header {
		for _, v := range vs {
			if strings.Contains(v, end.fields.Get("id_token_hint")) {
				t.Errorf("the ID token is in the %s header", k)
			}
		}
	}
	if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' "+e.idpURL) || !strings.Contains(csp, "script-src 'sha256-") {
		t.Errorf("sign-out page CSP %q: the form must be allowed to post to the provider, and only the page's script run", csp)
	}
	for _, name := range []string{session.CookieName, session.LoginCookieName} {
		c := findCookie(p.Response, name)
		if c == nil || c.MaxAge >= 0 || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("%s not expired with identical attributes: %+v", name, c)
		}
	}
	if e.whoamiWith(v) != 401 {
		t.Error("the old cookie still works after logout")
	}
	for _, r := range e.sessionRecords() {
		if r["user"] == e.idpURL+"|sub-alice" {
			t.Error("the session record survived logout")
		}
	}
	// The provider accepts the posted hint and redirect (its end_session answers with a
	// redirect back).
	if p := b.do("POST", end.action, end.fields, nil); p.StatusCode/100 != 3 || !strings.HasPrefix(p.loc(), e.base+"/") {
		t.Errorf("provider end_session: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
}

type htmlForm struct {
	action string
	fields url.Values
}

var (
	endSessionFormRE = regexp.MustCompile(`<form id="portcullis-end-session" method="post" action="([^"]+)">`)
	hiddenInputRE    = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// endSessionForm reads the provider sign-out form of the sign-out page.
func endSessionForm(t *testing.T, body string) htmlForm {
	t.Helper()
	m := endSessionFormRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no end-session form in:\n%s", body)
	}
	f := htmlForm{action: html.UnescapeString(m[1]), fields: url.Values{}}
	for _, in := range hiddenInputRE.FindAllStringSubmatch(body, -1) {
		f.fields.Add(in[1], html.UnescapeString(in[2]))
	}
	return f
}

// otherToken is a valid CSRF token of another person's session.
func otherToken(t *testing.T, e *env) string {
	o := e.browser()
	o.mustSignIn("bob")
	p := o.nav("/.portcullis/logout")
	return csrfField.FindStringSubmatch(p.body)[1]
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	e := newEnv(t, envOpts{session: "{idle_timeout: 10m, absolute_timeout: 1h, touch_interval: 1m, login_timeout: 5m}"})
	lastSeen := func() string {
		recs := e.sessionRecords()
		if len(recs) != 1 {
			t.Fatalf("%d records", len(recs))
		}
		return recs[0]["last_seen"].(string)
	}
	t.Run("idle", func(t *testing.T) {
		b := e.browser()
		b.mustSignIn("alice")
		v := b.sessionCookie()
		e.clock.advance(9 * time.Minute)
		if e.whoamiWith(v) != 200 { // slides the idle window
			t.Fatal("within idle timeout")
		}
		e.clock.advance(9 * time.Minute)
		if e.whoamiWith(v) != 200 {
			t.Fatal("used again within idle timeout")
		}
		e.clock.advance(10*time.Minute + time.Second)
		if e.whoamiWith(v) != 401 {
			t.Error("idle session still works")
		}
		if len(e.sessionRecords()) != 0 {
			t.Error("expired session not deleted")
		}
	})
	e.clock.set(0)
	t.Run("absolute", func(t *testing.T) {
		b := e.browser()
		b.mustSignIn("alice")
		v := b.sessionCookie()
		for i := range 6 {
			e.clock.advance(9 * time.Minute)
			if s := e.whoamiWith(v); s != 200 {
				t.Fatalf("step %d: %d", i, s)
			}
		}
		e.clock.advance(7 * time.Minute) // 61 minutes after sign-in, used every 9 or 7
		if e.whoamiWith(v) != 401 {
			t.Error("session outlived the absolute timeout")
		}
	})
	e.clock.set(0)
	t.Run("touch is coalesced", func(t *testing.T) {
		b := e.browser()
		b.mustSignIn("alice")
		v := b.sessionCookie()
		first := lastSeen()
		e.clock.advance(30 * time.Second)
		e.whoamiWith(v)
		if lastSeen() != first {
			t.Error("last seen written within the touch interval")
		}
		e.clock.advance(31 * time.Second)
		e.whoamiWith(v)
		if lastSeen() == first {
			t.Error("last seen not written after the touch interval")
		}
		// The Redis TTL follows the earlier end: idle here.
		ttl := e.redis.Client(e.t).PTTL(t.Context(), firstKey(t, e)).Val()
		if ttl <= 9*time.Minute || ttl > 10*time.Minute {
			t.Errorf("record TTL %v, want about the idle timeout", ttl)
		}
	})
}

func firstKey(t *testing.T, e *env) string {
	keys := e.redis.Client(e.t).Keys(t.Context(), "*:sess").Val()
	if len(keys) != 1 {
		t.Fatalf("session keys %q", keys)
	}
	return keys[0]
}

func TestRedisStoppedFailsClosed(t *testing.T) {
	e := newEnv(t, envOpts{privateRedis: true})
	b := e.browser()
	b.mustSignIn("alice")
	e.redis.Stop()
	// The stopped server closes the subscription's connection, which empties the session cache
	// at once; wait for that rather than race it (a hung server is TestRedisPausedFailsClosedQuickly).
	for deadline := time.Now().Add(session.DefaultCacheTTL); e.m.CacheLive() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	before := e.hits.Load()
	for _, hdr := range []http.Header{navHeaders, {"Accept": {"application/json"}}} {
		p := b.do("GET", e.base+"/app/x", nil, hdr)
		if p.StatusCode != 503 || !strings.Contains(p.body, string(reason.StoreUnavailable)) {
			t.Errorf("protected route with Redis down: %d %s", p.StatusCode, p.body)
		}
	}
	// Sign-in cannot start either: its state lives in Redis.
	if p := e.browser().nav("/.portcullis/login"); p.StatusCode != 503 || !strings.Contains(p.body, string(reason.StoreUnavailable)) {
		t.Errorf("login with Redis down: %d", p.StatusCode)
	}
	if e.hits.Load() != before {
		t.Error("the upstream was reached")
	}
	if p := b.nav("/public/x"); p.StatusCode != 200 || p.body != "echo GET /public/x" {
		t.Errorf("public route with Redis down: %d %s", p.StatusCode, p.body)
	}
	l := e.logs.String()
	if !strings.Contains(l, "session store unavailable") {
		t.Error("outage not logged as an outage")
	}
	var body map[string]any
	p := b.api("/app/x")
	if json.Unmarshal([]byte(p.body), &body) != nil || strings.Contains(p.body, "127.0.0.1") || strings.Contains(p.body, "connect") {
		t.Errorf("internals in the body: %s", p.body)
	}
	// Back: Redis restarts empty, so the session is gone; nobody is let in on the cookie alone.
	e.redis.Restart()
	if p := b.api("/app/x"); p.StatusCode != 401 {
		t.Errorf("after restart: %d", p.StatusCode)
	}
}

func TestIdPDownAtStart(t *testing.T) {
	e := newEnv(t, envOpts{idpDown: true})
	b := e.browser()
	for _, path := range []string{"/app/x", "/.portcullis/login"} {
		if p := b.nav(path); p.StatusCode != 503 || !strings.Contains(p.body, string(reason.IdPUnavailable)) {
			t.Errorf("%s with the IdP down: %d %s", path, p.StatusCode, p.body)
		}
	}
	if p := b.nav("/public/x"); p.StatusCode != 200 {
		t.Errorf("public route: %d", p.StatusCode)
	}
	e.startIdP()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := b.nav("/.portcullis/login")
		if p.StatusCode == 302 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery never recovered: %d", p.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.mustSignIn("alice")
	// Once signed in, the provider going away does not matter: sessions live in Redis.
	e.idpHTTP.Close()
	if p := b.nav("/app/x"); p.StatusCode != 200 {
		t.Errorf("session during a provider outage: %d", p.StatusCode)
	}
	if p := e.browser().nav("/.portcullis/login"); p.StatusCode != 302 {
		t.Errorf("login start during a later outage: %d", p.StatusCode) // the redirect needs no provider call
	}
	if !strings.Contains(e.logs.String(), "identity provider unavailable at start") {
		t.Error("the outage at start was not logged")
	}
}

// A hung Redis (the subscription does not notice) fails closed for a session that is not in
// the session cache at once, and for a cached one once its entry is older than the cache TTL:
// the documented bound (session.DefaultCacheTTL).
func TestRedisPausedFailsClosedQuickly(t *testing.T) {
	e := newEnv(t, envOpts{privateRedis: true})
	b := e.browser()
	b.mustSignIn("alice")
	cold := e.browser()
	cold.mustSignIn("bob")
	e.clock.advance(session.DefaultCacheTTL) // both cached entries are now too old
	if p := b.api("/app/x"); p.StatusCode != 200 {
		t.Fatalf("before the outage: %d", p.StatusCode) // alice is cached again; bob is not
	}
	e.redis.Pause()
	if p := b.api("/app/x"); p.StatusCode != 200 {
		t.Errorf("cached session within the cache TTL: %d %s", p.StatusCode, p.body)
	}
	for _, br := range []*browser{cold, b} {
		if br == b {
			e.clock.advance(session.DefaultCacheTTL)
		}
		start := time.Now()
		p := br.api("/app/x")
		if p.StatusCode != 503 || !strings.Contains(p.body, string(reason.StoreUnavailable)) {
			t.Errorf("protected route with Redis hung: %d %s", p.StatusCode, p.body)
		}
		// read_timeout is 500ms; one retry at most.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the 503 took %v", d)
		}
	}
	e.redis.Resume()
	// Nobody was signed out by the outage.
	deadline := time.Now().Add(5 * time.Second)
	for b.api("/app/x").StatusCode != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the session did not come back after Redis resumed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
