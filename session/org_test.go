package session_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/session"
)

// orgChooser is what the organisation picker in package proxy uses.
type orgChooser interface {
	CSRFToken(r *http.Request) string
	CheckCSRF(r *http.Request, token string) bool
	SetActiveOrg(ctx context.Context, r *http.Request, org string) error
}

var _ orgChooser = (*session.Manager)(nil)

func TestActiveOrgChoice(t *testing.T) {
	e := newEnv(t, envOpts{})
	alice, bob := e.browser(), e.browser()
	alice.mustSignIn("alice")
	bob.mustSignIn("bob")
	admit := func(b *browser) *http.Request {
		req := httptest.NewRequest("GET", "https://portal.example.test/.portcullis/orgs", nil)
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: b.sessionCookie()})
		r, ok := e.m.Admit(httptest.NewRecorder(), req, &e.cfg.Routes[1])
		if !ok {
			t.Fatal("not admitted")
		}
		return r
	}
	ra, rb := admit(alice), admit(bob)
	ta := e.m.CSRFToken(ra)
	if ta == "" || !e.m.CheckCSRF(ra, ta) {
		t.Fatal("own token refused")
	}
	if e.m.CheckCSRF(rb, ta) || e.m.CheckCSRF(ra, "") || e.m.CheckCSRF(httptest.NewRequest("GET", "/", nil), ta) {
		t.Error("a token was accepted for another session or no session")
	}
	// The logout token is for logout only.
	page := alice.nav("/.portcullis/logout")
	if m := csrfField.FindStringSubmatch(page.body); m == nil || e.m.CheckCSRF(ra, m[1]) {
		t.Error("the logout token passes as the org token")
	}
	if err := e.m.SetActiveOrg(t.Context(), ra, "acme"); err != nil {
		t.Fatal(err)
	}
	if p := alice.api("/.portcullis/whoami"); !strings.Contains(p.body, `"active_org":"acme"`) {
		t.Errorf("whoami: %s", p.body)
	}
	if s, ok := session.FromContext(admit(alice).Context()); !ok || s.ActiveOrg != "acme" {
		t.Errorf("FromContext after the choice: %+v", s)
	}
	// The view is a copy: changing it changes nothing for the next reader.
	r2 := admit(alice)
	s1, _ := session.FromContext(r2.Context())
	s1.UserKey, s1.ActiveOrg = "someone-else", "beta"
	if len(s1.AMR) > 0 {
		s1.AMR[0] = "hwk"
	}
	if s2, _ := session.FromContext(r2.Context()); s2.UserKey == "someone-else" || s2.ActiveOrg != "acme" || (len(s2.AMR) > 0 && s2.AMR[0] == "hwk") {
		t.Errorf("the context's session was changed through a view: %+v", s2)
	}
	if p := bob.api("/.portcullis/whoami"); strings.Contains(p.body, "acme") {
		t.Error("bob's session changed")
	}
	// A session ended meanwhile is not revived.
	if _, err := e.m.RevokeUser(t.Context(), e.idpURL+"|sub-alice"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.SetActiveOrg(t.Context(), ra, "beta"); err == nil {
		t.Error("SetActiveOrg on a revoked session succeeded")
	}
	if alice.api("/.portcullis/whoami").StatusCode != 401 {
		t.Error("revoked session works")
	}
}
