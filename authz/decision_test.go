package authz

import (
	"slices"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

var now = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)

const alice = "https://idp.example.com|alice"

// fixture returns an input that is allowed: an active org with a verified acme.com, an
// active employee membership with roles and a live audit grant, and a route requiring the
// billing role. Each call builds fresh records, so cases may change them freely.
func fixture() Input {
	return Input{
		User:          alice,
		Email:         "alice@acme.com",
		EmailVerified: true,
		OrgID:         "acme",
		Require:       CompileRequire(&config.Require{Roles: []string{"billing", "admin"}}),
		Org: &store.Org{
			ID:     "acme",
			Name:   "Acme Ltd",
			Status: store.OrgActive,
			Domains: []store.Domain{
				{Name: "acme.com", Status: store.DomainVerified},
				{Name: "acme.co.uk", Status: store.DomainPending},
				{Name: "old-acme.com", Status: store.DomainLapsed},
			},
			Contact: "it@acme.com",
		},
		Membership: &store.Membership{
			Org:       "acme",
			User:      alice,
			Kind:      store.KindEmployee,
			Roles:     []string{"viewer", "billing"},
			Grants:    []store.Grant{{Purpose: "audit", Reason: "AUD-1", ExpiresAt: now.Add(time.Hour)}},
			Status:    store.MembershipActive,
			ExpiresAt: now.Add(24 * time.Hour),
			ReviewBy:  now.Add(48 * time.Hour),
		},
	}
}

func require(q config.Require) Requirement { return CompileRequire(&q) }

func no() *bool { b := false; return &b }

type decideCase struct {
	name   string
	change func(*Input)
	want   reason.Code
	check  func(*testing.T, Decision)
}

