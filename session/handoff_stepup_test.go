package session_test

import (
	"bytes"
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
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

// Step-up on organisation hosts through the sign-in host (session/handoff_stepup.go): the
// organisation hosts' own admin areas demand a step-up; the sign-in host has one too.

const hostStepUpRoutes = `  - name: orgadmin
    hosts: ["*.example.com"]
    path: /admin
    upstream: UPSTREAM
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 10m, elevation: 5m}
  - name: orgstrict
    hosts: ["*.example.com"]
    path: /strict
    upstream: UPSTREAM
    step_up: {acr: ["urn:portcullis:acr:mfa"], max_age: 1m}
  - name: orgs
    hosts: ["*.example.com"]
    path: /
    upstream: UPSTREAM
  - name: admin
    path: /admin
    upstream: UPSTREAM
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 10m, elevation: 5m}
`

// whoamiWithHost reports the status of whoami on host for the session cookie value v.
func (h *hoEnv) whoamiWithHost(host, v string) int {
	h.t.Helper()
	return h.browser().do("GET", h.origin(host)+"/.portcullis/whoami", nil,
		http.Header{"Cookie": {session.CookieName + "=" + v}, "Accept": {"application/json"}}).StatusCode
}

// hostStepUpCallback asks for path on host as b, posts the interstitial's ticket there, follows
// the browser to the sign-in host and the provider, logs in as user (with carol's second factor
// when otp), and returns the callback URL on the sign-in host, unvisited.
func (h *hoEnv) hostStepUpCallback(b *browser, host, path, user string, otp bool) string {
	h.t.Helper()
	p := b.nav(h.origin(host) + path)
	m := reTicket.FindStringSubmatch(p.body)
	if p.StatusCode != http.StatusUnauthorized || m == nil {
		h.t.Fatalf("%s%s: want the step-up interstitial, got %d %s", host, path, p.StatusCode, p.body)
	}
	p = b.do("POST", h.origin(host)+"/.portcullis/step-up", url.Values{"ticket": {html.UnescapeString(m[1])}},
		http.Header{"Origin": {h.origin(host)}, "Sec-Fetch-Site": {"same-origin"}, "Accept": {"text/html"}})
	if p.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.loc(), h.base+"/.portcullis/handoff/step-up?t=") {
		h.t.Fatalf("step-up on %s: %d %q %s", host, p.StatusCode, p.loc(), p.body)
	}
	for range 10 {
		switch {
		case p.StatusCode/100 == 3:
			u, _ := p.Request.URL.Parse(p.loc())
			if strings.HasPrefix(u.String(), h.base+config.CallbackPath) {
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
				h.t.Fatal(err)
			}
			bb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(bb))
			p = &page{resp, string(bb)}
		default:
			h.t.Fatalf("step-up stuck: %d %s", p.StatusCode, p.body)
		}
	}
	h.t.Fatal("too many redirects")
	return ""
}

// hostStepUpCode runs the step-up of path on host as carol with her second factor and returns
// the code the sign-in host's page posts to host.
func (h *hoEnv) hostStepUpCode(b *browser, host, path string) string {
	h.t.Helper()
	p := b.nav(h.hostStepUpCallback(b, host, path, "carol", true))
	c, a := codeField.FindStringSubmatch(p.body), formAction.FindStringSubmatch(p.body)
	if p.StatusCode != http.StatusOK || c == nil || a == nil || a[1] != h.origin(host)+"/.portcullis/handoff" {
		h.t.Fatalf("step-up callback: %d %s", p.StatusCode, p.body)
	}
	return c[1]
}

// finish posts code to host and follows to the finishing step, returning its answer.
func (h *hoEnv) finish(b *browser, host, code string) *page {
	h.t.Helper()
	p := h.post(b, host, code)
	if p.StatusCode != http.StatusSeeOther || p.loc() != "/.portcullis/handoff/finish" {
		return p
	}
	return b.nav(h.origin(host) + p.loc())
}

func (h *hoEnv) apiOn(b *browser, host, path string) *page {
	h.t.Helper()
	return b.do("GET", h.origin(host)+path, nil, http.Header{"Accept": {"application/json"}})
}

