package session_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// Step-up through the real proxy.Server and session.Manager, devidp and redis-server, with the
// injected clock (issue 5). The end-to-end tests through the binary are in cmd/portcullis.

const stepUpRoutes = `  - name: admin
    path: /admin
    upstream: UPSTREAM
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 10m, elevation: 5m}
  - name: strict
    path: /strict
    upstream: UPSTREAM
    step_up: {acr: ["urn:portcullis:acr:mfa"], max_age: 1m}
  - name: capped
    path: /capped
    upstream: UPSTREAM
    step_up: {acr: ["urn:portcullis:acr:mfa"], max_age: 3m}
`

var reTicket = regexp.MustCompile(`name="ticket" value="([^"]+)"`)

// ticket asks for path as a browser and returns the interstitial's ticket.
func (b *browser) ticket(path string) string {
	b.e.t.Helper()
	p := b.nav(path)
	m := reTicket.FindStringSubmatch(p.body)
	if p.StatusCode != http.StatusUnauthorized || m == nil {
		b.e.t.Fatalf("%s: want the step-up interstitial, got %d %s", path, p.StatusCode, p.body)
	}
	return html.UnescapeString(m[1])
}

func (b *browser) postStepUp(ticket string) *page {
	b.e.t.Helper()
	return b.do("POST", b.e.base+"/.portcullis/step-up", url.Values{"ticket": {ticket}},
		http.Header{"Origin": {b.e.base}, "Sec-Fetch-Site": {"same-origin"}, "Accept": {"text/html"}})
}

// stepUpCallback starts the step-up of path, logs in at the provider as user (with the TOTP code
// when otp) and returns the callback URL, unvisited.
func (b *browser) stepUpCallback(path, user string, otp bool) string {
	b.e.t.Helper()
	p := b.postStepUp(b.ticket(path))
	if p.StatusCode != http.StatusSeeOther {
		b.e.t.Fatalf("start step-up: %d %s", p.StatusCode, p.body)
	}
	for range 10 {
		switch {
		case p.StatusCode/100 == 3:
			u, _ := p.Request.URL.Parse(p.loc())
			if strings.HasPrefix(u.String(), b.e.base+config.CallbackPath) {
				return u.String()
			}
			p = b.do("GET", u.String(), nil, navHeaders)
		case strings.Contains(p.body, "devidp-login"):
			code := ""
			if otp {
				code, _ = devidptest.TOTP(carolTOTP, time.Now())
			}
			resp, err := devidptest.Login(context.Background(), b.c, p.Response, user, passwordOf(user), code)
			if err != nil {
				b.e.t.Fatal(err)
			}
			bb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(bb))
			p = &page{resp, string(bb)}
		default:
			b.e.t.Fatalf("step-up stuck: %d %s", p.StatusCode, p.body)
		}
	}
	b.e.t.Fatal("too many redirects")
	return ""
}

