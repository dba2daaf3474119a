package session_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

func TestSignIn(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()

	// A browser navigation without a session goes to sign in, and comes back where it was.
	p := b.nav("/app/reports?year=2026")
	if p.StatusCode != http.StatusFound || p.loc() != "/.portcullis/login?rd=%2Fapp%2Freports%3Fyear%3D2026" {
		t.Fatalf("no session: %d %q", p.StatusCode, p.loc())
	}
	// The start of sign-in: PKCE S256, state, nonce, the extra parameter, our callback.
	p = b.nav(p.loc())
	auth, _ := url.Parse(p.loc())
	q := auth.Query()
	if p.StatusCode != http.StatusFound || !strings.HasPrefix(p.loc(), e.idpURL+"/authorize?") {
		t.Fatalf("login: %d %q", p.StatusCode, p.loc())
	}
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || len(q.Get("state")) < 22 ||
		q.Get("nonce") == "" || q.Get("redirect_uri") != e.base+"/.portcullis/callback" || q.Get("ui_locales") != "en" ||
		q.Get("client_id") != clientID || !strings.Contains(q.Get("scope"), "openid") {
		t.Errorf("authorize request %v", q)
	}
	checkCookie(t, p.Response, session.LoginCookieName, 300)

	cb := b.toCallback(p.loc(), "alice")
	p = b.nav(cb.String())
	if p.StatusCode != http.StatusFound || p.loc() != "/app/reports?year=2026" {
		t.Fatalf("callback: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	sc := checkCookie(t, p.Response, session.CookieName, int((2 * time.Hour).Seconds()))
	if len(sc.Value) != 43 {
		t.Errorf("session id %q is not 256 bits in base64url", sc.Value)
	}
	if lc := findCookie(p.Response, session.LoginCookieName); lc == nil || lc.MaxAge >= 0 {
		t.Error("login cookie not cleared at the callback")
	}
	// The session reaches the portal.
	before := e.hits.Load()
	p = b.nav("/app/reports?year=2026")
	if p.StatusCode != 200 || p.body != "echo GET /app/reports?year=2026" || e.hits.Load() != before+1 {
		t.Fatalf("with session: %d %q", p.StatusCode, p.body)
	}
	// whoami: identity, no secrets.
	p = b.api("/.portcullis/whoami")
	var who map[string]any
	if err := json.Unmarshal([]byte(p.body), &who); err != nil || p.StatusCode != 200 {
		t.Fatalf("whoami: %d %s", p.StatusCode, p.body)
	}
	if who["user_key"] != e.idpURL+"|sub-alice" || who["sub"] != "sub-alice" || who["iss"] != e.idpURL ||
		who["email"] != "alice@fresh.example" || who["email_verified"] != true || who["name"] != "Alice" ||
		who["acr"] == nil || who["auth_time"] == nil || who["amr"] == nil {
		t.Errorf("whoami %v", who)
	}
	if strings.Contains(p.body, sc.Value) || strings.Contains(p.body, "eyJ") || p.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("whoami leaks a secret or is cacheable: %s", p.body)
	}
	// Redis holds the session under a hash: no key and no value contains the cookie.
	rdb := e.redis.Client(t)
	keys := rdb.Keys(t.Context(), "*").Val()
	for _, k := range keys {
		v, _ := rdb.Dump(t.Context(), k).Result()
		if strings.Contains(k, sc.Value) || strings.Contains(v, sc.Value) {
			t.Errorf("redis key %q holds the cookie value", k)
		}
	}
	if recs := e.sessionRecords(); len(recs) != 1 || recs[0]["user"] != e.idpURL+"|sub-alice" {
		t.Errorf("session records %v", recs)
	}
	// Nothing secret in the log.
	if l := e.logs.String(); strings.Contains(l, sc.Value) || strings.Contains(l, cb.Query().Get("code")) ||
		strings.Contains(l, cb.Query().Get("state")) || strings.Contains(l, clientSecret) || strings.Contains(l, "eyJ") {
		t.Errorf("a secret reached the log:\n%s", l)
	}
}

func findCookie(r *http.Response, name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// checkCookie checks SESS-01 attributes on the Set-Cookie for name.
func checkCookie(t *testing.T, r *http.Response, name string, maxAge int) *http.Cookie {
	t.Helper()
	c := findCookie(r, name)
	if c == nil {
		t.Fatalf("no %s cookie set", name)
	}
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" || c.MaxAge != maxAge {
		t.Errorf("cookie %s attributes: %+v", name, c)
	}
	return c
}

// refused checks a refused callback: status, reason, and no session handed out.
func refused(t *testing.T, e *env, b *browser, p *page, status int, reason string) {
	t.Helper()
	if p.StatusCode != status || !strings.Contains(p.body, reason) {
		t.Errorf("got %d, want %d %s: %s", p.StatusCode, status, reason, p.body)
	}
	if c := findCookie(p.Response, session.CookieName); c != nil && c.MaxAge >= 0 {
		t.Errorf("a session cookie was set: %+v", c)
	}
	if w := b.api("/.portcullis/whoami"); w.StatusCode != http.StatusUnauthorized {
		t.Errorf("whoami after a refused callback: %d", w.StatusCode)
	}
	if n := len(e.sessionRecords()); n != 0 {
		t.Errorf("%d session records exist", n)
	}
}

func TestCallbackStateAttacks(t *testing.T) {
	e := newEnv(t, envOpts{})

	t.Run("missing, empty or forged state", func(t *testing.T) {
		b := e.browser()
		cb := b.toCallback("/.portcullis/login?rd=/app/x", "alice")
		code := cb.Query().Get("code")
		for _, q := range []string{
			"code=" + code,
			"code=" + code + "&state=",
			"code=" + code + "&state=" + strings.Repeat("A", 43),
			"code=" + code + "&state=" + cb.Query().Get("state") + "&state=" + strings.Repeat("A", 43),
		} {
			refused(t, e, b, b.nav("/.portcullis/callback?"+q), 400, string(reason.InvalidState))
		}
	})
	t.Run("replayed", func(t *testing.T) {
		b := e.browser()
		cb := b.toCallback("/.portcullis/login?rd=/app/x", "alice")
		if p := b.nav(cb.String()); p.StatusCode != http.StatusFound {
			t.Fatalf("first use: %d %s", p.StatusCode, p.body)
		}
		// A second browser replays the whole callback URL: state already used.
		b2 := e.browser()
		refusedOther := b2.nav(cb.String())
		if refusedOther.StatusCode != 400 || !strings.Contains(refusedOther.body, string(reason.InvalidState)) {
			t.Errorf("replay: %d %s", refusedOther.StatusCode, refusedOther.body)
		}
		if w := b2.api("/.portcullis/whoami"); w.StatusCode != 401 {
			t.Errorf("replaying browser got a session: %d", w.StatusCode)
		}
		e.m.RevokeUser(t.Context(), e.idpURL+"|sub-alice")
	})
	t.Run("state from another browser", func(t *testing.T) {
		// The attacker starts a sign-in, logs in as themselves, and sends the callback URL to the
		// victim, whose browser holds its own login cookie (login CSRF, OIDC-01 c).
		attacker := e.browser()
		cb := attacker.toCallback("/.portcullis/login", "bob")
		victim := e.browser()
		victim.nav("/.portcullis/login") // the victim's own login cookie
		refused(t, e, victim, victim.nav(cb.String()), 400, string(reason.LoginBrowserMismatch))
		// A browser without any login cookie is refused too.
		stranger := e.browser()
		refused(t, e, stranger, stranger.nav(cb.String()), 400, string(reason.LoginBrowserMismatch))
		// Neither refusal spent the state: only the browser that started it can, once.
		if p := attacker.nav(cb.String()); p.StatusCode != http.StatusFound {
			t.Fatalf("the starting browser after the refusals: %d %s", p.StatusCode, p.body)
		}
		e.m.RevokeUser(t.Context(), e.idpURL+"|sub-bob")
		refused(t, e, attacker, attacker.nav(cb.String()), 400, string(reason.InvalidState))
		refused(t, e, victim, victim.nav(cb.String()), 400, string(reason.InvalidState))
	})
	t.Run("provider error is escaped", func(t *testing.T) {
		b := e.browser()
		p := b.nav("/.portcullis/login")
		st, _ := url.Parse(p.loc())
		q := url.Values{"state": {st.Query().Get("state")}, "error": {"x<script>alert(1)</script>"}, "error_description": {"<script>alert(2)</script>"}}
		p = b.nav("/.portcullis/callback?" + q.Encode())
		refused(t, e, b, p, 400, string(reason.IdPError))
		if strings.Contains(p.body, "<script>") || strings.Contains(p.body, "alert") {
			t.Errorf("provider text echoed: %s", p.body)
		}
		p = b.nav("/.portcullis/login")
		st, _ = url.Parse(p.loc())
		p = b.nav("/.portcullis/callback?state=" + st.Query().Get("state") + "&error=access_denied")
		if !strings.Contains(p.body, "access_denied") {
			t.Errorf("provider error code not shown: %s", p.body)
		}
	})
	t.Run("code for another PKCE verifier", func(t *testing.T) {
		// Two flows in one browser; the code of the first is delivered with the state of the
		// second: the token endpoint refuses the verifier (code injection, OIDC-02).
		b := e.browser()
		cb1 := b.toCallback("/.portcullis/login", "alice")
		cb2 := b.toCallback("/.portcullis/login", "alice")
		q := url.Values{"code": {cb1.Query().Get("code")}, "state": {cb2.Query().Get("state")}}
		refused(t, e, b, b.nav("/.portcullis/callback?"+q.Encode()), 400, string(reason.SignInFailed))
	})
	t.Run("unverified email", func(t *testing.T) {
		b := e.browser()
		refused(t, e, b, b.signIn("/.portcullis/login", "eve"), 403, string(reason.EmailNotVerified))
	})
}

func TestCallbackStateExpires(t *testing.T) {
	e := newEnv(t, envOpts{session: "{login_timeout: 1s}"})
	b := e.browser()
	cb := b.toCallback("/.portcullis/login", "alice")
	// Redis expires the state (a key TTL, not the injected clock): wait until it has.
	rdb := e.redis.Client(t)
	keys, err := rdb.Keys(t.Context(), "*:login").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("sign-in state keys %q (%v)", keys, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Exists(t.Context(), keys[0]).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sign-in state %s still there 5s after a login_timeout of 1s", keys[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	refused(t, e, b, b.nav(cb.String()), 400, string(reason.InvalidState))
}

func TestIDTokenSubstitution(t *testing.T) {
	e := newEnv(t, envOpts{swap: true})
	other := newEnv(t, envOpts{}) // a second, unrelated provider

	for _, tc := range []struct {
		name  string
		token func() string
		cause string
	}{
		// OIDC-03: a valid token of this provider and client, but from another flow.
		{"nonce mismatch (replayed id token)", func() string { return e.directIDToken(clientID, clientSecret, "alice", "another-nonce") }, "nonce does not match"},
		// OIDC-04: correctly signed by another provider.
		{"another issuer", func() string { return other.directIDToken(clientID, clientSecret, "alice", "n") }, "failed to verify signature"},
		// OIDC-05: this provider, but issued to another client.
		{"another audience", func() string { return e.directIDToken(otherClient, "other-secret", "alice", "n") }, "expected audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token()
			e.swap.with.Store(&tok)
			defer e.swap.with.Store(nil)
			b := e.browser()
			refused(t, e, b, b.signIn("/.portcullis/login", "alice"), 400, string(reason.SignInFailed))
			logHas(t, e, tc.cause)
		})
	}
	t.Run("expired", func(t *testing.T) {
		// devidp's tokens live an hour; our clock says two hours later (beyond the 30s skew).
		b := e.browser()
		cb := b.toCallback("/.portcullis/login", "alice")
		e.clock.set(2 * time.Hour)
		defer e.clock.set(0)
		refused(t, e, b, b.nav(cb.String()), 400, string(reason.SignInFailed))
		logHas(t, e, "token is expired")
	})
	t.Run("forced bad claims", func(t *testing.T) {
		for _, f := range []struct {
			name, cause string
			set         func(*devidpClaims)
		}{
			{"acr not a string", "acr is not a string", func(c *devidpClaims) { c.ACR = ""; c.Extra = map[string]any{"acr": []string{"urn:x"}} }},
			{"amr a string", "amr is not an array", func(c *devidpClaims) { c.AMR = nil; c.Extra = map[string]any{"amr": "pwd"} }},
			{"auth_time a string", "auth_time is not a number", func(c *devidpClaims) { c.AuthTime = time.Time{}; c.Extra = map[string]any{"auth_time": "1700000000"} }},
			{"auth_time in milliseconds", "not a plausible time", func(c *devidpClaims) {
				c.AuthTime = time.Time{}
				c.Extra = map[string]any{"auth_time": time.Now().UnixMilli()}
			}},
			{"auth_time in the future", "auth_time is in the future", func(c *devidpClaims) { c.AuthTime = time.Now().Add(time.Hour) }},
			{"sid a number", "sid is not a string", func(c *devidpClaims) { c.SID = ""; c.Extra = map[string]any{"sid": 5} }},
		} {
			t.Run(f.name, func(t *testing.T) {
				e.idp.ForceClaims("alice", f.set)
				b := e.browser()
				refused(t, e, b, b.signIn("/.portcullis/login", "alice"), 400, string(reason.SignInFailed))
				logHas(t, e, f.cause)
			})
		}
	})
	// After all that, an honest sign-in still works.
	e.browser().mustSignIn("alice")
}

func logHas(t *testing.T, e *env, s string) {
	t.Helper()
	if !strings.Contains(e.logs.String(), s) {
		t.Errorf("log does not say %q", s)
	}
}

// TestEmailDomainClaim: with oidc.email_domain_claim (Google's hd), an address counts as
// verified only when the claim names its own domain: a provider's email_verified for an
// address at a domain it does not host (a personal account made while someone read mail at
// the company) is not enough. Tried with the claim missing, for another domain, a subdomain,
// of the wrong type, and for the right domain in another case.
func TestEmailDomainClaim(t *testing.T) {
	e := newEnv(t, envOpts{oidc: "  email_domain_claim: hd\n"})
	for _, tc := range []struct {
		name string
		hd   any // nil: no claim
		ok   bool
	}{
		// Refusals first: refused checks that no session record exists at all.
		{"no hd", nil, false},
		{"another domain", "other.example", false},
		{"a parent domain", "example", false},
		{"a subdomain", "mail.fresh.example", false},
		{"empty", "", false},
		{"not a string", []string{"fresh.example"}, false},
		{"its own domain", "fresh.example", true},
		{"its own domain in capitals", "FRESH.Example", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.hd != nil {
				e.idp.ForceClaims("alice", func(c *devidp.Claims) { c.Extra = map[string]any{"hd": tc.hd} })
			}
			b := e.browser()
			switch _, list := tc.hd.([]string); {
			case tc.ok:
				b.mustSignIn("alice")
			case list:
				refused(t, e, b, b.signIn("/.portcullis/login", "alice"), 400, string(reason.SignInFailed))
			default:
				refused(t, e, b, b.signIn("/.portcullis/login", "alice"), 403, string(reason.EmailNotVerified))
			}
		})
	}
}

