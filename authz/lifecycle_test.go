package authz

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// testPolicy is the built-in lifecycle policy with "admin" privileged for 8h and partners
// limited to the roles viewer and billing.
func testPolicy(t testing.TB) *Policy {
	t.Helper()
	return policyOf(t, `
  kinds:
    partner: {allowed_roles: [viewer, billing, admin]}
  privileged_roles:
    admin: {max_elevation: 8h}
`)
}

// policyOf compiles the lifecycle section whose body is lifecycle, in a minimal valid file.
func policyOf(t testing.TB, lifecycle string) *Policy {
	t.Helper()
	cfg, _, err := config.Parse("p.yaml", []byte("tls: {mode: self_signed}\nlifecycle:"+lifecycle+
		"routes:\n  - {name: app, upstream: \"http://127.0.0.1:9\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return CompilePolicy(&cfg.Lifecycle)
}

func TestPolicyKindTightenOnly(t *testing.T) {
	p := testPolicy(t)
	day := 24 * time.Hour
	plain := &store.Org{ID: "acme", Status: store.OrgActive}
	kr, ok := p.Kind(store.KindPartner, plain)
	if !ok || kr.MaxDuration != 365*day || kr.ReviewEvery != 90*day || kr.ApprovalsRequired != 1 || kr.RequiresTicket {
		t.Fatalf("platform partner rule %+v", kr)
	}
	tight := &store.Org{ID: "acme", Policy: &store.OrgPolicy{Kinds: map[string]store.KindLimits{
		store.KindPartner: {MaxDuration: 30 * day, ReviewEvery: 7 * day, ApprovalsRequired: 2, RequiresTicket: true},
	}}}
	if kr, _ := p.Kind(store.KindPartner, tight); kr.MaxDuration != 30*day || kr.ReviewEvery != 7*day || kr.ApprovalsRequired != 2 || !kr.RequiresTicket {
		t.Errorf("tightened rule %+v", kr)
	}
	// An organisation cannot loosen: longer limits, fewer approvals, no ticket are ignored.
	loose := &store.Org{ID: "acme", Policy: &store.OrgPolicy{Kinds: map[string]store.KindLimits{
		store.KindSupport: {MaxDuration: 900 * day, ReviewEvery: 900 * day, ApprovalsRequired: 0, RequiresTicket: false},
	}}}
	if kr, _ := p.Kind(store.KindSupport, loose); kr.MaxDuration != 30*day || kr.ReviewEvery != 30*day || kr.ApprovalsRequired != 1 || !kr.RequiresTicket {
		t.Errorf("loosened rule %+v", kr)
	}
	if _, ok := p.Kind("vendor", plain); ok {
		t.Error("an unknown kind has a rule")
	}
	if d, ok := p.Privileged("admin"); !ok || d != 8*time.Hour {
		t.Errorf("admin privileged: %v %v", d, ok)
	}
	if _, ok := p.Privileged("viewer"); ok {
		t.Error("viewer privileged")
	}
}

// TestPolicyKindFewerApproversAndRoles: an organisation may keep some of the platform's
// approver rules and allowed roles, never add one, whatever is stored; a list the platform
// no longer allows any of means no one and no role (never "anyone" and "any role"); the
// usual case allocates nothing (Kind is on the decision path).
func TestPolicyKindFewerApproversAndRoles(t *testing.T) {
	p := testPolicy(t)
	org := func(l store.KindLimits) *store.Org {
		return &store.Org{ID: "acme", Policy: &store.OrgPolicy{Kinds: map[string]store.KindLimits{store.KindPartner: l, store.KindEmployee: l}}}
	}
	o := org(store.KindLimits{Approvers: []string{config.ApproverOperator}, AllowedRoles: []string{"viewer"}})
	kr, _ := p.Kind(store.KindPartner, o)
	if !slices.Equal(kr.Approvers, []string{config.ApproverOperator}) || !kr.roleAllowed("viewer") || kr.roleAllowed("billing") || kr.roleAllowed("auditor") {
		t.Errorf("narrowed partner rule %+v", kr)
	}
	// Employees have no platform list: the organisation's is the list.
	if kr, _ := p.Kind(store.KindEmployee, o); !kr.roleAllowed("viewer") || kr.roleAllowed("admin") || !kr.RestrictsRoles() {
		t.Errorf("employee roles %+v", kr)
	}
	if n := testing.AllocsPerRun(100, func() { kr, _ = p.Kind(store.KindPartner, o) }); n != 0 {
		t.Errorf("Kind allocates %v times", n)
	}
	// Stored outside the API (or the platform changed since): what the platform does not
	// name is dropped, never added.
	kr, _ = p.Kind(store.KindPartner, org(store.KindLimits{Approvers: []string{"org_admin_of:evil", config.ApproverOperator},
		AllowedRoles: []string{"superuser", "viewer"}}))
	if !slices.Equal(kr.Approvers, []string{config.ApproverOperator}) || !slices.Equal(kr.AllowedRoles, []string{"viewer"}) {
		t.Errorf("foreign entries kept: %+v", kr)
	}
	kr, _ = p.Kind(store.KindPartner, org(store.KindLimits{Approvers: []string{"org_admin_of:evil"}, AllowedRoles: []string{"superuser"}}))
	if len(kr.Approvers) != 0 || kr.roleAllowed("viewer") || kr.roleAllowed("superuser") || !kr.RestrictsRoles() {
		t.Errorf("nothing left must mean no one and no role: %+v", kr)
	}
	m := &store.Membership{Org: "acme", User: "u", Kind: store.KindPartner, Status: store.MembershipActive, Roles: []string{"viewer"},
		ExpiresAt: time.Now().Add(24 * time.Hour), ReviewBy: time.Now().Add(24 * time.Hour)}
	v := p.CheckRequest(&store.Request{Org: "acme", Role: "billing", Duration: time.Hour, Reason: "x"}, o, m, time.Now())
	if len(v) == 0 || !strings.Contains(v[0].Rule, "allowed_roles") {
		t.Errorf("a request for a role the organisation does not allow: %v", v)
	}
	m.Roles = []string{"viewer", "billing"}
	if v := p.CheckMembership(m, o, "", time.Now()); len(v) == 0 {
		t.Error("a membership holding a role the organisation does not allow has no violation")
	}
	// Unsorted stored roles still match (has needs sorted lists).
	kr, _ = p.Kind(store.KindEmployee, org(store.KindLimits{AllowedRoles: []string{"viewer", "billing"}}))
	if !kr.roleAllowed("billing") || !kr.roleAllowed("viewer") {
		t.Errorf("unsorted stored roles %+v", kr)
	}
}

// TestDecideWithPolicy: a membership that breaks the lifecycle policy stops granting, however
// it was written; privileged roles count only as role grants; roles a kind does not allow do
// not count.
func TestDecideWithPolicy(t *testing.T) {
	p := testPolicy(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	org := &store.Org{ID: "acme", Status: store.OrgActive, Domains: []store.Domain{{Name: "acme.example", Status: store.DomainVerified}}}
	partner := func(edit func(*store.Membership)) *store.Membership {
		m := &store.Membership{Org: "acme", User: "iss|pat", Kind: store.KindPartner, Roles: []string{"viewer"}, Status: store.MembershipActive,
			Created: now.Add(-10 * day), Updated: now.Add(-10 * day), ExpiresAt: now.Add(300 * day)}
		if edit != nil {
			edit(m)
		}
		return m
	}
	admin := CompileRequire(&config.Require{Roles: []string{"admin"}})
	viewer := CompileRequire(&config.Require{Roles: []string{"viewer"}})
	for _, c := range []struct {
		name  string
		org   *store.Org
		m     *store.Membership
		req   Requirement
		want  reason.Code
		roles string
	}{
		{"within policy", org, partner(nil), viewer, reason.Allowed, "viewer"},
		{"no end for a partner", org, partner(func(m *store.Membership) { m.ExpiresAt = time.Time{} }), viewer, reason.PolicyExceeded, ""},
		{"end too far from the grant (written behind the policy's back)", org, partner(func(m *store.Membership) { m.ExpiresAt = m.Updated.Add(400 * day) }), viewer, reason.PolicyExceeded, ""},
		{"exactly max_duration", org, partner(func(m *store.Membership) { m.ExpiresAt = m.Updated.Add(365 * day) }), viewer, reason.Allowed, "viewer"},
		{"policy tightened by the org since the grant", &store.Org{ID: "acme", Status: store.OrgActive, Domains: org.Domains,
			Policy: &store.OrgPolicy{Kinds: map[string]store.KindLimits{store.KindPartner: {MaxDuration: 30 * day}}}}, partner(nil), viewer, reason.PolicyExceeded, ""},
		{"employee without an end", org, &store.Membership{Org: "acme", User: "iss|pat", Kind: store.KindEmployee, Roles: []string{"viewer"},
			Status: store.MembershipActive}, viewer, reason.Allowed, "viewer"},
		{"standing privileged role", org, partner(func(m *store.Membership) { m.Roles = []string{"admin", "viewer"} }), admin, reason.RoleRequiresRequest, ""},
		{"standing privileged role is not forwarded", org, partner(func(m *store.Membership) { m.Roles = []string{"admin", "viewer"} }), viewer, reason.Allowed, "viewer"},
		{"privileged role granted just in time", org, partner(func(m *store.Membership) {
			m.RoleGrants = []store.RoleGrant{{Role: "admin", GrantedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour), RequestID: "r1"}}
		}), admin, reason.Allowed, "admin,viewer"},
		{"privileged grant longer than max_elevation (written before the policy tightened)", org, partner(func(m *store.Membership) {
			m.RoleGrants = []store.RoleGrant{{Role: "admin", GrantedAt: now.Add(-time.Hour), ExpiresAt: now.Add(8 * time.Hour), RequestID: "r1"}}
		}), admin, reason.RoleMissing, ""},
		{"privileged grant without its start", org, partner(func(m *store.Membership) {
			m.RoleGrants = []store.RoleGrant{{Role: "admin", ExpiresAt: now.Add(time.Hour), RequestID: "r1"}}
		}), admin, reason.RoleMissing, ""},
		{"privileged grant not forwarded once it does not count", org, partner(func(m *store.Membership) {
			m.RoleGrants = []store.RoleGrant{{Role: "admin", GrantedAt: now.Add(-time.Hour), ExpiresAt: now.Add(30 * day)}}
		}), viewer, reason.Allowed, "viewer"},
		{"role grant expired", org, partner(func(m *store.Membership) {
			m.RoleGrants = []store.RoleGrant{{Role: "admin", ExpiresAt: now, RequestID: "r1"}}
		}), admin, reason.RoleMissing, ""},
		{"role the kind does not allow", org, partner(func(m *store.Membership) { m.Roles = []string{"owner", "viewer"} }),
			CompileRequire(&config.Require{Roles: []string{"owner"}}), reason.RoleMissing, ""},
		{"role grant the kind does not allow", org, partner(func(m *store.Membership) {
			m.RoleGrants = []store.RoleGrant{{Role: "owner", ExpiresAt: now.Add(time.Hour)}}
		}), CompileRequire(&config.Require{Roles: []string{"owner"}}), reason.RoleMissing, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(Input{User: "iss|pat", Email: "pat@acme.example", EmailVerified: true, OrgID: "acme", Org: c.org, Membership: c.m, Require: c.req, Policy: p}, now)
			if d.Reason != c.want {
				t.Fatalf("reason %s, want %s", d.Reason, c.want)
			}
			if d.Allow && strings.Join(d.Roles, ",") != c.roles {
				t.Errorf("roles %v, want %s", d.Roles, c.roles)
			}
			// Without a policy the same records decide as before the lifecycle existed.
			if c.want == reason.PolicyExceeded {
				if d := Decide(Input{User: "iss|pat", Email: "pat@acme.example", EmailVerified: true, OrgID: "acme", Org: c.org, Membership: c.m, Require: c.req}, now); !d.Allow {
					t.Errorf("without a policy: %s", d.Reason)
				}
			}
		})
	}
	plain := partner(nil)
	in := Input{User: "iss|pat", Email: "pat@acme.example", EmailVerified: true, OrgID: "acme", Org: org, Membership: plain, Require: viewer, Policy: p}
	if n := testing.AllocsPerRun(100, func() { _ = Decide(in, now) }); n != 0 {
		t.Errorf("Decide with a policy allocates %v times for a plain membership", n)
	}
}

func TestCheckMembership(t *testing.T) {
	p := testPolicy(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, c := range []struct {
		name   string
		m      store.Membership
		ticket string
		rules  []string
	}{
		{"partner within policy", store.Membership{Kind: store.KindPartner, Roles: []string{"viewer"}, ExpiresAt: now.Add(90 * day), ReviewBy: now.Add(80 * day)}, "", nil},
		{"support of 400 days, no ticket", store.Membership{Kind: store.KindSupport, ExpiresAt: now.Add(400 * day)}, "",
			[]string{"lifecycle.kinds.support.max_duration", "lifecycle.kinds.support.requires_ticket"}},
		{"support within policy", store.Membership{Kind: store.KindSupport, ExpiresAt: now.Add(7 * day)}, "TICKET-7", nil},
		{"partner without end", store.Membership{Kind: store.KindPartner}, "", []string{"lifecycle.kinds.partner.max_duration"}},
		{"employee without end or review", store.Membership{Kind: store.KindEmployee}, "", []string{"lifecycle.kinds.employee.review_every"}},
		{"employee ending before a review is due", store.Membership{Kind: store.KindEmployee, ExpiresAt: now.Add(365 * day)}, "", nil},
		{"employee ending after a review is due", store.Membership{Kind: store.KindEmployee, ExpiresAt: now.Add(400 * day)}, "", []string{"lifecycle.kinds.employee.review_every"}},
		{"employee review too far", store.Membership{Kind: store.KindEmployee, ReviewBy: now.Add(500 * day)}, "", []string{"lifecycle.kinds.employee.review_every"}},
		{"role not allowed", store.Membership{Kind: store.KindPartner, Roles: []string{"owner"}, ExpiresAt: now.Add(day)}, "", []string{"lifecycle.kinds.partner.allowed_roles"}},
		{"standing privileged role", store.Membership{Kind: store.KindPartner, Roles: []string{"admin"}, ExpiresAt: now.Add(day)}, "", []string{"lifecycle.privileged_roles.admin"}},
		{"privileged role too long", store.Membership{Kind: store.KindPartner, ExpiresAt: now.Add(day), RoleGrants: []store.RoleGrant{{Role: "admin", ExpiresAt: now.Add(9 * time.Hour)}}}, "",
			[]string{"lifecycle.privileged_roles.admin.max_elevation"}},
		{"privileged role in time", store.Membership{Kind: store.KindPartner, ExpiresAt: now.Add(day), RoleGrants: []store.RoleGrant{{Role: "admin", ExpiresAt: now.Add(8 * time.Hour)}}}, "", nil},
		{"unknown kind", store.Membership{Kind: "vendor"}, "", []string{"kind"}},
	} {
		var got []string
		for _, v := range p.CheckMembership(&c.m, &store.Org{ID: "acme"}, c.ticket, now) {
			got = append(got, v.Rule)
			if v.Message == "" {
				t.Errorf("%s: %s has no message", c.name, v.Rule)
			}
		}
		if !slices.Equal(got, c.rules) {
			t.Errorf("%s: violations %v, want %v", c.name, got, c.rules)
		}
	}
}

func TestShowDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * 24 * time.Hour: "30d", 8 * time.Hour: "8h", 90 * time.Minute: "1h30m", 45 * time.Minute: "45m", 10 * time.Second: "10s", 36 * time.Hour: "36h",
		24 * time.Hour: "1d", 400*24*time.Hour - 3*time.Second: "400d", 365*24*time.Hour + 10*time.Hour: "365.4d",
	} {
		if got := showDuration(d); got != want {
			t.Errorf("showDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestCheckChange: a grant added to a membership that predates the policy (a standing role
// that became privileged, no review date) is not refused for those, but what the change itself
// breaks still is, as is everything about a new membership or a change of kind.
func TestCheckChange(t *testing.T) {
	p := testPolicy(t)
	now := time.Now()
	o := &store.Org{ID: "acme", Status: store.OrgActive}
	legacy := &store.Membership{Org: "acme", User: "u", Kind: store.KindEmployee, Roles: []string{"user", "admin"}}
	if vs := p.CheckMembership(legacy, o, "", now); len(vs) != 2 {
		t.Fatalf("the legacy membership: %v, want the review date and the standing privileged role", vs)
	}
	withGrant := *legacy
	withGrant.RoleGrants = []store.RoleGrant{{Role: "admin", ExpiresAt: now.Add(time.Hour)}}
	if vs := p.CheckChange(legacy, &withGrant, o, "", now); len(vs) != 0 {
		t.Errorf("an hour of admin on a legacy membership: %v", vs)
	}
	// The change's own breach: a grant longer than max_elevation.
	tooLong := *legacy
	tooLong.RoleGrants = []store.RoleGrant{{Role: "admin", ExpiresAt: now.Add(9 * time.Hour)}}
	if vs := p.CheckChange(legacy, &tooLong, o, "", now); len(vs) != 1 || vs[0].Rule != "lifecycle.privileged_roles.admin.max_elevation" {
		t.Errorf("nine hours of admin: %v", vs)
	}
	// A new membership, or one that changes kind, answers for all of it.
	if vs := p.CheckChange(nil, &withGrant, o, "", now); len(vs) != 2 {
		t.Errorf("as a new membership: %v", vs)
	}
	partner := withGrant
	partner.Kind = store.KindPartner
	if vs := p.CheckChange(legacy, &partner, o, "", now); !slices.ContainsFunc(vs, func(v Violation) bool { return strings.HasSuffix(v.Rule, ".max_duration") }) {
		t.Errorf("a change of kind: %v", vs)
	}
}
