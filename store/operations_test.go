package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

const (
	carol = "https://idp.example|carol"
	dave  = "https://idp.example|dave"
)

// applyBoth runs ev as a dry run and then for real, checks that the dry run wrote nothing and
// listed exactly the changes the real run made, and returns the real outcome.
func (f *orgFixture) applyBoth(ev BusinessEvent, reason string) *Outcome {
	f.t.Helper()
	dry, err := f.o.Apply(f.ctx(), ev, admin, reason, true)
	if err != nil {
		f.t.Fatalf("dry run of %s: %v", ev.Event, err)
	}
	if !dry.DryRun {
		f.t.Error("a dry run's outcome does not say so")
	}
	f.expect(nil) // nothing written, nothing announced
	real, err := f.o.Apply(f.ctx(), ev, admin, reason, false)
	if err != nil {
		f.t.Fatalf("%s: %v", ev.Event, err)
	}
	if real.DryRun {
		f.t.Error("a real run's outcome says it is a dry run")
	}
	if got, want := withoutIDs(real.Changes), withoutIDs(dry.Changes); !slices.Equal(got, want) {
		f.t.Errorf("%s: the real run changed\n%v\nthe dry run listed\n%v", ev.Event, got, want)
	}
	if !slices.Equal(real.Ends, dry.Ends) || !slices.Equal(real.Skipped, dry.Skipped) {
		f.t.Errorf("%s: ends/skipped differ: %v %v / %v %v", ev.Event, real.Ends, real.Skipped, dry.Ends, dry.Skipped)
	}
	return real
}

func withoutIDs(cs []Change) []Change {
	out := slices.Clone(cs)
	for i := range out {
		out[i].ID = ""
	}
	return out
}

// checkFamily checks the events of one operation: the parent first, then one child per
// change, all with the operation's id, actor and reason.
func checkFamily(t *testing.T, evs []audit.Event, out *Outcome, parent audit.Type, reason string) {
	t.Helper()
	if len(evs) != len(out.Changes)+1 {
		t.Fatalf("%d events for %d changes", len(evs), len(out.Changes))
	}
	if evs[0].Type != parent || evs[0].Detail["changes"] != fmt.Sprint(len(out.Changes)) {
		t.Errorf("parent event %+v", evs[0])
	}
	for i, e := range evs {
		if e.Operation != out.Operation || e.Actor != admin || e.Reason != reason {
			t.Errorf("event %d (%s): operation %q actor %q reason %q", i, e.Type, e.Operation, e.Actor, e.Reason)
		}
		if i > 0 && (e.Type != out.Changes[i-1].Type || e.Org != out.Changes[i-1].Org) {
			t.Errorf("event %d is %s in %s, change is %+v", i, e.Type, e.Org, out.Changes[i-1])
		}
	}
}

func types(cs []Change) []audit.Type {
	var out []audit.Type
	for _, c := range cs {
		out = append(out, c.Type)
	}
	return out
}

