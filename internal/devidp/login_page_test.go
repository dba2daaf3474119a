package devidp

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The sign-in form is shown in the layout of Portcullis's own pages, under the provider's
// name (not the portal's brand), with their headers; its form is the one devidptest.Login
// and the browser tests fill in.
func TestLoginPageLayout(t *testing.T) {
	l := &loginUI{log: slog.New(slog.DiscardHandler)}
	w := httptest.NewRecorder()
	l.render(w, httptest.NewRequest("GET", "/login", nil), http.StatusOK, loginPage{Action: "https://idp.test/login", AuthRequestID: "ar1",
		CSRF: "c1", ClientID: "portcullis-dev", Username: "alice", ShowOTP: true})
	body := w.Body.String()
	for _, want := range []string{`<header class="brand">`, "Portcullis dev identity provider", `<form id="devidp-login" method="post" action="https://idp.test/login">`,
		`name="csrf" value="c1"`, `name="otp"`, "<title>Sign in · Portcullis dev identity provider</title>"} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q:\n%s", want, body)
		}
	}
	h := w.Header()
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'sha256-") || strings.Contains(csp, "form-action") ||
		!strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q: want the layout's, without form-action (the POST redirects to the relying party)", csp)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", h)
	}
}
