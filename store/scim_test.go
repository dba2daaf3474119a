package store

import (
	"errors"
	"slices"
	"testing"

	"github.com/portcullis-proxy/portcullis/audit"
)

const scimActor = "scim:acme:tok1"

// followActive is the follow of the tests: an active user is an employee with role user and,
// in a group, the group's name as a role; an inactive one suspended; a deleted one revoked.
func followActive(_, u *SCIMUser, groups []*SCIMGroup, cur *Membership) (*Membership, error) {
	if u == nil {
		if cur == nil {
			return nil, nil
		}
		m := cloneMembership(cur)
		m.Status = MembershipRevoked
		return m, nil
	}
	m := &Membership{Kind: KindEmployee, Roles: []string{"user"}, Status: MembershipActive}
	for _, g := range groups {
		m.Roles = append(m.Roles, g.DisplayName)
	}
	if !u.Active {
		m.Status = MembershipSuspended
	}
	return m, nil
}

func TestSCIMChange(t *testing.T) {
	f := newOrgFixture(t)
	f.createOrg("acme")
	f.createOrg("beta")
	ctx := f.ctx()
	alice, bob := "https://idp.acme|alice", "https://idp.acme|bob"
	aid, bid, gid := NewSCIMID(), NewSCIMID(), NewSCIMID()
	put := func(st *SCIMState) error {
		st.Users[aid] = &SCIMUser{User: alice, UserName: "alice@acme.example", ExternalID: "a-1", Active: true}
		return nil
	}
	if err := f.o.SCIMChange(ctx, "acme", put, followActive, scimActor, "scim"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.SCIMUserCreated, audit.MembershipGranted}, invalMembership("acme", alice))
	if _, m, err := f.s.Lookup(ctx, "acme", alice); err != nil || m == nil || m.Status != MembershipActive || m.GrantedBy != scimActor {
		t.Fatalf("alice's membership: %+v %v", m, err)
	}
	// The same state again changes nothing and records nothing.
	if err := f.o.SCIMChange(ctx, "acme", put, followActive, scimActor, "scim"); err != nil {
		t.Fatal(err)
	}
	f.expect(nil)

	// Uniqueness, the person bound for good, group members that exist: each refused with
	// nothing written.
	for name, edit := range map[string]func(st *SCIMState) error{
		"userName without case": func(st *SCIMState) error {
			st.Users[bid] = &SCIMUser{User: bob, UserName: "ALICE@acme.example", Active: true}
			return nil
		},
		"externalId": func(st *SCIMState) error {
			st.Users[bid] = &SCIMUser{User: bob, UserName: "bob@acme.example", ExternalID: "a-1", Active: true}
			return nil
		},
		"the same person twice": func(st *SCIMState) error {
			st.Users[bid] = &SCIMUser{User: alice, UserName: "alias@acme.example", Active: true}
			return nil
		},
		"another person": func(st *SCIMState) error { st.Users[aid].User = bob; return nil },
		"a member that is no user": func(st *SCIMState) error {
			st.Groups[gid] = &SCIMGroup{DisplayName: "admin", Members: []string{"nobody"}}
			return nil
		},
	} {
		if err := f.o.SCIMChange(ctx, "acme", edit, followActive, scimActor, "scim"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	f.expect(nil)
	// A follow that refuses (the policy) leaves the records as they were.
	refuse := func(_, _ *SCIMUser, _ []*SCIMGroup, _ *Membership) (*Membership, error) {
		return nil, errors.New("outside the policy")
	}
	deactivate := func(st *SCIMState) error { st.Users[aid].Active = false; return nil }
	if err := f.o.SCIMChange(ctx, "acme", deactivate, refuse, scimActor, "scim"); err == nil || err.Error() != "scim change acme: outside the policy" {
		t.Errorf("refused follow: %v", err)
	}
	if u, _ := f.s.SCIMUser(ctx, "acme", aid); u == nil || !u.Active {
		t.Errorf("a refused change was written: %+v", u)
	}
	f.expect(nil)

	// A group's members follow; deactivation suspends; deletion revokes.
	if err := f.o.SCIMChange(ctx, "acme", func(st *SCIMState) error {
		st.Groups[gid] = &SCIMGroup{DisplayName: "admin", Members: []string{aid}}
		return nil
	}, followActive, scimActor, "scim"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.SCIMGroupCreated, audit.MembershipChanged}, invalMembership("acme", alice))
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); m == nil || len(m.Roles) != 2 {
		t.Errorf("roles after the group: %+v", m)
	}
	// A rename changes what the group gives: its members follow.
	if err := f.o.SCIMChange(ctx, "acme", func(st *SCIMState) error { st.Groups[gid].DisplayName = "auditor"; return nil }, followActive, scimActor, "scim"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.SCIMGroupChanged, audit.MembershipChanged}, invalMembership("acme", alice))
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); m == nil || !slices.Contains(m.Roles, "auditor") || slices.Contains(m.Roles, "admin") {
		t.Errorf("roles after the rename: %+v", m)
	}
	if err := f.o.SCIMChange(ctx, "acme", deactivate, followActive, scimActor, "scim"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.SCIMUserChanged, audit.MembershipChanged}, invalMembership("acme", alice))
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); m == nil || m.Status != MembershipSuspended {
		t.Errorf("after active false: %+v", m)
	}
	if err := f.o.SCIMChange(ctx, "acme", func(st *SCIMState) error {
		delete(st.Users, aid)
		st.Groups[gid].Members = nil
		return nil
	}, followActive, scimActor, "scim"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.SCIMUserDeleted, audit.SCIMGroupChanged, audit.MembershipRevoked}, invalMembership("acme", alice))
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); m == nil || m.Status != MembershipRevoked {
		t.Errorf("after delete: %+v", m)
	}
	if _, err := f.s.SCIMUser(ctx, "acme", aid); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted user: %v", err)
	}
	// Another organisation's records are its own.
	if us, err := f.s.SCIMUsers(ctx, "beta"); err != nil || len(us) != 0 {
		t.Errorf("beta's users: %v %v", us, err)
	}
	if err := f.o.SCIMChange(ctx, "nope", put, followActive, scimActor, "scim"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown org: %v", err)
	}
}