func TestContractEnded(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.createOrg("beta")
	f.grant("acme", alice, "user")
	f.grant("acme", bob)
	f.grant("beta", carol)
	if _, err := f.o.ChangeMembership(ctx, "acme", bob, func(m *Membership) error { m.Status = MembershipRevoked; return nil }, admin, "left"); err != nil {
		t.Fatal(err)
	}
	req, err := f.o.CreateRequest(ctx, Request{Org: "acme", For: alice, Requester: alice, Purpose: "audit", Duration: time.Hour, Reason: "Q4"}, time.Hour, alice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.o.Invite(ctx, Invitation{Org: "acme", Email: "pat@partner.example", Kind: KindPartner, ExpiresAt: time.Now().Add(48 * time.Hour)}, admin, "onboarding"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipChanged, audit.RequestCreated, audit.MembershipInvited}, invalMembership("acme", bob))

	out := f.applyBoth(BusinessEvent{Event: EventContractEnded, Org: "acme"}, "contract 2023-17 not renewed")
	want := []Change{
		{Type: audit.OrgStatusChanged, Org: "acme", What: "status active → ended; the contract ends now"},
		{Type: audit.RequestLapsed, Org: "acme", User: alice, Object: req.ID, What: "request lapsed: the contract of acme ended"},
		{Type: audit.InvitationWithdrawn, Org: "acme", Object: "pat@partner.example", What: "invitation withdrawn: the contract of acme ended"},
	}
	if !slices.Equal(out.Changes, want) {
		t.Errorf("changes\n%v\nwant\n%v", out.Changes, want)
	}
	if !slices.Equal(out.Ends, []MemberRef{{"acme", alice}}) {
		t.Errorf("ends %v: alice's membership stops granting (bob's was revoked already)", out.Ends)
	}
	evs := f.expect(append([]audit.Type{audit.BusinessContractEnded}, types(want)...), invalOrg("acme"))
	checkFamily(t, evs, out, audit.BusinessContractEnded, "contract 2023-17 not renewed")

	org, _ := f.s.Org(ctx, "acme")
	if org.Status != OrgEnded || org.ContractEnd.IsZero() || org.ContractEnd.After(time.Now()) {
		t.Errorf("acme after: %+v", org)
	}
	if r, _ := f.s.Request(ctx, "acme", req.ID); r.State != RequestLapsed || r.DecidedBy != admin {
		t.Errorf("request after: %+v", r)
	}
	if invs, _ := f.s.OrgInvitations(ctx, "acme"); len(invs) != 0 {
		t.Errorf("invitations after: %v", invs)
	}
	if invs, _ := f.s.Invitations(ctx, "pat@partner.example"); len(invs) != 0 {
		t.Errorf("the address still has invitations: %v", invs)
	}
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); m == nil || m.Status != MembershipActive {
		t.Errorf("alice's record changed: %+v (the org's end is what stops it)", m)
	}
	if o, _ := f.s.Org(ctx, "beta"); o.Status != OrgActive {
		t.Error("beta was touched")
	}
	// Ending it again is refused, and writes nothing.
	_, err = f.o.Apply(ctx, BusinessEvent{Event: EventContractEnded, Org: "acme"}, admin, "again", false)
	wantErr(t, "second end", err, ErrInvalid)
	_, err = f.o.Apply(ctx, BusinessEvent{Event: EventContractEnded, Org: "nope"}, admin, "x", true)
	wantErr(t, "unknown org", err, ErrNotFound)
	f.expect(nil)
}

func TestContractRenewed(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	// The contract ended two days ago, and with it acme.
	end := time.Now().Add(-2 * 24 * time.Hour).UTC().Truncate(time.Second)
	setContract(t, f, "acme", end, OrgEnded)
	f.expect([]audit.Type{audit.OrgStatusChanged}, invalOrg("acme"))
	// alice: employee, no end. bob: a partner bound to the contract. carol: a partner with
	// her own, earlier end and a late review.
	f.grant("acme", alice)
	for _, m := range []Membership{
		{Org: "acme", User: bob, Kind: KindPartner, ExpiresAt: end},
		{Org: "acme", User: carol, Kind: KindPartner, ExpiresAt: end.Add(-time.Hour), ReviewBy: end.Add(300 * 24 * time.Hour)},
	} {
		if _, err := f.o.Grant(ctx, m, admin, "setup"); err != nil {
			t.Fatal(err)
		}
	}
	f.expect([]audit.Type{audit.MembershipGranted, audit.MembershipGranted}, invalMembership("acme", bob), invalMembership("acme", carol))

	until := end.Add(365 * 24 * time.Hour)
	out := f.applyBoth(BusinessEvent{Event: EventContractRenewed, Org: "acme", Until: until}, "renewal signed")
	want := []audit.Type{audit.OrgContractChanged, audit.MembershipChanged, audit.MembershipChanged}
	if got := types(out.Changes); !slices.Equal(got, want) || out.Changes[1].User != bob || out.Changes[2].User != carol {
		t.Fatalf("changes %v", out.Changes)
	}
	if !strings.Contains(out.Changes[0].What, "status ended → active") {
		t.Errorf("org change: %s", out.Changes[0].What)
	}
	evs := f.expect(append([]audit.Type{audit.BusinessContractRenewed}, want...), invalOrg("acme"), invalMembership("acme", bob), invalMembership("acme", carol))
	checkFamily(t, evs, out, audit.BusinessContractRenewed, "renewal signed")

	org, _ := f.s.Org(ctx, "acme")
	if org.Status != OrgActive || !org.ContractEnd.Equal(until) {
		t.Errorf("acme: %+v", org)
	}
	due := time.Now().Add(RenewalReview)
	_, b, _ := f.s.Lookup(ctx, "acme", bob)
	if !b.ExpiresAt.Equal(until) || b.ReviewBy.After(due) || b.ReviewBy.IsZero() {
		t.Errorf("bob: %+v", b)
	}
	_, c, _ := f.s.Lookup(ctx, "acme", carol)
	if !c.ExpiresAt.Equal(end.Add(-time.Hour)) || c.ReviewBy.After(due) {
		t.Errorf("carol: her own end stays, her review comes sooner: %+v", c)
	}
	if _, a, _ := f.s.Lookup(ctx, "acme", alice); !a.ExpiresAt.IsZero() || !a.ReviewBy.IsZero() {
		t.Errorf("alice was touched: %+v", a)
	}
	_, err := f.o.Apply(ctx, BusinessEvent{Event: EventContractRenewed, Org: "acme", Until: time.Now().Add(-time.Hour)}, admin, "x", false)
	wantErr(t, "renewal into the past", err, ErrInvalid)

	// An organisation ended otherwise (for cause, its contract still running) stays ended:
	// a renewal moves its contract, activating it is a decision of its own.
	f.createOrg("beta")
	setContract(t, f, "beta", time.Now().Add(24*time.Hour), OrgEnded)
	f.expect([]audit.Type{audit.OrgStatusChanged}, invalOrg("beta"))
	out = f.applyBoth(BusinessEvent{Event: EventContractRenewed, Org: "beta", Until: until}, "renewal signed")
	if o, _ := f.s.Org(ctx, "beta"); o.Status != OrgEnded || strings.Contains(out.Changes[0].What, "active") {
		t.Errorf("beta after the renewal: %+v (%s)", o, out.Changes[0].What)
	}
}

