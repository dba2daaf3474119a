package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

const (
	alice = "https://idp.example|alice"
	bob   = "https://idp.example|bob"
	admin = "https://idp.example|admin"
)

// orgFixture is a Store on the shared server with its own database and key prefix (so its own
// invalidation channel), a subscriber on that channel and a cursor in the audit stream: enough
// to check that a change wrote its record, its event and its invalidation.
type orgFixture struct {
	t      *testing.T
	s      *Store
	o      *Orgs
	a      *Audit
	raw    *redis.Client
	sub    *redis.PubSub
	cursor string
}

func newOrgFixture(t *testing.T) *orgFixture {
	t.Helper()
	srv := redistest.Shared(t)
	s := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: redistest.Prefix(t)})
	a := NewAudit(s, 0)
	f := &orgFixture{t: t, s: s, o: NewOrgs(s, a), a: a, raw: srv.Client(t)}
	f.sub = f.raw.Subscribe(ctxT(t, 5*time.Second), s.keys.invalidations())
	t.Cleanup(func() { f.sub.Close() })
	if _, err := f.sub.ReceiveTimeout(ctxT(t, 5*time.Second), 5*time.Second); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return f
}

func (f *orgFixture) ctx() context.Context { return ctxT(f.t, 10*time.Second) }

// expect checks that exactly the given events were appended since the last call, and that the
// given invalidation messages were published, in order. It returns the events.
func (f *orgFixture) expect(types []audit.Type, inval ...string) []audit.Event {
	f.t.Helper()
	evs, next, err := f.a.Tail(f.ctx(), f.cursor, 1000, 0)
	if err != nil {
		f.t.Fatalf("tail: %v", err)
	}
	f.cursor = next
	var got []audit.Type
	for _, e := range evs {
		got = append(got, e.Type)
	}
	if !slices.Equal(got, types) {
		f.t.Errorf("audit events %v, want %v", got, types)
	}
	for _, want := range inval {
		msg, err := f.sub.ReceiveTimeout(f.ctx(), 2*time.Second)
		if err != nil {
			f.t.Errorf("invalidation %q not received: %v", want, err)
			continue
		}
		if m, ok := msg.(*redis.Message); !ok || m.Payload != want {
			f.t.Errorf("invalidation %v, want %q", msg, want)
		}
	}
	f.expectQuiet()
	return evs
}

// expectQuiet checks that no further invalidation is published.
func (f *orgFixture) expectQuiet() {
	f.t.Helper()
	if msg, err := f.sub.ReceiveTimeout(f.ctx(), 30*time.Millisecond); err == nil {
		f.t.Errorf("unexpected invalidation %v", msg)
	}
}

func (f *orgFixture) createOrg(id string) {
	f.t.Helper()
	if _, err := f.o.CreateOrg(f.ctx(), Org{ID: id, Name: strings.ToUpper(id)}, admin, "setup"); err != nil {
		f.t.Fatal(err)
	}
	f.expect([]audit.Type{audit.OrgCreated}, invalOrg(id))
}

func (f *orgFixture) grant(org, user string, roles ...string) *Membership {
	f.t.Helper()
	m, err := f.o.Grant(f.ctx(), Membership{Org: org, User: user, Kind: KindEmployee, Roles: roles}, admin, "setup")
	if err != nil {
		f.t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipGranted}, invalMembership(org, user))
	return m
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

