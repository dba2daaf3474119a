package admin

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

// TestOrgPolicy: an organisation's own administrators (and operators) tighten its lifecycle
// policy through the API; a value that would not tighten is refused naming it; a delegate and
// another organisation's administrator cannot set it; what is set applies at write time.
func TestOrgPolicy(t *testing.T) {
	b := newBed(t)
	annTok, bobTok, paulTok := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(paul, "", false)
	put := func(tok string, body map[string]any) answer {
		return b.call(tok, "PUT", "/api/v1/orgs/acme/policy", body)
	}

	a := b.call(annTok, "GET", "/api/v1/orgs/acme/policy", nil)
	b.want(a, 200, "")
	platform := a.body["platform"].(map[string]any)["partner"].(map[string]any)
	if platform["approvals_required"].(float64) != 2 || len(a.body["own"].(map[string]any)) != 0 {
		t.Fatalf("initial policy %s", a.raw)
	}

	// Not tightening, or not a kind: refused, every problem named, nothing stored.
	a = put(annTok, map[string]any{"kinds": map[string]any{
		"partner": map[string]any{"approvals_required": 2, "max_duration": "9999d"},
		"wizard":  map[string]any{"max_duration": "1d"},
	}, "reason": "tighten"})
	b.want(a, 400, "invalid_input")
	for _, want := range []string{"kinds.partner.approvals_required: 2 does not tighten", "kinds.wizard: not a membership kind"} {
		if !strings.Contains(a.raw, want) {
			t.Errorf("refusal lacks %q: %s", want, a.raw)
		}
	}
	if pm, ok := platform["max_duration"].(string); ok && pm != "" && !strings.Contains(a.raw, "kinds.partner.max_duration: 9999d does not tighten") {
		t.Errorf("a longer max_duration than the platform's %s was not named: %s", pm, a.raw)
	}
	b.want(put(annTok, map[string]any{"kinds": map[string]any{"partner": map[string]any{"max_duration": "30d"}}}), 400, "invalid_input") // no reason

	// Who may: not bob (a viewer in acme), not paul (another organisation's administrator),
	// nor paul through a delegation; ann, bob for his own beta, and operators may.
	b.want(put(paulTok, map[string]any{"kinds": map[string]any{"partner": map[string]any{"approvals_required": 5}}, "reason": "x"}), 403, "")
	b.want(put(bobTok, map[string]any{"kinds": map[string]any{"partner": map[string]any{"max_duration": "1d"}}, "reason": "x"}), 403, "not_permitted")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/delegations", map[string]any{"to": "partnerco", "expires_at": time.Now().Add(30 * 24 * time.Hour), "reason": "MSA"}), 201, "")
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/policy", nil), 200, "")
	b.want(put(paulTok, map[string]any{"kinds": map[string]any{"partner": map[string]any{"approvals_required": 5}}, "reason": "lock them out"}), 403, "not_permitted")
	b.want(b.call(b.personal(bob, "", false), "PUT", "/api/v1/orgs/beta/policy", map[string]any{"kinds": map[string]any{}, "reason": "own org"}), 200, "")

	a = put(annTok, map[string]any{"kinds": map[string]any{
		"partner":  map[string]any{"max_duration": "30d", "approvals_required": 3, "requires_ticket": true},
		"employee": map[string]any{"review_every": "30d"},
	}, "reason": "SEC-7: shorter partner access"})
	b.want(a, 200, "")
	eff := a.body["effective"].(map[string]any)["partner"].(map[string]any)
	if eff["max_duration"] != "30d" || eff["approvals_required"].(float64) != 3 || eff["requires_ticket"] != true {
		t.Errorf("effective partner rule %v", eff)
	}
	evs := b.events(audit.OrgPolicyChanged)
	if len(evs) != 2 || evs[1].Actor != ann || evs[1].Org != "acme" || evs[1].Reason != "SEC-7: shorter partner access" || len(evs[1].After) == 0 {
		t.Errorf("audit %+v", evs)
	}

	// It applies: a partner membership longer than acme's 30 days is refused at write time,
	// naming the rule; the operator too is bound by it.
	g := b.call(b.ops, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "roles": []string{"viewer"},
		"expires_at": time.Now().Add(45 * 24 * time.Hour), "reason": "TICKET-1"})
	b.want(g, 422, "policy_violation")

	// Fewer approver rules and roles: only some of the platform's, never another, never all.
	patTok := b.personal(pat, "", false)
	a = put(annTok, map[string]any{"kinds": map[string]any{
		"partner":  map[string]any{"approvers": []string{"org_admin", "operator"}},
		"employee": map[string]any{"approvers": []string{"org_admin", "operator"}, "allowed_roles": []string{"Bad Role"}},
		"support":  map[string]any{"approvers": []string{"org_admin"}},
	}, "reason": "try"})
	b.want(a, 400, "invalid_input")
	for _, want := range []string{`kinds.partner.approvers: "operator" is not one of the platform's`,
		"kinds.employee.approvers: every one of the platform's rules", `kinds.employee.allowed_roles: "Bad Role" is not a role name`,
		"kinds.support.approvers: every one of the platform's rules"} {
		// (employee allowed_roles without the administrator role is refused below.)
		if msg, _ := a.body["message"].(string); !strings.Contains(msg, want) {
			t.Errorf("refusal lacks %q: %s", want, a.raw)
		}
	}
	// Leaving out the administrator role would end ann's own administration at once.
	a = put(annTok, map[string]any{"kinds": map[string]any{"employee": map[string]any{"allowed_roles": []string{"viewer"}}}, "reason": "lock"})
	b.want(a, 400, "invalid_input")
	if msg, _ := a.body["message"].(string); !strings.Contains(msg, `must keep the administrator role "org-admin"`) {
		t.Errorf("refusal %s", a.raw)
	}
	a = put(annTok, map[string]any{"kinds": map[string]any{
		"partner": map[string]any{"approvers": []string{"org_admin_of:partnerco"}, "allowed_roles": []string{"viewer", "billing", "viewer", "org-admin"}},
	}, "reason": "SEC-9: partners approved by their own company"})
	b.want(a, 200, "")
	eff = a.body["effective"].(map[string]any)["partner"].(map[string]any)
	if fmt.Sprint(eff["approvers"]) != "[org_admin_of:partnerco]" || fmt.Sprint(eff["allowed_roles"]) != "[billing org-admin viewer]" {
		t.Errorf("effective partner rule %v", eff)
	}
	// A role outside the list is refused at write time, naming the rule.
	g = b.call(b.ops, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "partner", "roles": []string{"admin-console"},
		"expires_at": time.Now().Add(20 * 24 * time.Hour), "reason": "TICKET-2"})
	b.want(g, 422, "policy_violation")
	if !strings.Contains(g.raw, "allowed_roles") {
		t.Errorf("the refusal does not name allowed_roles: %s", g.raw)
	}
	// ann, acme's administrator, approved partner requests through the platform's org_admin
	// rule, which acme has dropped for its partners.
	r := b.call(patTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "billing", "duration": "7d", "reason": "invoicing"})
	b.want(r, 201, "")
	id := r.body["id"].(string)
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+id+"/approve", map[string]string{"reason": "ok"}), 403, "not_an_approver")
	if _, m, _ := b.st.Lookup(context.Background(), "acme", pat); len(m.RoleGrants) != 0 {
		t.Errorf("a grant was written: %+v", m.RoleGrants)
	}
	// A role outside the list is not even asked for.
	b.want(b.call(patTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "auditor", "duration": "7d", "reason": "x"}), 422, "policy_violation")

	// Cleared: the platform's rules again.
	a = put(annTok, map[string]any{"kinds": map[string]any{}, "reason": "back to the platform's"})
	b.want(a, 200, "")
	if len(a.body["own"].(map[string]any)) != 0 || a.body["effective"].(map[string]any)["partner"].(map[string]any)["approvals_required"].(float64) != 2 {
		t.Errorf("cleared policy %s", a.raw)
	}
}