// setContract writes an org's contract end and status directly (what an import would hold).
func setContract(t *testing.T, f *orgFixture, id string, end time.Time, status string) {
	t.Helper()
	if _, err := f.o.SetOrgStatus(f.ctx(), id, OrgStatus{Status: status, ContractEnd: end}, admin, "setup"); err != nil {
		t.Fatal(err)
	}
}

// refusePolicy refuses any membership or request for one person.
type refusePolicy struct{ user string }

var errRefused = errors.New("the policy refuses it")

func (p refusePolicy) Membership(_, after *Membership, _ *Org, _ time.Time) error {
	if after.User == p.user {
		return errRefused
	}
	return nil
}

func (p refusePolicy) Request(r *Request, _ *Membership, _ *Org, _ time.Time) error {
	if r.For == p.user {
		return errRefused
	}
	return nil
}

// TestBusinessEventAllOrNothing: a policy refusing one change of an event refuses the whole
// event: nothing is written, the dry run says so too.
func TestBusinessEventAllOrNothing(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	end := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	setContract(t, f, "acme", end, OrgActive)
	f.expect([]audit.Type{audit.OrgStatusChanged}, invalOrg("acme"))
	for _, u := range []string{alice, bob} {
		if _, err := f.o.Grant(ctx, Membership{Org: "acme", User: u, Kind: KindPartner, ExpiresAt: end}, admin, "setup"); err != nil {
			t.Fatal(err)
		}
	}
	f.expect([]audit.Type{audit.MembershipGranted, audit.MembershipGranted}, invalMembership("acme", alice), invalMembership("acme", bob))
	ev := BusinessEvent{Event: EventContractRenewed, Org: "acme", Until: end.Add(time.Hour), Policy: refusePolicy{bob}}
	for _, dry := range []bool{true, false} {
		if _, err := f.o.Apply(ctx, ev, admin, "renewal", dry); !errors.Is(err, errRefused) {
			t.Errorf("dry %v: %v, want the policy's error", dry, err)
		}
	}
	f.expect(nil)
	if org, _ := f.s.Org(ctx, "acme"); !org.ContractEnd.Equal(end) {
		t.Errorf("the org changed: %+v", org)
	}
	if _, a, _ := f.s.Lookup(ctx, "acme", alice); !a.ExpiresAt.Equal(end) {
		t.Errorf("alice changed: %+v", a)
	}
}

