package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/admin"
	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// TestMain shares one redis-server between the package's tests (each with a database and a
// key prefix of its own).
func TestMain(m *testing.M) { redistest.Main(m) }

const (
	ann   = "https://idp.acme|ann"    // acme's administrator
	bob   = "https://idp.acme|bob"    // an acme member; beta's administrator
	carl  = "https://idp.acme|carl"   // an acme member
	frank = "https://idp.other|frank" // a member of nothing
	olga  = "https://idp.portal|olga" // an operator (console.operators)
)

// policyYAML: billing is privileged (held for at most 8h, after approval).
const policyYAML = `
tls: {mode: self_signed}
redis: {address: "127.0.0.1:1"}
lifecycle:
  privileged_roles:
    billing: {max_elevation: 8h}
console:
  step_up: {acr: ["urn:mfa"], amr: [otp], max_age: 10m}
routes:
  - {name: app, upstream: "http://127.0.0.1:9"}
`

// bed is the console over the real administration API and a real Redis (the shared test
// server, a database and prefix of its own). The session side is a stand-in: a request's
// X-Test-User header is its signed-in person, whose elevations the test sets.
type bed struct {
	t    *testing.T
	st   *store.Store
	orgs *store.Orgs
	aud  *store.Audit
	c    *Console

	mu    sync.Mutex
	elev  map[string][]authz.Elevation
	clock time.Time
}

