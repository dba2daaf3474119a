package session_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/session"
)

// Session re-validation (session/revalidate.go): sessions check back with their provider
// through the refresh token every interval. The clock is the env's, moved by hand.

const revalidateOIDC = "  scopes: [openid, email, profile, offline_access]\n  revalidate: {interval: 10m, grace: 5m}\n"

func newRevalidateEnv(t *testing.T, routes string) *env {
	t.Helper()
	return newEnv(t, envOpts{oidc: revalidateOIDC, routes: routes})
}

// concurrently makes n requests of app at once and returns their statuses.
func concurrently(b *browser, n int) []int {
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i] = app(b) })
	}
	wg.Wait()
	return codes
}

// app is an API request through the gate (whoami does not check back: it only reports).
func app(b *browser) int { return b.api("/app/data").StatusCode }

func TestRevalidateEndsSessionRefusedByProvider(t *testing.T) {
	e := newRevalidateEnv(t, "")
	b := e.browser()
	b.mustSignIn("alice")
	other := e.browser() // bob, whom the provider keeps
	other.mustSignIn("bob")

	e.clock.advance(9 * time.Minute)
	if s := app(b); s != 200 {
		t.Fatalf("before due: %d", s)
	}
	if n := e.idp.RefreshTokenUses("alice"); n != 0 {
		t.Fatalf("refreshed %d times before the interval", n)
	}
	e.idp.DisableUser("alice")
	// Until due, the session is as good as the provider last said (that is the interval).
	if s := app(b); s != 200 {
		t.Fatalf("disabled, before due: %d", s)
	}
	e.clock.advance(2 * time.Minute)
	p := b.api("/app/data")
	wantReason(t, p, http.StatusUnauthorized, "no_session")
	if n := e.idp.RefreshTokenUses("alice"); n != 1 {
		t.Fatalf("refresh token uses = %d, want 1", n)
	}
	if s := e.whoamiWith(b.sessionCookie()); s != 401 {
		t.Fatalf("whoami after the provider refused: %d", s)
	}
	// A browser navigation is sent to sign in again, where the provider refuses them.
	if p := b.nav("/app/page"); p.StatusCode != http.StatusFound || !strings.HasPrefix(p.loc(), "/.portcullis/login") {
		t.Fatalf("navigation after the end: %d %q", p.StatusCode, p.loc())
	}
	if !strings.Contains(e.logs.String(), `"why":"idp_refresh_refused"`) {
		t.Error("the end is not logged as idp_refresh_refused")
	}
	// Bob's session checks back and goes on.
	if s := app(other); s != 200 {
		t.Fatalf("bob after his check: %d", s)
	}
	if n := e.idp.RefreshTokenUses("bob"); n != 1 {
		t.Fatalf("bob's refresh token uses = %d, want 1", n)
	}
}

// Once per interval, whatever the number of requests: the due time is in the record, the
// refresh token rotates, and a check that succeeded moves the next one an interval on.
func TestRevalidateOncePerInterval(t *testing.T) {
	e := newRevalidateEnv(t, "")
	b := e.browser()
	b.mustSignIn("alice")
	for round := 1; round <= 3; round++ {
		e.clock.advance(10*time.Minute + time.Second)
		for range 4 {
			if s := app(b); s != 200 {
				t.Fatalf("round %d: %d", round, s)
			}
		}
		if n := e.idp.RefreshTokenUses("alice"); n != round {
			t.Fatalf("round %d: refresh token uses = %d", round, n)
		}
	}
}

