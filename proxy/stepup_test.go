package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/session"
)

// ticketGate stands for the session manager's StepUpTickets.
type ticketGate struct{ got session.Challenge }

func (g *ticketGate) Admit(http.ResponseWriter, *http.Request, *config.Route) (*http.Request, bool) {
	return nil, false
}

func (g *ticketGate) StepUpTicket(_ *http.Request, c session.Challenge) string {
	g.got = c
	return `tk"<&>`
}

func stepUpServer(t *testing.T, gate Gate, rec audit.Sink, now time.Time) (*Server, *config.Route) {
	t.Helper()
	cfg := loadConfig(t, baseConfig("http://127.0.0.1:9", `    step_up: {acr: [urn:x:mfa, urn:x:hwk], amr: [otp], max_age: 5m, elevation: 2m}
  - name: amronly
    path: /amr
    upstream: http://127.0.0.1:9
    step_up: {amr: [hwk], max_age: 90s}
`))
	opts := Options{Gate: gate, Audit: rec, Now: func() time.Time { return now }}
	if g, ok := gate.(StepUpTickets); ok {
		opts.StepUp = g
	}
	s, err := New(SettingsOf(cfg), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, routeNamed(t, s, "admin")
}

func routeNamed(t *testing.T, s *Server, name string) *config.Route {
	t.Helper()
	st := s.state.Load()
	for i := range st.set.Routes {
		if st.set.Routes[i].Name == name {
			return &st.set.Routes[i]
		}
	}
	t.Fatalf("no route %s", name)
	return nil
}

// stepUp runs the step-up step of an exchange on route as admit leaves it (the session sess
// admitted, acting for id.org) and answers what it refuses; it reports whether the request
// may go on, with the acr the portal is told in id.
func (s *Server) stepUp(w http.ResponseWriter, r *http.Request, route *config.Route, sess *session.Session, id *identity, requestID string) bool {
	st := s.state.Load()
	ex := &exchange{s: s, st: st, w: w, r: r, requestID: requestID, route: route, routeLabel: route.Name, sess: sess, id: *id}
	for i := range st.set.Routes {
		if &st.set.Routes[i] == route {
			ex.pol = &st.policies[i]
		}
	}
	if ex.pol == nil {
		ex.pol = &routePolicy{stepUp: authz.CompileStepUp(route.StepUp)}
	}
	err := ex.stepUp()
	if err != nil {
		ex.fail(err)
	}
	*id = ex.id
	return err == nil
}

func TestStepUpCheck(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	rec := &audit.Recorder{}
	s, route := stepUpServer(t, nil, rec, now)
	el := authz.Elevation{ACR: "urn:x:hwk", AMR: []string{"hwk", "otp"}, Org: "acme", AuthTime: now.Add(-time.Minute),
		GrantedAt: now.Add(-time.Minute), Until: now.Add(time.Minute)}
	sess := &session.Session{UserKey: "iss|alice", ACR: "urn:x:pwd", Elevations: []authz.Elevation{el}}

	// Elevated for acme: passes, and the portal is told the elevation's acr.
	id := &identity{org: "acme", acr: sess.ACR}
	w := httptest.NewRecorder()
	if !s.stepUp(w, httptest.NewRequest("GET", "/admin/x", nil), route, sess, id, "r1") || id.acr != "urn:x:hwk" {
		t.Fatalf("elevated: refused or acr %q", id.acr)
	}
	// Not for beta, not after Until, and never because of what the client sends.
	for name, c := range map[string]struct {
		org   string
		at    time.Time
		hdr   map[string]string
		after time.Time // the membership's elevations_after (a role change)
	}{
		"other org":      {"beta", now, nil, time.Time{}},
		"no org":         {"", now, nil, time.Time{}},
		"expired":        {"acme", now.Add(time.Minute), nil, time.Time{}},
		"client headers": {"beta", now, map[string]string{"X-Step-Up": "1", "X-Auth-Acr": "urn:x:hwk", "Cookie": "stepup=1"}, time.Time{}},
		"role changed":   {"acme", now, nil, el.GrantedAt.Add(time.Second)},
	} {
		s.now = func() time.Time { return c.at }
		r := httptest.NewRequest("GET", "/admin/x?stepup=1", nil)
		r.Header.Set("Accept", "application/json")
		for k, v := range c.hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		if s.stepUp(w, r, route, sess, &identity{org: c.org, elevationsAfter: c.after}, "r2") {
			t.Errorf("%s: admitted", name)
			continue
		}
		want := `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required", acr_values="urn:x:mfa urn:x:hwk", max_age=300`
		if got := w.Result().Header.Values("WWW-Authenticate"); w.Code != 401 || len(got) != 1 || got[0] != want {
			t.Errorf("%s: %d %q", name, w.Code, got)
		}
		var body map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "step_up_required" || body["max_age"] != float64(300) ||
			body["acr_values"] != "urn:x:mfa urn:x:hwk" || body["amr"] != "otp" || body["route"] != "admin" || body["request_id"] != "r2" {
			t.Errorf("%s: body %s", name, w.Body)
		}
	}
	var denied int
	for _, ev := range rec.Events() {
		if ev.Type == audit.AccessDenied && ev.Reason == "step_up_required" && ev.Route == "admin" {
			denied++
		}
	}
	if denied != 5 {
		t.Errorf("audited denials = %d, want 5", denied)
	}
	// A route without step_up is untouched.
	plain := &config.Route{Name: "app"}
	if !s.stepUp(httptest.NewRecorder(), httptest.NewRequest("GET", "/app", nil), plain, &session.Session{}, &identity{}, "") {
		t.Error("route without step_up refused")
	}
}

func TestStepUpInterstitial(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	g := &ticketGate{}
	s, route := stepUpServer(t, g, nil, now)
	sess := &session.Session{UserKey: "iss|alice"}
	nav := func(method string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/admin/users?tab=1", nil)
		r.Header.Set("Accept", "text/html")
		r.Header.Set("Sec-Fetch-Mode", "navigate")
		w := httptest.NewRecorder()
		if s.stepUp(w, r, route, sess, &identity{org: "ac<me"}, "r9") {
			t.Fatal("admitted without elevation")
		}
		return w
	}
	w := nav("GET")
	body := w.Body.String()
	if w.Code != 401 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") ||
		!strings.Contains(body, "<code>admin</code>") || !strings.Contains(body, "<code>ac&lt;me</code>") ||
		!strings.Contains(body, `name="ticket" value="tk&#34;&lt;&amp;&gt;"`) || strings.Contains(body, "repeat the action") ||
		w.Header().Get("Content-Security-Policy") != page.CSP(page.CurrentBrand(), page.NoFormAction) ||
		strings.Contains(w.Header().Get("Content-Security-Policy"), "form-action") {
		t.Fatalf("interstitial: %d %s", w.Code, body)
	}
	if g.got.Route != "admin" || g.got.Org != "ac<me" || g.got.ReturnTo != "/admin/users?tab=1" || g.got.MaxAge != 5*time.Minute ||
		g.got.Elevation != 2*time.Minute || strings.Join(g.got.ACR, " ") != "urn:x:mfa urn:x:hwk" {
		t.Errorf("challenge: %+v", g.got)
	}
	// A form post is not replayed: the interstitial says to repeat it.
	if w := nav("POST"); w.Code != 401 || !strings.Contains(w.Body.String(), "Your POST request was not sent") {
		t.Errorf("POST: %d %s", w.Code, w.Body)
	}
	if w := nav("HEAD"); w.Code != 401 || w.Body.Len() != 0 {
		t.Errorf("HEAD: %d %q", w.Code, w.Body)
	}
}

func TestStepUpChallengeHeader(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	s, admin := stepUpServer(t, nil, nil, now)
	for _, c := range []struct {
		route *config.Route
		want  string
	}{
		{admin, `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required", acr_values="urn:x:mfa urn:x:hwk", max_age=300`},
		{routeNamed(t, s, "amronly"), `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required", max_age=90`},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/x", nil)
		if s.stepUp(w, r, c.route, &session.Session{UserKey: "iss|a"}, &identity{}, "r") {
			t.Fatalf("%s: admitted", c.route.Name)
		}
		if got := w.Header().Get("WWW-Authenticate"); got != c.want {
			t.Errorf("got %s\nwant %s", got, c.want)
		}
	}
}