func newBed(t *testing.T) *bed {
	t.Helper()
	srv := redistest.Shared(t)
	st, err := store.New(config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg, _, err := config.Parse("console.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	b := &bed{t: t, st: st, aud: store.NewAudit(st, 0), elev: map[string][]authz.Elevation{}, clock: time.Now()}
	b.orgs = store.NewOrgs(st, b.aud)
	api, err := admin.New(admin.Options{Store: st, Orgs: b.orgs, Audit: b.aud, Lifecycle: authz.CompilePolicy(&cfg.Lifecycle), Sessions: st, Now: b.now})
	if err != nil {
		t.Fatal(err)
	}
	b.c, err = New(Options{Sessions: fakeSessions{}, API: api, StepUp: cfg.Console.StepUp, Operators: []string{olga}, Audit: b.aud,
		Current: b.current, Now: b.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"acme", "beta"} {
		if _, err := b.orgs.CreateOrg(ctx, store.Org{ID: id, Name: id}, "bootstrap", "setup"); err != nil {
			t.Fatal(err)
		}
	}
	year := time.Now().Add(300 * 24 * time.Hour)
	for _, m := range []store.Membership{
		{Org: "acme", User: ann, Kind: store.KindEmployee, Roles: []string{"org-admin"}, ReviewBy: year},
		{Org: "acme", User: bob, Kind: store.KindEmployee, Roles: []string{"viewer"}, ReviewBy: year},
		{Org: "acme", User: carl, Kind: store.KindEmployee, Roles: []string{"viewer"}, ReviewBy: time.Now().Add(5 * 24 * time.Hour)},
		{Org: "beta", User: bob, Kind: store.KindEmployee, Roles: []string{"org-admin"}, ReviewBy: year},
	} {
		if _, err := b.orgs.Grant(ctx, m, "bootstrap", "setup"); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (b *bed) now() time.Time { b.mu.Lock(); defer b.mu.Unlock(); return b.clock }

// stepUp gives user's session an elevation for org that meets console.step_up.
func (b *bed) stepUp(user, org string) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.elev[user] = append(b.elev[user], authz.Elevation{Org: org, ACR: "urn:mfa", AMR: []string{"pwd", "otp"}, AuthTime: now, GrantedAt: now,
		Until: now.Add(10 * time.Minute)})
}

type userKey struct{}

func (b *bed) current(ctx context.Context) (*session.Session, bool) {
	u, ok := ctx.Value(userKey{}).(string)
	if !ok {
		return nil, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock
	return &session.Session{UserKey: u, Email: strings.TrimPrefix(u[strings.IndexByte(u, '|')+1:], "") + "@example.com",
		Created: now.Add(-time.Hour), Expires: now.Add(7 * time.Hour), Elevations: slices.Clone(b.elev[u]), LogID: "test1234"}, true
}

// fakeSessions admits the person X-Test-User names; their CSRF token is "csrf:" and the key.
type fakeSessions struct{}

func (fakeSessions) Admit(w http.ResponseWriter, r *http.Request, _ *config.Route) (*http.Request, bool) {
	u := r.Header.Get("X-Test-User")
	if u == "" {
		http.Error(w, "no session", http.StatusUnauthorized)
		return nil, false
	}
	return r.WithContext(context.WithValue(r.Context(), userKey{}, u)), true
}
func (fakeSessions) CSRFToken(r *http.Request) string { return "csrf:" + r.Header.Get("X-Test-User") }
func (fakeSessions) CheckCSRF(r *http.Request, t string) bool {
	return t != "" && t == "csrf:"+r.Header.Get("X-Test-User")
}
func (fakeSessions) StepUpTicket(r *http.Request, c session.Challenge) string {
	return "ticket-for-" + c.Org
}

// SessionsOf: the person's current session, and another one in Firefox ("other123").
func (fakeSessions) SessionsOf(r *http.Request) ([]session.Info, error) {
	now := time.Now()
	return []session.Info{{ID: "current1", Current: true, Created: now.Add(-time.Hour), LastSeen: now, Agent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0"},
		{ID: "other123", Created: now.Add(-48 * time.Hour), LastSeen: now.Add(-24 * time.Hour), Agent: "Mozilla/5.0 (Windows NT 10.0) Gecko/20100101 Firefox/133.0"}}, nil
}

// EndSessionOf ends "other123" only.
func (fakeSessions) EndSessionOf(r *http.Request, id string) error {
	if id != "other123" {
		return session.ErrNoSuchSession
	}
	return nil
}

// get is a browser's navigation to path as user.
func (b *bed) get(user, path string) *httptest.ResponseRecorder {
	b.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "https://portal.example"+path, nil)
	r.Header.Set("Accept", "text/html")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	return w
}

// post submits a form to path as user, with the session's CSRF token unless form sets csrf,
// from the console's own pages.
func (b *bed) post(user, path string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	return b.postFrom("https://portal.example", user, path, form)
}

// postFrom is post from the pages of origin (Sec-Fetch-Site says whether that is this site).
func (b *bed) postFrom(origin, user, path string, form url.Values) *httptest.ResponseRecorder {
	b.t.Helper()
	if !form.Has("csrf") {
		form.Set("csrf", "csrf:"+user)
	}
	r := httptest.NewRequest(http.MethodPost, "https://portal.example"+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "text/html")
	site := "same-origin"
	if origin != "https://portal.example" {
		site = "cross-site"
	}
	r.Header.Set("Sec-Fetch-Site", site)
	r.Header.Set("Origin", origin)
	r.Header.Set("X-Test-User", user)
	w := httptest.NewRecorder()
	b.c.ServeHTTP(w, r)
	return w
}

func expect(t *testing.T, w *httptest.ResponseRecorder, status int, want ...string) string {
	t.Helper()
	body := w.Body.String()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body:\n%s", w.Code, status, body)
	}
	for _, s := range want {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %q:\n%s", s, body)
		}
	}
	return body
}

// seeOther checks a form's answer is a redirect and returns where to.
func seeOther(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d, want 303; body:\n%s", w.Code, w.Body.String())
	}
	return w.Header().Get("Location")
}

// events are the audit events of type typ, oldest first.
func (b *bed) events(typ audit.Type) []audit.Event {
	b.t.Helper()
	all, _, err := b.aud.Tail(context.Background(), "0", 1000, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []audit.Event
	for _, e := range all {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// request makes bob's request for billing through the console and returns its page's path.
func (b *bed) request(user, role string) string {
	b.t.Helper()
	loc := seeOther(b.t, b.post(user, Prefix+"request", url.Values{"org": {"acme"}, "what": {"role:" + role}, "choices": {"role:" + role},
		"duration": {"4h"}, "reason": {"month-end invoices"}, "ticket": {"FIN-7"}, "rd": {"/billing/"}}))
	if !strings.HasPrefix(loc, Prefix+"orgs/acme/requests/") {
		b.t.Fatalf("after the request the browser goes to %s, want its page", loc)
	}
	return loc
}

// TestRequestAndApprove: bob asks for billing from the form a refusal links to, sees it
// waiting, cannot approve it himself; ann steps up and approves; bob holds billing for the
// time asked, and the audit trail names each of them and the console session.
func TestRequestAndApprove(t *testing.T) {
	b := newBed(t)
	form := expect(t, b.get(bob, Prefix+"request?org=acme&role=billing&role=admin&rd=%2Fbilling%2F"), http.StatusOK,
		`value="role:billing" checked`, `value="role:admin"`, `name="rd" value="/billing/"`, `name="csrf" value="csrf:`+bob+`"`)
	if strings.Contains(form, "<script") {
		t.Error("the request form has a script")
	}

	loc := b.request(bob, "billing")
	u, _ := url.Parse(loc)
	id := strings.TrimPrefix(u.Path, Prefix+"orgs/acme/requests/")
	if u.Query().Get("rd") != "/billing/" {
		t.Errorf("the request page does not lead back to /billing/: %s", loc)
	}
	page := expect(t, b.get(bob, loc), http.StatusOK, "waiting for approval", "month-end invoices", "FIN-7", "Withdraw the request")
	if strings.Contains(page, "Approve") {
		t.Error("the requester is offered to approve their own request")
	}
	expect(t, b.get(bob, Prefix), http.StatusOK, "Waiting for approval", "role <code>billing</code> in <code>acme</code> for 4 hours")

	// A forged approval by the requester, with a step-up for acme: the API refuses it.
	b.stepUp(bob, "acme")
	w := b.post(bob, Prefix+"orgs/acme/requests/"+id+"/approve", url.Values{"reason": {"me"}})
	if w.Code < 400 {
		t.Fatalf("bob approving his own request: status %d, want a refusal", w.Code)
	}

	// ann without a step-up: sent to step up, nothing changes.
	w = b.post(ann, Prefix+"orgs/acme/requests/"+id+"/approve", url.Values{"reason": {"ok"}})
	expect(t, w, http.StatusUnauthorized, "Confirm it is you", "ticket-for-acme")
	if r := b.requestState(id); r.State != store.RequestPending {
		t.Fatalf("after an approval without step-up the request is %s", r.State)
	}
	expect(t, b.get(ann, Prefix+"orgs/acme/requests"), http.StatusUnauthorized, "Confirm it is you")

	b.stepUp(ann, "acme")
	list := expect(t, b.get(ann, Prefix+"orgs/acme/requests"), http.StatusOK, "month-end invoices", `id="approve-`+id+`"`)
	_ = list
	loc = seeOther(t, b.post(ann, Prefix+"orgs/acme/requests/"+id+"/approve", url.Values{"reason": {"month end"}}))
	expect(t, b.get(ann, loc), http.StatusOK, "The request was approved.")
	r := b.requestState(id)
	if r.State != store.RequestApproved || len(r.Approvals) != 1 || r.Approvals[0].By != ann {
		t.Fatalf("request after ann's approval: %+v", r)
	}
	_, m, err := b.st.Lookup(context.Background(), "acme", bob)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.RoleGrants) != 1 || m.RoleGrants[0].Role != "billing" || m.RoleGrants[0].ExpiresAt.Sub(b.now()) > 4*time.Hour {
		t.Fatalf("bob's grants after approval: %+v", m.RoleGrants)
	}
	expect(t, b.get(bob, loc2(id)), http.StatusOK, "approved", "Continue")

	granted := b.events(audit.RequestGranted)
	if len(granted) != 1 || granted[0].Actor != ann || !strings.Contains(granted[0].Via, "console session test1234") {
		t.Errorf("request.granted events: %+v", granted)
	}
	created := b.events(audit.RequestCreated)
	if len(created) != 1 || created[0].Actor != bob {
		t.Errorf("request.created events: %+v", created)
	}
}

func loc2(id string) string { return Prefix + "orgs/acme/requests/" + id }

func (b *bed) requestState(id string) *store.Request {
	b.t.Helper()
	r, err := b.st.Request(context.Background(), "acme", id)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// TestFormRefusalKeepsWhatWasTyped: a duration beyond the policy comes back as the form,
// with the API's reason and everything typed, and no request is made.
func TestFormRefusalKeepsWhatWasTyped(t *testing.T) {
	b := newBed(t)
	w := b.post(bob, Prefix+"request", url.Values{"org": {"acme"}, "what": {"role:billing"}, "choices": {"role:billing"},
		"duration": {"30d"}, "reason": {"quarterly close"}, "ticket": {"FIN-8"}})
	body := w.Body.String()
	if w.Code < 400 || !strings.Contains(body, "Not done:") || !strings.Contains(body, "quarterly close") ||
		!strings.Contains(body, `value="30d"`) || !strings.Contains(body, `value="FIN-8"`) {
		t.Fatalf("status %d; the form is not shown again with the values and the reason:\n%s", w.Code, body)
	}
	if ev := b.events(audit.RequestCreated); len(ev) != 0 {
		t.Errorf("a refused request was recorded: %+v", ev)
	}
	// Nothing asked at all.
	w = b.post(bob, Prefix+"request", url.Values{"org": {"acme"}, "duration": {"1h"}, "reason": {"x"}})
	if w.Code < 400 || !strings.Contains(w.Body.String(), "Not done:") {
		t.Fatalf("a request for nothing: status %d\n%s", w.Code, w.Body.String())
	}
}

// TestOtherOrganisation: ann administers acme, not beta. Editing the organisation in a URL
// or a form gets her a refusal, never a step-up or a page, and each attempt is audited.
func TestOtherOrganisation(t *testing.T) {
	b := newBed(t)
	b.stepUp(ann, "acme")
	b.stepUp(ann, "beta") // even holding one for beta
	// bob asks beta's ... no: carl asks acme for billing; bob (beta's admin) must not see it.
	id := strings.TrimPrefix(b.request(carl, "billing"), Prefix+"orgs/acme/requests/")
	id, _, _ = strings.Cut(id, "?")

	for _, path := range []string{Prefix + "orgs/beta/", Prefix + "orgs/beta/requests", Prefix + "orgs/beta/access.csv",
		Prefix + "orgs/beta/revoke?user=" + url.QueryEscape(bob)} {
		w := b.get(ann, path)
		if w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "Confirm it is you") {
			t.Errorf("ann GET %s: status %d, want 403 without a step-up\n%s", path, w.Code, w.Body.String())
		}
	}
	b.stepUp(bob, "beta")
	b.stepUp(bob, "acme")
	for _, path := range []string{loc2(id), Prefix + "orgs/acme/", Prefix + "orgs/acme/requests"} {
		if w := b.get(bob, path); w.Code != http.StatusForbidden && w.Code != http.StatusNotFound {
			t.Errorf("bob (beta's admin, acme's member) GET %s: status %d, want a refusal\n%s", path, w.Code, w.Body.String())
		}
	}
	// Forms with another organisation's ids.
	for _, tc := range []struct {
		user, path string
		form       url.Values
	}{
		{bob, Prefix + "orgs/acme/requests/" + id + "/approve", url.Values{"reason": {"ok"}}},
		{bob, Prefix + "orgs/beta/requests/" + id + "/approve", url.Values{"reason": {"ok"}}},
		{bob, Prefix + "orgs/acme/revoke", url.Values{"user": {carl}, "reason": {"x"}, "confirm": {"yes"}}},
		{ann, Prefix + "orgs/beta/revoke", url.Values{"user": {bob}, "reason": {"x"}, "confirm": {"yes"}}},
		{bob, Prefix + "orgs/acme/requests/" + id + "/cancel", url.Values{}},
	} {
		if w := b.post(tc.user, tc.path, tc.form); w.Code != http.StatusForbidden && w.Code != http.StatusNotFound {
			t.Errorf("%s POST %s: status %d, want a refusal\n%s", tc.user, tc.path, w.Code, w.Body.String())
		}
	}
	if r := b.requestState(id); r.State != store.RequestPending {
		t.Errorf("carl's request is %s after the attempts", r.State)
	}
	for _, who := range []string{carl, bob} {
		org := map[string]string{carl: "acme", bob: "beta"}[who]
		if _, m, _ := b.st.Lookup(context.Background(), org, who); m == nil || m.Status != store.MembershipActive {
			t.Errorf("%s's membership of %s after the attempts: %+v", who, org, m)
		}
	}
	refused := 0
	for _, e := range b.events(audit.AccessDenied) {
		if e.Route == RouteName && (e.Reason == "not_permitted" || e.Reason == "not_found") {
			refused++
		}
	}
	if refused < 9 {
		t.Errorf("%d refused attempts audited, want every one (at least 9)", refused)
	}
}

// TestFormsNeedTheSessionsTokenAndOrigin: a post without the CSRF token, with another
// person's, or from another site changes nothing.
func TestFormsNeedTheSessionsTokenAndOrigin(t *testing.T) {
	b := newBed(t)
	b.stepUp(ann, "acme")
	revoke := url.Values{"user": {bob}, "reason": {"left"}, "confirm": {"yes"}}
	for name, f := range map[string]url.Values{"no token": {"csrf": {""}}, "bob's token": {"csrf": {"csrf:" + bob}}} {
		form := url.Values{}
		for k, v := range revoke {
			form[k] = v
		}
		form.Set("csrf", f.Get("csrf"))
		expect(t, b.post(ann, Prefix+"orgs/acme/revoke", form), http.StatusForbidden, "csrf_failed")
		_ = name
	}
	if w := b.postFrom("https://evil.example", ann, Prefix+"orgs/acme/revoke", url.Values{"user": {bob}, "reason": {"left"}, "confirm": {"yes"}}); w.Code != http.StatusForbidden {
		t.Errorf("cross-site post with the right token: status %d, want 403", w.Code)
	}
	if _, m, _ := b.st.Lookup(context.Background(), "acme", bob); m.Status != store.MembershipActive {
		t.Fatalf("bob's membership after forged posts: %s", m.Status)
	}
	// One event: the same refusal of the same person at the same place, within a minute.
	if n := len(b.events(audit.AccessDenied)); n != 1 {
		t.Errorf("%d refused forms audited, want 1 (coalesced)", n)
	}
	b.mu.Lock()
	b.clock = b.clock.Add(auditInterval)
	b.mu.Unlock()
	b.post(ann, Prefix+"orgs/acme/revoke", url.Values{"user": {bob}, "reason": {"left"}, "confirm": {"yes"}, "csrf": {""}})
	if n := len(b.events(audit.AccessDenied)); n != 2 {
		t.Errorf("%d refused forms audited after the interval, want 2", n)
	}
}

// TestRevokeNeedsConfirmation: a revocation happens only from the confirmation page, with a
// reason; ann is never offered to revoke herself.
func TestRevokeNeedsConfirmation(t *testing.T) {
	b := newBed(t)
	b.stepUp(ann, "acme")
	members := expect(t, b.get(ann, Prefix+"orgs/acme/"), http.StatusOK, "3 of 3 memberships", bob, carl)
	if strings.Contains(members, "revoke?user="+url.QueryEscape(ann)) {
		t.Error("ann is offered to revoke her own membership")
	}
	// Straight to the action, without the confirmation: sent to the confirmation page.
	loc := seeOther(t, b.post(ann, Prefix+"orgs/acme/revoke", url.Values{"user": {bob}, "reason": {"left"}}))
	expect(t, b.get(ann, loc), http.StatusOK, "Revoke a membership", bob, `name="confirm" value="yes"`)
	// Confirmed, without a reason: the page again, saying why.
	w := b.post(ann, Prefix+"orgs/acme/revoke", url.Values{"user": {bob}, "confirm": {"yes"}})
	if w.Code < 400 || !strings.Contains(w.Body.String(), "Not done:") {
		t.Fatalf("revoke without a reason: status %d\n%s", w.Code, w.Body.String())
	}
	loc = seeOther(t, b.post(ann, Prefix+"orgs/acme/revoke", url.Values{"user": {bob}, "confirm": {"yes"}, "reason": {"left the company"}}))
	expect(t, b.get(ann, loc), http.StatusOK, "was revoked")
	if _, m, _ := b.st.Lookup(context.Background(), "acme", bob); m.Status != store.MembershipRevoked {
		t.Fatalf("bob's membership: %s", m.Status)
	}
	ev := b.events(audit.MembershipRevoked)
	if len(ev) != 1 || ev[0].Actor != ann || ev[0].Reason != "left the company" {
		t.Errorf("membership.revoked events: %+v", ev)
	}
}

// TestMembersFiltersAndExport: the filters and the exports of "who has what".
func TestMembersFiltersAndExport(t *testing.T) {
	b := newBed(t)
	b.stepUp(ann, "acme")
	due := expect(t, b.get(ann, Prefix+"orgs/acme/?due=1"), http.StatusOK, "1 of 3 memberships", carl)
	if strings.Contains(due, ">"+bob) {
		t.Errorf("bob's review is not due, yet he is listed:\n%s", due)
	}
	expect(t, b.get(ann, Prefix+"orgs/acme/?role=org-admin"), http.StatusOK, "1 of 3 memberships")
	w := b.get(ann, Prefix+"orgs/acme/access.csv")
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/csv") || !strings.Contains(w.Body.String(), carl) ||
		!strings.Contains(w.Header().Get("Content-Disposition"), "acme-access.csv") {
		t.Errorf("CSV export: %d %v\n%s", w.Code, w.Header(), w.Body.String())
	}
	w = b.get(ann, Prefix+"orgs/acme/access.json")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"items"`) {
		t.Errorf("JSON export: %d\n%s", w.Code, w.Body.String())
	}
	// An elevation that ran out is no elevation.
	b.mu.Lock()
	b.clock = b.clock.Add(11 * time.Minute)
	b.mu.Unlock()
	expect(t, b.get(ann, Prefix+"orgs/acme/"), http.StatusUnauthorized, "Confirm it is you")
}

// TestHome: "My access" lists the person's memberships and offers administration only where
// they hold the admin role; a person with no membership is told whom to ask.
func TestHome(t *testing.T) {
	b := newBed(t)
	home := expect(t, b.get(bob, Prefix), http.StatusOK, "<h3>acme</h3>", "<h3>beta</h3>", "viewer", "Administer beta", "Sign out of this session")
	if strings.Contains(home, "Administer acme") {
		t.Error("bob is offered to administer acme, where he is a viewer")
	}
	expect(t, b.get(frank, Prefix), http.StatusOK, "no membership in any organisation")
	// beta delegates its administration to acme: ann is offered to administer beta, and does.
	if _, err := b.orgs.Delegate(context.Background(), "beta", store.Delegation{To: "acme", ExpiresAt: b.now().Add(30 * 24 * time.Hour)},
		"bootstrap", "managed service"); err != nil {
		t.Fatal(err)
	}
	expect(t, b.get(ann, Prefix), http.StatusOK, "Administered for other organisations", "Administer beta", "delegated to <code>acme</code>")
	b.stepUp(ann, "beta")
	expect(t, b.get(ann, Prefix+"orgs/beta/"), http.StatusOK, "Members of beta")
	expect(t, b.get(bob, Prefix), http.StatusOK, "Chrome on Linux (this session)", "Firefox on Windows", `name="id" value="other123"`)
	expect(t, b.get(bob, seeOther(t, b.post(bob, Prefix+"sessions/end", url.Values{"id": {"other123"}}))), http.StatusOK, "That session is signed out")
	expect(t, b.get(bob, seeOther(t, b.post(bob, Prefix+"sessions/end", url.Values{"id": {"current1"}}))), http.StatusOK, "had already ended")
	if w := b.post(bob, Prefix+"sessions/end", url.Values{"id": {"other123"}, "csrf": {"nope"}}); w.Code != http.StatusForbidden {
		t.Errorf("ending a session without the CSRF token: %d", w.Code)
	}
	if w := b.get("", Prefix); w.Code != http.StatusUnauthorized {
		t.Errorf("no session: status %d", w.Code)
	}
	if w := b.get(bob, Prefix+"nothing-here"); w.Code != http.StatusNotFound {
		t.Errorf("unknown console path: status %d", w.Code)
	}
}

// TestOutsiderRequest: someone with no membership who finds the form is told not_member,
// for an organisation that exists as for one that does not, and asks for nothing.
func TestOutsiderRequest(t *testing.T) {
	b := newBed(t)
	var pages []string
	for _, org := range []string{"acme", "nosuchorg"} {
		w := b.get(frank, Prefix+"request?org="+org+"&role=billing")
		pages = append(pages, strings.ReplaceAll(expect(t, w, http.StatusForbidden, "not_member"), org, "ORG"))
		w = b.post(frank, Prefix+"request", url.Values{"org": {org}, "what": {"role:billing"}, "choices": {"role:billing"},
			"duration": {"1h"}, "reason": {"let me in"}})
		pages = append(pages, strings.ReplaceAll(expect(t, w, http.StatusForbidden, "not_member"), org, "ORG"))
	}
	if pages[0] != pages[2] || pages[1] != pages[3] {
		t.Errorf("an outsider can tell an organisation that exists from one that does not:\n%s\n---\n%s", pages[0], pages[2])
	}
	if ev := b.events(audit.RequestCreated); len(ev) != 0 {
		t.Errorf("an outsider's request was recorded: %+v", ev)
	}
}

// TestWithdraw: the requester withdraws their own waiting request.
func TestWithdraw(t *testing.T) {
	b := newBed(t)
	loc := b.request(bob, "billing")
	path, _, _ := strings.Cut(loc, "?")
	loc = seeOther(t, b.post(bob, path+"/cancel", url.Values{}))
	expect(t, b.get(bob, loc), http.StatusOK, "withdrawn")
}

// TestPerson: a person's key is shown as its subject and its issuer's host, escaped, the
// subject kept whole when it holds the separator itself.
func TestPerson(t *testing.T) {
	for key, want := range map[string]string{
		"https://idp.example/realms/x|auth0|123": `<span class="person" title="https://idp.example/realms/x|auth0|123">auth0|123 <span class="meta">(idp.example)</span></span>`,
		`https://idp.example|<b>"x"`:             `<span class="person" title="https://idp.example|&lt;b&gt;&#34;x&#34;">&lt;b&gt;&#34;x&#34; <span class="meta">(idp.example)</span></span>`,
		"machine:acme|export":                    `<span class="person" title="machine:acme|export">export <span class="meta">(machine:acme)</span></span>`,
		"no-separator":                           `no-separator`,
	} {
		if got := string(person(key)); got != want {
			t.Errorf("person(%q) = %s, want %s", key, got, want)
		}
	}
}

// TestInviteAndChange: an invitation outside the policy comes back as the form with the
// reason; one at a verified domain is made. A change of roles is made, a membership suspended
// and resumed, and ann cannot change her own membership even by posting the form.
func TestInviteAndChange(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	b.stepUp(ann, "acme")
	expect(t, b.get(ann, Prefix+"orgs/acme/invite"), http.StatusOK, "Invite to acme", `name="email"`)
	// acme verifies no domain yet: an employee's invitation is refused, the form kept.
	w := b.post(ann, Prefix+"orgs/acme/invite", url.Values{"email": {"dora@acme.example"}, "kind": {"employee"}, "roles": {"viewer"},
		"reason": {"new hire"}})
	if w.Code < 400 || !strings.Contains(w.Body.String(), "Not done:") || !strings.Contains(w.Body.String(), `value="dora@acme.example"`) {
		t.Fatalf("invitation at an unverified domain: %d\n%s", w.Code, w.Body.String())
	}
	if _, err := b.orgs.AddDomain(ctx, "acme", "acme.example", "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	loc := seeOther(t, b.post(ann, Prefix+"orgs/acme/invite", url.Values{"email": {"dora@acme.example"}, "kind": {"employee"},
		"roles": {"viewer, support-desk"}, "reason": {"new hire"}}))
	expect(t, b.get(ann, loc), http.StatusOK, "The invitation is made")
	invs, err := b.st.OrgInvitations(ctx, "acme")
	if err != nil || len(invs) != 1 || !slices.Equal(invs[0].Roles, []string{"support-desk", "viewer"}) {
		t.Fatalf("invitations: %+v %v", invs, err)
	}

	expect(t, b.get(ann, Prefix+"orgs/acme/change?user="+url.QueryEscape(bob)), http.StatusOK, "Change a membership", `name="remove" value="viewer"`)
	loc = seeOther(t, b.post(ann, Prefix+"orgs/acme/change", url.Values{"user": {bob}, "remove": {"viewer"}, "add": {"reports"},
		"reason": {"moved to reporting"}}))
	expect(t, b.get(ann, loc), http.StatusOK, "was changed")
	if _, m, _ := b.st.Lookup(ctx, "acme", bob); !slices.Equal(m.Roles, []string{"reports"}) {
		t.Errorf("bob's roles after the change: %v", m.Roles)
	}
	until := b.now().Add(10 * 24 * time.Hour).UTC().Format(time.DateOnly)
	seeOther(t, b.post(ann, Prefix+"orgs/acme/change", url.Values{"user": {carl}, "purpose": {"audit"}, "purpose_reason": {"AUD-3"},
		"purpose_until": {until}, "reason": {"year-end audit"}}))
	if _, m, _ := b.st.Lookup(ctx, "acme", carl); len(m.Grants) != 1 || m.Grants[0].Purpose != "audit" || m.Grants[0].Reason != "AUD-3" {
		t.Fatalf("carl's purposes after the grant: %+v", m.Grants)
	}
	expect(t, b.get(ann, Prefix+"orgs/acme/change?user="+url.QueryEscape(carl)), http.StatusOK, `name="remove_purpose" value="audit"`)
	seeOther(t, b.post(ann, Prefix+"orgs/acme/change", url.Values{"user": {carl}, "remove_purpose": {"audit"}, "reason": {"audit done"}}))
	if _, m, _ := b.st.Lookup(ctx, "acme", carl); len(m.Grants) != 0 {
		t.Fatalf("carl's purposes after the removal: %+v", m.Grants)
	}
	w = b.post(ann, Prefix+"orgs/acme/change", url.Values{"user": {carl}, "purpose": {"audit"}, "purpose_until": {"next week"}, "reason": {"x"}})
	if w.Code < 400 || !strings.Contains(w.Body.String(), "purpose end: want a date") || !strings.Contains(w.Body.String(), `value="next week"`) {
		t.Errorf("a purpose end that is not a date: %d\n%s", w.Code, w.Body.String())
	}
	expect(t, b.get(ann, Prefix+"orgs/acme/change?user="+url.QueryEscape(carl)), http.StatusOK, `value="suspended"`)
	seeOther(t, b.post(ann, Prefix+"orgs/acme/change", url.Values{"user": {carl}, "status": {"suspended"}, "reason": {"leave"}}))
	if _, m, _ := b.st.Lookup(ctx, "acme", carl); m.Status != store.MembershipSuspended {
		t.Errorf("carl after the suspension: %s", m.Status)
	}
	expect(t, b.get(ann, Prefix+"orgs/acme/change?user="+url.QueryEscape(carl)), http.StatusOK, `value="active"`, "resume it")
	seeOther(t, b.post(ann, Prefix+"orgs/acme/change", url.Values{"user": {carl}, "status": {"active"}, "reason": {"back"}}))
	if _, m, _ := b.st.Lookup(ctx, "acme", carl); m.Status != store.MembershipActive {
		t.Errorf("carl after resuming: %s", m.Status)
	}
	w = b.post(ann, Prefix+"orgs/acme/change", url.Values{"user": {ann}, "add": {"billing-admin"}, "reason": {"myself"}})
	if w.Code < 400 {
		t.Errorf("ann changing her own membership: %d", w.Code)
	}
	if _, m, _ := b.st.Lookup(ctx, "acme", ann); !slices.Equal(m.Roles, []string{"org-admin"}) {
		t.Errorf("ann's roles after changing her own: %v", m.Roles)
	}
}

// TestReviewInBulk: ann starts a review of acme, selects bob and carl, confirms keeping them;
// her own membership is not offered, and a forged decision on it is refused and named while
// the others stand. Revoking needs the confirmation too.
func TestReviewInBulk(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	b.stepUp(ann, "acme")
	expect(t, b.get(ann, Prefix+"orgs/acme/reviews"), http.StatusOK, "No review yet", "Start a review")
	// A deadline that is not a date, or none: the form again, with what was typed.
	w := b.post(ann, Prefix+"orgs/acme/reviews", url.Values{"kind": {"employee"}, "deadline": {"soon"}, "reason": {"Q4 review"}})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "deadline: want a date") ||
		!strings.Contains(w.Body.String(), `value="employee" checked`) || !strings.Contains(w.Body.String(), `value="Q4 review"`) {
		t.Errorf("a deadline that is not a date: %d\n%s", w.Code, w.Body.String())
	}
	deadline := b.now().Add(20 * 24 * time.Hour).UTC().Format(time.DateOnly)
	loc := seeOther(t, b.post(ann, Prefix+"orgs/acme/reviews", url.Values{"kind": {"employee"}, "deadline": {deadline}, "reason": {"Q4 review"}}))
	page := expect(t, b.get(ann, loc), http.StatusOK, "Q4 review", "3 of 3 undecided")
	if strings.Contains(page, `name="user" value="`+ann+`"`) {
		t.Error("ann is offered to decide her own membership")
	}
	decide := loc + "/decide"
	// Selected, not yet confirmed: the confirmation page, nothing decided.
	confirm := expect(t, b.post(ann, decide, url.Values{"user": {bob, carl, ann}, "decision": {"keep"}}), http.StatusOK,
		"Confirm the review decisions", "Keep 3")
	_ = confirm
	id := strings.TrimPrefix(loc, Prefix+"orgs/acme/reviews/")
	if r, _ := b.st.Review(ctx, "acme", id); r.Undecided() != 3 {
		t.Fatalf("decisions before the confirmation: %d undecided", r.Undecided())
	}
	// The results are this post's own page, not a redirect carrying them in its URL.
	done := expect(t, b.post(ann, decide, url.Values{"user": {bob, carl, ann}, "decision": {"keep"}, "confirm": {"yes"}, "reason": {"still on the team"}}),
		http.StatusOK, "Decided:", "Not decided:", "1 of 3 undecided")
	if !strings.Contains(done, "Nobody approves a request they made or one for themselves.") {
		t.Errorf("the refusal of ann's own item is not named:\n%s", done)
	}
	r, _ := b.st.Review(ctx, "acme", id)
	for _, it := range r.Items {
		want := map[string]string{bob: "keep", carl: "keep", ann: ""}[it.User]
		if it.Decision != want || (want != "" && it.DecidedBy != ann) {
			t.Errorf("item %s: %q by %s, want %q", it.User, it.Decision, it.DecidedBy, want)
		}
	}
	// The item left: ann's own is decided by someone else; a change of carl's roles (a
	// second campaign) through its own page.
	loc2 := seeOther(t, b.post(ann, Prefix+"orgs/acme/reviews", url.Values{"deadline": {deadline}, "reason": {"Q1 review"}}))
	id2 := strings.TrimPrefix(loc2, Prefix+"orgs/acme/reviews/")
	expect(t, b.get(ann, loc2+"/change?user="+url.QueryEscape(carl)), http.StatusOK, "Change in a review", `value="viewer"`)
	expect(t, b.post(ann, loc2+"/change", url.Values{"user": {carl}, "roles": {"reports"}, "reason": {"moved"}}), http.StatusOK, "Decided:", "change to reports")
	if _, m, _ := b.st.Lookup(ctx, "acme", carl); !slices.Equal(m.Roles, []string{"reports"}) {
		t.Errorf("carl's roles after the review's change: %v", m.Roles)
	}
	if w := b.post(ann, loc2+"/change", url.Values{"user": {ann}, "roles": {"org-admin", "billing-admin"}, "reason": {"me"}}); w.Code < 400 {
		t.Errorf("ann changing her own item: %d", w.Code)
	}
	if r, _ := b.st.Review(ctx, "acme", id2); r.Items[slices.IndexFunc(r.Items, func(it store.ReviewItem) bool { return it.User == ann })].Decision != "" {
		t.Error("ann decided her own item")
	}
	// A confirmed revocation without a reason: asked again, nothing revoked.
	w = b.post(ann, decide, url.Values{"user": {ann}, "decision": {"revoke"}, "confirm": {"yes"}})
	if w.Code < 400 || !strings.Contains(w.Body.String(), "Not done:") {
		t.Errorf("confirmed without a reason: %d\n%s", w.Code, w.Body.String())
	}
	// Another organisation's review, by its id in the URL.
	b.stepUp(bob, "beta")
	if w := b.get(bob, Prefix+"orgs/beta/reviews/"+id); w.Code != http.StatusNotFound && w.Code != http.StatusForbidden {
		t.Errorf("acme's review under beta: %d", w.Code)
	}
	if w := b.post(bob, Prefix+"orgs/acme/reviews/"+id+"/decide", url.Values{"user": {carl}, "decision": {"revoke"}, "confirm": {"yes"}, "reason": {"x"}}); w.Code != http.StatusForbidden {
		t.Errorf("bob deciding in acme's review: %d", w.Code)
	}
}