// stepUp completes a step-up of path as carol with her second factor and checks it returns.
func (b *browser) stepUp(path string) {
	b.e.t.Helper()
	p := b.nav(b.stepUpCallback(path, "carol", true))
	if p.StatusCode != http.StatusFound || p.loc() != path {
		b.e.t.Fatalf("step-up callback: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
}

func TestStepUpElevationExpiresOnInjectedClock(t *testing.T) {
	e := newEnv(t, envOpts{routes: stepUpRoutes})
	b := e.browser()
	b.mustSignIn("carol")
	if p := b.api("/admin/x"); p.StatusCode != 401 {
		t.Fatalf("before step-up: %d", p.StatusCode)
	}
	b.stepUp("/admin/x")
	e.hits.Store(0)
	if p := b.api("/admin/x"); p.StatusCode != 200 || p.body != "echo GET /admin/x" {
		t.Fatalf("after step-up: %d %s", p.StatusCode, p.body)
	}
	// The elevation serves a route with a shorter max_age only while the authentication behind
	// it is fresh enough for that route.
	e.clock.advance(30 * time.Second)
	if p := b.api("/strict/x"); p.StatusCode != 200 {
		t.Fatalf("strict route at +30s: %d", p.StatusCode)
	}
	e.clock.advance(32 * time.Second)
	if p := b.api("/strict/x"); p.StatusCode != 401 {
		t.Fatalf("strict route at +62s: %d", p.StatusCode)
	}
	if p := b.api("/capped/x"); p.StatusCode != 200 {
		t.Fatalf("capped route at +62s: %d", p.StatusCode)
	}
	// max_age 3m: not at 3m after the authentication.
	e.clock.set(3 * time.Minute)
	if p := b.api("/capped/x"); p.StatusCode != 401 {
		t.Fatalf("capped route at +3m: %d", p.StatusCode)
	}
	// elevation: 5m.
	e.clock.set(5*time.Minute - 2*time.Second)
	if p := b.api("/admin/x"); p.StatusCode != 200 {
		t.Fatalf("admin at +4m58s: %d", p.StatusCode)
	}
	e.clock.set(5*time.Minute + time.Second)
	p := b.api("/admin/x")
	if p.StatusCode != 401 || !strings.Contains(p.Header.Get("WWW-Authenticate"), `max_age=600`) {
		t.Fatalf("admin at +5m: %d %s", p.StatusCode, p.body)
	}
	if e.hits.Load() != 4 {
		t.Errorf("upstream hits = %d, want 4", e.hits.Load())
	}
}

func TestStepUpStaleAndWrongUser(t *testing.T) {
	rec := &audit.Recorder{}
	e := newEnv(t, envOpts{routes: stepUpRoutes, audit: rec})
	b := e.browser()
	b.mustSignIn("carol")
	// The authentication is fresh when it happens but the callback comes after max_age (1m).
	cb := b.stepUpCallback("/strict/x", "carol", true)
	e.clock.advance(90 * time.Second)
	p := b.nav(cb)
	if p.StatusCode != 403 || !strings.Contains(p.body, "step_up_stale_auth") || p.loc() != "" {
		t.Fatalf("stale: %d %s", p.StatusCode, p.body)
	}
	// Somebody else signs in at the provider: refused, even with a second factor's acr.
	e.idp.ForceClaims("alice", func(c *devidp.Claims) { c.ACR, c.AMR = devidp.ACRMFA, []string{"pwd", "otp", "mfa"} })
	p = b.nav(b.stepUpCallback("/admin/x", "alice", false))
	if p.StatusCode != 403 || !strings.Contains(p.body, "step_up_wrong_user") {
		t.Fatalf("wrong user: %d %s", p.StatusCode, p.body)
	}
	if p := b.api("/admin/x"); p.StatusCode != 401 {
		t.Fatalf("after refusals: %d", p.StatusCode)
	}
	var reasons []string
	for _, ev := range rec.Events() {
		if ev.Type == audit.StepUpRefused {
			reasons = append(reasons, ev.Reason)
		}
	}
	if strings.Join(reasons, ",") != "step_up_stale_auth,step_up_wrong_user" {
		t.Errorf("refusal events: %v", reasons)
	}
	// A success is audited with what was granted (the clock back in step with the provider's).
	e.clock.set(0)
	b.stepUp("/admin/x")
	var granted *audit.Event
	for _, ev := range rec.Events() {
		if ev.Type == audit.StepUpGranted {
			granted = &ev
		}
	}
	if granted == nil || granted.Route != "admin" || granted.Detail["acr"] != devidp.ACRMFA || granted.Detail["until"] == "" ||
		granted.User != store.UserKey(e.idpURL, "sub-carol") {
		t.Errorf("granted event: %+v", granted)
	}
	// Denials for lack of elevation are audited too.
	var denied int
	for _, ev := range rec.Events() {
		if ev.Type == audit.AccessDenied && ev.Reason == "step_up_required" {
			denied++
		}
	}
	if denied == 0 {
		t.Error("no access.denied step_up_required event")
	}
}

// SU-05: the elevation is bound to the session that asked for it.
func TestStepUpBoundToSession(t *testing.T) {
	e := newEnv(t, envOpts{routes: stepUpRoutes})
	a, b := e.browser(), e.browser()
	a.mustSignIn("carol")
	b.mustSignIn("carol")
	if p := b.api("/admin/x"); p.StatusCode != 401 {
		t.Fatalf("B before: %d", p.StatusCode)
	}
	// (2) A's callback replayed into B, with A's login cookie as well: 400.
	cb := a.stepUpCallback("/admin/x", "carol", true)
	u, _ := url.Parse(e.base)
	for _, c := range a.jar.Cookies(u) {
		if c.Name == session.LoginCookieName {
			b.jar.SetCookies(u, []*http.Cookie{{Name: c.Name, Value: c.Value, Path: "/"}})
		}
	}
	if p := b.nav(cb); p.StatusCode != 400 || !strings.Contains(p.body, "step_up_session_mismatch") {
		t.Fatalf("replay into B: %d %s", p.StatusCode, p.body)
	}
	// From a third browser, signed in with its own session and login cookie: refused too.
	c := e.browser()
	c.mustSignIn("carol")
	if p := c.nav(cb); p.StatusCode != 400 || !strings.Contains(p.body, string(reason.LoginBrowserMismatch)) {
		t.Fatalf("replay from a third browser: %d %s", p.StatusCode, p.body)
	}
	// Neither replay spent A's step-up: A's own callback completes it, once.
	if p := a.nav(cb); p.StatusCode != http.StatusFound || p.loc() != "/admin/x" {
		t.Fatalf("A's own callback after the replays: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	if p := a.nav(cb); p.StatusCode != 400 || !strings.Contains(p.body, string(reason.InvalidState)) {
		t.Fatalf("A's callback a second time: %d %s", p.StatusCode, p.body)
	}
	if p := b.nav(cb); p.StatusCode != 400 || !strings.Contains(p.body, string(reason.InvalidState)) {
		t.Fatalf("replay into B after A completed: %d %s", p.StatusCode, p.body)
	}
	if p := b.api("/admin/x"); p.StatusCode != 401 {
		t.Fatalf("B after A's step-up: %d", p.StatusCode)
	}
	if _, err := e.m.RevokeUser(context.Background(), store.UserKey(e.idpURL, "sub-carol")); err != nil {
		t.Fatal(err)
	}
	a.mustSignIn("carol")
	b.mustSignIn("carol")
	// A ticket is bound to its session too.
	if p := b.postStepUp(a.ticket("/admin/x")); p.StatusCode != 403 || !strings.Contains(p.body, "step_up_invalid_request") {
		t.Fatalf("A's ticket in B: %d %s", p.StatusCode, p.body)
	}
	// (3) A steps up; B is still not elevated.
	a.stepUp("/admin/x")
	if p := a.api("/admin/x"); p.StatusCode != 200 {
		t.Fatalf("A after step-up: %d", p.StatusCode)
	}
	if p := b.api("/admin/x"); p.StatusCode != 401 {
		t.Fatalf("B after A's step-up: %d", p.StatusCode)
	}
	if w := a.api("/.portcullis/whoami"); !strings.Contains(w.body, `"elevations":[{"acr":"urn:portcullis:acr:mfa","amr":["pwd","otp","mfa"],"org":""`) {
		t.Errorf("A's whoami: %s", w.body)
	}
	if w := b.api("/.portcullis/whoami"); w.StatusCode != 200 || strings.Contains(w.body, "elevations") {
		t.Errorf("B's whoami: %d %s", w.StatusCode, w.body)
	}
	// (4) The elevation is in A's session record, nowhere else.
	elevated := 0
	for _, r := range e.sessionRecords() {
		if els, ok := r["elevations"].([]any); ok && len(els) > 0 {
			elevated++
			el := els[0].(map[string]any)
			if el["acr"] != devidp.ACRMFA || el["org"] != "" || el["until"] == nil || el["granted_at"] == nil || el["auth_time"] == nil {
				t.Errorf("stored elevation: %v", el)
			}
		}
	}
	if elevated != 1 {
		t.Errorf("%d session records hold an elevation, want 1 (A's)", elevated)
	}
	keys, err := e.redis.Client(t).Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if strings.Contains(k, "elev") || strings.Contains(k, "step") {
			t.Errorf("unexpected key %s", k)
		}
	}
	// Revoking the person's sessions ends the elevation with them.
	if _, err := e.m.RevokeUser(context.Background(), store.UserKey(e.idpURL, "sub-carol")); err != nil {
		t.Fatal(err)
	}
	if p := a.api("/admin/x"); p.StatusCode != 401 || !strings.Contains(p.body, "no_session") {
		t.Fatalf("A after revocation: %d %s", p.StatusCode, p.body)
	}
	a.mustSignIn("carol")
	if p := a.api("/admin/x"); p.StatusCode != 401 || !strings.Contains(p.body, "step_up_required") {
		t.Fatalf("A signed in again: %d %s", p.StatusCode, p.body)
	}
}

func TestStepUpTicketChecks(t *testing.T) {
	e := newEnv(t, envOpts{routes: stepUpRoutes})
	b := e.browser()
	b.mustSignIn("carol")
	tk := b.ticket("/admin/x")
	payload, mac, _ := strings.Cut(tk, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	weaker := strings.Replace(string(raw), `"max_age":600000000000`, `"max_age":999999000000000`, 1)
	if weaker == string(raw) {
		t.Fatalf("ticket payload: %s", raw)
	}
	for name, v := range map[string]string{
		"changed requirements": base64.RawURLEncoding.EncodeToString([]byte(weaker)) + "." + mac,
		"no signature":         payload,
		"empty":                "",
	} {
		if p := b.postStepUp(v); p.StatusCode != 403 {
			t.Errorf("%s: %d %s", name, p.StatusCode, p.body)
		}
	}
	// Cross-site posts are refused before anything else.
	p := b.do("POST", e.base+"/.portcullis/step-up", url.Values{"ticket": {tk}}, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if p.StatusCode != 403 {
		t.Errorf("cross-site: %d", p.StatusCode)
	}
	// Without a session there is nothing to step up.
	if p := e.browser().postStepUp(tk); p.StatusCode != 401 {
		t.Errorf("no session: %d %s", p.StatusCode, p.body)
	}
	// A ticket is good for a while only.
	e.clock.advance(11 * time.Minute)
	if p := b.postStepUp(tk); p.StatusCode != 403 {
		t.Errorf("old ticket: %d", p.StatusCode)
	}
	// The authorisation request names the route's demands.
	p = b.postStepUp(b.ticket("/admin/x?a=1"))
	loc, _ := url.Parse(p.loc())
	q := loc.Query()
	if p.StatusCode != 303 || q.Get("acr_values") != devidp.ACRMFA || q.Get("max_age") != "600" ||
		q.Get("login_hint") != "carol@fresh.example" || q.Has("prompt") || q.Get("ui_locales") != "en" {
		t.Errorf("authorize: %d %s", p.StatusCode, loc)
	}
	// HEAD of a step-up route: the challenge without a body.
	h := b.do("HEAD", e.base+"/admin/x", nil, navHeaders)
	if h.StatusCode != 401 || h.body != "" || !strings.HasPrefix(h.Header.Get("WWW-Authenticate"), `Bearer error="insufficient_user_authentication"`) {
		t.Errorf("HEAD: %d %q", h.StatusCode, h.body)
	}
}

// SU-02: whatever the provider's ID token says wrongly or oddly, no elevation, no 5xx and no
// redirect back into the flow.
func TestStepUpMalformedClaims(t *testing.T) {
	e := newEnv(t, envOpts{routes: stepUpRoutes})
	b := e.browser()
	b.mustSignIn("carol")
	now := time.Now()
	for _, c := range []struct {
		name   string
		force  func(*devidp.Claims)
		status int
		reason string
	}{
		{"no acr", func(c *devidp.Claims) { c.ACR = "" }, 403, "step_up_acr_insufficient"},
		{"acr 0", func(c *devidp.Claims) { c.ACR = "0" }, 403, "step_up_acr_insufficient"},
		{"password acr", func(c *devidp.Claims) { c.ACR = devidp.ACRPassword }, 403, "step_up_acr_insufficient"},
		{"acr in another case", func(c *devidp.Claims) { c.ACR = strings.ToUpper(devidp.ACRMFA) }, 403, "step_up_acr_insufficient"},
		{"acr array", func(c *devidp.Claims) { c.ACR, c.Extra = "", map[string]any{"acr": []string{devidp.ACRMFA}} }, 400, "sign_in_failed"},
		{"amr pwd only", func(c *devidp.Claims) { c.AMR = []string{"pwd"} }, 403, "step_up_amr_missing"},
		{"no amr", func(c *devidp.Claims) { c.AMR = nil }, 403, "step_up_amr_missing"},
		{"amr string", func(c *devidp.Claims) { c.AMR, c.Extra = nil, map[string]any{"amr": "otp"} }, 400, "sign_in_failed"},
		{"no auth_time", func(c *devidp.Claims) { c.AuthTime = time.Time{} }, 403, "step_up_stale_auth"},
		{"auth_time in milliseconds", func(c *devidp.Claims) {
			c.AuthTime, c.Extra = time.Time{}, map[string]any{"auth_time": now.UnixMilli()}
		}, 400, "sign_in_failed"},
		{"auth_time as a string", func(c *devidp.Claims) {
			c.AuthTime, c.Extra = time.Time{}, map[string]any{"auth_time": "1700000000"}
		}, 400, "sign_in_failed"},
		{"auth_time in the future", func(c *devidp.Claims) { c.AuthTime = time.Now().Add(time.Hour) }, 400, "sign_in_failed"},
		{"auth_time before the step-up", func(c *devidp.Claims) { c.AuthTime = time.Now().Add(-2 * time.Second) }, 403, "step_up_stale_auth"},
	} {
		e.idp.ForceClaims("carol", c.force)
		p := b.nav(b.stepUpCallback("/admin/x", "carol", true))
		if p.StatusCode != c.status || !strings.Contains(p.body, c.reason) || p.loc() != "" {
			t.Errorf("%s: %d %q %s", c.name, p.StatusCode, p.loc(), p.body)
		}
		if p := b.api("/admin/x"); p.StatusCode != 401 {
			t.Fatalf("%s: elevated: %d", c.name, p.StatusCode)
		}
	}
}

// SU-03: the authorisation request loses acr_values, max_age and prompt on the way; the
// provider then authenticates with a password only, and the callback notices.
func TestStepUpStrippedRequest(t *testing.T) {
	e := newEnv(t, envOpts{routes: stepUpRoutes})
	b := e.browser()
	b.mustSignIn("carol")
	p := b.postStepUp(b.ticket("/admin/x"))
	u, err := url.Parse(p.loc())
	if err != nil || p.StatusCode != 303 {
		t.Fatalf("start: %d %v", p.StatusCode, err)
	}
	q := u.Query()
	for _, k := range []string{"acr_values", "max_age", "prompt"} {
		q.Del(k)
	}
	u.RawQuery = q.Encode()
	p = b.do("GET", u.String(), nil, navHeaders)
	for range 10 {
		if p.StatusCode/100 == 3 {
			next, _ := p.Request.URL.Parse(p.loc())
			if strings.HasPrefix(next.String(), e.base) {
				p = b.nav(next.String())
				break
			}
			p = b.do("GET", next.String(), nil, navHeaders)
			continue
		}
		resp, err := devidptest.Login(context.Background(), b.c, p.Response, "carol", "carol-pw", "")
		if err != nil {
			t.Fatal(err)
		}
		bb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(bb))
		p = &page{resp, string(bb)}
	}
	if p.StatusCode != 403 || !strings.Contains(p.body, "step_up_acr_insufficient") {
		t.Fatalf("stripped request: %d %s", p.StatusCode, p.body)
	}
	if p := b.api("/admin/x"); p.StatusCode != 401 {
		t.Fatalf("elevated: %d", p.StatusCode)
	}
}

// A provider that names an assurance differently from the routes (oidc.acr_values): the step-up
// asks the provider for its own value, accepts the token that carries it, and records the
// route's, which later requests compare.
func TestStepUpACRMapping(t *testing.T) {
	rec := &audit.Recorder{}
	e := newEnv(t, envOpts{audit: rec, oidc: "  acr_values: {phr: \"" + devidp.ACRMFA + "\"}\n", routes: `  - name: phr
    path: /phr
    upstream: UPSTREAM
    step_up: {acr: [phr], max_age: 10m}
  - name: mfa
    path: /mfa
    upstream: UPSTREAM
    step_up: {acr: ["` + devidp.ACRMFA + `"], max_age: 10m}
`})
	b := e.browser()
	b.mustSignIn("carol")
	p := b.postStepUp(b.ticket("/phr/x"))
	u, _ := url.Parse(p.loc())
	if got := u.Query().Get("acr_values"); p.StatusCode != http.StatusSeeOther || got != devidp.ACRMFA {
		t.Fatalf("step-up asked the provider for acr_values %q (%d), want its own name %q", got, p.StatusCode, devidp.ACRMFA)
	}
	// devidp asks for the second factor only when its own value is asked for.
	b.stepUp("/phr/x")
	if p := b.api("/phr/x"); p.StatusCode != 200 {
		t.Fatalf("after the mapped step-up: %d %s", p.StatusCode, p.body)
	}
	// The elevation is the route's "phr", not the provider's value: a route asking for the
	// provider's value by its own name needs its own step-up.
	if p := b.api("/mfa/x"); p.StatusCode != 401 {
		t.Errorf("route asking for %s after a phr step-up: %d", devidp.ACRMFA, p.StatusCode)
	}
	var granted *audit.Event
	for _, ev := range rec.Events() {
		if ev.Type == audit.StepUpGranted {
			granted = &ev
		}
	}
	if granted == nil || granted.Detail["acr"] != "phr" {
		t.Errorf("granted event: %+v", granted)
	}
	// A password-only token does not pass for phr: the mapping does not weaken the check.
	b2 := e.browser()
	b2.mustSignIn("alice")
	p = b2.nav(b2.stepUpCallback("/phr/y", "alice", false))
	if p.StatusCode != 403 || !strings.Contains(p.body, "step_up_acr") {
		t.Errorf("password-only step-up for phr: %d %s", p.StatusCode, p.body)
	}
}