func TestDecide(t *testing.T) {
	ns := time.Nanosecond
	cases := []decideCase{
		{name: "allowed", want: reason.Allowed, check: func(t *testing.T, d Decision) {
			if d.Org != "acme" || d.Kind != store.KindEmployee || !slices.Equal(d.Roles, []string{"viewer", "billing"}) ||
				d.Purpose != "" || !d.Member || !decisionEqual(Decision{Missing: d.Missing}, Decision{}) {
				t.Errorf("allow facts: %+v", d)
			}
		}},
		{name: "zero requirement: membership and verified domain only", want: reason.Allowed,
			change: func(in *Input) { in.Require = Requirement{}; in.Membership.Roles = nil }},

		// no_org
		{name: "no org id", want: reason.NoOrg, change: func(in *Input) { in.OrgID = "" },
			check: func(t *testing.T, d Decision) {
				if d.Org != "" || d.Member || d.Missing.Contact != "" {
					t.Errorf("no_org decision carries facts: %+v", d)
				}
			}},
		{name: "org id upper case", want: reason.NoOrg, change: func(in *Input) { in.OrgID = "ACME" }},
		{name: "org id traversal", want: reason.NoOrg, change: func(in *Input) { in.OrgID = ".." }},
		{name: "org id too long", want: reason.NoOrg, change: func(in *Input) { in.OrgID = string(make([]byte, 64)) }},
		{name: "no org id and nothing else", want: reason.NoOrg,
			change: func(in *Input) { *in = Input{} }},

		// org_unknown
		{name: "org record missing", want: reason.OrgUnknown, change: func(in *Input) { in.Org = nil }},
		{name: "org record for another id", want: reason.OrgUnknown, change: func(in *Input) { in.Org.ID = "globex" }},
		{name: "org and membership missing", want: reason.OrgUnknown,
			change: func(in *Input) { in.Org, in.Membership = nil, nil }},

		// org_inactive
		{name: "org suspended", want: reason.OrgInactive, change: func(in *Input) { in.Org.Status = store.OrgSuspended }},
		{name: "org ended", want: reason.OrgInactive, change: func(in *Input) { in.Org.Status = store.OrgEnded },
			check: func(t *testing.T, d Decision) {
				if !d.Member || d.Missing.Contact != "it@acme.com" {
					t.Errorf("member of ended org: %+v", d)
				}
			}},
		{name: "org status empty", want: reason.OrgInactive, change: func(in *Input) { in.Org.Status = "" }},
		{name: "org status unknown", want: reason.OrgInactive, change: func(in *Input) { in.Org.Status = "archived" }},
		{name: "org status wrong case", want: reason.OrgInactive, change: func(in *Input) { in.Org.Status = "Active" }},
		{name: "org merged", want: reason.OrgInactive, change: func(in *Input) { in.Org.MergedInto = "globex" },
			check: func(t *testing.T, d Decision) {
				if d.Missing.MergedInto != "globex" {
					t.Errorf("MergedInto = %q", d.Missing.MergedInto)
				}
			}},
		{name: "contract ends at this instant", want: reason.OrgInactive,
			change: func(in *Input) { in.Org.ContractEnd = now },
			check: func(t *testing.T, d Decision) {
				if !d.Missing.Ended.Equal(now) {
					t.Errorf("Ended = %v", d.Missing.Ended)
				}
			}},
		{name: "contract ended", want: reason.OrgInactive, change: func(in *Input) { in.Org.ContractEnd = now.Add(-ns) }},
		{name: "contract ends in a nanosecond", want: reason.Allowed, change: func(in *Input) { in.Org.ContractEnd = now.Add(ns) }},
		{name: "org inactive, not a member: page must not tell", want: reason.OrgInactive,
			change: func(in *Input) { in.Org.Status = store.OrgEnded; in.Membership = nil },
			check: func(t *testing.T, d Decision) {
				if d.Member {
					t.Error("Member true without a membership")
				}
			}},

		// not_member
		{name: "no membership", want: reason.NotMember, change: func(in *Input) { in.Membership = nil },
			check: func(t *testing.T, d Decision) {
				if d.Member {
					t.Error("Member true")
				}
			}},
		{name: "membership of another org", want: reason.NotMember, change: func(in *Input) { in.Membership.Org = "globex" }},
		{name: "membership of another person", want: reason.NotMember,
			change: func(in *Input) { in.Membership.User = "https://idp.example.com|mallory" }},
		{name: "same subject, other issuer", want: reason.NotMember,
			change: func(in *Input) { in.Membership.User = "https://other-idp.example.com|alice" }},
		{name: "empty user matches no empty record", want: reason.NotMember,
			change: func(in *Input) { in.User = ""; in.Membership.User = "" }},

		// membership status
		{name: "membership revoked", want: reason.MembershipRevoked,
			change: func(in *Input) { in.Membership.Status = store.MembershipRevoked }},
		{name: "membership suspended", want: reason.MembershipSuspended,
			change: func(in *Input) { in.Membership.Status = store.MembershipSuspended }},
		{name: "membership status empty", want: reason.MembershipSuspended,
			change: func(in *Input) { in.Membership.Status = "" }},
		{name: "membership status unknown", want: reason.MembershipSuspended,
			change: func(in *Input) { in.Membership.Status = "ACTIVE" }},
		{name: "membership status invited", want: reason.MembershipSuspended,
			change: func(in *Input) { in.Membership.Status = "invited" }},

		// membership time
		{name: "membership expires at this instant", want: reason.MembershipExpired,
			change: func(in *Input) { in.Membership.ExpiresAt = now },
			check: func(t *testing.T, d Decision) {
				if !d.Missing.Ended.Equal(now) || d.Kind != "" || d.Roles != nil {
					t.Errorf("expired decision: %+v", d)
				}
			}},
		{name: "membership expires in a nanosecond", want: reason.Allowed,
			change: func(in *Input) { in.Membership.ExpiresAt = now.Add(ns) }},
		{name: "membership without expiry or review", want: reason.Allowed,
			change: func(in *Input) { in.Membership.ExpiresAt, in.Membership.ReviewBy = time.Time{}, time.Time{} }},
		{name: "membership expiry in another zone, same instant", want: reason.MembershipExpired,
			change: func(in *Input) { in.Membership.ExpiresAt = now.In(time.FixedZone("x", 3600)) }},
		{name: "review due at this instant", want: reason.ReviewOverdue,
			change: func(in *Input) { in.Membership.ReviewBy = now }},
		{name: "review overdue", want: reason.ReviewOverdue,
			change: func(in *Input) { in.Membership.ReviewBy = now.Add(-time.Hour) }},
		{name: "review due in a nanosecond", want: reason.Allowed,
			change: func(in *Input) { in.Membership.ReviewBy = now.Add(ns) }},

		// email domain
		{name: "email not verified", want: reason.EmailDomainNotVerified,
			change: func(in *Input) { in.EmailVerified = false },
			check: func(t *testing.T, d Decision) {
				if !d.Missing.EmailUnverified {
					t.Error("EmailUnverified not set")
				}
			}},
		{name: "email domain in upper case", want: reason.Allowed, change: func(in *Input) { in.Email = "Alice@ACME.com" }},
		{name: "subdomain not covered by parent", want: reason.EmailDomainNotVerified,
			change: func(in *Input) { in.Email = "alice@mail.acme.com" },
			check: func(t *testing.T, d Decision) {
				if d.Missing.EmailDomain != "mail.acme.com" || d.Missing.EmailUnverified {
					t.Errorf("Missing = %+v", d.Missing)
				}
			}},
		{name: "subdomain listed and verified", want: reason.Allowed,
			change: func(in *Input) {
				in.Email = "alice@mail.acme.com"
				in.Org.Domains = append(in.Org.Domains, store.Domain{Name: "mail.acme.com", Status: store.DomainVerified})
			}},
		{name: "parent of a verified domain", want: reason.EmailDomainNotVerified,
			change: func(in *Input) {
				in.Email = "alice@acme.com"
				in.Org.Domains = []store.Domain{{Name: "mail.acme.com", Status: store.DomainVerified}}
			}},
		{name: "pending domain", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "alice@acme.co.uk" }},
		{name: "lapsed domain", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "alice@old-acme.com" }},
		{name: "domain status unknown", want: reason.EmailDomainNotVerified,
			change: func(in *Input) { in.Org.Domains = []store.Domain{{Name: "acme.com", Status: "Verified"}} }},
		{name: "unlisted domain", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "alice@gmail.com" }},
		{name: "look-alike suffix", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "alice@evilacme.com" }},
		{name: "trailing dot", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "alice@acme.com." }},
		{name: "no at sign", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "acme.com" }},
		{name: "empty email", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "" }},
		{name: "empty domain", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Email = "alice@" }},
		{name: "quoted local part holding the org domain", want: reason.EmailDomainNotVerified,
			change: func(in *Input) { in.Email = `"alice@acme.com"@evil.test` }},
		{name: "kelvin sign does not fold to k", want: reason.EmailDomainNotVerified,
			change: func(in *Input) {
				in.Org.Domains = []store.Domain{{Name: "kone.example", Status: store.DomainVerified}}
				in.Email = "alice@\u212Aone.example"
			}},
		{name: "org with no domains", want: reason.EmailDomainNotVerified, change: func(in *Input) { in.Org.Domains = nil }},
		{name: "route lifts the domain check: lapsed domain", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{VerifiedEmailDomain: no()})
				in.Email = "alice@old-acme.com"
			}},
		{name: "route lifts the domain check: email unverified", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{VerifiedEmailDomain: no()})
				in.EmailVerified = false
			}},

		// kind
		{name: "kind unknown, route admits all", want: reason.KindNotAllowed,
			change: func(in *Input) { in.Require = Requirement{}; in.Membership.Kind = "contractor" },
			check: func(t *testing.T, d Decision) {
				if d.Missing.Kinds != nil {
					t.Errorf("Missing.Kinds = %v", d.Missing.Kinds)
				}
			}},
		{name: "kind empty", want: reason.KindNotAllowed, change: func(in *Input) { in.Membership.Kind = "" }},
		{name: "kind wrong case", want: reason.KindNotAllowed, change: func(in *Input) { in.Membership.Kind = "Employee" }},
		{name: "kind not admitted", want: reason.KindNotAllowed,
			change: func(in *Input) { in.Require = require(config.Require{Kinds: []string{"support", "partner"}}) },
			check: func(t *testing.T, d Decision) {
				if !slices.Equal(d.Missing.Kinds, []string{"partner", "support"}) {
					t.Errorf("Missing.Kinds = %v", d.Missing.Kinds)
				}
			}},
		{name: "kind admitted", want: reason.Allowed,
			change: func(in *Input) { in.Require = require(config.Require{Kinds: []string{"partner", "employee"}}) }},
		{name: "unknown kind named by the route", want: reason.KindNotAllowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Kinds: []string{"contractor"}})
				in.Membership.Kind = "contractor"
			}},

		// roles
		{name: "no roles held", want: reason.RoleMissing, change: func(in *Input) { in.Membership.Roles = nil },
			check: func(t *testing.T, d Decision) {
				if !slices.Equal(d.Missing.Roles, []string{"admin", "billing"}) || d.Missing.Contact != "it@acme.com" {
					t.Errorf("Missing = %+v", d.Missing)
				}
			}},
		{name: "other roles held", want: reason.RoleMissing, change: func(in *Input) { in.Membership.Roles = []string{"viewer"} }},
		{name: "role wrong case", want: reason.RoleMissing, change: func(in *Input) { in.Membership.Roles = []string{"Billing"} }},
		{name: "empty role held", want: reason.RoleMissing, change: func(in *Input) { in.Membership.Roles = []string{""} }},
		{name: "any one role suffices", want: reason.Allowed, change: func(in *Input) { in.Membership.Roles = []string{"admin"} }},

		// purposes
		{name: "purpose required, no grants", want: reason.PurposeMissing,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"incident"}})
				in.Membership.Grants = nil
			},
			check: func(t *testing.T, d Decision) {
				if !slices.Equal(d.Missing.Purposes, []string{"incident"}) || !d.Missing.Ended.IsZero() {
					t.Errorf("Missing = %+v", d.Missing)
				}
			}},
		{name: "purpose required, grant for another", want: reason.PurposeMissing,
			change: func(in *Input) { in.Require = require(config.Require{Purposes: []string{"incident"}}) }},
		{name: "purpose required but roles not", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"audit"}})
				in.Membership.Roles = nil
			},
			check: func(t *testing.T, d Decision) {
				if d.Purpose != "audit" || d.Roles != nil {
					t.Errorf("facts: %+v", d)
				}
			}},
		{name: "grant expires at this instant", want: reason.PurposeExpired,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"audit"}})
				in.Membership.Grants[0].ExpiresAt = now
			},
			check: func(t *testing.T, d Decision) {
				if !d.Missing.Ended.Equal(now) || !slices.Equal(d.Missing.Purposes, []string{"audit"}) || d.Purpose != "" {
					t.Errorf("decision: %+v", d)
				}
			}},
		{name: "grant expires in a nanosecond", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"audit"}})
				in.Membership.Grants[0].ExpiresAt = now.Add(ns)
			}},
		{name: "grant without expiry", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"audit"}})
				in.Membership.Grants[0].ExpiresAt = time.Time{}
			}},
		{name: "one expired and one live grant for the purpose", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"audit"}})
				in.Membership.Grants = []store.Grant{
					{Purpose: "audit", Reason: "AUD-1", ExpiresAt: now.Add(-time.Hour)},
					{Purpose: "audit", Reason: "AUD-2", ExpiresAt: now.Add(time.Hour)},
				}
			},
			check: func(t *testing.T, d Decision) {
				if d.Purpose != "audit" {
					t.Errorf("Purpose = %q", d.Purpose)
				}
			}},
		{name: "every grant for the purpose expired: latest reported", want: reason.PurposeExpired,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"audit", "incident"}})
				in.Membership.Grants = []store.Grant{
					{Purpose: "audit", ExpiresAt: now.Add(-2 * time.Hour)},
					{Purpose: "audit", ExpiresAt: now.Add(-time.Hour)},
					{Purpose: "training", ExpiresAt: now.Add(time.Hour)},
				}
			},
			check: func(t *testing.T, d Decision) {
				if !d.Missing.Ended.Equal(now.Add(-time.Hour)) {
					t.Errorf("Ended = %v", d.Missing.Ended)
				}
			}},
		{name: "two live purposes: the first in sorted order is reported", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"incident", "audit"}})
				in.Membership.Grants = []store.Grant{
					{Purpose: "incident", ExpiresAt: now.Add(time.Hour)},
					{Purpose: "audit", ExpiresAt: now.Add(time.Hour)},
				}
			},
			check: func(t *testing.T, d Decision) {
				if d.Purpose != "audit" {
					t.Errorf("Purpose = %q", d.Purpose)
				}
			}},
		{name: "expired for one purpose, live for another", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"incident", "audit"}})
				in.Membership.Grants = []store.Grant{
					{Purpose: "audit", ExpiresAt: now},
					{Purpose: "incident", ExpiresAt: now.Add(time.Hour)},
				}
			},
			check: func(t *testing.T, d Decision) {
				if d.Purpose != "incident" {
					t.Errorf("Purpose = %q", d.Purpose)
				}
			}},
		{name: "purpose wrong case", want: reason.PurposeMissing,
			change: func(in *Input) {
				in.Require = require(config.Require{Purposes: []string{"audit"}})
				in.Membership.Grants[0].Purpose = "Audit"
			}},

		// combinations: the first failing check in the documented order wins
		{name: "revoked and org ended", want: reason.OrgInactive,
			change: func(in *Input) { in.Membership.Status = store.MembershipRevoked; in.Org.Status = store.OrgEnded }},
		{name: "revoked and contract ended", want: reason.OrgInactive,
			change: func(in *Input) { in.Membership.Status = store.MembershipRevoked; in.Org.ContractEnd = now }},
		{name: "mismatched membership and unknown org", want: reason.OrgUnknown,
			change: func(in *Input) { in.Membership.User = "x|y"; in.Org = nil }},
		{name: "mismatched membership that is also revoked", want: reason.NotMember,
			change: func(in *Input) { in.Membership.User = "x|y"; in.Membership.Status = store.MembershipRevoked }},
		{name: "revoked and expired", want: reason.MembershipRevoked,
			change: func(in *Input) { in.Membership.Status = store.MembershipRevoked; in.Membership.ExpiresAt = now }},
		{name: "suspended and review overdue", want: reason.MembershipSuspended,
			change: func(in *Input) { in.Membership.Status = store.MembershipSuspended; in.Membership.ReviewBy = now }},
		{name: "expired and review overdue", want: reason.MembershipExpired,
			change: func(in *Input) { in.Membership.ExpiresAt = now; in.Membership.ReviewBy = now }},
		{name: "review overdue and domain lapsed", want: reason.ReviewOverdue,
			change: func(in *Input) { in.Membership.ReviewBy = now; in.Email = "alice@old-acme.com" }},
		{name: "suspended and email unverified", want: reason.MembershipSuspended,
			change: func(in *Input) { in.Membership.Status = store.MembershipSuspended; in.EmailVerified = false }},
		{name: "domain lapsed and kind not allowed", want: reason.EmailDomainNotVerified,
			change: func(in *Input) { in.Email = "alice@old-acme.com"; in.Membership.Kind = "contractor" }},
		{name: "kind not allowed and role missing", want: reason.KindNotAllowed,
			change: func(in *Input) { in.Membership.Kind = "contractor"; in.Membership.Roles = nil }},
		{name: "role missing and purpose missing", want: reason.RoleMissing,
			change: func(in *Input) {
				in.Require = require(config.Require{Roles: []string{"admin"}, Purposes: []string{"incident"}})
			},
			check: func(t *testing.T, d Decision) {
				if d.Missing.Purposes != nil {
					t.Errorf("Missing.Purposes set for role_missing: %v", d.Missing.Purposes)
				}
			}},
		{name: "lifecycle: a partner membership without an end", want: reason.PolicyExceeded,
			change: func(in *Input) {
				in.Policy = testPolicy(t)
				in.Membership.Kind, in.Membership.ExpiresAt = store.KindPartner, time.Time{}
			}},
		{name: "lifecycle: a privileged role held standing", want: reason.RoleRequiresRequest,
			change: func(in *Input) {
				in.Policy = testPolicy(t)
				in.Membership.Roles = []string{"admin"}
				in.Require = require(config.Require{Roles: []string{"admin"}})
			}},
		{name: "role and purpose both held", want: reason.Allowed,
			change: func(in *Input) {
				in.Require = require(config.Require{Roles: []string{"billing"}, Purposes: []string{"audit"}, Kinds: []string{"employee"}})
			},
			check: func(t *testing.T, d Decision) {
				if d.Purpose != "audit" {
					t.Errorf("Purpose = %q", d.Purpose)
				}
			}},
	}

	seen := map[reason.Code]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := fixture()
			if c.change != nil {
				c.change(&in)
			}
			d := Decide(in, now)
			seen[d.Reason] = true
			if d.Reason != c.want {
				t.Fatalf("Reason = %s, want %s (decision %+v)", d.Reason, c.want, d)
			}
			if d.Allow != (d.Reason == reason.Allowed) {
				t.Fatalf("Allow = %v with reason %s", d.Allow, d.Reason)
			}
			if !d.Allow && (d.Kind != "" || d.Roles != nil || d.Purpose != "") {
				t.Errorf("deny carries forwarded facts: %+v", d)
			}
			if again := Decide(in, now); !decisionEqual(again, d) {
				t.Errorf("not deterministic: %+v then %+v", d, again)
			}
			if c.check != nil {
				c.check(t, d)
			}
		})
	}
	for _, r := range Reasons() {
		if !seen[r] {
			t.Errorf("no case gives %s", r)
		}
	}
}