// TestActivity: ann reads acme's activity (bob's request with its ticket among it), filtered
// and exported; the older-events link pages on; bob, beta's administrator, gets no page of
// acme's.
func TestActivity(t *testing.T) {
	b := newBed(t)
	b.request(bob, "billing")
	b.stepUp(ann, "acme")
	expect(t, b.get(ann, Prefix+"orgs/acme/activity"), http.StatusOK, "Activity of acme", "request.created", "FIN-7", "membership.granted")
	filtered := expect(t, b.get(ann, Prefix+"orgs/acme/activity?type=request."), http.StatusOK, "request.created",
		`href="/.portcullis/console/orgs/acme/activity.csv?type=request."`)
	if strings.Contains(filtered, "membership.granted") {
		t.Errorf("the request filter shows membership events:\n%s", filtered)
	}
	employees := expect(t, b.get(ann, Prefix+"orgs/acme/activity?kind=employee&type=membership."), http.StatusOK, "membership.granted",
		`activity.csv?kind=employee&amp;type=membership.`)
	if strings.Contains(employees, "request.created") {
		t.Errorf("the kind filter shows a request:\n%s", employees)
	}
	expect(t, b.get(ann, Prefix+"orgs/acme/activity?kind=partner"), http.StatusOK, "Nothing recorded of this kind")
	w := b.get(ann, Prefix+"orgs/acme/activity.csv?type=request.")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "FIN-7") || !strings.Contains(w.Header().Get("Content-Disposition"), "acme-activity.csv") {
		t.Errorf("activity CSV: %d %v\n%s", w.Code, w.Header(), w.Body.String())
	}
	b.stepUp(bob, "acme")
	if w := b.get(bob, Prefix+"orgs/acme/activity"); w.Code != http.StatusForbidden {
		t.Errorf("bob at acme's activity: %d", w.Code)
	}
	if w := b.get(bob, Prefix+"orgs/acme/activity.json"); w.Code != http.StatusForbidden {
		t.Errorf("bob at acme's activity export: %d", w.Code)
	}
}