func TestMergedInto(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.createOrg("bigco")
	f.createOrg("gone")
	f.verifyDomain("acme", "acme.example")
	f.verifyDomain("bigco", "bigco.example")
	if _, err := f.o.SetOrgStatus(ctx, "gone", OrgStatus{Status: OrgEnded}, admin, "x"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.OrgStatusChanged}, invalOrg("gone"))
	partnerEnd := time.Now().Add(10 * 24 * time.Hour).UTC()
	for _, m := range []Membership{
		{Org: "acme", User: alice, Kind: KindEmployee, Roles: []string{"user", "billing"}},
		{Org: "acme", User: bob, Kind: KindPartner, ExpiresAt: partnerEnd},
		{Org: "acme", User: carol, Kind: KindEmployee},
		{Org: "acme", User: dave, Kind: KindEmployee},
		{Org: "bigco", User: dave, Kind: KindEmployee, Roles: []string{"user"}},
	} {
		if _, err := f.o.Grant(ctx, m, admin, "setup"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.o.Revoke(ctx, "acme", carol, admin, "left"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipGranted, audit.MembershipGranted, audit.MembershipGranted, audit.MembershipGranted, audit.MembershipGranted, audit.MembershipRevoked},
		invalMembership("acme", alice), invalMembership("acme", bob), invalMembership("acme", carol), invalMembership("acme", dave), invalMembership("bigco", dave), invalMembership("acme", carol))

	_, err := f.o.Apply(ctx, BusinessEvent{Event: EventMergedInto, Org: "acme", Into: "gone"}, admin, "x", true)
	wantErr(t, "merge into an ended org", err, ErrInvalid)
	_, err = f.o.Apply(ctx, BusinessEvent{Event: EventMergedInto, Org: "acme", Into: "acme"}, admin, "x", true)
	wantErr(t, "merge into itself", err, ErrInvalid)

	out := f.applyBoth(BusinessEvent{Event: EventMergedInto, Org: "acme", Into: "bigco", RequestTTL: 7 * 24 * time.Hour}, "acquisition closed")
	want := []audit.Type{audit.OrgMerged, audit.DomainAdded, audit.RequestCreated, audit.RequestCreated}
	if got := types(out.Changes); !slices.Equal(got, want) {
		t.Fatalf("changes %v", out.Changes)
	}
	if c := out.Changes[2]; c.User != alice || c.Org != "bigco" || c.ID == "" || c.What != "membership requested: employee with roles billing, user (was in acme)" {
		t.Errorf("alice's request: %+v", c)
	}
	if !slices.Equal(out.Skipped, []Change{{Type: audit.RequestCreated, Org: "bigco", User: dave, What: "already has a membership in bigco: nothing to request"}}) {
		t.Errorf("skipped %v", out.Skipped)
	}
	if !slices.Equal(out.Ends, []MemberRef{{"acme", alice}, {"acme", bob}, {"acme", dave}}) {
		t.Errorf("ends %v", out.Ends)
	}
	evs := f.expect(append([]audit.Type{audit.BusinessMergedInto}, want...), invalOrg("acme"), invalOrg("bigco"))
	checkFamily(t, evs, out, audit.BusinessMergedInto, "acquisition closed")

	a, _ := f.s.Org(ctx, "acme")
	if a.Status != OrgEnded || a.MergedInto != "bigco" || a.Domains[0].Status != DomainLapsed {
		t.Errorf("acme: %+v", a)
	}
	x, _ := f.s.Org(ctx, "bigco")
	if len(x.Domains) != 2 || x.Domains[1].Name != "acme.example" || x.Domains[1].Status != DomainPending {
		t.Errorf("bigco: %+v", x)
	}
	// The domain still points at acme (ended) until bigco verifies it: recovery through it
	// stays blocked, and bigco can take it over, since acme no longer has it verified.
	if o, _ := f.s.OrgByDomain(ctx, "acme.example"); o == nil || o.ID != "acme" {
		t.Errorf("acme.example now names %+v", o)
	}
	if _, err := f.o.SetDomainStatus(ctx, "bigco", "acme.example", DomainVerified, admin, "TXT record found"); err != nil {
		t.Errorf("bigco verifies the domain: %v", err)
	}
	f.expect([]audit.Type{audit.DomainVerified}, invalOrg("bigco"))

	reqs, _ := f.s.Requests(ctx, "bigco", 0)
	byUser := map[string]Request{}
	for _, r := range reqs {
		byUser[r.For] = r
	}
	ra, rb := byUser[alice], byUser[bob]
	if ra.Kind != KindEmployee || !slices.Equal(ra.Roles, []string{"billing", "user"}) || ra.Requester != admin || !ra.Pending(time.Now()) ||
		ra.Lapses.Sub(ra.Created) != 7*24*time.Hour || ra.Duration != 365*24*time.Hour {
		t.Errorf("alice's request: %+v", ra)
	}
	if rb.Kind != KindPartner || rb.Duration <= 9*24*time.Hour || rb.Duration > 10*24*time.Hour {
		t.Errorf("bob's request asks for what was left of his membership: %+v", rb)
	}
	if _, ok := byUser[carol]; ok {
		t.Error("a revoked membership became a request")
	}
	if _, m, _ := f.s.Lookup(ctx, "bigco", alice); m != nil {
		t.Errorf("alice got a membership in bigco without approval: %+v", m)
	}
	_, err = f.o.Apply(ctx, BusinessEvent{Event: EventMergedInto, Org: "acme", Into: "bigco"}, admin, "again", false)
	wantErr(t, "second merger", err, ErrInvalid)
	f.expect(nil)
}