func TestOrgChanges(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()

	org, err := f.o.CreateOrg(ctx, Org{ID: "acme", Name: "Acme", Contact: "it@acme.example"}, admin, "signed contract C-1")
	if err != nil {
		t.Fatal(err)
	}
	if org.Status != OrgActive || org.Updated.Location() != time.UTC {
		t.Errorf("created %+v", org)
	}
	evs := f.expect([]audit.Type{audit.OrgCreated}, "o:acme")
	if e := evs[0]; e.Actor != admin || e.Org != "acme" || e.Reason != "signed contract C-1" || e.Before != nil || !strings.Contains(string(e.After), `"name":"Acme"`) {
		t.Errorf("event %+v", e)
	}
	_, err = f.o.CreateOrg(ctx, Org{ID: "acme"}, admin, "again")
	wantErr(t, "create twice", err, ErrExists)
	f.expect(nil)

	end := time.Date(2027, 1, 31, 0, 0, 0, 0, time.FixedZone("CET", 3600))
	org, err = f.o.SetOrgStatus(ctx, "acme", OrgStatus{Status: OrgSuspended, ContractEnd: end}, admin, "unpaid invoice")
	if err != nil {
		t.Fatal(err)
	}
	if org.Status != OrgSuspended || !org.ContractEnd.Equal(end) || org.ContractEnd.Location() != time.UTC {
		t.Errorf("after status change %+v", org)
	}
	evs = f.expect([]audit.Type{audit.OrgStatusChanged}, "o:acme")
	if !strings.Contains(string(evs[0].Before), `"status":"active"`) || !strings.Contains(string(evs[0].After), `"status":"suspended"`) {
		t.Errorf("before/after: %s → %s", evs[0].Before, evs[0].After)
	}
	// Zero fields keep what is stored.
	if org, err = f.o.SetOrgStatus(ctx, "acme", OrgStatus{Status: OrgActive}, admin, "paid"); err != nil || !org.ContractEnd.Equal(end) {
		t.Errorf("reactivate: %+v, %v", org, err)
	}
	f.expect([]audit.Type{audit.OrgStatusChanged}, "o:acme")
	_, err = f.o.SetOrgStatus(ctx, "nope", OrgStatus{Status: OrgEnded}, admin, "")
	wantErr(t, "status of missing org", err, ErrNotFound)

	// Domains: added pending, indexed once verified, still indexed (to this org) when lapsed.
	if org, err = f.o.AddDomain(ctx, "acme", "Acme.Example.", admin, "claimed"); err != nil {
		t.Fatal(err)
	}
	if len(org.Domains) != 1 || org.Domains[0].Name != "acme.example" || org.Domains[0].Status != DomainPending {
		t.Errorf("domains %+v", org.Domains)
	}
	evs = f.expect([]audit.Type{audit.DomainAdded}, "o:acme")
	if evs[0].Detail["domain"] != "acme.example" {
		t.Errorf("detail %v", evs[0].Detail)
	}
	_, err = f.o.AddDomain(ctx, "acme", "acme.example", admin, "")
	wantErr(t, "add domain twice", err, ErrExists)
	_, err = f.s.OrgByDomain(ctx, "acme.example")
	wantErr(t, "pending domain lookup", err, ErrNotFound)

	if _, err = f.o.SetDomainStatus(ctx, "acme", "acme.example", DomainVerified, admin, "TXT record found"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.DomainVerified}, "o:acme")
	if got, err := f.s.OrgByDomain(ctx, "ACME.example"); err != nil || got.ID != "acme" {
		t.Errorf("OrgByDomain = %+v, %v", got, err)
	}

	// Another org cannot verify a domain that is verified elsewhere...
	f.createOrg("beta")
	if _, err := f.o.AddDomain(ctx, "beta", "acme.example", admin, ""); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.DomainAdded}, "o:beta")
	_, err = f.o.SetDomainStatus(ctx, "beta", "acme.example", DomainVerified, admin, "")
	wantErr(t, "verify a domain another org holds", err, ErrConflict)
	f.expect(nil)

	// ...but may once it has lapsed there. Until then the index names the lapsed holder.
	if _, err = f.o.SetDomainStatus(ctx, "acme", "acme.example", DomainLapsed, admin, "registration expired"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.DomainLapsed}, "o:acme")
	if got, err := f.s.OrgByDomain(ctx, "acme.example"); err != nil || got.ID != "acme" || got.Domains[0].Status != DomainLapsed {
		t.Errorf("OrgByDomain after lapse = %+v, %v", got, err)
	}
	if _, err = f.o.SetDomainStatus(ctx, "beta", "acme.example", DomainVerified, admin, "bought the domain"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.DomainVerified}, "o:beta")
	if got, err := f.s.OrgByDomain(ctx, "acme.example"); err != nil || got.ID != "beta" {
		t.Errorf("OrgByDomain after takeover = %+v, %v", got, err)
	}
	_, err = f.o.SetDomainStatus(ctx, "acme", "other.example", DomainVerified, admin, "")
	wantErr(t, "status of unlisted domain", err, ErrNotFound)
	f.expect(nil)

	if got, err := f.s.Org(ctx, "acme"); err != nil || got.Contact != "it@acme.example" {
		t.Errorf("Org = %+v, %v", got, err)
	}
	_, err = f.s.Org(ctx, "nope")
	wantErr(t, "missing org", err, ErrNotFound)
}