// TestMachines: acme's administrator sees its machine identities with their keys, revokes a
// key only from the confirmation page, and sees nothing of another organisation's.
func TestMachines(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	if _, err := b.orgs.CreateMachine(ctx, store.Membership{Org: "acme", User: store.MachineUser("acme", "export"), Kind: store.KindService,
		Roles: []string{"viewer"}, ReviewBy: b.now().Add(30 * 24 * time.Hour),
		Machine: &store.Machine{ID: "export", Name: "Invoice export", Sponsor: bob}}, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	_, key, err := b.orgs.CreateAPIKey(ctx, "acme", "export", b.now().Add(30*24*time.Hour), "", 0, "bootstrap", "setup")
	if err != nil {
		t.Fatal(err)
	}
	b.stepUp(ann, "acme")
	expect(t, b.get(ann, Prefix+"orgs/acme/machines"), http.StatusOK, "Invoice export", "pc_"+key.ID+"_", "Retire Invoice export")
	page := Prefix + "orgs/acme/machines/export/revoke"
	expect(t, b.get(ann, page+"?key="+key.ID), http.StatusOK, "Revoke an API key", `name="key" value="`+key.ID+`"`)
	// Not confirmed: back to the confirmation, the key still live.
	seeOther(t, b.post(ann, page, url.Values{"key": {key.ID}, "reason": {"leaked"}}))
	live := func() bool {
		ms, err := b.st.Machines(ctx, "acme")
		if err != nil || len(ms) != 1 {
			t.Fatalf("machines: %+v %v", ms, err)
		}
		return ms[0].Machine.Key(key.ID).Live(time.Now())
	}
	if !live() {
		t.Fatal("an unconfirmed revocation revoked the key")
	}
	expect(t, b.get(ann, seeOther(t, b.post(ann, page, url.Values{"key": {key.ID}, "reason": {"leaked"}, "confirm": {"yes"}}))), http.StatusOK, "The key was revoked.")
	if live() {
		t.Fatal("the confirmed revocation left the key live")
	}
	b.stepUp(bob, "beta")
	if w := b.get(bob, Prefix+"orgs/beta/machines/export/revoke"); w.Code != http.StatusNotFound {
		t.Errorf("acme's machine under beta: %d", w.Code)
	}
	if w := b.post(bob, Prefix+"orgs/acme/machines/export/revoke", url.Values{"reason": {"x"}, "confirm": {"yes"}}); w.Code != http.StatusForbidden {
		t.Errorf("bob (a member, its sponsor) retiring acme's machine through the administrators' page: %d", w.Code)
	}
}

// TestOperator: a person console.operators names acts as an operator only after the step-up
// for the platform (an organisation's does not count): every organisation's pages, and
// business events, the dry run's list first, the change only once confirmed. Nobody else
// reaches the operator's pages.
func TestOperator(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	expect(t, b.get(olga, Prefix), http.StatusOK, "Operator: every organisation")
	if strings.Contains(b.get(ann, Prefix).Body.String(), "Operator:") {
		t.Error("ann is offered the operator's pages")
	}
	b.stepUp(olga, "acme") // an organisation's step-up is not the platform's
	expect(t, b.get(olga, Prefix+"operator/"), http.StatusUnauthorized, "Confirm it is you", `value="ticket-for-"`)
	expect(t, b.get(olga, Prefix+"orgs/beta/"), http.StatusUnauthorized, "Confirm it is you")
	b.stepUp(olga, "")
	expect(t, b.get(olga, Prefix+"operator/"), http.StatusOK, "<code>acme</code>", "<code>beta</code>")
	expect(t, b.get(olga, Prefix+"orgs/beta/"), http.StatusOK, "Members of beta", "1 of 1 memberships")
	b.stepUp(ann, "")
	for _, path := range []string{Prefix + "operator/", Prefix + "operator/events"} {
		if w := b.get(ann, path); w.Code != http.StatusForbidden {
			t.Errorf("ann at %s: %d", path, w.Code)
		}
	}
	if w := b.post(ann, Prefix+"operator/events", url.Values{"event": {"contract_ended"}, "org": {"beta"}, "reason": {"x"}, "confirm": {"yes"}}); w.Code != http.StatusForbidden {
		t.Errorf("ann applying an event: %d", w.Code)
	}

	// Her own request, seen and withdrawn without the platform's step-up; someone else's
	// needs it (she holds it here).
	b.mu.Lock()
	saved := b.elev[olga]
	b.elev[olga] = nil
	b.mu.Unlock()
	if _, err := b.orgs.Grant(ctx, store.Membership{Org: "acme", User: olga, Kind: store.KindEmployee, Roles: []string{"viewer"},
		ReviewBy: b.now().Add(30 * 24 * time.Hour)}, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	own, _, _ := strings.Cut(b.request(olga, "billing"), "?")
	expect(t, b.get(olga, own), http.StatusOK, "waiting for approval", "Withdraw the request")
	seeOther(t, b.post(olga, own+"/cancel", url.Values{}))
	others, _, _ := strings.Cut(b.request(bob, "billing"), "?")
	expect(t, b.get(olga, others), http.StatusUnauthorized, "Confirm it is you")
	b.mu.Lock()
	b.elev[olga] = saved
	b.mu.Unlock()
	expect(t, b.get(olga, others), http.StatusOK, "waiting for approval", "Approve")

	expect(t, b.get(olga, Prefix+"operator/events"), http.StatusOK, "Business events", "Show what it would change")
	form := url.Values{"event": {"contract_ended"}, "org": {"beta"}, "reason": {"not renewed"}}
	dry := expect(t, b.post(olga, Prefix+"operator/events", form), http.StatusOK, "Confirm the business event", "Nothing has changed yet",
		`name="confirm" value="yes"`, "Apply contract_ended")
	_ = dry
	if o, _ := b.st.Org(ctx, "beta"); o.Status != store.OrgActive {
		t.Fatalf("the dry run changed beta: %s", o.Status)
	}
	digest := regexp.MustCompile(`name="digest" value="([0-9a-f]{64})"`).FindStringSubmatch(dry)
	if digest == nil {
		t.Fatalf("the confirmation carries no digest of the dry run:\n%s", dry)
	}
	form.Set("confirm", "yes")
	// Meanwhile beta gains a member: the event would now end one more membership, which
	// olga never saw. Not applied: the new list to confirm.
	if _, err := b.orgs.Grant(ctx, store.Membership{Org: "beta", User: carl, Kind: store.KindEmployee, Roles: []string{"viewer"},
		ReviewBy: b.now().Add(30 * 24 * time.Hour)}, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	form.Set("digest", digest[1])
	again := expect(t, b.post(olga, Prefix+"operator/events", form), http.StatusConflict, "Not applied:", "carl")
	if o, _ := b.st.Org(ctx, "beta"); o.Status != store.OrgActive {
		t.Fatalf("applied although its changes changed: %s", o.Status)
	}
	form.Set("digest", regexp.MustCompile(`name="digest" value="([0-9a-f]{64})"`).FindStringSubmatch(again)[1])
	expect(t, b.post(olga, Prefix+"operator/events", form), http.StatusOK, "Business event applied", "contract_ended")
	if o, _ := b.st.Org(ctx, "beta"); o.Status != store.OrgEnded {
		t.Fatalf("beta after the event: %s", o.Status)
	}
	evs := b.events(audit.BusinessContractEnded)
	if len(evs) != 1 || evs[0].Actor != olga || !strings.Contains(evs[0].Via, "console session") {
		t.Errorf("business events: %+v", evs)
	}
	// A malformed event comes back as the form.
	w := b.post(olga, Prefix+"operator/events", url.Values{"event": {"merged_into"}, "org": {"acme"}, "reason": {"x"}})
	if w.Code < 400 || !strings.Contains(w.Body.String(), "Not done:") {
		t.Errorf("merged_into without a target: %d\n%s", w.Code, w.Body.String())
	}
}

// TestFlashIsNeverFromTheURL: what a page says happened comes from a known word, never from
// text a link put in the URL.
func TestFlashIsNeverFromTheURL(t *testing.T) {
	b := newBed(t)
	b.stepUp(ann, "acme")
	for _, path := range []string{Prefix + "orgs/acme/?done=Your+account+is+locked", Prefix + "orgs/acme/?revoked=Call++1-555",
		Prefix + "orgs/acme/requests?done=approve:Call+us", Prefix + "orgs/acme/machines?done=Call+us",
		Prefix + "orgs/acme/reviews/x?done=Call+us&refused=x:+Call+us"} {
		body := b.get(ann, path).Body.String()
		for _, bad := range []string{"locked", "1-555", "Call us", "Call"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s shows %q from its URL", path, bad)
			}
		}
	}
}