// Concurrent requests of a due session redeem the token once (providers that rotate refresh
// tokens revoke the whole grant when a spent one comes back), and all of them go on.
func TestRevalidateConcurrentRequestsRedeemOnce(t *testing.T) {
	e := newRevalidateEnv(t, "")
	b := e.browser()
	b.mustSignIn("alice")
	e.clock.advance(11 * time.Minute)
	for _, c := range concurrently(b, 16) {
		if c != 200 {
			t.Errorf("concurrent request: %d", c)
		}
	}
	if n := e.idp.RefreshTokenUses("alice"); n != 1 {
		t.Fatalf("refresh token uses = %d, want 1", n)
	}
	e.clock.advance(11 * time.Minute)
	if s := app(b); s != 200 {
		t.Fatalf("next interval: %d (the rotated token was not kept?)", s)
	}
}

// What the provider says at the check must still be what the sign-in said: another address,
// or one no longer verified, ends the session.
func TestRevalidateClaimsChanged(t *testing.T) {
	for name, change := range map[string]func(e *env){
		"another address":    func(e *env) { e.idp.SetEmail("alice", "alice@elsewhere.example", true) },
		"no longer verified": func(e *env) { e.idp.SetEmail("alice", "alice@fresh.example", false) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newRevalidateEnv(t, "")
			b := e.browser()
			b.mustSignIn("alice")
			change(e)
			e.clock.advance(11 * time.Minute)
			wantReason(t, b.api("/app/data"), http.StatusUnauthorized, "no_session")
			if !strings.Contains(e.logs.String(), `"why":"idp_claims_changed"`) {
				t.Error("the end is not logged as idp_claims_changed")
			}
		})
	}
}

// A provider that revalidates must give a refresh token at sign-in: without offline_access
// devidp gives none, and the sign-in is refused rather than make a session that cannot check
// back.
func TestRevalidateSignInWithoutRefreshTokenRefused(t *testing.T) {
	e := newEnv(t, envOpts{oidc: "  revalidate: {interval: 10m}\n"})
	p := e.browser().signIn("/.portcullis/login?rd=/app/home", "alice")
	wantReason(t, p, http.StatusBadRequest, "sign_in_failed")
	if len(e.sessionRecords()) != 0 {
		t.Fatal("a session was made")
	}
}

// A provider that cannot be reached keeps sessions for the grace after they were due, then
// answers 503 idp_unavailable (not a sign-out); once it answers again, they go on.
func TestRevalidateProviderUnreachable(t *testing.T) {
	e := newRevalidateEnv(t, "")
	b := e.browser()
	b.mustSignIn("alice")
	e.idpFailing.Store(true)
	e.clock.advance(11 * time.Minute)
	if s := app(b); s != 200 {
		t.Fatalf("within the grace: %d", s)
	}
	e.clock.advance(5 * time.Minute) // 16 minutes since the check: past interval and grace
	wantReason(t, b.api("/app/data"), http.StatusServiceUnavailable, "idp_unavailable")
	e.idpFailing.Store(false)
	// The failed attempt's lease spaces the next one by half a minute of Redis's own clock;
	// the test ends it as Redis would.
	rdb := e.redis.Client(t)
	leases, err := rdb.Keys(context.Background(), "*:reval:lease").Result()
	if err != nil || len(leases) != 1 {
		t.Fatalf("leases %v %v, want the failed attempt's", leases, err)
	}
	if ttl := rdb.PTTL(context.Background(), leases[0]).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("lease TTL %v", ttl)
	}
	rdb.Del(context.Background(), leases...)
	if s := app(b); s != 200 {
		t.Fatalf("provider back: %d", s)
	}
}

