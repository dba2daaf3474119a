package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// bed is the API over a real Redis (the shared test server, a database and prefix of its
// own), served over TLS, with a movable clock.
type bed struct {
	t     *testing.T
	st    *store.Store
	orgs  *store.Orgs
	aud   *store.Audit
	api   *Server
	srv   *httptest.Server
	mu    sync.Mutex
	clock time.Time
	ops   string // an operator token
}

const (
	ann  = "https://idp.acme|ann"    // acme's administrator
	bob  = "https://idp.acme|bob"    // an acme employee
	pat  = "https://idp.partner|pat" // a partner's employee, member of acme
	paul = "https://idp.partner|paul"
	sue  = "https://idp.portal|sue" // the portal owner's support engineer
)

// policyYAML: partners need two approvals (acme's admins or partnerco's); "admin" is
// privileged for 8h.
const policyYAML = `
tls: {mode: self_signed}
redis: {address: "127.0.0.1:1"}
lifecycle:
  kinds:
    partner: {approvers: [org_admin, "org_admin_of:partnerco"], approvals_required: 2}
  privileged_roles:
    admin: {max_elevation: 8h}
routes:
  - {name: app, upstream: "http://127.0.0.1:9"}
`

func newBed(t *testing.T) *bed {
	t.Helper()
	srv := redistest.Shared(t)
	st, err := store.New(config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg, _, err := config.Parse("admin.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	b := &bed{t: t, st: st, aud: store.NewAudit(st, 0), clock: time.Now()}
	b.orgs = store.NewOrgs(st, b.aud)
	b.api, err = New(Options{Store: st, Orgs: b.orgs, Audit: b.aud, Lifecycle: authz.CompilePolicy(&cfg.Lifecycle), Sessions: st, Now: b.now})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = httptest.NewTLSServer(b.api)
	t.Cleanup(b.srv.Close)
	ctx := context.Background()
	b.ops, _, err = b.orgs.CreateToken(ctx, store.Token{Name: "test", Owner: "ops-olga", Operator: true, Expires: time.Now().Add(30 * 24 * time.Hour)}, "bootstrap", "test operator")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme", "partnerco", "beta"} {
		if _, err := b.orgs.CreateOrg(ctx, store.Org{ID: id, Name: id}, "bootstrap", "setup"); err != nil {
			t.Fatal(err)
		}
	}
	year := time.Now().Add(300 * 24 * time.Hour)
	for _, m := range []store.Membership{
		{Org: "acme", User: ann, Kind: store.KindEmployee, Roles: []string{"org-admin"}, ReviewBy: year},
		{Org: "acme", User: bob, Kind: store.KindEmployee, Roles: []string{"viewer"}, ReviewBy: year},
		{Org: "acme", User: pat, Kind: store.KindPartner, Roles: []string{"viewer"}, ExpiresAt: time.Now().Add(60 * 24 * time.Hour)},
		{Org: "partnerco", User: paul, Kind: store.KindEmployee, Roles: []string{"org-admin"}, ReviewBy: year},
		{Org: "partnerco", User: pat, Kind: store.KindEmployee, Roles: []string{"viewer"}, ReviewBy: year},
		{Org: "beta", User: bob, Kind: store.KindEmployee, Roles: []string{"org-admin"}, ReviewBy: year},
	} {
		if _, err := b.orgs.Grant(ctx, m, "bootstrap", "setup"); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (b *bed) now() time.Time { b.mu.Lock(); defer b.mu.Unlock(); return b.clock }
func (b *bed) advance(d time.Duration) {
	b.mu.Lock()
	b.clock = b.clock.Add(d)
	b.mu.Unlock()
}

// personal makes a personal token for user (restricted to org when given).
func (b *bed) personal(user, org string, readOnly bool) string {
	b.t.Helper()
	tok, _, err := b.orgs.CreateToken(context.Background(), store.Token{Name: "p", Owner: user, Org: org, ReadOnly: readOnly, Expires: time.Now().Add(30 * 24 * time.Hour)}, "bootstrap", "test token")
	if err != nil {
		b.t.Fatal(err)
	}
	return tok
}

type answer struct {
	status int
	body   map[string]any
	raw    string
}

func (a answer) code() string { s, _ := a.body["error"].(string); return s }

func (b *bed) call(token, method, path string, body any) answer {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, b.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func (b *bed) want(a answer, status int, code string) {
	b.t.Helper()
	if a.status != status || code != "" && a.code() != code {
		b.t.Fatalf("got %d %s, want %d %s", a.status, a.raw, status, code)
	}
}

// events returns the audit events since the start, of the given type.
func (b *bed) events(typ audit.Type) []audit.Event {
	evs, _, err := b.aud.Tail(context.Background(), "0", 10000, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []audit.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// TestAuthentication: no credential, a malformed or unknown one, an expired or revoked one are
// refused 401; nothing leaks about why beyond the code.
func TestAuthentication(t *testing.T) {
	b := newBed(t)
	b.want(b.call("", "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	b.want(b.call("pcadm_nope", "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	other := "a"
	if strings.HasSuffix(b.ops, "a") {
		other = "b"
	}
	b.want(b.call(b.ops[:len(b.ops)-1]+other, "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	b.want(b.call("eyJhbGciOiJub25lIn0.e30.", "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	// Two Authorization headers: refused rather than picked from.
	req, _ := http.NewRequest("GET", b.srv.URL+"/api/v1/whoami", nil)
	req.Header.Add("Authorization", "Bearer "+b.ops)
	req.Header.Add("Authorization", "Bearer x")
	if resp, err := b.srv.Client().Do(req); err != nil || resp.StatusCode != 401 {
		t.Errorf("two Authorization headers: %v %v", resp, err)
	}

	a := b.call(b.ops, "GET", "/api/v1/whoami", nil)
	b.want(a, 200, "")
	if a.body["name"] != "ops-olga" || a.body["operator"] != true || !strings.HasPrefix(a.body["via"].(string), "token ") {
		t.Errorf("whoami %s", a.raw)
	}
	// A revoked token stops at once.
	tok := b.personal(bob, "", false)
	b.want(b.call(tok, "GET", "/api/v1/whoami", nil), 200, "")
	list := b.call(b.ops, "GET", "/api/v1/tokens", nil)
	var id string
	for _, it := range list.body["items"].([]any) {
		m := it.(map[string]any)
		if m["owner"] == bob {
			id = m["id"].(string)
			// Its use a moment ago is recorded: a token nobody uses any more shows it.
			if used, _ := time.Parse(time.RFC3339, fmt.Sprint(m["last_used"])); used.IsZero() || b.now().Sub(used) > time.Minute {
				t.Errorf("bob's token's last use: %v", m["last_used"])
			}
		}
		if _, ok := m["hash"]; ok {
			t.Error("a token listing shows hashes")
		}
	}
	if _, ok := b.call(b.ops, "GET", "/api/v1/tokens", nil).body["items"].([]any)[0].(map[string]any)["last_used"]; !ok {
		t.Error("the operator token in use has no last use")
	}
	b.want(b.call(b.ops, "POST", "/api/v1/tokens/"+id+"/revoke", map[string]string{"reason": "left"}), 200, "")
	b.want(b.call(tok, "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	// An expired token too.
	b.advance(31 * 24 * time.Hour)
	b.want(b.call(b.ops, "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
}

// TestPermissions: operator-only endpoints, another organisation, a read-only token, an
// administrator of another org, someone else's request.
func TestPermissions(t *testing.T) {
	b := newBed(t)
	annTok, bobTok := b.personal(ann, "", false), b.personal(bob, "", false)
	b.want(b.call(annTok, "GET", "/api/v1/orgs", nil), 403, "not_permitted")
	b.want(b.call(annTok, "POST", "/api/v1/tokens", map[string]any{"name": "x", "operator": true, "lifetime": "1d", "reason": "x"}), 403, "not_permitted")
	b.want(b.call(annTok, "GET", "/api/v1/orgs/acme/members", nil), 200, "")
	// bob administers beta, not acme.
	b.want(b.call(bobTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")
	b.want(b.call(bobTok, "GET", "/api/v1/orgs/beta/members", nil), 200, "")
	// A token restricted to acme cannot reach beta, even for its admin.
	bobAcme := b.personal(bob, "acme", false)
	b.want(b.call(bobAcme, "GET", "/api/v1/orgs/beta/members", nil), 403, "not_permitted")
	// A read-only token cannot change anything.
	annRO := b.personal(ann, "", true)
	b.want(b.call(annRO, "GET", "/api/v1/orgs/acme/members", nil), 200, "")
	b.want(b.call(annRO, "POST", "/api/v1/orgs/acme/members/revoke", map[string]string{"user": bob, "reason": "x"}), 403, "not_permitted")
	// An admin cannot grant support access directly: that is a request.
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": sue, "kind": "support", "expires_at": time.Now().Add(24 * time.Hour), "ticket": "T-1", "reason": "x"}), 403, "not_permitted")
	// Someone else's request is not found; one's own is.
	r := b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "billing", "duration": "8h", "reason": "month end"})
	b.want(r, 201, "")
	id := r.body["id"].(string)
	patTok := b.personal(pat, "", false)
	b.want(b.call(patTok, "GET", "/api/v1/orgs/acme/requests/"+id, nil), 404, "not_found")
	b.want(b.call(bobTok, "GET", "/api/v1/orgs/acme/requests/"+id, nil), 200, "")
	b.want(b.call(annTok, "GET", "/api/v1/orgs/acme/requests/"+id, nil), 200, "")
	// The same id through another organisation is not found.
	b.want(b.call(b.ops, "GET", "/api/v1/orgs/beta/requests/"+id, nil), 404, "not_found")
	// Asking on someone else's behalf is an administrator's act.
	b.want(b.call(patTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"for": bob, "role": "billing", "duration": "8h", "reason": "x"}), 403, "not_permitted")
	// Withdrawing is for the requester, the person it is for, or an operator.
	b.want(b.call(patTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/cancel", map[string]string{"reason": "x"}), 404, "not_found")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/cancel", map[string]string{"reason": "x"}), 403, "not_permitted")
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/cancel", map[string]string{"reason": "changed my mind"}), 200, "")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "x"}), 409, "request_not_pending")
}

// TestGrantsWithinPolicy: a write beyond the lifecycle policy is refused, naming the rule; a
// reason is required; the audit event names the individual and the credential.
func TestGrantsWithinPolicy(t *testing.T) {
	b := newBed(t)
	annTok := b.personal(ann, "", false)
	long := time.Now().Add(400 * 24 * time.Hour)
	a := b.call(b.ops, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "roles": []string{"viewer"}, "expires_at": long, "reason": "onboarding"})
	b.want(a, 422, "policy_violation")
	if !strings.Contains(a.body["message"].(string), "lifecycle.kinds.partner.max_duration") {
		t.Errorf("the refusal does not name the rule: %s", a.raw)
	}
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": sue, "kind": "support", "expires_at": time.Now().Add(400 * 24 * time.Hour), "reason": "x"}), 422, "policy_violation")
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "roles": []string{"admin"}, "expires_at": time.Now().Add(24 * time.Hour), "reason": "x"}), 422, "policy_violation")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "expires_at": time.Now().Add(24 * time.Hour)}), 400, "invalid_input")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "colour": "red", "reason": "x"}), 400, "invalid_input")
	// A body over the API's limit is too large, not malformed: declared, or found so.
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "reason": strings.Repeat("x", 70<<10)}), 413, "body_too_large")
	// Partners need two approvals here: one administrator cannot write one alone, even
	// within every other limit (a request, approved twice, does it).
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "roles": []string{"viewer"}, "expires_at": time.Now().Add(30 * 24 * time.Hour), "reason": "project X"}), 403, "not_permitted")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": pat, "kind": "partner", "roles": []string{"viewer", "billing"}, "expires_at": time.Now().Add(30 * 24 * time.Hour), "reason": "more"}), 403, "not_permitted")

	ok := b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": "https://idp.acme|dan", "kind": "employee", "roles": []string{"viewer"}, "review_by": time.Now().Add(30 * 24 * time.Hour), "reason": "project X"})
	b.want(ok, 200, "")
	if ok.body["approved_by"] != ann {
		t.Errorf("grant %s: no approver", ok.raw)
	}
	ok = b.call(b.ops, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "roles": []string{"viewer"}, "expires_at": time.Now().Add(30 * 24 * time.Hour), "reason": "project X"})
	b.want(ok, 200, "")
	// Nobody grants themselves anything, not even a role that needs no request.
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": ann, "kind": "employee", "roles": []string{"org-admin", "billing"}, "reason": "me"}), 403, "not_permitted")
	// An employee membership without an end gets its review date from the policy.
	emp := b.call(annTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": "https://idp.acme|cleo", "kind": "employee", "roles": []string{"viewer"}, "reason": "hired"})
	b.want(emp, 200, "")
	if rb, _ := time.Parse(time.RFC3339, emp.body["review_by"].(string)); time.Until(rb) < 364*24*time.Hour {
		t.Errorf("employee review date %s", emp.raw)
	}
	var last audit.Event
	for _, e := range b.events(audit.MembershipGranted) {
		if e.User == paul && e.Org == "acme" {
			last = e
		}
	}
	if last.Actor != "ops-olga" || !strings.HasPrefix(last.Via, "token ") || last.Reason != "project X" {
		t.Errorf("event %+v", last)
	}
}