// RFC 9207: an authorisation response that names another issuer than the provider the sign-in
// went to is refused before its code is redeemed (OIDC-04); one naming the right issuer, or
// none from a provider that does not announce the parameter (devidp), is accepted.
func TestCallbackIssParameter(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name, iss string
		repeat    bool
		want      int
	}{
		{"another issuer", "https://idp.rogue.test", false, http.StatusBadRequest},
		{"with a trailing slash", e.idpURL + "/", false, http.StatusBadRequest},
		{"twice", e.idpURL, true, http.StatusBadRequest},
		{"the provider's own", e.idpURL, false, http.StatusFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser()
			cb := b.toCallback("/.portcullis/login?rd=/app/x", "alice")
			q := cb.Query()
			q.Set("iss", tc.iss)
			if tc.repeat {
				q.Add("iss", tc.iss)
			}
			cb.RawQuery = q.Encode()
			p := b.nav(cb.String())
			if p.StatusCode != tc.want {
				t.Fatalf("%d %s", p.StatusCode, p.body)
			}
			if tc.want != http.StatusFound {
				if !strings.Contains(p.body, string(reason.ProviderMixUp)) {
					t.Errorf("reason: %s", p.body)
				}
				if w := b.api("/.portcullis/whoami"); w.StatusCode != 401 {
					t.Errorf("a session was made: %d", w.StatusCode)
				}
			}
		})
	}
}