// Redis never holds the refresh token in clear: the family's record holds it sealed, and the
// key to open it is sealed under the session's cookie, which Redis holds only a hash of.
func TestRevalidateRefreshTokenSealed(t *testing.T) {
	var seen []string
	e := newRevalidateEnv(t, "")
	e.idp.OnRefreshToken(func(rt string) { seen = append(seen, rt) })
	b := e.browser()
	b.mustSignIn("alice")
	e.clock.advance(11 * time.Minute)
	if s := app(b); s != 200 {
		t.Fatal(s)
	}
	if len(seen) < 2 {
		t.Fatalf("devidp issued %d refresh tokens, want the sign-in's and the rotated one", len(seen))
	}
	ctx := context.Background()
	rdb := e.redis.Client(t)
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("nothing in Redis to look at")
	}
	for _, k := range keys {
		// Every value as Redis holds it (not DUMP, which compresses long strings).
		var values []string
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			values = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				values = append(values, f, v)
			}
		case "set":
			values = rdb.SMembers(ctx, k).Val()
		case "stream":
			for _, m := range rdb.XRange(ctx, k, "-", "+").Val() {
				for f, v := range m.Values {
					values = append(values, f, fmt.Sprint(v))
				}
			}
		default:
			t.Fatalf("key %s of type %s not looked at", k, typ)
		}
		for _, v := range values {
			for _, rt := range seen {
				for _, form := range []string{rt, base64.StdEncoding.EncodeToString([]byte(rt)), base64.RawURLEncoding.EncodeToString([]byte(rt))} {
					if strings.Contains(v, form) {
						t.Errorf("key %s holds a refresh token", k)
					}
				}
			}
		}
	}
	for _, rec := range e.sessionRecords() {
		if rec["fk"] == nil {
			t.Error("session record without its sealed family key")
		}
	}
}

// A session handed off to an organisation host checks back through the family's one refresh
// token, and the provider's refusal ends every session of the sign-in on every host.
func TestRevalidateHandedOffFamily(t *testing.T) {
	h := wrapHandoffEnv(newRevalidateEnv(t, orgHostRoutes))
	b := h.browser()
	h.handedOff(b, "alice", "acme.example.com", "beta.example.com")
	onHost := func(host string) int {
		return b.do("GET", h.origin(host)+"/data", nil, http.Header{"Accept": {"application/json"}}).StatusCode
	}
	h.clock.advance(11 * time.Minute)
	if s := onHost("acme.example.com"); s != 200 {
		t.Fatalf("acme after its check: %d", s)
	}
	// beta finds the family checked already: no second redemption.
	if s := onHost("beta.example.com"); s != 200 {
		t.Fatalf("beta: %d", s)
	}
	if n := h.idp.RefreshTokenUses("alice"); n != 1 {
		t.Fatalf("refresh token uses = %d, want 1 for the family", n)
	}
	h.idp.DisableUser("alice")
	h.clock.advance(11 * time.Minute)
	if s := onHost("beta.example.com"); s != 401 {
		t.Fatalf("beta after the refusal: %d", s)
	}
	for _, host := range []string{"acme.example.com", "127.0.0.1"} {
		if s, _ := h.whoami(b, host); s != 401 {
			t.Errorf("%s after the family ended: whoami %d", host, s)
		}
	}
}