func decisionEqual(a, b Decision) bool {
	return a.Allow == b.Allow && a.Reason == b.Reason && a.Member == b.Member && a.Org == b.Org &&
		a.Kind == b.Kind && slices.Equal(a.Roles, b.Roles) && a.Purpose == b.Purpose &&
		slices.Equal(a.Missing.Roles, b.Missing.Roles) && slices.Equal(a.Missing.Purposes, b.Missing.Purposes) &&
		slices.Equal(a.Missing.Kinds, b.Missing.Kinds) && a.Missing.EmailDomain == b.Missing.EmailDomain &&
		a.Missing.EmailUnverified == b.Missing.EmailUnverified && a.Missing.Ended.Equal(b.Missing.Ended) &&
		a.Missing.MergedInto == b.Missing.MergedInto && a.Missing.Contact == b.Missing.Contact
}

// TestDecideDoesNotModify guards the records a cache shares between requests.
func TestDecideDoesNotModify(t *testing.T) {
	in := fixture()
	in.Require = require(config.Require{Roles: []string{"billing"}, Purposes: []string{"audit"}})
	want := fixture()
	Decide(in, now)
	if !slices.Equal(in.Membership.Roles, want.Membership.Roles) || !slices.Equal(in.Membership.Grants, want.Membership.Grants) ||
		!slices.Equal(in.Org.Domains, want.Org.Domains) {
		t.Error("Decide modified its input")
	}
}

