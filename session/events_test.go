package session_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// TestSessionAuditEvents: "who signed in as whom, when, and how it ended" is in the audit
// trail, not only in logs: sign-in, a refused sign-in that had started, sign-out, and a
// provider's back-channel logout each write their event; a callback with a state Portcullis
// never issued, or replayed from another browser, writes none (anyone can send those, and
// they would flood the trail).
func TestSessionAuditEvents(t *testing.T) {
	rec := &audit.Recorder{}
	e := newEnv(t, envOpts{audit: rec})
	events := func(typ audit.Type) []audit.Event {
		var out []audit.Event
		for _, ev := range rec.Events() {
			if ev.Type == typ {
				out = append(out, ev)
			}
		}
		return out
	}
	alice := e.idpURL + "|sub-alice"

	b := e.browser()
	b.mustSignIn("alice")
	in := events(audit.SignedIn)
	if len(in) != 1 || in[0].User != alice || in[0].Detail["email"] != "alice@fresh.example" || in[0].Detail["session"] == "" ||
		in[0].Detail["expires"] == "" || in[0].RequestID == "" {
		t.Fatalf("signed_in: %+v", in)
	}
	for _, ev := range rec.Events() {
		for k, v := range ev.Detail {
			if strings.Contains(b.sessionCookie(), v) || strings.Contains(v, "eyJ") {
				t.Errorf("%s: detail %s carries a secret or a token: %q", ev.Type, k, v)
			}
		}
	}

	// Refused sign-ins that had started: audited with their reason.
	attacker := e.browser()
	cb := attacker.toCallback("/.portcullis/login", "bob")
	victim := e.browser()
	victim.nav("/.portcullis/login")
	victim.nav(cb.String())
	eve := e.browser()
	eve.signIn("/.portcullis/login", "eve")
	p := eve.nav("/.portcullis/login")
	st, _ := url.Parse(p.loc())
	eve.nav("/.portcullis/callback?state=" + st.Query().Get("state") + "&error=access_denied")
	refusals := events(audit.SignInRefused)
	got := map[string]bool{}
	for _, ev := range refusals {
		got[ev.Reason] = true
		if ev.Detail["host"] == "" {
			t.Errorf("refusal without host: %+v", ev)
		}
	}
	for _, want := range []reason.Code{reason.EmailNotVerified, reason.IdPError} {
		if !got[string(want)] {
			t.Errorf("no signin_refused with %s: %+v", want, refusals)
		}
	}
	// A callback from another browser leaves the state unspent (the person's own sign-in
	// goes on), so it could be replayed without end: it is logged, never audited.
	if got[string(reason.LoginBrowserMismatch)] {
		t.Errorf("a callback from another browser was audited: %+v", refusals)
	}
	n0 := len(rec.Events())
	for range 50 {
		e.browser().nav(cb.String())
	}
	if len(rec.Events()) != n0 {
		t.Errorf("50 replays of one started sign-in wrote %d audit events", len(rec.Events())-n0)
	}
	// A forged state: logged and counted, not audited.
	n := len(rec.Events())
	attacker.nav("/.portcullis/callback?code=x&state=" + strings.Repeat("A", 43))
	if len(rec.Events()) != n {
		t.Errorf("a forged state was audited: %+v", rec.Events()[n:])
	}

	// Sign-out.
	page := b.do("GET", e.base+"/.portcullis/logout", nil, http.Header{"Accept": {"text/html"}})
	m := csrfField.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no logout form: %s", page.body)
	}
	b.do("POST", e.base+"/.portcullis/logout", url.Values{"csrf": {m[1]}}, http.Header{"Origin": {e.base}, "Sec-Fetch-Site": {"same-origin"}})
	if out := events(audit.SignedOut); len(out) != 1 || out[0].User != alice || out[0].Detail["session"] != in[0].Detail["session"] {
		t.Errorf("signed_out: %+v (signed in as %+v)", out, in[0].Detail)
	}

	// The provider ends a session over the back channel.
	b2 := e.browser()
	b2.mustSignIn("alice")
	sid := e.sidOf("sub-alice")[0]
	if status, err := e.idp.SendBackchannelLogout(t.Context(), sid); err != nil || status != 200 {
		t.Fatalf("back-channel logout: %d %v", status, err)
	}
	ended := events(audit.SessionEnded)
	if len(ended) != 1 || ended[0].Reason != "backchannel_logout" || ended[0].Detail["sid"] != sid || ended[0].Detail["sessions_ended"] != "1" {
		t.Errorf("session.ended: %+v", ended)
	}
}