func TestMembershipChanges(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()

	_, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee}, admin, "")
	wantErr(t, "grant in missing org", err, ErrNotFound)
	f.expect(nil)
	f.createOrg("acme")

	cet := time.FixedZone("CET", 3600)
	m, err := f.o.Grant(ctx, Membership{
		Org: "acme", User: alice, Kind: KindPartner, Roles: []string{"viewer", "admin", "viewer"},
		Grants:     []Grant{{Purpose: "audit", Reason: "AUD-7", ApprovedBy: "ciso", ExpiresAt: time.Date(2027, 1, 1, 0, 0, 0, 0, cet)}},
		ApprovedBy: "ciso", ExpiresAt: time.Date(2027, 6, 1, 0, 0, 0, 0, cet), ReviewBy: time.Date(2027, 3, 1, 0, 0, 0, 0, cet),
	}, admin, "partner contract P-3")
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != MembershipActive || !slices.Equal(m.Roles, []string{"admin", "viewer"}) || m.GrantedBy != admin ||
		m.Grants[0].GrantedBy != admin || m.ExpiresAt.Location() != time.UTC || m.Grants[0].ExpiresAt.Location() != time.UTC {
		t.Errorf("granted %+v", m)
	}
	evs := f.expect([]audit.Type{audit.MembershipGranted}, invalMembership("acme", alice))
	if e := evs[0]; e.Org != "acme" || e.User != alice || e.Actor != admin || e.Reason != "partner contract P-3" || e.Before != nil {
		t.Errorf("event %+v", e)
	}

	o, got, err := f.s.Lookup(ctx, "acme", alice)
	if err != nil || o == nil || o.ID != "acme" || got == nil || got.Kind != KindPartner || got.Grants[0].Reason != "AUD-7" {
		t.Fatalf("Lookup = %+v, %+v, %v", o, got, err)
	}
	if o, got, err := f.s.Lookup(ctx, "acme", bob); err != nil || o == nil || got != nil {
		t.Errorf("Lookup of non-member = %+v, %+v, %v", o, got, err)
	}
	if o, got, err := f.s.Lookup(ctx, "ghost", alice); err != nil || o != nil || got != nil {
		t.Errorf("Lookup in missing org = %+v, %+v, %v", o, got, err)
	}
	if o, got, err := f.s.Lookup(ctx, "Not/An.Org", alice); err != nil || o != nil || got != nil {
		t.Errorf("Lookup of impossible org = %+v, %+v, %v", o, got, err)
	}
	if _, _, err := f.s.Lookup(ctx, "acme", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Lookup without user: %v", err)
	}
	if orgs, err := f.s.OrgsOf(ctx, alice); err != nil || !slices.Equal(orgs, []string{"acme"}) {
		t.Errorf("OrgsOf = %v, %v", orgs, err)
	}

	// Re-granting replaces the membership but keeps its creation time.
	created := m.Created
	f.o.now = func() time.Time { return time.Now().UTC().Add(time.Hour) }
	m, err = f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee}, admin, "hired")
	if err != nil || !m.Created.Equal(created) || m.Kind != KindEmployee || len(m.Roles) != 0 {
		t.Errorf("re-grant = %+v, %v", m, err)
	}
	evs = f.expect([]audit.Type{audit.MembershipGranted}, invalMembership("acme", alice))
	if !strings.Contains(string(evs[0].Before), `"kind":"partner"`) {
		t.Errorf("before = %s", evs[0].Before)
	}

	m, err = f.o.ChangeMembership(ctx, "acme", alice, func(m *Membership) error {
		m.Roles = append(m.Roles, "billing")
		m.Org, m.User = "beta", bob // ignored: a change cannot move a membership
		return nil
	}, admin, "took over billing")
	if err != nil || !slices.Equal(m.Roles, []string{"billing"}) || m.Org != "acme" || m.User != alice {
		t.Errorf("change = %+v, %v", m, err)
	}
	f.expect([]audit.Type{audit.MembershipChanged}, invalMembership("acme", alice))

	boom := errors.New("boom")
	_, err = f.o.ChangeMembership(ctx, "acme", alice, func(*Membership) error { return boom }, admin, "")
	wantErr(t, "edit error", err, boom)
	_, err = f.o.ChangeMembership(ctx, "acme", alice, func(m *Membership) error { m.Kind = "boss"; return nil }, admin, "")
	wantErr(t, "invalid edit", err, ErrInvalid)
	_, err = f.o.ChangeMembership(ctx, "acme", bob, func(*Membership) error { return nil }, admin, "")
	wantErr(t, "change missing", err, ErrNotFound)
	f.expect(nil)

	if m, err = f.o.Revoke(ctx, "acme", alice, admin, "left the company"); err != nil || m.Status != MembershipRevoked {
		t.Fatalf("revoke = %+v, %v", m, err)
	}
	f.expect([]audit.Type{audit.MembershipRevoked}, invalMembership("acme", alice))
	if _, got, err := f.s.Lookup(ctx, "acme", alice); err != nil || got.Status != MembershipRevoked {
		t.Errorf("after revoke Lookup = %+v, %v", got, err)
	}
	if orgs, err := f.s.OrgsOf(ctx, alice); err != nil || len(orgs) != 0 {
		t.Errorf("OrgsOf after revoke = %v, %v", orgs, err)
	}
	if _, err = f.o.Revoke(ctx, "acme", alice, admin, "again"); err != nil {
		t.Errorf("revoke twice: %v", err)
	}
	f.expect(nil) // nothing changed, nothing recorded
	_, err = f.o.Revoke(ctx, "acme", bob, admin, "")
	wantErr(t, "revoke missing", err, ErrNotFound)

	ms, err := f.s.Memberships(ctx, "acme")
	if err != nil || len(ms) != 1 || ms[0].User != alice {
		t.Errorf("Memberships = %+v, %v", ms, err)
	}
}

// TestConcurrentChanges checks the optimistic locking: concurrent edits of one membership all
// land, none overwrites another.
func TestConcurrentChanges(t *testing.T) {
	f := newOrgFixture(t)
	f.createOrg("acme")
	f.grant("acme", alice)
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := f.o.ChangeMembership(f.ctx(), "acme", alice, func(m *Membership) error {
				m.Roles = append(m.Roles, fmt.Sprintf("r%02d", i))
				return nil
			}, admin, "")
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	_, m, err := f.s.Lookup(f.ctx(), "acme", alice)
	if err != nil || len(m.Roles) != n {
		t.Errorf("roles after %d concurrent changes: %v, %v", n, m.Roles, err)
	}
	evs, _, _ := f.a.Tail(f.ctx(), f.cursor, 1000, 0)
	if len(evs) != n {
		t.Errorf("%d events for %d changes", len(evs), n)
	}
}

