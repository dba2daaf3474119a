package authz

import (
	"slices"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// twoPersonPolicy: partners need two approvals by acme's admins or the partner org's; support
// needs a ticket and acme's admin; "admin" is privileged for 8h.
func twoPersonPolicy(t *testing.T) *Policy {
	t.Helper()
	return policyOf(t, `
  kinds:
    partner: {approvers: [org_admin, "org_admin_of:partnerco"], approvals_required: 2, max_duration: 90d}
  privileged_roles:
    admin: {max_elevation: 8h}
`)
}

// TestApprove is the approval rules' attack table: approving one's own request, a request
// for oneself, twice, without meeting a rule, after the request lapsed or was decided, and as
// an administrator of another organisation.
func TestApprove(t *testing.T) {
	p := twoPersonPolicy(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	org := &store.Org{ID: "acme", Status: store.OrgActive}
	pending := func() *store.Request {
		return &store.Request{ID: "req_x", Org: "acme", For: "iss|pat", Requester: "iss|pat", Role: "billing", Duration: time.Hour,
			State: store.RequestPending, Created: now.Add(-time.Minute), Lapses: now.Add(time.Hour)}
	}
	acmeAdmin := func(o string) bool { return o == "acme" }
	partnerAdmin := func(o string) bool { return o == "partnerco" }
	betaAdmin := func(o string) bool { return o == "beta" }
	for _, c := range []struct {
		name     string
		r        func(*store.Request)
		kind     string
		a        Actor
		adminOf  func(string) bool
		want     reason.Code
		rule     string
		complete bool
	}{
		{"acme admin, first of two", nil, store.KindPartner, Actor{Name: "iss|ann"}, acmeAdmin, "", "org_admin", false},
		{"partner admin, second of two", func(r *store.Request) {
			r.Approvals = []store.Approval{{By: "iss|ann", Rule: "org_admin", At: now}}
		}, store.KindPartner, Actor{Name: "iss|paul"}, partnerAdmin, "", "org_admin_of:partnerco", true},
		{"the same approver twice", func(r *store.Request) {
			r.Approvals = []store.Approval{{By: "iss|ann", Rule: "org_admin", At: now}}
		}, store.KindPartner, Actor{Name: "iss|ann"}, acmeAdmin, reason.ApprovalDuplicate, "", false},
		{"the requester, though an admin", nil, store.KindPartner, Actor{Name: "iss|pat"}, acmeAdmin, reason.SelfApproval, "", false},
		{"an admin asking for someone else cannot approve it", func(r *store.Request) { r.Requester = "iss|ann" },
			store.KindPartner, Actor{Name: "iss|ann"}, acmeAdmin, reason.SelfApproval, "", false},
		{"the person it is for, asked by someone else", func(r *store.Request) { r.Requester = "iss|ann" },
			store.KindPartner, Actor{Name: "iss|pat"}, acmeAdmin, reason.SelfApproval, "", false},
		{"an admin of another org", nil, store.KindPartner, Actor{Name: "iss|bert"}, betaAdmin, reason.NotAnApprover, "", false},
		{"a member who is not an admin", nil, store.KindPartner, Actor{Name: "iss|bob"}, func(string) bool { return false }, reason.NotAnApprover, "", false},
		{"an operator where the rules name none", nil, store.KindPartner, Actor{Operator: true, Name: "ops-olga"}, acmeAdmin, reason.NotAnApprover, "", false},
		{"an operator for an employee", nil, store.KindEmployee, Actor{Operator: true, Name: "ops-olga"}, nil, "", "operator", true},
		{"support needs acme's admin, not an operator", nil, store.KindSupport, Actor{Operator: true, Name: "ops-olga"}, nil, reason.NotAnApprover, "", false},
		{"support: acme's admin", nil, store.KindSupport, Actor{Name: "iss|ann"}, acmeAdmin, "", "org_admin", true},
		{"lapsed", func(r *store.Request) { r.Lapses = now }, store.KindPartner, Actor{Name: "iss|ann"}, acmeAdmin, reason.RequestLapsed, "", false},
		{"decided", func(r *store.Request) { r.State = store.RequestDenied }, store.KindPartner, Actor{Name: "iss|ann"}, acmeAdmin, reason.RequestNotPending, "", false},
		{"nameless actor", nil, store.KindPartner, Actor{}, acmeAdmin, reason.SelfApproval, "", false},
		{"the org raised approvals to two", nil, store.KindEmployee, Actor{Operator: true, Name: "ops-olga"}, nil, "", "operator", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := pending()
			if c.r != nil {
				c.r(r)
			}
			o := org
			if c.name == "the org raised approvals to two" {
				o = &store.Org{ID: "acme", Policy: &store.OrgPolicy{Kinds: map[string]store.KindLimits{store.KindEmployee: {ApprovalsRequired: 2}}}}
			}
			adminOf := c.adminOf
			if adminOf == nil {
				adminOf = func(string) bool { return false }
			}
			rule, complete, code, cause := p.Approve(r, c.kind, o, c.a, adminOf, now)
			if code != c.want || rule != c.rule || complete != c.complete {
				t.Errorf("Approve = %q %v %q (%s), want %q %v %q", rule, complete, code, cause, c.rule, c.complete, c.want)
			}
			if code != "" && cause == "" {
				t.Error("a refusal without a cause")
			}
		})
	}
	if got := p.ApproverOrgs(store.KindPartner, "acme", org); !slices.Equal(got, []string{"acme", "partnerco"}) {
		t.Errorf("ApproverOrgs = %v", got)
	}
}

func TestCheckRequest(t *testing.T) {
	p := twoPersonPolicy(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	org := &store.Org{ID: "acme"}
	member := &store.Membership{Org: "acme", User: "iss|pat", Kind: store.KindPartner, Status: store.MembershipActive, ExpiresAt: now.Add(60 * 24 * time.Hour)}
	for _, c := range []struct {
		name  string
		r     store.Request
		m     *store.Membership
		rules []string
	}{
		{"role in a membership", store.Request{Org: "acme", Role: "billing", Duration: 24 * time.Hour}, member, nil},
		{"privileged role too long", store.Request{Org: "acme", Role: "admin", Duration: 9 * time.Hour}, member, []string{"lifecycle.privileged_roles.admin.max_elevation"}},
		{"privileged role in time", store.Request{Org: "acme", Role: "admin", Duration: 8 * time.Hour}, member, nil},
		{"beyond the kind's max_duration", store.Request{Org: "acme", Purpose: "audit", Duration: 91 * 24 * time.Hour}, member, []string{"lifecycle.kinds.partner.max_duration"}},
		{"support without a ticket", store.Request{Org: "acme", Kind: store.KindSupport, Duration: 24 * time.Hour}, nil, []string{"lifecycle.kinds.support.requires_ticket"}},
		{"support with a ticket", store.Request{Org: "acme", Kind: store.KindSupport, Duration: 24 * time.Hour, Ticket: "SUP-1"}, nil, nil},
		{"support of 400 days", store.Request{Org: "acme", Kind: store.KindSupport, Duration: 400 * 24 * time.Hour, Ticket: "SUP-1"}, nil, []string{"lifecycle.kinds.support.max_duration"}},
		{"a role without a membership", store.Request{Org: "acme", Role: "billing", Duration: time.Hour}, nil, []string{"request"}},
		{"a role in a revoked membership", store.Request{Org: "acme", Role: "billing", Duration: time.Hour},
			&store.Membership{Kind: store.KindPartner, Status: store.MembershipRevoked}, []string{"request"}},
		{"a membership where there is one", store.Request{Org: "acme", Kind: store.KindEmployee, Duration: time.Hour}, member, []string{"request"}},
	} {
		var got []string
		for _, v := range p.CheckRequest(&c.r, org, c.m, now) {
			got = append(got, v.Rule)
		}
		if !slices.Equal(got, c.rules) {
			t.Errorf("%s: %v, want %v", c.name, got, c.rules)
		}
	}
}

// TestFulfil: the grant a complete request makes is time-boxed, carries the request id and
// its approvers, never outlasts the membership, and a privileged role is a role grant.
func TestFulfil(t *testing.T) {
	p := twoPersonPolicy(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	approvals := []store.Approval{{By: "iss|ann"}, {By: "iss|paul"}}
	member := func() *store.Membership {
		return &store.Membership{Org: "acme", User: "iss|pat", Kind: store.KindPartner, Roles: []string{"viewer"}, Status: store.MembershipActive,
			ExpiresAt: now.Add(4 * time.Hour), RoleGrants: []store.RoleGrant{{Role: "old", ExpiresAt: now.Add(-time.Hour)}}}
	}
	current := member()
	m, until := p.Fulfil(&store.Request{ID: "req_a", Org: "acme", For: "iss|pat", Role: "admin", Duration: 8 * time.Hour, Approvals: approvals}, current, nil, now)
	// The membership given is left as it was: callers compare before and after (CheckChange).
	if m == current || len(current.RoleGrants) != 1 || current.RoleGrants[0].Role != "old" {
		t.Errorf("Fulfil changed the membership it was given: %+v", current)
	}
	if !until.Equal(now.Add(4*time.Hour)) || len(m.RoleGrants) != 1 || m.RoleGrants[0].Role != "admin" || m.RoleGrants[0].RequestID != "req_a" ||
		!m.RoleGrants[0].ExpiresAt.Equal(until) || !slices.Equal(m.RoleGrants[0].ApprovedBy, []string{"iss|ann", "iss|paul"}) {
		t.Errorf("role grant capped by the membership: until %v, %+v", until, m.RoleGrants)
	}
	m, until = p.Fulfil(&store.Request{ID: "req_b", Org: "acme", For: "iss|pat", Purpose: "audit", Ticket: "AUD-1", Duration: time.Hour, Approvals: approvals}, member(), nil, now)
	if g := m.Grants; len(g) != 1 || g[0].Purpose != "audit" || g[0].Reason != "AUD-1" || g[0].RequestID != "req_b" || !g[0].ExpiresAt.Equal(until) || g[0].ApprovedBy != "iss|ann,iss|paul" {
		t.Errorf("purpose grant %+v", g)
	}
	m, until = p.Fulfil(&store.Request{ID: "req_c", Org: "acme", For: "iss|sue", Requester: "iss|sue", Kind: store.KindSupport, Role: "viewer", Ticket: "SUP-9", Duration: 48 * time.Hour, Approvals: approvals[:1]}, nil, nil, now)
	if m.Kind != store.KindSupport || !m.ExpiresAt.Equal(now.Add(48*time.Hour)) || !until.Equal(m.ExpiresAt) || !slices.Equal(m.Roles, []string{"viewer"}) ||
		len(m.RoleGrants) != 0 || m.ApprovedBy != "iss|ann" || m.Status != store.MembershipActive {
		t.Errorf("new membership %+v", m)
	}
	// What it makes meets the policy it was approved under.
	if v := p.CheckMembership(m, nil, "SUP-9", now); len(v) != 0 {
		t.Errorf("the fulfilled membership breaks the policy: %v", v)
	}
	// A new membership asked with a privileged role holds it as a role grant.
	m, _ = p.Fulfil(&store.Request{ID: "req_d", Org: "acme", For: "iss|sue", Kind: store.KindSupport, Role: "admin", Ticket: "SUP-9", Duration: 8 * time.Hour}, nil, nil, now)
	if len(m.Roles) != 0 || len(m.RoleGrants) != 1 || m.RoleGrants[0].Role != "admin" {
		t.Errorf("privileged role in a new membership: %+v", m)
	}
	if v := p.CheckMembership(m, nil, "SUP-9", now); len(v) != 0 {
		t.Errorf("the fulfilled membership breaks the policy: %v", v)
	}
}

// TestReviewer: who may approve a membership of a kind reviews it; operators always; nobody
// else, whatever they administer.
func TestReviewer(t *testing.T) {
	p := twoPersonPolicy(t)
	org := &store.Org{ID: "acme", Status: store.OrgActive}
	acmeAdmin := func(o string) bool { return o == "acme" }
	partnerAdmin := func(o string) bool { return o == "partnerco" }
	betaAdmin := func(o string) bool { return o == "beta" }
	for _, c := range []struct {
		name    string
		kind    string
		a       Actor
		adminOf func(string) bool
		want    bool
	}{
		{"acme's admin, a partner", store.KindPartner, Actor{Name: "iss|ann"}, acmeAdmin, true},
		{"partnerco's admin, a partner", store.KindPartner, Actor{Name: "iss|paul"}, partnerAdmin, true},
		{"partnerco's admin, an employee", store.KindEmployee, Actor{Name: "iss|paul"}, partnerAdmin, false},
		{"beta's admin", store.KindPartner, Actor{Name: "iss|bert"}, betaAdmin, false},
		{"an operator", store.KindService, Actor{Operator: true, Name: "ops"}, func(string) bool { return false }, true},
		{"an unknown kind", "wizard", Actor{Name: "iss|ann"}, acmeAdmin, false},
	} {
		if got := p.Reviewer(c.kind, "acme", org, c.a, c.adminOf); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := p.Reviewers(store.KindPartner, "acme", org); !slices.Equal(got, []string{"operators", "administrators of acme", "administrators of partnerco"}) {
		t.Errorf("Reviewers %v", got)
	}
}