// TestDecideAllocs proves the decision allocates nothing, on the allow path and on denials
// that build a Missing detail.
func TestDecideAllocs(t *testing.T) {
	for _, c := range benchCases() {
		in := c.in
		if n := testing.AllocsPerRun(1000, func() { sinkDecision = Decide(in, now) }); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", c.name, n)
		}
	}
}

func TestASCIIEqualFold(t *testing.T) {
	for _, c := range []struct {
		stored, given string
		want          bool
	}{
		{"acme.com", "acme.com", true},
		{"acme.com", "ACME.COM", true},
		{"acme.com", "Acme.Com", true},
		{"kone.example", "\u212Aone.example", false},
		{"acme.com", "acme.co", false},
		{"", "", true},
		{"acme.com", "acme\x00com", false},
		{"a-b.com", "a-b.com", true},
		{"a[b.com", "a{b.com", false},
		{"Acme.COM", "aCME.com", true}, // a name that is not stored (a provider's claim)
	} {
		if got := asciiEqualFold(c.stored, c.given); got != c.want {
			t.Errorf("asciiEqualFold(%q, %q) = %v, want %v", c.stored, c.given, got, c.want)
		}
	}
}

func TestAddressInDomain(t *testing.T) {
	for _, c := range []struct {
		email, domain string
		want          bool
	}{
		{"alice@fresh.example", "fresh.example", true},
		{"alice@FRESH.example", "fresh.EXAMPLE", true},
		{`"a@b"@fresh.example`, "fresh.example", true}, // the last "@"
		{"alice@fresh.example", "mail.fresh.example", false},
		{"alice@mail.fresh.example", "fresh.example", false},
		{"alice@kone.example", "\u212Aone.example", false}, // KELVIN SIGN folds to k in Unicode only
		{"alice@fresh.example", "", false},
		{"alice", "alice", false},
		{"alice@", "", false},
	} {
		if got := AddressInDomain(c.email, c.domain); got != c.want {
			t.Errorf("AddressInDomain(%q, %q) = %v, want %v", c.email, c.domain, got, c.want)
		}
	}
}