func TestHandoffStepUp(t *testing.T) {
	rec := &audit.Recorder{}
	h := wrapHandoffEnv(newEnv(t, envOpts{routes: hostStepUpRoutes, audit: rec}))
	const acme = "acme.example.com"
	b := h.browser()
	h.handedOff(b, "carol", acme)
	if p := h.apiOn(b, acme, "/admin/x"); p.StatusCode != 401 {
		t.Fatalf("admin on H before step-up: %d", p.StatusCode)
	}
	before := h.cookieOn(b, acme, session.CookieName)

	// The authorisation request names the route's demands and the person, from H's session.
	p := b.nav(h.origin(acme) + "/admin/x?a=1")
	tk := html.UnescapeString(reTicket.FindStringSubmatch(p.body)[1])
	p = b.do("POST", h.origin(acme)+"/.portcullis/step-up", url.Values{"ticket": {tk}},
		http.Header{"Origin": {h.origin(acme)}, "Sec-Fetch-Site": {"same-origin"}})
	if p.StatusCode != http.StatusSeeOther || strings.Contains(p.loc(), session.HandleOf(before)) || strings.Contains(p.loc(), before) {
		t.Fatalf("step-up on H: %d %q", p.StatusCode, p.loc())
	}
	if v := h.cookieOn(b, acme, session.HandoffCookieName); v == "" {
		t.Fatal("no nonce cookie on H")
	}
	p = b.nav(p.loc())
	az, _ := url.Parse(p.loc())
	q := az.Query()
	if p.StatusCode != http.StatusFound || q.Get("acr_values") != devidp.ACRMFA || q.Get("max_age") != "600" ||
		q.Get("login_hint") != "carol@fresh.example" || q.Has("prompt") {
		t.Fatalf("authorize: %d %s", p.StatusCode, az)
	}

	code := h.hostStepUpCode(b, acme, "/admin/x")
	p = h.post(b, acme, code)
	if p.StatusCode != http.StatusSeeOther || p.loc() != "/.portcullis/handoff/finish" {
		t.Fatalf("code on H: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	elevate := h.cookieOn(b, acme, session.ElevateCookieName)
	if elevate == "" {
		t.Fatal("no elevate cookie")
	}
	p = b.nav(h.origin(acme) + "/.portcullis/handoff/finish")
	if p.StatusCode != http.StatusFound || p.loc() != "/admin/x" {
		t.Fatalf("finish: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	after := h.cookieOn(b, acme, session.CookieName)
	if after == "" || after == before {
		t.Error("the session id on H did not change at step-up")
	}
	if h.whoamiWithHost(acme, before) != 401 {
		t.Error("H's old session id still works")
	}
	if h.cookieOn(b, acme, session.ElevateCookieName) != "" {
		t.Error("elevate cookie left after finishing")
	}
	h.hits.Store(0)
	if p := h.apiOn(b, acme, "/admin/x"); p.StatusCode != 200 || p.body != "echo GET /admin/x" {
		t.Fatalf("admin on H after step-up: %d %s", p.StatusCode, p.body)
	}
	// The elevation is H's session's only.
	if p := b.api("/admin/x"); p.StatusCode != 401 {
		t.Errorf("the sign-in host's session is elevated too: %d", p.StatusCode)
	}
	var granted *audit.Event
	for _, ev := range rec.Events() {
		if ev.Type == audit.StepUpGranted {
			granted = &ev
		}
	}
	if granted == nil || granted.Route != "orgadmin" || granted.Detail["host"] != h.origin(acme)[len("https://"):] ||
		granted.User != store.UserKey(h.idpURL, "sub-carol") {
		t.Errorf("granted event: %+v", granted)
	}
	// Finishing again does nothing.
	b.jar.SetCookies(mustURL(h.origin(acme)), []*http.Cookie{{Name: session.ElevateCookieName, Value: elevate, Path: "/"}})
	wantReason(t, b.nav(h.origin(acme)+"/.portcullis/handoff/finish"), 400, string(reason.HandoffInvalid))
	// No secret in any Location.
	h.mu.Lock()
	for _, l := range h.locations {
		for _, s := range []string{code, before, after, elevate, session.HandleOf(before)} {
			if strings.Contains(l, s) {
				t.Errorf("a secret in Location %q", l)
			}
		}
	}
	h.mu.Unlock()
	// Still in the family: signing out on the sign-in host ends the rotated session.
	h.logout(b, "127.0.0.1")
	if p := h.apiOn(b, acme, "/admin/x"); p.StatusCode != 401 || !strings.Contains(p.body, "no_session") {
		t.Errorf("H after signing out on the sign-in host: %d %s", p.StatusCode, p.body)
	}
}

func TestHandoffStepUpAttacks(t *testing.T) {
	rec := &audit.Recorder{}
	h := wrapHandoffEnv(newEnv(t, envOpts{routes: hostStepUpRoutes, audit: rec}))
	const acme = "acme.example.com"
	notElevated := func(t *testing.T, b *browser) {
		t.Helper()
		if p := h.apiOn(b, acme, "/admin/x"); p.StatusCode == 200 {
			t.Errorf("elevated on H: %d %s", p.StatusCode, p.body)
		}
	}

	t.Run("code replayed", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		code := h.hostStepUpCode(b, acme, "/admin/x")
		if p := h.finish(b, acme, code); p.StatusCode != http.StatusFound {
			t.Fatalf("first use: %d %s", p.StatusCode, p.body)
		}
		wantReason(t, h.post(b, acme, code), 400, string(reason.HandoffInvalid))
	})
	t.Run("another browser's nonce", func(t *testing.T) {
		victim, attacker := h.browser(), h.browser()
		h.handedOff(victim, "carol", acme)
		h.handedOff(attacker, "carol", acme)
		code := h.hostStepUpCode(victim, acme, "/admin/x")
		wantReason(t, h.post(attacker, acme, code), 400, string(reason.HandoffBrowser))
		notElevated(t, attacker)
		// Spent by the attempt.
		wantReason(t, h.post(victim, acme, code), 400, string(reason.HandoffInvalid))
		notElevated(t, victim)
	})
	t.Run("code for another session on H", func(t *testing.T) {
		b, other := h.browser(), h.browser()
		h.handedOff(b, "carol", acme)
		h.handedOff(other, "carol", acme)
		code := h.hostStepUpCode(b, acme, "/admin/x")
		// The browser presents another session on H (the same person's, from another browser)
		// when the elevation arrives: it is not the session that asked for it.
		b.jar.SetCookies(mustURL(h.origin(acme)), []*http.Cookie{{Name: session.CookieName,
			Value: h.cookieOn(other, acme, session.CookieName), Path: "/"}})
		wantReason(t, h.finish(b, acme, code), 400, string(reason.StepUpSession))
		notElevated(t, b)
		notElevated(t, other)
	})
	t.Run("waiting elevation taken to another browser", func(t *testing.T) {
		victim, other := h.browser(), h.browser()
		h.handedOff(victim, "carol", acme)
		h.handedOff(other, "carol", acme)
		code := h.hostStepUpCode(victim, acme, "/admin/x")
		if p := h.post(victim, acme, code); p.StatusCode != http.StatusSeeOther {
			t.Fatalf("code: %d %s", p.StatusCode, p.body)
		}
		other.jar.SetCookies(mustURL(h.origin(acme)), []*http.Cookie{{Name: session.ElevateCookieName,
			Value: h.cookieOn(victim, acme, session.ElevateCookieName), Path: "/"}})
		wantReason(t, other.nav(h.origin(acme)+"/.portcullis/handoff/finish"), 400, string(reason.StepUpSession))
		notElevated(t, other)
		wantReason(t, victim.nav(h.origin(acme)+"/.portcullis/handoff/finish"), 400, string(reason.HandoffInvalid))
		notElevated(t, victim)
	})
	t.Run("person mismatch", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		h.idp.ForceClaims("alice", func(c *devidp.Claims) { c.ACR, c.AMR = devidp.ACRMFA, []string{"pwd", "otp", "mfa"} })
		p := b.nav(h.hostStepUpCallback(b, acme, "/admin/x", "alice", false))
		if p.StatusCode != 403 || !strings.Contains(p.body, string(reason.StepUpWrongUser)) || codeField.MatchString(p.body) {
			t.Fatalf("wrong person: %d %s", p.StatusCode, p.body)
		}
		if !strings.Contains(p.body, h.origin(acme)+"/admin/x") {
			t.Errorf("the refusal does not lead back to the page on H: %s", p.body)
		}
		notElevated(t, b)
	})
	t.Run("weaker acr", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		h.idp.ForceClaims("carol", func(c *devidp.Claims) { c.ACR = devidp.ACRPassword })
		p := b.nav(h.hostStepUpCallback(b, acme, "/admin/x", "carol", true))
		if p.StatusCode != 403 || !strings.Contains(p.body, string(reason.StepUpACR)) || codeField.MatchString(p.body) {
			t.Fatalf("weaker acr: %d %s", p.StatusCode, p.body)
		}
		notElevated(t, b)
	})
	t.Run("stale auth_time", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		cb := h.hostStepUpCallback(b, acme, "/strict/x", "carol", true)
		h.clock.advance(90 * time.Second) // max_age 1m
		defer h.clock.set(0)
		p := b.nav(cb)
		if p.StatusCode != 403 || !strings.Contains(p.body, string(reason.StepUpStale)) || codeField.MatchString(p.body) {
			t.Fatalf("stale: %d %s", p.StatusCode, p.body)
		}
		if p := h.apiOn(b, acme, "/strict/x"); p.StatusCode == 200 {
			t.Errorf("elevated: %d", p.StatusCode)
		}
	})
	t.Run("H session ended before the callback", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "bob", acme)
		// bob has no second factor: force one, so only the ended session can refuse.
		h.idp.ForceClaims("bob", func(c *devidp.Claims) { c.ACR, c.AMR = devidp.ACRMFA, []string{"pwd", "otp"} })
		cb := h.hostStepUpCallback(b, acme, "/admin/x", "bob", false)
		if _, err := h.m.RevokeUser(context.Background(), store.UserKey(h.idpURL, "sub-bob")); err != nil {
			t.Fatal(err)
		}
		p := b.nav(cb)
		if p.StatusCode != 401 || !strings.Contains(p.body, string(reason.HandoffSessionEnded)) || codeField.MatchString(p.body) {
			t.Fatalf("ended session: %d %s", p.StatusCode, p.body)
		}
	})
	t.Run("H session ended before finishing", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		code := h.hostStepUpCode(b, acme, "/admin/x")
		if _, err := h.m.RevokeUser(context.Background(), store.UserKey(h.idpURL, "sub-carol")); err != nil {
			t.Fatal(err)
		}
		wantReason(t, h.finish(b, acme, code), 400, string(reason.StepUpSession))
		if p := h.apiOn(b, acme, "/.portcullis/whoami"); p.StatusCode != 401 {
			t.Errorf("an ended session came back: %d %s", p.StatusCode, p.body)
		}
	})
	t.Run("finish without a waiting elevation", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		wantReason(t, b.nav(h.origin(acme)+"/.portcullis/handoff/finish"), 400, string(reason.HandoffInvalid))
		b.jar.SetCookies(mustURL(h.origin(acme)), []*http.Cookie{{Name: session.ElevateCookieName,
			Value: strings.Repeat("A", 43), Path: "/"}})
		wantReason(t, b.nav(h.origin(acme)+"/.portcullis/handoff/finish"), 400, string(reason.HandoffInvalid))
		if p := b.do("POST", h.origin(acme)+"/.portcullis/handoff/finish", url.Values{}, nil); p.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST finish: %d", p.StatusCode)
		}
	})
	t.Run("requests of one kind at the other's endpoint", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		// A step-up request's token at the sign-in handoff.
		p := b.nav(h.origin(acme) + "/admin/x")
		tk := html.UnescapeString(reTicket.FindStringSubmatch(p.body)[1])
		p = b.do("POST", h.origin(acme)+"/.portcullis/step-up", url.Values{"ticket": {tk}},
			http.Header{"Origin": {h.origin(acme)}, "Sec-Fetch-Site": {"same-origin"}})
		start := strings.Replace(p.loc(), "/handoff/step-up?", "/handoff/start?", 1)
		wantReason(t, b.nav(start), 400, string(reason.HandoffInvalid))
		// A sign-in request's token at the step-up handoff.
		p = b.nav(h.origin(acme) + "/.portcullis/login?rd=/")
		su := strings.Replace(p.loc(), "/handoff/start?", "/handoff/step-up?", 1)
		wantReason(t, b.nav(su), 400, string(reason.HandoffInvalid))
		// The step-up handoff is the sign-in host's only.
		wantReason(t, b.nav(h.origin(acme)+"/.portcullis/handoff/step-up?t="+strings.Repeat("A", 43)), 400, string(reason.HandoffInvalid))
	})
	t.Run("cross-site step-up post on H", func(t *testing.T) {
		b := h.browser()
		h.handedOff(b, "carol", acme)
		p := b.nav(h.origin(acme) + "/admin/x")
		tk := html.UnescapeString(reTicket.FindStringSubmatch(p.body)[1])
		p = b.do("POST", h.origin(acme)+"/.portcullis/step-up", url.Values{"ticket": {tk}},
			http.Header{"Origin": {"https://evil.test"}, "Sec-Fetch-Site": {"cross-site"}})
		wantReason(t, p, 403, string(reason.CSRFFailed))
	})

	var reasons []string
	for _, ev := range rec.Events() {
		if ev.Type == audit.StepUpRefused {
			reasons = append(reasons, ev.Reason)
		}
	}
	for _, want := range []string{string(reason.StepUpSession), string(reason.StepUpWrongUser), string(reason.StepUpACR),
		string(reason.StepUpStale), string(reason.HandoffSessionEnded)} {
		if !strings.Contains(strings.Join(reasons, ","), want) {
			t.Errorf("no stepup.refused event %s among %v", want, reasons)
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