// A provider whose sub cannot be provisioned (Entra ID's is pairwise) names its people by
// another immutable claim (oid): the person's key is made of it, and a token without it signs
// nobody in.
func TestSubjectClaim(t *testing.T) {
	e := newEnv(t, envOpts{oidc: "  subject_claim: oid\n"})
	e.idp.ForceClaims("alice", func(c *devidp.Claims) { c.Extra = map[string]any{"oid": "00000000-aaaa-0000-0000-000000000001"} })
	b := e.browser()
	b.mustSignIn("alice")
	w := b.api("/.portcullis/whoami")
	if want := store.UserKey(e.idpURL, "00000000-aaaa-0000-0000-000000000001"); !strings.Contains(w.body, want) || strings.Contains(w.body, "|sub-alice") {
		t.Errorf("whoami %s, want the key %s", w.body, want)
	}
	// A back-channel logout names the provider's sub, not the oid: the session is found by it.
	if status, err := e.idp.SendBackchannelLogout(t.Context(), "sub-alice"); err != nil || status != 200 {
		t.Fatalf("back-channel logout by sub: %d %v", status, err)
	}
	if w := b.api("/.portcullis/whoami"); w.StatusCode != 401 {
		t.Fatalf("whoami after a back-channel logout by sub: %d %s", w.StatusCode, w.body)
	}
	for name, extra := range map[string]map[string]any{"no oid": nil, "an oid that is no string": {"oid": 42}} {
		e.idp.ForceClaims("bob", func(c *devidp.Claims) { c.Extra = extra })
		p := e.browser().signIn("/.portcullis/login?rd=/app/x", "bob")
		if p.StatusCode != http.StatusBadRequest || !strings.Contains(p.body, string(reason.SignInFailed)) {
			t.Errorf("%s: %d %s", name, p.StatusCode, p.body)
		}
	}
}

// Providers change while the manager runs (managed providers): a session whose provider is no
// longer in force, or whose provider's name now points at another issuer, speaks for nobody;
// its record stays, so it works again if its provider comes back (one read late at start).
func TestSetProvidersSessionsFollow(t *testing.T) {
	e := newEnv(t, envOpts{})
	b := e.browser()
	b.mustSignIn("alice")
	orig := e.cfg.OIDC.All
	moved := slices.Clone(orig)
	moved[0].Issuer = "https://elsewhere.example"
	e.m.SetProviders(moved)
	hits := e.hits.Load()
	// No provider that can sign anyone in is discovered now: 503 rather than 401.
	if p := b.api("/app/data"); p.StatusCode != 503 || e.hits.Load() != hits {
		t.Fatalf("a session of a provider pointed elsewhere: %d %s", p.StatusCode, p.body)
	}
	if s := e.whoamiWith(b.sessionCookie()); s == 200 {
		t.Fatalf("whoami: %d", s)
	}
	e.m.SetProviders(orig)
	if p := b.api("/app/data"); p.StatusCode != 200 {
		t.Fatalf("its provider back: %d %s", p.StatusCode, p.body)
	}
}