var sinkDecision Decision

type benchCase struct {
	name string
	in   Input
}

func benchCases() []benchCase {
	allow := fixture()
	allow.Require = require(config.Require{Roles: []string{"billing", "admin"}, Purposes: []string{"audit"}, Kinds: []string{"employee", "partner"}})
	roleMissing := allow
	roleMissing.Membership = &store.Membership{}
	*roleMissing.Membership = *allow.Membership
	roleMissing.Membership.Roles = []string{"viewer"}
	expired := allow
	expired.Membership = &store.Membership{}
	*expired.Membership = *allow.Membership
	expired.Membership.Grants = []store.Grant{{Purpose: "audit", ExpiresAt: now.Add(-time.Hour)}}
	domain := allow
	domain.Email = "alice@old-acme.com"
	notMember := allow
	notMember.Membership = nil
	return []benchCase{
		{"allow", allow},
		{"deny_role_missing", roleMissing},
		{"deny_purpose_expired", expired},
		{"deny_email_domain", domain},
		{"deny_not_member", notMember},
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, c := range benchCases() {
		b.Run(c.name, func(b *testing.B) {
			in := c.in
			b.ReportAllocs()
			for b.Loop() {
				sinkDecision = Decide(in, now)
			}
		})
	}
}

// TestOutsidersLearnNothing: whatever the organisation's state, a person without a
// membership in it is refused with a code that shows as not_member (or no_org, which names
// no organisation): the refusal never tells an outsider whether an org id exists, is
// suspended, ended, merged or past its contract.
func TestOutsidersLearnNothing(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	orgs := map[string]*store.Org{
		"absent":    nil,
		"other id":  {ID: "globex", Status: store.OrgActive},
		"active":    {ID: "acme", Status: store.OrgActive, Domains: []store.Domain{{Name: "acme.example", Status: store.DomainVerified}}},
		"suspended": {ID: "acme", Status: store.OrgSuspended},
		"ended":     {ID: "acme", Status: store.OrgEnded},
		"unknown":   {ID: "acme", Status: "archived"},
		"merged":    {ID: "acme", Status: store.OrgActive, MergedInto: "globex"},
		"contract":  {ID: "acme", Status: store.OrgActive, ContractEnd: now.Add(-time.Hour)},
	}
	mems := map[string]*store.Membership{
		"none":          nil,
		"another user":  {Org: "acme", User: "iss|mallory", Kind: store.KindEmployee, Status: store.MembershipActive},
		"another org":   {Org: "globex", User: "iss|alice", Kind: store.KindEmployee, Status: store.MembershipActive},
		"empty user":    {Org: "acme", User: "", Kind: store.KindEmployee, Status: store.MembershipActive},
		"revoked other": {Org: "acme", User: "iss|mallory", Kind: store.KindEmployee, Status: store.MembershipRevoked},
	}
	for on, o := range orgs {
		for mn, m := range mems {
			for _, user := range []string{"iss|alice", ""} {
				d := Decide(Input{User: user, Email: "alice@acme.example", EmailVerified: true, OrgID: "acme", Org: o, Membership: m}, now)
				if d.Allow || d.Member {
					t.Errorf("org %s, membership %s, user %q: allowed or a member: %+v", on, mn, user, d)
					continue
				}
				if shown := reason.Shown(d.Reason, d.Member); shown != reason.NotMember {
					t.Errorf("org %s, membership %s, user %q: an outsider is shown %s (decided %s)", on, mn, user, shown, d.Reason)
				}
			}
		}
	}
}

// TestDecideNamesTheGrant: an allow on a purpose route names the grant that satisfied it
// (for the assertion's reason and end): of several live grants of the purpose, the one
// lasting longest, one without an end first, whatever the stored order; none on a route
// that requires no purpose.
func TestDecideNamesTheGrant(t *testing.T) {
	in := fixture()
	in.Require = require(config.Require{Purposes: []string{"audit", "support"}})
	for _, c := range []struct {
		name   string
		grants []store.Grant
		reason string
	}{
		{"one", []store.Grant{{Purpose: "audit", Reason: "A", ExpiresAt: now.Add(time.Hour)}}, "A"},
		{"longest of the live", []store.Grant{{Purpose: "audit", Reason: "short", ExpiresAt: now.Add(time.Minute)},
			{Purpose: "audit", Reason: "long", ExpiresAt: now.Add(time.Hour)}, {Purpose: "audit", Reason: "gone", ExpiresAt: now.Add(-time.Hour)}}, "long"},
		{"no end lasts longest", []store.Grant{{Purpose: "audit", Reason: "long", ExpiresAt: now.Add(time.Hour)},
			{Purpose: "audit", Reason: "open"}}, "open"},
		{"no end, stored first", []store.Grant{{Purpose: "audit", Reason: "open"},
			{Purpose: "audit", Reason: "long", ExpiresAt: now.Add(time.Hour)}}, "open"},
		{"first purpose in order", []store.Grant{{Purpose: "support", Reason: "S", ExpiresAt: now.Add(2 * time.Hour)},
			{Purpose: "audit", Reason: "A", ExpiresAt: now.Add(time.Hour)}}, "A"},
		{"other purpose when the first is expired", []store.Grant{{Purpose: "support", Reason: "S", ExpiresAt: now.Add(2 * time.Hour)},
			{Purpose: "audit", Reason: "A", ExpiresAt: now}}, "S"},
	} {
		in.Membership = &store.Membership{Org: "acme", User: alice, Kind: store.KindEmployee, Status: store.MembershipActive, Grants: c.grants}
		d := Decide(in, now)
		if !d.Allow || d.Grant == nil || d.Grant.Reason != c.reason || d.Purpose != d.Grant.Purpose {
			t.Errorf("%s: %+v, grant %+v", c.name, d, d.Grant)
		}
	}
	in = fixture()
	if d := Decide(in, now); !d.Allow || d.Grant != nil || d.Purpose != "" {
		t.Errorf("no purpose required: %+v", d)
	}
}