func TestRoleChanged(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	now := time.Now().UTC()
	if _, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, Roles: []string{"admin"},
		RoleGrants: []RoleGrant{{Role: "billing-admin", ExpiresAt: now.Add(time.Hour), GrantedAt: now}}}, admin, "setup"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipGranted}, invalMembership("acme", alice))
	out := f.applyBoth(BusinessEvent{Event: EventRoleChanged, Org: "acme", User: alice, Roles: []string{"viewer"}}, "moved to sales")
	want := Change{Type: audit.MembershipChanged, Org: "acme", User: alice,
		What: "roles admin → viewer; time-boxed roles ended: billing-admin; step-up elevations for acme ended"}
	if !slices.Equal(out.Changes, []Change{want}) {
		t.Errorf("changes %v", out.Changes)
	}
	f.expect([]audit.Type{audit.BusinessRoleChanged, audit.MembershipChanged}, invalMembership("acme", alice))
	_, m, _ := f.s.Lookup(ctx, "acme", alice)
	if !slices.Equal(m.Roles, []string{"viewer"}) || len(m.RoleGrants) != 0 || m.ElevationsAfter.Before(now) {
		t.Errorf("alice after: %+v", m)
	}
	// A later write of the membership keeps the cut-off (a grant replacing the record must not
	// bring pre-change elevations back), and moves it when the roles change again.
	cut := m.ElevationsAfter
	if m2, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, Roles: []string{"viewer"}}, admin, "re-grant"); err != nil || !m2.ElevationsAfter.Equal(cut) {
		t.Errorf("a re-grant with the same roles: %v %v, want the cut-off %v kept", m2.ElevationsAfter, err, cut)
	}
	if m3, err := f.o.ChangeMembership(ctx, "acme", alice, func(m *Membership) error { m.Roles = []string{"viewer", "billing"}; return nil }, admin, "more"); err != nil || !m3.ElevationsAfter.After(cut) {
		t.Errorf("a role change through ChangeMembership: %v %v, want a later cut-off", m3.ElevationsAfter, err)
	}
	f.expect([]audit.Type{audit.MembershipGranted, audit.MembershipChanged}, invalMembership("acme", alice), invalMembership("acme", alice))
	_, err := f.o.Apply(ctx, BusinessEvent{Event: EventRoleChanged, Org: "acme", User: bob, Roles: []string{"x"}}, admin, "x", true)
	wantErr(t, "no membership", err, ErrNotFound)
	_, err = f.o.Apply(ctx, BusinessEvent{Event: EventRoleChanged, Org: "acme", User: alice, Roles: []string{"Not A Role"}}, admin, "x", true)
	wantErr(t, "bad role", err, ErrInvalid)
}

