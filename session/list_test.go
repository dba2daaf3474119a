package session_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/session"
)

// TestSessionsOfAndEndSessionOf: a person sees each of their sessions (the current one
// first, with its browser) and ends another one; never their current one, never another
// person's, whatever id they send.
func TestSessionsOfAndEndSessionOf(t *testing.T) {
	e := newEnv(t, envOpts{})
	a1, a2, bob := e.browser(), e.browser(), e.browser()
	a1.mustSignIn("alice")
	a2.mustSignIn("alice")
	bob.mustSignIn("bob")
	admit := func(b *browser) *http.Request {
		t.Helper()
		r := httptest.NewRequest("GET", e.base+"/x", nil)
		r.Header.Set("Cookie", session.CookieName+"="+b.sessionCookie())
		got, ok := e.m.Admit(httptest.NewRecorder(), r, &config.Route{Name: "x"})
		if !ok {
			t.Fatal("the browser's session is not admitted")
		}
		return got
	}
	list, err := e.m.SessionsOf(admit(a1))
	if err != nil || len(list) != 2 || !list[0].Current || list[1].Current || list[0].ID == list[1].ID {
		t.Fatalf("alice's sessions: %+v %v", list, err)
	}
	for _, s := range list {
		if s.Agent == "" || s.Created.IsZero() || s.Expires.IsZero() || s.Host == "" {
			t.Errorf("session %+v lacks its browser, host or times", s)
		}
	}
	if bl, _ := e.m.SessionsOf(admit(bob)); len(bl) != 1 {
		t.Errorf("bob's sessions: %+v", bl)
	}
	other := list[1].ID
	for name, tc := range map[string]struct {
		b  *browser
		id string
	}{"bob ending alice's": {bob, other}, "alice ending her current one": {a1, list[0].ID}, "an unknown id": {a1, "zzzzzzzz"}, "no id": {a1, ""}} {
		if err := e.m.EndSessionOf(admit(tc.b), tc.id); !errors.Is(err, session.ErrNoSuchSession) {
			t.Errorf("%s: %v, want ErrNoSuchSession", name, err)
		}
	}
	if e.whoamiWith(a2.sessionCookie()) != 200 || e.whoamiWith(bob.sessionCookie()) != 200 {
		t.Fatal("a refused end ended a session")
	}
	if err := e.m.EndSessionOf(admit(a1), other); err != nil {
		t.Fatal(err)
	}
	if st := e.whoamiWith(a2.sessionCookie()); st != 401 {
		t.Errorf("the ended session still answers whoami: %d", st)
	}
	if e.whoamiWith(a1.sessionCookie()) != 200 {
		t.Error("the session that ended the other one ended too")
	}
	if list, _ := e.m.SessionsOf(admit(a1)); len(list) != 1 || !list[0].Current {
		t.Errorf("alice's sessions after the end: %+v", list)
	}
}

// TestEndSessionOfInOneBrowser: from the sign-in host's session, alice ends her organisation
// host's session in the same browser (handed off from it): that one ends alone, her current
// session stays. Ending her session in another browser ends that browser's family.
func TestEndSessionOfInOneBrowser(t *testing.T) {
	h := newHandoffEnv(t)
	b, other := h.browser(), h.browser()
	h.handedOff(b, "alice", "acme.example.com")
	h.handedOff(other, "alice", "acme.example.com")
	r := httptest.NewRequest("GET", h.origin("127.0.0.1")+"/x", nil)
	r.Header.Set("Cookie", session.CookieName+"="+h.cookieOn(b, "127.0.0.1", session.CookieName))
	r, ok := h.m.Admit(httptest.NewRecorder(), r, &config.Route{Name: "x"})
	if !ok {
		t.Fatal("not admitted")
	}
	list, err := h.m.SessionsOf(r)
	if err != nil || len(list) != 4 {
		t.Fatalf("alice's sessions: %+v %v", list, err)
	}
	var sibling, elsewhere string
	for _, s := range list {
		switch {
		case s.SameBrowser && s.Host == "acme.example.com":
			sibling = s.ID
		case !s.SameBrowser && !s.Current && s.Host == "127.0.0.1":
			elsewhere = s.ID
		}
	}
	if sibling == "" || elsewhere == "" {
		t.Fatalf("sessions not told apart: %+v", list)
	}
	if err := h.m.EndSessionOf(r, sibling); err != nil {
		t.Fatal(err)
	}
	if s, _ := h.whoami(b, "acme.example.com"); s != 401 {
		t.Errorf("the organisation host's session after its end: %d", s)
	}
	if s, _ := h.whoami(b, "127.0.0.1"); s != 200 {
		t.Errorf("the current session after ending its sibling: %d, want 200", s)
	}
	if err := h.m.EndSessionOf(r, elsewhere); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "acme.example.com"} {
		if s, _ := h.whoami(other, host); s != 401 {
			t.Errorf("the other browser on %s after its end: %d", host, s)
		}
	}
	if s, _ := h.whoami(b, "127.0.0.1"); s != 200 {
		t.Errorf("the current session after ending the other browser's: %d", s)
	}
}