// TestRequestsAndApprovals is the just-in-time flow and its attacks: self-approval, an
// approver who meets no rule, the same approver twice, a two-person rule, a grant beyond the
// policy, a request that lapsed; and the grant it writes: time-boxed, carrying the request id.
func TestRequestsAndApprovals(t *testing.T) {
	b := newBed(t)
	annTok, bobTok, patTok, paulTok := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(pat, "", false), b.personal(paul, "", false)

	// An employee asks for a privileged role: within max_elevation only.
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "admin", "duration": "9h", "reason": "incident"}), 422, "policy_violation")
	r := b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "admin", "duration": "4h", "reason": "incident INC-7"})
	b.want(r, 201, "")
	id := r.body["id"].(string)
	// bob cannot approve his own request; pat is no approver; ann (acme's admin) is.
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "x"}), 403, "self_approval")
	b.want(b.call(patTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "x"}), 404, "not_found")
	a := b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "on call"})
	b.want(a, 200, "")
	if a.body["state"] != "approved" || a.body["granted_until"] == nil {
		t.Fatalf("approved %s", a.raw)
	}
	_, m, _ := b.st.Lookup(context.Background(), "acme", bob)
	if len(m.RoleGrants) != 1 || m.RoleGrants[0].Role != "admin" || m.RoleGrants[0].RequestID != id || m.RoleGrants[0].ApprovedBy[0] != ann ||
		time.Until(m.RoleGrants[0].ExpiresAt) > 4*time.Hour+time.Minute || slicesContain(m.Roles, "admin") {
		t.Errorf("grant %+v", m)
	}
	grants := b.events(audit.RequestGranted)
	if len(grants) != 1 || grants[0].Actor != ann || grants[0].Detail["request"] != id {
		t.Errorf("request.granted events %+v", grants)
	}

	// A partner needs two approvals from distinct approvers: acme's admin and partnerco's.
	r = b.call(patTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "billing", "duration": "7d", "reason": "invoicing"})
	b.want(r, 201, "")
	id = r.body["id"].(string)
	a = b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "ok"})
	b.want(a, 200, "")
	if a.body["state"] != "pending" {
		t.Fatalf("one of two approvals completed the request: %s", a.raw)
	}
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "again"}), 409, "approval_duplicate")
	// bob administers beta: not an approver of acme's partner requests (and cannot see it).
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "x"}), 404, "not_found")
	_, m, _ = b.st.Lookup(context.Background(), "acme", pat)
	if len(m.RoleGrants) != 0 {
		t.Fatal("a grant was written before the second approval")
	}
	// paul, partnerco's admin, sees and decides it through the org_admin_of:partnerco rule,
	// though he is nobody in acme; his token restricted to partnerco does not reach acme.
	b.want(b.call(b.personal(paul, "partnerco", false), "GET", "/api/v1/orgs/acme/requests/"+id, nil), 403, "not_permitted")
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/requests/"+id, nil), 200, "")
	a = b.call(paulTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "pat invoices for us"})
	b.want(a, 200, "")
	if a.body["state"] != "approved" {
		t.Fatalf("after the second approval: %s", a.raw)
	}
	_, m, _ = b.st.Lookup(context.Background(), "acme", pat)
	if len(m.RoleGrants) != 1 || !slices.Equal(m.RoleGrants[0].ApprovedBy, []string{ann, paul}) {
		t.Errorf("the partner's grant %+v", m.RoleGrants)
	}

	// A request that waited longer than request_ttl lapses, and says so.
	r = b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"purpose": "audit", "duration": "1d", "reason": "audit 2026"})
	b.want(r, 201, "")
	id = r.body["id"].(string)
	b.advance(73 * time.Hour)
	b.want(b.call(annTok, "GET", "/api/v1/orgs/acme/requests/"+id, nil), 200, "")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "late"}), 409, "request_lapsed")
	if got, _ := b.st.Request(context.Background(), "acme", id); got.State != store.RequestLapsed {
		t.Errorf("lapsed request stored as %s", got.State)
	}
	if len(b.events(audit.RequestLapsed)) != 1 {
		t.Error("no request.lapsed event")
	}
}

