package authz

import (
	"slices"
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
)

func TestCompileRequire(t *testing.T) {
	yes := true
	for _, c := range []struct {
		name                   string
		in                     *config.Require
		roles, purposes, kinds []string
		verifiedDomain         bool
	}{
		{name: "nil: org-scoped route without require", in: nil, verifiedDomain: true},
		{name: "empty", in: &config.Require{}, verifiedDomain: true},
		{name: "sorted and deduplicated",
			in: &config.Require{
				Roles:    []string{"viewer", "admin", "viewer", "billing"},
				Purposes: []string{"incident", "audit", "audit"},
				Kinds:    []string{"support", "employee", "support"},
			},
			roles: []string{"admin", "billing", "viewer"}, purposes: []string{"audit", "incident"},
			kinds: []string{"employee", "support"}, verifiedDomain: true},
		{name: "empty names dropped", in: &config.Require{Roles: []string{"", "admin", ""}, Purposes: []string{""}},
			roles: []string{"admin"}, verifiedDomain: true},
		{name: "verified_email_domain true", in: &config.Require{VerifiedEmailDomain: &yes}, verifiedDomain: true},
		{name: "verified_email_domain false", in: &config.Require{VerifiedEmailDomain: no()}, verifiedDomain: false},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := CompileRequire(c.in)
			if !slices.Equal(q.Roles(), c.roles) || !slices.Equal(q.Purposes(), c.purposes) ||
				!slices.Equal(q.Kinds(), c.kinds) || q.VerifiedEmailDomain() != c.verifiedDomain {
				t.Errorf("got roles %v purposes %v kinds %v verified %v", q.Roles(), q.Purposes(), q.Kinds(), q.VerifiedEmailDomain())
			}
			if (len(c.roles) == 0) != (q.Roles() == nil) {
				t.Errorf("an empty list must compile to nil, got %#v", q.Roles())
			}
		})
	}
}

// TestCompileRequireCopies: the compiled form must not alias the configuration, which a
// reload may reuse while requests are decided with the old policy.
func TestCompileRequireCopies(t *testing.T) {
	src := &config.Require{Roles: []string{"b", "a"}}
	q := CompileRequire(src)
	src.Roles[0] = "z"
	if !slices.Equal(q.Roles(), []string{"a", "b"}) {
		t.Errorf("compiled roles changed with the source: %v", q.Roles())
	}
	if cap(q.Roles()) != len(q.Roles()) {
		t.Error("compiled list has spare capacity: an append by a caller could write into it")
	}
}

func TestZeroRequirement(t *testing.T) {
	var q Requirement
	if !q.VerifiedEmailDomain() || q.Roles() != nil || q.Purposes() != nil || q.Kinds() != nil {
		t.Error("the zero Requirement must require a verified email domain and nothing else")
	}
}