func TestReviewDue(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	f.createOrg("acme")
	f.createOrg("beta")
	for _, g := range []struct {
		org, user string
		review    time.Time
	}{
		{"acme", "overdue", now.Add(-24 * time.Hour)},
		{"beta", "soon", now.Add(3 * 24 * time.Hour)},
		{"acme", "later", now.Add(60 * 24 * time.Hour)},
		{"acme", "never", time.Time{}},
		{"beta", "revoked", now.Add(-time.Hour)},
	} {
		if _, err := f.o.Grant(ctx, Membership{Org: g.org, User: g.user, Kind: KindEmployee, ReviewBy: g.review}, admin, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.o.Revoke(ctx, "beta", "revoked", admin, ""); err != nil {
		t.Fatal(err)
	}
	due, err := f.s.ReviewDue(ctx, now, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range due {
		got = append(got, m.Org+"/"+m.User)
	}
	if want := []string{"acme/overdue", "beta/soon"}; !slices.Equal(got, want) {
		t.Errorf("ReviewDue = %v, want %v", got, want)
	}
}

func TestOffboard(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	for _, org := range []string{"acme", "beta", "gamma", "delta"} {
		f.createOrg(org)
	}
	f.grant("acme", alice)
	f.grant("beta", alice)
	f.grant("gamma", alice)
	f.grant("acme", bob)
	if _, err := f.o.ChangeMembership(ctx, "gamma", alice, func(m *Membership) error { m.Status = MembershipSuspended; return nil }, admin, ""); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipChanged}, invalMembership("gamma", alice))

	orgs, err := f.o.Offboard(ctx, alice, admin, "HR ticket 99: left")
	if err != nil || !slices.Equal(orgs, []string{"acme", "beta", "gamma"}) {
		t.Fatalf("Offboard = %v, %v", orgs, err)
	}
	evs := f.expect(
		[]audit.Type{audit.PersonOffboarded, audit.MembershipRevoked, audit.MembershipRevoked, audit.MembershipRevoked},
		invalMembership("acme", alice), invalMembership("beta", alice), invalMembership("gamma", alice), invalUser(alice))
	if e := evs[0]; e.User != alice || e.Reason != "HR ticket 99: left" || e.Detail["orgs"] != "acme,beta,gamma" {
		t.Errorf("offboard event %+v", e)
	}
	for _, org := range orgs {
		if _, m, err := f.s.Lookup(ctx, org, alice); err != nil || m.Status != MembershipRevoked {
			t.Errorf("%s after offboard: %+v, %v", org, m, err)
		}
	}
	if left, _ := f.s.OrgsOf(ctx, alice); len(left) != 0 {
		t.Errorf("OrgsOf after offboard = %v", left)
	}
	if _, m, _ := f.s.Lookup(ctx, "acme", bob); m.Status != MembershipActive {
		t.Errorf("bob was touched: %+v", m)
	}
	// Offboarding someone with nothing left still records that it was done.
	if orgs, err := f.o.Offboard(ctx, alice, admin, "again"); err != nil || len(orgs) != 0 {
		t.Errorf("second Offboard = %v, %v", orgs, err)
	}
	f.expect([]audit.Type{audit.PersonOffboarded}, invalUser(alice))
}

// verifyDomain gives org the verified domain d.
func (f *orgFixture) verifyDomain(org, d string) {
	f.t.Helper()
	if _, err := f.o.AddDomain(f.ctx(), org, d, admin, "claimed"); err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.o.SetDomainStatus(f.ctx(), org, d, DomainVerified, admin, "TXT record found"); err != nil {
		f.t.Fatal(err)
	}
	f.expect([]audit.Type{audit.DomainAdded, audit.DomainVerified}, invalOrg(org), invalOrg(org))
}

func TestInvitations(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.verifyDomain("acme", "acme.example")
	f.createOrg("beta")

	_, err := f.o.Invite(ctx, Invitation{Org: "ghost", Email: "x@acme.example", Kind: KindEmployee}, admin, "")
	wantErr(t, "invite to missing org", err, ErrNotFound)
	for _, inv := range []Invitation{
		{Org: "acme", Email: "not-an-address", Kind: KindEmployee},
		{Org: "acme", Email: "a@b@acme.example", Kind: KindEmployee},
		{Org: "acme", Email: "carol@acme.example", Kind: "boss"},
		{Org: "acme", Email: "carol@acme.example", Kind: KindEmployee, Until: time.Now().Add(-time.Minute)},
	} {
		_, err := f.o.Invite(ctx, inv, admin, "")
		wantErr(t, fmt.Sprintf("invite %+v", inv), err, ErrInvalid)
	}
	f.expect(nil)

	inv, err := f.o.Invite(ctx, Invitation{Org: "acme", Email: "Carol@ACME.example", Kind: KindSupport, Roles: []string{"viewer"},
		Grants: []Grant{{Purpose: "onboarding", Reason: "ONB-1"}}}, admin, "new hire")
	if err != nil {
		t.Fatal(err)
	}
	if inv.Email != "carol@acme.example" || inv.InvitedBy != admin || inv.Until.Before(time.Now().Add(13*24*time.Hour)) {
		t.Errorf("invitation %+v", inv)
	}
	evs := f.expect([]audit.Type{audit.MembershipInvited}) // no membership yet: nothing cached to drop
	if evs[0].Detail["email"] != "carol@acme.example" || evs[0].Org != "acme" {
		t.Errorf("invite event %+v", evs[0])
	}
	if _, err := f.o.Invite(ctx, Invitation{Org: "beta", Email: "carol@acme.example", Kind: KindPartner}, admin, ""); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipInvited})
	if invs, err := f.s.Invitations(ctx, "CAROL@acme.example"); err != nil || len(invs) != 2 || invs[0].Org != "acme" || invs[1].Org != "beta" {
		t.Errorf("Invitations = %+v, %v", invs, err)
	}

	const carol = "https://idp.example|carol"
	// An address the IdP has not verified collects nothing, and leaves the invitations alone.
	if orgs, err := f.o.BindInvitations(ctx, "carol@acme.example", false, carol); err != nil || orgs != nil {
		t.Errorf("unverified bind = %v, %v", orgs, err)
	}
	f.expect(nil)

	orgs, err := f.o.BindInvitations(ctx, "carol@Acme.Example", true, carol)
	if err != nil || !slices.Equal(orgs, []string{"acme", "beta"}) {
		t.Fatalf("bind = %v, %v", orgs, err)
	}
	evs = f.expect([]audit.Type{audit.InvitationBound, audit.InvitationBound},
		invalMembership("acme", carol), invalMembership("beta", carol))
	if e := evs[0]; e.User != carol || e.Actor != carol || e.Detail["invited_by"] != admin || e.Detail["email"] != "carol@acme.example" {
		t.Errorf("bind event %+v", e)
	}
	_, m, err := f.s.Lookup(ctx, "acme", carol)
	if err != nil || m == nil || m.Kind != KindSupport || m.Status != MembershipActive || m.GrantedBy != admin ||
		m.Email != "carol@acme.example" || m.Grants[0].Reason != "ONB-1" || !slices.Equal(m.Roles, []string{"viewer"}) {
		t.Errorf("bound membership %+v, %v", m, err)
	}
	if got, _ := f.s.OrgsOf(ctx, carol); !slices.Equal(got, []string{"acme", "beta"}) {
		t.Errorf("OrgsOf after bind = %v", got)
	}

	// Bound once: a second sign-in, or a later owner of the address, gets nothing.
	if orgs, err := f.o.BindInvitations(ctx, "carol@acme.example", true, carol); err != nil || orgs != nil {
		t.Errorf("second bind = %v, %v", orgs, err)
	}
	const newCarol = "https://idp.example|carol-2"
	if orgs, err := f.o.BindInvitations(ctx, "carol@acme.example", true, newCarol); err != nil || orgs != nil {
		t.Errorf("bind by a new owner of the address = %v, %v", orgs, err)
	}
	if _, m, _ := f.s.Lookup(ctx, "acme", newCarol); m != nil {
		t.Errorf("new owner of the address inherited %+v", m)
	}
	f.expect(nil)
	if invs, _ := f.s.Invitations(ctx, "carol@acme.example"); len(invs) != 0 {
		t.Errorf("invitations left after binding: %+v", invs)
	}

	// A lapsed invitation is dropped unbound, and says so.
	if _, err := f.o.Invite(ctx, Invitation{Org: "acme", Email: "dan@acme.example", Kind: KindEmployee, Until: time.Now().Add(time.Hour)}, admin, ""); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipInvited})
	f.o.now = func() time.Time { return time.Now().UTC().Add(2 * time.Hour) }
	if orgs, err := f.o.BindInvitations(ctx, "dan@acme.example", true, "https://idp.example|dan"); err != nil || orgs != nil {
		t.Errorf("bind lapsed = %v, %v", orgs, err)
	}
	f.expect([]audit.Type{audit.InvitationExpired})
	f.o.now = func() time.Time { return time.Now().UTC() }

	// An existing membership is kept, the invitation consumed.
	f.grant("acme", bob, "admin")
	if _, err := f.o.Invite(ctx, Invitation{Org: "acme", Email: "bob@acme.example", Kind: KindEmployee, Roles: []string{"viewer"}}, admin, ""); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipInvited})
	if orgs, err := f.o.BindInvitations(ctx, "bob@acme.example", true, bob); err != nil || orgs != nil {
		t.Errorf("bind for existing member = %v, %v", orgs, err)
	}
	evs = f.expect([]audit.Type{audit.InvitationBound})
	if evs[0].Detail["result"] != "already_member" {
		t.Errorf("event %+v", evs[0])
	}
	if _, m, _ := f.s.Lookup(ctx, "acme", bob); !slices.Equal(m.Roles, []string{"admin"}) {
		t.Errorf("existing membership changed: %+v", m)
	}
}