// TestSupportAccess: support access to a customer org is a request for a support membership,
// with a ticket, approved by the customer's admin, never by the support engineer or an
// operator alone (the default policy names org_admin only).
func TestSupportAccess(t *testing.T) {
	b := newBed(t)
	annTok, sueTok := b.personal(ann, "", false), b.personal(sue, "", false)
	b.want(b.call(sueTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"kind": "support", "role": "viewer", "duration": "2d", "reason": "case 42"}), 422, "policy_violation")
	r := b.call(sueTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"kind": "support", "role": "viewer", "duration": "2d", "reason": "case 42", "ticket": "SUP-42"})
	b.want(r, 201, "")
	id := r.body["id"].(string)
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "x"}), 403, "not_an_approver")
	b.want(b.call(sueTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "x"}), 403, "self_approval")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "case 42 confirmed"}), 200, "")
	_, m, _ := b.st.Lookup(context.Background(), "acme", sue)
	if m == nil || m.Kind != store.KindSupport || m.ExpiresAt.IsZero() || time.Until(m.ExpiresAt) > 48*time.Hour+time.Minute || !slicesContain(m.Roles, "viewer") {
		t.Errorf("support membership %+v", m)
	}
	mine := b.call(sueTok, "GET", "/api/v1/me/requests", nil)
	if items := mine.body["items"].([]any); len(items) != 1 {
		t.Errorf("my requests %s", mine.raw)
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