// A handoff code of a revalidating sign-in must carry the family key: one whose key was taken
// out (or never put in) makes no session.
func TestRevalidateHandoffCodeWithoutFamilyKeyRefused(t *testing.T) {
	h := wrapHandoffEnv(newRevalidateEnv(t, orgHostRoutes))
	b := h.browser()
	b.mustSignIn("alice")
	cp := h.toCode(b, "acme.example.com", "/", "")
	rdb := h.redis.Client(t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*{hc:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("handoff code keys %v %v", keys, err)
	}
	var rec map[string]any
	raw, _ := rdb.Get(ctx, keys[0]).Bytes()
	if err := json.Unmarshal(raw, &rec); err != nil || rec["fk"] == nil {
		t.Fatalf("handoff code without a family key: %s", raw)
	}
	delete(rec, "fk")
	stripped, _ := json.Marshal(rec)
	rdb.Set(ctx, keys[0], stripped, time.Minute)
	wantReason(t, h.post(b, "acme.example.com", cp.code), http.StatusBadRequest, "handoff_invalid")
	if c := h.cookieOn(b, "acme.example.com", session.CookieName); c != "" {
		t.Fatal("a session was made on the organisation host")
	}
}

// A family whose revalidation record is gone (deleted, or Redis lost it) cannot check back:
// its sessions end at their next due request rather than go on unchecked.
func TestRevalidateRecordLostEndsSession(t *testing.T) {
	e := newRevalidateEnv(t, "")
	b := e.browser()
	b.mustSignIn("alice")
	rdb := e.redis.Client(t)
	keys, _ := rdb.Keys(context.Background(), "*:reval").Result()
	if len(keys) != 1 {
		t.Fatalf("revalidation records %v", keys)
	}
	rdb.Del(context.Background(), keys...)
	if s := app(b); s != 200 {
		t.Fatalf("before due: %d", s)
	}
	e.clock.advance(11 * time.Minute)
	wantReason(t, b.api("/app/data"), http.StatusUnauthorized, "no_session")
}

// A step-up gives the session a new cookie: the family key goes with it, so the session still
// checks back (and ends when the provider refuses).
func TestRevalidateAfterStepUp(t *testing.T) {
	e := newEnv(t, envOpts{oidc: revalidateOIDC, routes: stepUpRoutes})
	b := e.browser()
	b.mustSignIn("carol")
	b.stepUp("/admin/x")
	e.clock.advance(11 * time.Minute)
	if s := app(b); s != 200 {
		t.Fatalf("after the step-up's rotation: %d", s)
	}
	if n := e.idp.RefreshTokenUses("carol"); n != 1 {
		t.Fatalf("refresh token uses = %d", n)
	}
	e.idp.DisableUser("carol")
	e.clock.advance(11 * time.Minute)
	wantReason(t, b.api("/app/data"), http.StatusUnauthorized, "no_session")
}

// Only invalid_grant is the provider's verdict on the person. Another OAuth error
// (temporarily_unavailable, an invalid_client after a secret expired, a rate limit) is an
// outage: the grace applies and nobody is signed out.
func TestRevalidateOtherOAuthErrorsAreNoVerdict(t *testing.T) {
	for _, code := range []string{"temporarily_unavailable", "invalid_client", "server_error"} {
		t.Run(code, func(t *testing.T) {
			e := newRevalidateEnv(t, "")
			b := e.browser()
			b.mustSignIn("alice")
			e.tokenError.Store(&code)
			e.clock.advance(11 * time.Minute)
			if s := app(b); s != 200 {
				t.Fatalf("within the grace: %d", s)
			}
			e.clock.advance(5 * time.Minute)
			wantReason(t, b.api("/app/data"), http.StatusServiceUnavailable, "idp_unavailable")
			if len(e.sessionRecords()) != 1 {
				t.Fatal("the session was ended")
			}
		})
	}
}

// whoami answers for a session only after it checked back.
func TestRevalidateWhoami(t *testing.T) {
	e := newRevalidateEnv(t, "")
	b := e.browser()
	b.mustSignIn("alice")
	e.idp.DisableUser("alice")
	e.clock.advance(11 * time.Minute)
	if s := e.whoamiWith(b.sessionCookie()); s != 401 {
		t.Fatalf("whoami of a session the provider refused: %d", s)
	}
}

// A session back after a long idle time is past its grace when it is checked: the requests
// that arrive while one of them checks wait for that check instead of being refused, since the
// provider is healthy.
func TestRevalidateAfterLongIdleConcurrent(t *testing.T) {
	e := newRevalidateEnv(t, "")
	b := e.browser()
	b.mustSignIn("alice")
	e.clock.advance(16 * time.Minute) // interval 10m + grace 5m ago
	for _, c := range concurrently(b, 16) {
		if c != 200 {
			t.Errorf("concurrent request after a long idle time: %d", c)
		}
	}
	if n := e.idp.RefreshTokenUses("alice"); n != 1 {
		t.Fatalf("refresh token uses = %d, want 1", n)
	}
}