// TestInvitationsListAndWithdraw: an organisation's invitations are listed until used, and can
// be withdrawn; an inactive organisation takes none, and its employees are invited at its own
// verified domains only.
func TestInvitationsListAndWithdraw(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.verifyDomain("acme", "acme.example")
	if _, err := f.o.AddDomain(ctx, "acme", "acme-old.example", admin, "pending"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.DomainAdded}, invalOrg("acme"))

	for name, inv := range map[string]Invitation{
		"employee at another company's domain": {Org: "acme", Email: "eve@evil.example", Kind: KindEmployee},
		"employee at a pending domain":         {Org: "acme", Email: "eve@acme-old.example", Kind: KindEmployee},
		"employee at a look-alike subdomain":   {Org: "acme", Email: "eve@mail.acme.example", Kind: KindEmployee},
	} {
		_, err := f.o.Invite(ctx, inv, admin, "x")
		wantErr(t, name, err, ErrInvalid)
	}
	f.expect(nil)
	for _, inv := range []Invitation{
		{Org: "acme", Email: "pat@partner.example", Kind: KindPartner, ExpiresAt: time.Now().Add(30 * 24 * time.Hour)},
		{Org: "acme", Email: "carol@acme.example", Kind: KindEmployee},
	} {
		if _, err := f.o.Invite(ctx, inv, admin, "x"); err != nil {
			t.Fatalf("%+v: %v", inv, err)
		}
	}
	f.expect([]audit.Type{audit.MembershipInvited, audit.MembershipInvited})
	invs, err := f.s.OrgInvitations(ctx, "acme")
	if err != nil || len(invs) != 2 || invs[0].Email != "carol@acme.example" || invs[1].Email != "pat@partner.example" {
		t.Fatalf("OrgInvitations = %+v, %v", invs, err)
	}

	// Withdrawn: gone from both indexes, with its event; a second withdrawal finds nothing.
	if _, err := f.o.WithdrawInvitation(ctx, "acme", "PAT@partner.example", admin, "project cancelled"); err != nil {
		t.Fatal(err)
	}
	evs := f.expect([]audit.Type{audit.InvitationWithdrawn})
	if evs[0].Detail["email"] != "pat@partner.example" || evs[0].Reason != "project cancelled" || len(evs[0].Before) == 0 {
		t.Errorf("withdrawal event %+v", evs[0])
	}
	_, err = f.o.WithdrawInvitation(ctx, "acme", "pat@partner.example", admin, "again")
	wantErr(t, "withdraw twice", err, ErrNotFound)
	if orgs, err := f.o.BindInvitations(ctx, "pat@partner.example", true, "https://idp|pat"); err != nil || len(orgs) != 0 {
		t.Errorf("a withdrawn invitation bound: %v, %v", orgs, err)
	}
	// Bound: no longer listed.
	if orgs, err := f.o.BindInvitations(ctx, "carol@acme.example", true, "https://idp|carol"); err != nil || len(orgs) != 1 {
		t.Fatalf("bind = %v, %v", orgs, err)
	}
	f.expect([]audit.Type{audit.InvitationBound}, invalMembership("acme", "https://idp|carol"))
	if invs, err := f.s.OrgInvitations(ctx, "acme"); err != nil || len(invs) != 0 {
		t.Errorf("OrgInvitations after binding = %+v, %v", invs, err)
	}

	// An organisation that is not active takes no invitation.
	if _, err := f.o.SetOrgStatus(ctx, "acme", OrgStatus{Status: OrgSuspended}, admin, "unpaid"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.OrgStatusChanged}, invalOrg("acme"))
	_, err = f.o.Invite(ctx, Invitation{Org: "acme", Email: "dan@acme.example", Kind: KindEmployee}, admin, "x")
	wantErr(t, "invite to a suspended org", err, ErrInvalid)
}