func TestOffboardedOperation(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	for _, id := range []string{"acme", "beta", "gamma"} {
		f.createOrg(id)
	}
	if _, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindPartner, Email: "alice@partner.example", ExpiresAt: time.Now().Add(time.Hour)}, admin, "setup"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipGranted}, invalMembership("acme", alice))
	f.grant("beta", alice)
	req, err := f.o.CreateRequest(ctx, Request{Org: "beta", For: alice, Requester: alice, Purpose: "audit", Duration: time.Hour, Reason: "Q4"}, time.Hour, alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, inv := range []Invitation{
		{Org: "gamma", Email: "alice@partner.example", Kind: KindPartner, ExpiresAt: time.Now().Add(48 * time.Hour)},
		{Org: "gamma", Email: "alice@home.example", Kind: KindPartner, ExpiresAt: time.Now().Add(48 * time.Hour)},
		{Org: "gamma", Email: "bob@partner.example", Kind: KindPartner, ExpiresAt: time.Now().Add(48 * time.Hour)},
	} {
		if _, err := f.o.Invite(ctx, inv, admin, "x"); err != nil {
			t.Fatal(err)
		}
	}
	_, tok, err := f.o.CreateToken(ctx, Token{Name: "a", Owner: alice, Expires: time.Now().Add(time.Hour)}, admin, "x")
	if err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.RequestCreated, audit.MembershipInvited, audit.MembershipInvited, audit.MembershipInvited, audit.TokenCreated})

	out := f.applyBoth(BusinessEvent{Event: EventOffboarded, User: alice, Emails: []string{"Alice@Home.example"}}, "left the company")
	want := []Change{
		{Type: audit.MembershipRevoked, Org: "acme", User: alice, What: "membership revoked"},
		{Type: audit.MembershipRevoked, Org: "beta", User: alice, What: "membership revoked"},
		{Type: audit.RequestCancelled, Org: "beta", User: alice, Object: req.ID, What: "request cancelled: the person was offboarded"},
		{Type: audit.InvitationWithdrawn, Org: "gamma", Object: "alice@home.example", What: "invitation withdrawn: the person was offboarded"},
		{Type: audit.InvitationWithdrawn, Org: "gamma", Object: "alice@partner.example", What: "invitation withdrawn: the person was offboarded"},
		{Type: audit.TokenRevoked, User: alice, Object: tok.ID, What: "admin API token revoked"},
	}
	if !slices.Equal(out.Changes, want) {
		t.Errorf("changes\n%v\nwant\n%v", out.Changes, want)
	}
	evs := f.expect(append([]audit.Type{audit.PersonOffboarded}, types(want)...),
		invalMembership("acme", alice), invalMembership("beta", alice), invalUser(alice))
	checkFamily(t, evs, out, audit.PersonOffboarded, "left the company")
	if evs[0].Detail["orgs"] != "acme,beta" || evs[0].Detail["tokens"] != tok.ID {
		t.Errorf("parent %+v", evs[0])
	}
	if invs, _ := f.s.Invitations(ctx, "bob@partner.example"); len(invs) != 1 {
		t.Error("bob's invitation was withdrawn")
	}
}

func TestDomainLapsedOperation(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.verifyDomain("acme", "acme.example")
	if _, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, Email: "alice@acme.example"}, admin, "setup"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipGranted}, invalMembership("acme", alice))
	f.grant("acme", bob)
	out := f.applyBoth(BusinessEvent{Event: EventDomainLapsed, Org: "acme", Domain: "ACME.example."}, "registration expired")
	if !slices.Equal(out.Changes, []Change{{Type: audit.DomainLapsed, Org: "acme", What: "domain acme.example verified → lapsed"}}) ||
		!slices.Equal(out.Ends, []MemberRef{{"acme", alice}}) {
		t.Errorf("outcome %+v", out)
	}
	f.expect([]audit.Type{audit.BusinessDomainLapsed, audit.DomainLapsed}, invalOrg("acme"))
	_, err := f.o.Apply(ctx, BusinessEvent{Event: EventDomainLapsed, Org: "acme", Domain: "acme.example"}, admin, "x", false)
	wantErr(t, "lapsed twice", err, ErrInvalid)
}

// TestBusinessEventInput: malformed events are refused before anything is read.
func TestBusinessEventInput(t *testing.T) {
	f := newOrgFixture(t)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		ev     BusinessEvent
		actor  string
		reason string
	}{
		{"no reason", BusinessEvent{Event: EventContractEnded, Org: "acme"}, admin, " "},
		{"no actor", BusinessEvent{Event: EventContractEnded, Org: "acme"}, "", "x"},
		{"unknown event", BusinessEvent{Event: "sold", Org: "acme"}, admin, "x"},
		{"bad org", BusinessEvent{Event: EventContractEnded, Org: "Acme Corp"}, admin, "x"},
		{"renewal without end", BusinessEvent{Event: EventContractRenewed, Org: "acme"}, admin, "x"},
		{"merger without survivor", BusinessEvent{Event: EventMergedInto, Org: "acme"}, admin, "x"},
		{"offboarding without person", BusinessEvent{Event: EventOffboarded}, admin, "x"},
		{"offboarding with a bad address", BusinessEvent{Event: EventOffboarded, User: alice, Emails: []string{"not an address"}}, admin, "x"},
		{"lapse without domain", BusinessEvent{Event: EventDomainLapsed, Org: "acme"}, admin, "x"},
	} {
		if _, err := f.o.Apply(ctx, c.ev, c.actor, c.reason, false); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
	f.expect(nil)
}
