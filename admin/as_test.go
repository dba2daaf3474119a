package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAsIsThePersonOnly: a call made with As is the person's, whatever the request carries: an
// operator's token in its Authorization header makes it no operator's call, and operators'
// endpoints refuse it; a personal call sees only the person's own organisations.
func TestAsIsThePersonOnly(t *testing.T) {
	b := newBed(t)
	call := func(user, method, path, body string) *httptest.ResponseRecorder {
		var r *http.Request
		if body == "" {
			r = httptest.NewRequest(method, path, nil)
		} else {
			r = httptest.NewRequest(method, path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
		}
		r.Header.Set("Authorization", "Bearer "+b.ops) // ignored: As says who calls
		w := httptest.NewRecorder()
		b.api.As(user, "console session abcd1234").ServeHTTP(w, r)
		return w
	}
	if w := call(ann, "GET", "/api/v1/whoami", ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"name":"`+ann+`"`) ||
		!strings.Contains(w.Body.String(), `"operator":false`) || !strings.Contains(w.Body.String(), `"via":"console session abcd1234"`) {
		t.Errorf("whoami as ann: %d %s", w.Code, w.Body.String())
	}
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/api/v1/orgs", ""},
		{"POST", "/api/v1/orgs", `{"id":"evil","name":"evil","reason":"x"}`},
		{"GET", "/api/v1/audit", ""},
		{"GET", "/api/v1/orgs/beta/members", ""},
		{"POST", "/api/v1/orgs/beta/members/revoke", `{"user":"` + bob + `","reason":"x"}`},
	} {
		if w := call(ann, c.method, c.path, c.body); w.Code != http.StatusForbidden {
			t.Errorf("ann (acme's administrator, no operator) %s %s: %d %s", c.method, c.path, w.Code, w.Body.String())
		}
	}
	if w := call(ann, "GET", "/api/v1/orgs/acme/members", ""); w.Code != 200 {
		t.Errorf("ann's own organisation's members: %d %s", w.Code, w.Body.String())
	}
	// AsOperator is an operator's call, recorded with the person and the session.
	r := httptest.NewRequest("GET", "/api/v1/orgs", nil)
	w := httptest.NewRecorder()
	b.api.AsOperator("https://idp.portal|olga", "console session abcd1234").ServeHTTP(w, r)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"id":"beta"`) {
		t.Errorf("organisations as an operator: %d %s", w.Code, w.Body.String())
	}
}