func TestValidation(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"upper-case org id", func() error { _, err := f.o.CreateOrg(ctx, Org{ID: "ACME"}, admin, ""); return err }},
		{"underscore org id", func() error { _, err := f.o.CreateOrg(ctx, Org{ID: "a_b"}, admin, ""); return err }},
		{"empty org id", func() error { _, err := f.o.CreateOrg(ctx, Org{}, admin, ""); return err }},
		{"long org id", func() error { _, err := f.o.CreateOrg(ctx, Org{ID: strings.Repeat("a", 64)}, admin, ""); return err }},
		{"brace org id", func() error { _, err := f.o.CreateOrg(ctx, Org{ID: "acme}"}, admin, ""); return err }},
		{"bad org status", func() error { _, err := f.o.CreateOrg(ctx, Org{ID: "x", Status: "gone"}, admin, ""); return err }},
		{"org with domains", func() error {
			_, err := f.o.CreateOrg(ctx, Org{ID: "x", Domains: []Domain{{Name: "x.example", Status: DomainVerified}}}, admin, "")
			return err
		}},
		{"no actor", func() error { _, err := f.o.CreateOrg(ctx, Org{ID: "x"}, "", ""); return err }},
		{"status", func() error {
			_, err := f.o.SetOrgStatus(ctx, "acme", OrgStatus{Status: "closed"}, admin, "")
			return err
		}},
		{"merged into itself", func() error {
			_, err := f.o.SetOrgStatus(ctx, "acme", OrgStatus{Status: OrgEnded, MergedInto: "acme"}, admin, "")
			return err
		}},
		{"domain without dot", func() error { _, err := f.o.AddDomain(ctx, "acme", "localhost", admin, ""); return err }},
		{"domain label", func() error { _, err := f.o.AddDomain(ctx, "acme", "-a.example", admin, ""); return err }},
		{"domain empty label", func() error { _, err := f.o.AddDomain(ctx, "acme", "a..example", admin, ""); return err }},
		{"domain unicode", func() error { _, err := f.o.AddDomain(ctx, "acme", "bücher.example", admin, ""); return err }},
		{"domain status", func() error { _, err := f.o.SetDomainStatus(ctx, "acme", "a.example", "ok", admin, ""); return err }},
		{"kind", func() error {
			_, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: "boss"}, admin, "")
			return err
		}},
		{"role", func() error {
			_, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, Roles: []string{"Admin"}}, admin, "")
			return err
		}},
		{"purpose", func() error {
			_, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, Grants: []Grant{{Purpose: "a b"}}}, admin, "")
			return err
		}},
		{"purpose twice", func() error {
			_, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, Grants: []Grant{{Purpose: "a"}, {Purpose: "a"}}}, admin, "")
			return err
		}},
		{"empty user", func() error {
			_, err := f.o.Grant(ctx, Membership{Org: "acme", Kind: KindEmployee}, admin, "")
			return err
		}},
		{"user with newline", func() error {
			_, err := f.o.Grant(ctx, Membership{Org: "acme", User: "a\nb", Kind: KindEmployee}, admin, "")
			return err
		}},
		{"revoke bad org", func() error { _, err := f.o.Revoke(ctx, "A", alice, admin, ""); return err }},
		{"offboard empty user", func() error { _, err := f.o.Offboard(ctx, "", admin, ""); return err }},
		{"bind bad email", func() error { _, err := f.o.BindInvitations(ctx, "nope", true, alice); return err }},
		{"tail position", func() error { _, _, err := f.a.Tail(ctx, "12-x", 1, 0); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) { wantErr(t, tc.name, tc.do(), ErrInvalid) })
	}
	f.expect(nil)

	// Every problem is reported at once.
	_, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: "boss", Roles: []string{"Admin"}}, admin, "")
	for _, want := range []string{`kind "boss"`, `role "Admin"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// countHook counts round trips (a pipeline or transaction is one) and the commands in them.
type countHook struct{ trips, cmds atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func TestLookupOneRoundTrip(t *testing.T) {
	f := newOrgFixture(t)
	f.createOrg("acme")
	f.grant("acme", alice)
	h := &countHook{}
	f.s.rdb.AddHook(h)
	for _, user := range []string{alice, bob} { // member and non-member alike
		before := h.trips.Load()
		if _, _, err := f.s.Lookup(f.ctx(), "acme", user); err != nil {
			t.Fatal(err)
		}
		if n := h.trips.Load() - before; n != 1 {
			t.Errorf("Lookup(%s) took %d round trips, want 1", user, n)
		}
	}
	// And the server agrees: one MGET per lookup, nothing else.
	info := f.raw.Info(f.ctx(), "commandstats").Val()
	if !strings.Contains(info, "cmdstat_mget:calls=") {
		t.Errorf("no MGET in commandstats:\n%s", info)
	}
}

// TestChangeIsAtomic shows the record, the event and the invalidation are one unit: when the
// event cannot be written (here the stream key holds the wrong type), the record is unchanged
// and nothing is announced.
func TestChangeIsAtomic(t *testing.T) {
	f := newOrgFixture(t)
	f.createOrg("acme")
	f.grant("acme", alice)
	ctx := f.ctx()
	streamKey := f.s.keys.audit()
	if err := f.raw.Rename(ctx, streamKey, streamKey+"-saved").Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.raw.Set(ctx, streamKey, "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.o.Revoke(ctx, "acme", alice, admin, ""); err == nil {
		t.Fatal("Revoke succeeded without its audit event")
	}
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); m.Status != MembershipActive {
		t.Errorf("record changed without its event: %+v", m)
	}
	if orgs, _ := f.s.OrgsOf(ctx, alice); len(orgs) != 1 {
		t.Errorf("index changed without its event: %v", orgs)
	}
	f.expectQuiet()
	if err := f.raw.Rename(ctx, streamKey+"-saved", streamKey).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.o.Revoke(ctx, "acme", alice, admin, ""); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipRevoked}, invalMembership("acme", alice))
}

func TestOrgKeyNames(t *testing.T) {
	k := mustKeys(t, "")
	for _, tc := range []struct{ got, want string }{
		{k.orgMembers("acme"), "pc:{o:acme}:members"},
		{k.orgIDs(), "pc:orgs"},
		{k.invitations("carol@acme.example"), "pc:{e:carol%40acme.example}:inv"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
	// The members index shares the org's slot; an address cannot leave its own tag.
	if hashTag(k.orgMembers("acme")) != hashTag(k.org("acme")) {
		t.Error("members index is not in the org's slot")
	}
	for _, id := range attackIDs {
		if got := hashTag(k.invitations(id)); got != "e:"+escape(id) {
			t.Errorf("invitations(%q) has tag %q", id, got)
		}
	}
}

func TestCanonicalEmail(t *testing.T) {
	for in, want := range map[string]string{
		"Carol@ACME.Example": "carol@acme.example",
		"a.b+tag@x.example":  "a.b+tag@x.example",
		"x@sub.acme.example": "x@sub.acme.example",
	} {
		if got, err := canonicalEmail(in); err != nil || got != want {
			t.Errorf("canonicalEmail(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "@acme.example", "carol@", "carol", "a@b@c.example", "a b@c.example", "a@c.example.",
		"a\x00@c.example", "a@localhost", "ü@c.example", "a@bü.example", "a@\u212acme.example", `"a"@c.example`, strings.Repeat("a", 65) + "@c.example"} {
		if got, err := canonicalEmail(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("canonicalEmail(%q) = %q, %v", bad, got, err)
		}
	}
}

// TestOrgProvidersAndTrustedInvitations: an organisation's provider list is a normal audited
// change, and an invitation binds only to a person whose provider the organisation trusts; a
// person of another provider with the same verified address leaves it for its owner.
func TestOrgProvidersAndTrustedInvitations(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.verifyDomain("acme", "acme.example")
	f.createOrg("beta")

	_, err := f.o.SetOrgProviders(ctx, "acme", []string{"Not A Name"}, admin, "")
	wantErr(t, "malformed provider name", err, ErrInvalid)
	_, err = f.o.SetOrgProviders(ctx, "ghost", []string{"acme-entra"}, admin, "")
	wantErr(t, "missing org", err, ErrNotFound)
	f.expect(nil)
	o, err := f.o.SetOrgProviders(ctx, "acme", []string{"acme-entra", "default", "acme-entra"}, admin, "acme signs in with Entra ID")
	if err != nil || !slices.Equal(o.Providers, []string{"acme-entra", "default"}) {
		t.Fatalf("SetOrgProviders = %+v, %v", o, err)
	}
	evs := f.expect([]audit.Type{audit.OrgProvidersChanged}, invalOrg("acme"))
	if evs[0].Detail["providers"] != "acme-entra default" || evs[0].Reason != "acme signs in with Entra ID" {
		t.Errorf("event %+v", evs[0])
	}
	if got, _ := f.s.Org(ctx, "acme"); !slices.Equal(got.Providers, []string{"acme-entra", "default"}) {
		t.Errorf("stored providers %v", got.Providers)
	}

	for _, org := range []string{"acme", "beta"} {
		if _, err := f.o.Invite(ctx, Invitation{Org: org, Email: "dan@acme.example", Kind: KindPartner}, admin, ""); err != nil {
			t.Fatal(err)
		}
	}
	f.expect([]audit.Type{audit.MembershipInvited, audit.MembershipInvited})
	// The person of another provider is trusted by beta (it lists none) but not by acme.
	const other = "https://other-idp.example|dan"
	onlyBeta := func(o *Org) bool { return o != nil && len(o.Providers) == 0 }
	orgs, err := f.o.BindInvitationsTrusted(ctx, "dan@acme.example", true, other, onlyBeta)
	if err != nil || !slices.Equal(orgs, []string{"beta"}) {
		t.Fatalf("bind = %v, %v", orgs, err)
	}
	f.expect([]audit.Type{audit.InvitationBound}, invalMembership("beta", other))
	if _, m, _ := f.s.Lookup(ctx, "acme", other); m != nil {
		t.Fatalf("an untrusted provider's person collected acme's invitation: %+v", m)
	}
	if invs, _ := f.s.Invitations(ctx, "dan@acme.example"); len(invs) != 1 || invs[0].Org != "acme" {
		t.Fatalf("acme's invitation should wait for its owner: %+v", invs)
	}
	// Nothing to bind for the same person again: no change, no event.
	if orgs, err := f.o.BindInvitationsTrusted(ctx, "dan@acme.example", true, other, onlyBeta); err != nil || orgs != nil {
		t.Errorf("second bind = %v, %v", orgs, err)
	}
	f.expect(nil)
	// Acme's own provider's person takes it.
	const dan = "https://login.acme.example|dan"
	if orgs, err := f.o.BindInvitationsTrusted(ctx, "dan@acme.example", true, dan, func(o *Org) bool { return o != nil && o.ID == "acme" }); err != nil || !slices.Equal(orgs, []string{"acme"}) {
		t.Fatalf("bind by acme's person = %v, %v", orgs, err)
	}
	f.expect([]audit.Type{audit.InvitationBound}, invalMembership("acme", dan))
	if invs, _ := f.s.Invitations(ctx, "dan@acme.example"); len(invs) != 0 {
		t.Errorf("invitations left: %+v", invs)
	}

	// Clearing the list returns the organisation to the shared providers.
	if o, err := f.o.SetOrgProviders(ctx, "acme", nil, admin, "back to the portal's IdP"); err != nil || o.Providers != nil {
		t.Fatalf("clear = %+v, %v", o, err)
	}
	f.expect([]audit.Type{audit.OrgProvidersChanged}, invalOrg("acme"))
}
