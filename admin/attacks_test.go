package admin

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// Attacks found in review: each grants something through a path the policy did not mean.

// setPolicy replaces the bed's lifecycle policy, as a reload would.
func (b *bed) setPolicy(yaml string) {
	b.t.Helper()
	cfg, _, err := config.Parse("p.yaml", []byte("tls: {mode: self_signed}\nredis: {address: \"127.0.0.1:1\"}\n"+yaml+
		"routes:\n  - {name: app, upstream: \"http://127.0.0.1:9\"}\n"))
	if err != nil {
		b.t.Fatal(err)
	}
	b.api.SetLifecycle(authz.CompilePolicy(&cfg.Lifecycle))
}

// TestTokensAreOwn: a token made through the API acts as its maker and no one else, no
// broader and no longer than the token that made it; so one operator is one approver however
// many tokens they make.
func TestTokensAreOwn(t *testing.T) {
	b := newBed(t)
	annTok := b.personal(ann, "", false)
	mk := func(tok string, body map[string]any) answer {
		body["name"], body["reason"] = "x", "x"
		if body["lifetime"] == nil {
			body["lifetime"] = "1d"
		}
		return b.call(tok, "POST", "/api/v1/tokens", body)
	}
	// Nobody names another owner: the field does not exist.
	b.want(mk(b.ops, map[string]any{"operator": true, "owner": "ops-olga-2"}), 400, "invalid_input")
	// An operator makes operator tokens, for themselves; never a person's.
	a := b.want2(mk(b.ops, map[string]any{"operator": true}), 201)
	if rec := a.body["record"].(map[string]any); rec["owner"] != "ops-olga" || rec["operator"] != true {
		t.Errorf("operator token %s", a.raw)
	}
	olga2 := a.body["token"].(string)
	b.want(mk(b.ops, map[string]any{}), 403, "not_permitted")
	// A person makes their own, not an operator's; restricted stays restricted; no longer-lived.
	b.want(mk(annTok, map[string]any{"operator": true}), 403, "not_permitted")
	a = b.want2(mk(annTok, map[string]any{"org": "acme"}), 201)
	annAcme := a.body["token"].(string)
	if rec := a.body["record"].(map[string]any); rec["owner"] != ann || rec["org"] != "acme" {
		t.Errorf("personal token %s", a.raw)
	}
	b.want(mk(annAcme, map[string]any{}), 403, "not_permitted")
	b.want(mk(annAcme, map[string]any{"org": "beta"}), 403, "not_permitted")
	b.want(mk(annTok, map[string]any{"lifetime": "60d"}), 400, "invalid_input")
	// One's own tokens only, in the list and for revocation.
	bobTok := b.personal(bob, "", false)
	list := b.want2(b.call(annTok, "GET", "/api/v1/tokens", nil), 200)
	var bobID string
	for _, it := range list.body["items"].([]any) {
		if owner := it.(map[string]any)["owner"]; owner != ann {
			t.Errorf("ann's token list shows a token of %v", owner)
		}
	}
	for _, it := range b.want2(b.call(b.ops, "GET", "/api/v1/tokens", nil), 200).body["items"].([]any) {
		if it.(map[string]any)["owner"] == bob {
			bobID = it.(map[string]any)["id"].(string)
		}
	}
	b.want(b.call(annTok, "POST", "/api/v1/tokens/"+bobID+"/revoke", map[string]string{"reason": "x"}), 404, "not_found")
	b.want(b.call(bobTok, "GET", "/api/v1/whoami", nil), 200, "")

	// Two tokens of one operator are one approver.
	b.setPolicy("lifecycle:\n  kinds:\n    employee: {approvers: [operator], approvals_required: 2}\n")
	r := b.want2(b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "billing", "duration": "8h", "reason": "close"}), 201)
	path := "/api/v1/orgs/acme/requests/" + r.body["id"].(string)
	b.want(b.call(b.ops, "POST", path+"/approve", map[string]string{"reason": "ok"}), 200, "")
	b.want(b.call(olga2, "POST", path+"/approve", map[string]string{"reason": "ok again"}), 409, "approval_duplicate")
}

// want2 is want for a success, returning the answer.
func (b *bed) want2(a answer, status int) answer {
	b.t.Helper()
	b.want(a, status, "")
	return a
}

// TestApprovalUnderCurrentPolicy: an approval applies the policy as it is when it is given,
// not as it was when the request was made; and a request for a membership cannot overwrite
// one that appeared meanwhile.
func TestApprovalUnderCurrentPolicy(t *testing.T) {
	b := newBed(t)
	annTok, bobTok, sueTok := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(sue, "", false)
	// billing is not privileged yet: 30 days is within the policy.
	r := b.want2(b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "billing", "duration": "30d", "reason": "quarter"}), 201)
	b.setPolicy("lifecycle:\n  privileged_roles:\n    billing: {max_elevation: 1h}\n")
	a := b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+r.body["id"].(string)+"/approve", map[string]string{"reason": "ok"})
	b.want(a, 422, "policy_violation")
	if !strings.Contains(a.raw, "max_elevation") {
		t.Errorf("the refusal does not name the rule: %s", a.raw)
	}
	if _, m, _ := b.st.Lookup(context.Background(), "acme", bob); len(m.RoleGrants) != 0 {
		t.Errorf("a grant was written: %+v", m.RoleGrants)
	}

	// sue asks for support access; meanwhile she gets (and has suspended) a membership: the
	// approval must not replace it, suspension included.
	r = b.want2(b.call(sueTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"kind": "support", "role": "viewer", "duration": "2d",
		"reason": "case 7", "ticket": "SUP-7"}), 201)
	ctx := context.Background()
	if _, err := b.orgs.Grant(ctx, store.Membership{Org: "acme", User: sue, Kind: store.KindSupport, Roles: []string{"viewer"},
		ExpiresAt: time.Now().Add(24 * time.Hour)}, "ops", "case 6"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.orgs.ChangeMembership(ctx, "acme", sue, func(m *store.Membership) error { m.Status = store.MembershipSuspended; return nil },
		"ops", "suspended for review"); err != nil {
		t.Fatal(err)
	}
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+r.body["id"].(string)+"/approve", map[string]string{"reason": "ok"}), 422, "policy_violation")
	if _, m, _ := b.st.Lookup(context.Background(), "acme", sue); m.Status != store.MembershipSuspended {
		t.Errorf("the suspension was lifted: %+v", m)
	}
}

// TestBodyIsOneJSONValue: trailing data after the body's value is refused, not ignored.
func TestBodyIsOneJSONValue(t *testing.T) {
	b := newBed(t)
	for _, body := range []string{`{"id":"x1","name":"X","reason":"r"}}`, `{"id":"x1","name":"X","reason":"r"}]`, `{"id":"x1","name":"X","reason":"r"} {}`} {
		req, _ := http.NewRequest("POST", b.srv.URL+"/api/v1/orgs", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+b.ops)
		req.Header.Set("Content-Type", "application/json")
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d", body, resp.StatusCode)
		}
	}
	if o, _ := b.st.Org(context.Background(), "x1"); o != nil {
		t.Error("an organisation was created from a malformed body")
	}
}

// TestInvitationsAPI: an invitation is a membership waiting for its person, so it is written
// under the rules of a grant; employees are invited at the organisation's verified domains
// only; invitations are listed to the organisation's administrators and can be withdrawn.
func TestInvitationsAPI(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	if _, err := b.orgs.AddDomain(ctx, "acme", "acme.example", "ops", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, "ops", "x"); err != nil {
		t.Fatal(err)
	}
	annTok, bobTok, annRO := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(ann, "", true)
	inv := func(tok, email, kind string, extra map[string]any) answer {
		body := map[string]any{"email": email, "kind": kind, "roles": []string{"viewer"}, "reason": "onboarding"}
		for k, v := range extra {
			body[k] = v
		}
		return b.call(tok, "POST", "/api/v1/orgs/acme/invitations", body)
	}
	b.want2(inv(annTok, "carol@acme.example", "employee", nil), 201)
	a := inv(annTok, "eve@evil.example", "employee", nil)
	b.want(a, 400, "invalid_input")
	if !strings.Contains(a.raw, "verified domains") {
		t.Errorf("the refusal does not say why: %s", a.raw)
	}
	// Partners need two approvals here: not an administrator's invitation alone; the
	// operator's, within the policy.
	b.want(inv(annTok, "pat@partner.example", "partner", map[string]any{"expires_at": time.Now().Add(30 * 24 * time.Hour)}), 403, "not_permitted")
	b.want(inv(b.ops, "pat@partner.example", "partner", map[string]any{"expires_at": time.Now().Add(400 * 24 * time.Hour)}), 422, "policy_violation")
	b.want2(inv(b.ops, "pat@partner.example", "partner", map[string]any{"expires_at": time.Now().Add(30 * 24 * time.Hour)}), 201)
	b.want(inv(annRO, "dan@acme.example", "employee", nil), 403, "not_permitted")
	b.want(inv(bobTok, "dan@acme.example", "employee", nil), 403, "not_permitted")
	b.want(inv(annTok, "dan@acme.example", "employee", map[string]any{"user": bob}), 400, "invalid_input")

	b.want(b.call(bobTok, "GET", "/api/v1/orgs/acme/invitations", nil), 403, "not_permitted")
	list := b.want2(b.call(annTok, "GET", "/api/v1/orgs/acme/invitations", nil), 200)
	if items := list.body["items"].([]any); len(items) != 2 || items[0].(map[string]any)["email"] != "carol@acme.example" {
		t.Errorf("invitations %s", list.raw)
	}
	b.want2(b.call(annTok, "POST", "/api/v1/orgs/acme/invitations/withdraw", map[string]string{"email": "pat@partner.example", "reason": "project cancelled"}), 200)
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/invitations/withdraw", map[string]string{"email": "pat@partner.example", "reason": "again"}), 404, "not_found")
	if items := b.want2(b.call(annTok, "GET", "/api/v1/orgs/acme/invitations", nil), 200).body["items"].([]any); len(items) != 1 {
		t.Errorf("after the withdrawal: %v", items)
	}
}
