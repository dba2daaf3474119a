package store

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
)

func (f *orgFixture) createMachine(org, id, sponsor string, roles ...string) *Membership {
	f.t.Helper()
	m, err := f.o.CreateMachine(f.ctx(), Membership{Org: org, Roles: roles, ExpiresAt: time.Now().Add(300 * 24 * time.Hour),
		Machine: &Machine{ID: id, Name: "Billing export", Sponsor: sponsor}}, admin, "integration INT-7")
	if err != nil {
		f.t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MachineCreated}, invalMembership(org, MachineUser(org, id)))
	return m
}

func (f *orgFixture) createKey(org, id string) (string, *APIKey) {
	f.t.Helper()
	key, k, err := f.o.CreateAPIKey(f.ctx(), org, id, time.Now().Add(30*24*time.Hour), "", 0, admin, "first key")
	if err != nil {
		f.t.Fatal(err)
	}
	f.expect([]audit.Type{audit.APIKeyCreated}, invalMembership(org, MachineUser(org, id)), invalKey(k.ID))
	return key, k
}

func TestMachineUser(t *testing.T) {
	u := MachineUser("acme", "billing-export")
	if org, mid, ok := ParseMachineUser(u); !ok || org != "acme" || mid != "billing-export" || !IsMachineUser(u) {
		t.Errorf("ParseMachineUser(%q) = %q %q %v", u, org, mid, ok)
	}
	for _, p := range []string{alice, "machine:acme", "machine:|x", "machine:Acme|x", "machine:acme|X Y", "https://idp|machine:acme|x"} {
		if _, _, ok := ParseMachineUser(p); ok {
			t.Errorf("ParseMachineUser(%q) accepted", p)
		}
	}
	if IsMachineUser(alice) {
		t.Error("a person's key is a machine's")
	}
}

func TestMachineLifecycle(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.grant("acme", alice, "billing")

	// A sponsor must hold a live membership of the organisation.
	_, err := f.o.CreateMachine(ctx, Membership{Org: "acme", Machine: &Machine{ID: "sync", Name: "Sync", Sponsor: bob}}, admin, "no sponsor")
	wantErr(t, "sponsor without membership", err, ErrInvalid)
	_, err = f.o.CreateMachine(ctx, Membership{Org: "acme", Machine: &Machine{ID: "sync", Name: "Sync", Sponsor: MachineUser("acme", "other")}}, admin, "machine sponsor")
	wantErr(t, "a machine as sponsor", err, ErrInvalid)
	_, err = f.o.CreateMachine(ctx, Membership{Org: "nowhere", Machine: &Machine{ID: "sync", Name: "Sync", Sponsor: alice}}, admin, "no org")
	wantErr(t, "unknown org", err, ErrNotFound)
	f.expect(nil)

	m := f.createMachine("acme", "billing-export", alice, "billing")
	if m.User != MachineUser("acme", "billing-export") || m.Kind != KindService || m.Status != MembershipActive || m.GrantedBy != admin {
		t.Errorf("created %+v", m)
	}
	_, err = f.o.CreateMachine(ctx, Membership{Org: "acme", Machine: &Machine{ID: "billing-export", Name: "Again", Sponsor: alice}}, admin, "twice")
	wantErr(t, "create twice", err, ErrExists)
	// A person's grant cannot take a machine's key, nor a machine's record a person's key.
	_, err = f.o.Grant(ctx, Membership{Org: "acme", User: MachineUser("acme", "x"), Kind: KindService}, admin, "forged")
	wantErr(t, "grant to a machine key", err, ErrInvalid)
	_, err = f.o.Grant(ctx, Membership{Org: "acme", User: bob, Kind: KindService, Machine: &Machine{ID: "x", Name: "x", Sponsor: alice}}, admin, "forged")
	wantErr(t, "machine record on a person", err, ErrInvalid)
	f.expect(nil)

	key, k := f.createKey("acme", "billing-export")
	owner, err := f.s.APIKeyOwner(ctx, k.ID)
	if err != nil || owner.Org != "acme" || owner.Machine != "billing-export" || !apikey.Match(key, owner.Hash) {
		t.Fatalf("index entry %+v, %v", owner, err)
	}
	// Nothing Redis holds, and nothing the audit trail says, is the key.
	dump := f.dump()
	if strings.Contains(dump, key) || strings.Contains(dump, key[20:]) {
		t.Error("the key's secret is stored")
	}
	_, stored, _ := f.s.Lookup(ctx, "acme", m.User)
	if b, _ := json.Marshal(stored); strings.Contains(string(b), owner.Hash) {
		t.Error("the membership record (shown in listings and audit events) holds the key's hash")
	}

	// Rotation: the new key works at once, the old one until the end of the overlap.
	before := time.Now()
	key2, k2, err := f.o.CreateAPIKey(ctx, "acme", "billing-export", time.Now().Add(30*24*time.Hour), k.ID, time.Hour, admin, "rotate")
	if err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.APIKeyRotated}, invalMembership("acme", m.User), invalKey(k2.ID))
	if key2 == key || k2.Replaces != k.ID {
		t.Errorf("rotated %+v", k2)
	}
	_, stored, _ = f.s.Lookup(ctx, "acme", m.User)
	old := stored.Machine.Key(k.ID)
	if old == nil || old.ExpiresAt.Before(before.Add(time.Hour-time.Second)) || old.ExpiresAt.After(time.Now().Add(time.Hour)) || !old.Revoked.IsZero() {
		t.Errorf("the rotated-out key: %+v", old)
	}
	_, _, err = f.o.CreateAPIKey(ctx, "acme", "billing-export", time.Now().Add(time.Hour), "nokey", 0, admin, "rotate unknown")
	wantErr(t, "rotate an unknown key", err, ErrNotFound)
	_, _, err = f.o.CreateAPIKey(ctx, "acme", "billing-export", time.Now().Add(400*24*time.Hour), "", 0, admin, "outlive")
	wantErr(t, "a key outliving its machine", err, ErrInvalid)
	_, _, err = f.o.CreateAPIKey(ctx, "acme", "nobody", time.Now().Add(time.Hour), "", 0, admin, "no machine")
	wantErr(t, "a key for no machine", err, ErrNotFound)
	_, _, err = f.o.CreateAPIKey(ctx, "acme", alice, time.Now().Add(time.Hour), "", 0, admin, "person")
	wantErr(t, "a key for a person", err, ErrInvalid)
	f.expect(nil)

	rk, err := f.o.RevokeAPIKey(ctx, "acme", "billing-export", k2.ID, admin, "leaked in a log")
	if err != nil || rk.Revoked.IsZero() || rk.RevokedBy != admin {
		t.Fatalf("revoke: %+v %v", rk, err)
	}
	f.expect([]audit.Type{audit.APIKeyRevoked}, invalMembership("acme", m.User))
	if _, err := f.o.RevokeAPIKey(ctx, "acme", "billing-export", k2.ID, admin, "again"); err != nil {
		t.Errorf("revoking twice: %v", err)
	}
	f.expect(nil)
	_, err = f.o.RevokeAPIKey(ctx, "acme", "other", k2.ID, admin, "wrong machine")
	wantErr(t, "revoke through another machine", err, ErrNotFound)
	f.expect(nil)

	ms, err := f.s.Machines(ctx, "acme")
	if err != nil || len(ms) != 1 || ms[0].Machine.ID != "billing-export" || len(ms[0].Machine.Keys) != 2 {
		t.Fatalf("machines %+v %v", ms, err)
	}
}

// TestSponsorEndSuspendsMachines: revoking the sponsor, a review's revoke and offboarding each
// suspend what the person sponsors, with its keys revoked, in the same change.
func TestSponsorEndSuspendsMachines(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.createOrg("globex")
	f.grant("acme", alice)
	f.grant("acme", bob)
	f.grant("globex", alice)
	f.createMachine("acme", "alice-sync", alice)
	f.createMachine("acme", "bob-sync", bob)
	f.createMachine("globex", "alice-sync", alice)
	f.createKey("acme", "alice-sync")
	f.createKey("globex", "alice-sync")

	status := func(org, id string) (string, bool) {
		t.Helper()
		_, m, err := f.s.Lookup(ctx, org, MachineUser(org, id))
		if err != nil || m == nil {
			t.Fatalf("lookup %s/%s: %v", org, id, err)
		}
		for _, k := range m.Machine.Keys {
			if k.Revoked.IsZero() {
				return m.Status, false
			}
		}
		return m.Status, true
	}

	// A suspension of the sponsor ends nothing for good.
	if _, err := f.o.ChangeMembership(ctx, "acme", alice, func(m *Membership) error { m.Status = MembershipSuspended; return nil }, admin, "leave"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipChanged}, invalMembership("acme", alice))
	if st, revoked := status("acme", "alice-sync"); st != MembershipActive || revoked {
		t.Errorf("after the sponsor's suspension: %s, keys revoked %v", st, revoked)
	}
	if _, err := f.o.ChangeMembership(ctx, "acme", alice, func(m *Membership) error { m.Status = MembershipActive; return nil }, admin, "back"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipChanged}, invalMembership("acme", alice))

	// Revoking Alice in acme ends her machine there, not Bob's, not hers in globex.
	if _, err := f.o.Revoke(ctx, "acme", alice, admin, "left the team"); err != nil {
		t.Fatal(err)
	}
	evs := f.expect([]audit.Type{audit.MembershipRevoked, audit.MachineSuspended},
		invalMembership("acme", alice), invalMembership("acme", MachineUser("acme", "alice-sync")))
	if len(evs) == 2 && (evs[1].User != MachineUser("acme", "alice-sync") || evs[1].Detail["sponsor"] != alice || evs[1].Reason != "left the team") {
		t.Errorf("suspension event %+v", evs[1])
	}
	if st, revoked := status("acme", "alice-sync"); st != MembershipSuspended || !revoked {
		t.Errorf("alice's acme machine: %s, keys revoked %v", st, revoked)
	}
	if st, _ := status("acme", "bob-sync"); st != MembershipActive {
		t.Errorf("bob's machine: %s", st)
	}
	if st, revoked := status("globex", "alice-sync"); st != MembershipActive || revoked {
		t.Errorf("alice's globex machine: %s, keys revoked %v", st, revoked)
	}
	// A suspended machine gets no new key.
	_, _, err := f.o.CreateAPIKey(ctx, "acme", "alice-sync", time.Now().Add(time.Hour), "", 0, admin, "revive")
	wantErr(t, "a key for a suspended machine", err, ErrInvalid)

	// Offboarding ends the rest, in the same operation.
	out, err := f.o.Apply(ctx, BusinessEvent{Event: EventOffboarded, User: alice}, admin, "left the company", false)
	if err != nil {
		t.Fatal(err)
	}
	var suspended []string
	for _, c := range out.Changes {
		if c.Type == audit.MachineSuspended {
			suspended = append(suspended, c.Org+"/"+c.User)
		}
	}
	if len(suspended) != 1 || suspended[0] != "globex/"+MachineUser("globex", "alice-sync") {
		t.Errorf("offboarding suspended %v", suspended)
	}
	if st, revoked := status("globex", "alice-sync"); st != MembershipSuspended || !revoked {
		t.Errorf("alice's globex machine after offboarding: %s, keys revoked %v", st, revoked)
	}
	if st, _ := status("acme", "bob-sync"); st != MembershipActive {
		t.Errorf("bob's machine after alice's offboarding: %s", st)
	}

	// A machine suspended with its sponsor's end is taken up by another sponsor; a revoked
	// one is not; a sponsor without a live membership cannot take one.
	f.drain()
	_, err = f.o.HandOver(ctx, "acme", "alice-sync", dave, admin, "back")
	wantErr(t, "hand over to a non-member", err, ErrInvalid)
	f.expect(nil)
	m, err := f.o.HandOver(ctx, "acme", "alice-sync", bob, admin, "bob takes the sync over")
	if err != nil || m.Status != MembershipActive || m.Machine.Sponsor != bob {
		t.Fatalf("hand over: %+v %v", m, err)
	}
	f.expect([]audit.Type{audit.MachineHandedOver}, invalMembership("acme", MachineUser("acme", "alice-sync")))
	if _, err := f.o.RevokeMachine(ctx, "acme", "alice-sync", admin, "retired"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipRevoked}, invalMembership("acme", MachineUser("acme", "alice-sync")))
	if st, revoked := status("acme", "alice-sync"); st != MembershipRevoked || !revoked {
		t.Errorf("a retired machine: %s, keys revoked %v", st, revoked)
	}
	_, err = f.o.HandOver(ctx, "acme", "alice-sync", bob, admin, "revive")
	wantErr(t, "hand over a revoked machine", err, ErrInvalid)

	// Nor does a machine hold an admin API token.
	_, _, err = f.o.CreateToken(ctx, Token{Name: "x", Owner: MachineUser("acme", "bob-sync"), Expires: time.Now().Add(time.Hour)}, admin, "x")
	wantErr(t, "an admin token for a machine", err, ErrInvalid)

	// role_changed is for people: a machine's roles are capped by its sponsor's.
	_, err = f.o.Apply(ctx, BusinessEvent{Event: EventRoleChanged, Org: "acme", User: MachineUser("acme", "bob-sync"), Roles: []string{"admin"}}, admin, "x", false)
	wantErr(t, "role_changed on a machine", err, ErrInvalid)
}

// TestReviewRevokeSuspendsMachines: a review that revokes a sponsor ends their machines too.
func TestReviewRevokeSuspendsMachines(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.grant("acme", alice)
	f.createMachine("acme", "sync", alice)
	rv, err := f.o.StartReview(ctx, "acme", []string{KindEmployee}, time.Now().Add(24*time.Hour), admin, "quarterly")
	if err != nil {
		t.Fatal(err)
	}
	f.drain()
	if _, err := f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: alice, Decision: DecisionRevoke, Note: "left"}, nil, admin); err != nil {
		t.Fatal(err)
	}
	evs := f.expect([]audit.Type{audit.ReviewDecided, audit.MembershipRevoked, audit.MachineSuspended},
		invalMembership("acme", alice), invalMembership("acme", MachineUser("acme", "sync")))
	if len(evs) == 3 && evs[2].User != MachineUser("acme", "sync") {
		t.Errorf("suspension event %+v", evs[2])
	}
}

// dump is every string value under the fixture's prefix, for "is this stored anywhere" checks.
func (f *orgFixture) dump() string {
	f.t.Helper()
	ctx := f.ctx()
	var b strings.Builder
	iter := f.raw.Scan(ctx, 0, f.s.keys.prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		switch typ, _ := f.raw.Type(ctx, k).Result(); typ {
		case "string":
			b.WriteString(f.raw.Get(ctx, k).Val())
		case "stream":
			for _, m := range f.raw.XRange(ctx, k, "-", "+").Val() {
				for _, v := range m.Values {
					b.WriteString(v.(string))
				}
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// drain forgets the events and invalidations so far.
func (f *orgFixture) drain() {
	f.t.Helper()
	_, next, err := f.a.Tail(f.ctx(), f.cursor, 1000, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	f.cursor = next
	for {
		if _, err := f.sub.ReceiveTimeout(f.ctx(), 30*time.Millisecond); err != nil {
			return
		}
	}
}

// TestBindClient: a federated client is bound to one machine at most; its index entry and the
// record change together; an unbound client names nothing; the cache forgets on every change.
func TestBindClient(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.createOrg("globex")
	f.grant("acme", alice)
	f.grant("globex", bob)
	f.createMachine("acme", "sync", alice)
	f.createMachine("globex", "sync", bob)
	const iss = "https://login.acme.example"
	c := NewCache(f.s, time.Minute, nil)
	defer c.Close()

	if co, err := c.ClientOwner(ctx, iss, "client-1"); err != nil || co != nil {
		t.Fatalf("an unbound client: %+v %v", co, err)
	}
	m, err := f.o.BindClient(ctx, "acme", "sync", iss, "client-1", admin, "INT-7")
	if err != nil || m.Machine.Client(iss, "client-1") == nil {
		t.Fatalf("bind: %+v %v", m, err)
	}
	f.expect([]audit.Type{audit.MachineClientBound}, invalMembership("acme", MachineUser("acme", "sync")), invalClient(iss, "client-1"))
	waitForCond(t, func() bool {
		co, err := c.ClientOwner(ctx, iss, "client-1")
		return err == nil && co != nil && co.Org == "acme" && co.Machine == "sync"
	})
	// Binding again changes nothing; binding it to another machine is refused.
	if _, err := f.o.BindClient(ctx, "acme", "sync", iss, "client-1", admin, "again"); err != nil {
		t.Errorf("bind twice: %v", err)
	}
	_, err = f.o.BindClient(ctx, "globex", "sync", iss, "client-1", admin, "steal")
	wantErr(t, "bind to another machine", err, ErrConflict)
	_, err = f.o.BindClient(ctx, "acme", "nobody", iss, "client-2", admin, "x")
	wantErr(t, "bind to no machine", err, ErrNotFound)
	f.expect(nil)

	// Unbinding: the record and the entry go together; then another machine may have it.
	if _, err := f.o.UnbindClient(ctx, "acme", "sync", iss, "client-1", admin, "rotated"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MachineClientUnbound}, invalMembership("acme", MachineUser("acme", "sync")), invalClient(iss, "client-1"))
	waitForCond(t, func() bool { co, err := c.ClientOwner(ctx, iss, "client-1"); return err == nil && co == nil })
	_, err = f.o.UnbindClient(ctx, "acme", "sync", iss, "client-1", admin, "again")
	wantErr(t, "unbind twice", err, ErrNotFound)
	if _, err := f.o.BindClient(ctx, "globex", "sync", iss, "client-1", admin, "moved"); err != nil {
		t.Errorf("bind after unbinding elsewhere: %v", err)
	}
	// A stale entry (its record no longer lists the client) does not block a binding.
	if err := f.raw.Set(ctx, f.s.keys.clientIndex(iss, "client-3"), `{"org":"globex","machine":"sync","issuer":"`+iss+`","subject":"client-3"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.o.BindClient(ctx, "acme", "sync", iss, "client-3", admin, "stale entry"); err != nil {
		t.Errorf("bind over a stale entry: %v", err)
	}
}

func waitForCond(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDisableUnusedKeys: a live key that admitted nothing for the policy's age is revoked, a
// recently used one is kept, ended ones are left alone.
func TestDisableUnusedKeys(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	f.grant("acme", alice)
	f.createMachine("acme", "sync", alice)
	_, unused := f.createKey("acme", "sync")
	_, used := f.createKey("acme", "sync")
	later := time.Now().Add(20 * 24 * time.Hour) // the keys live 30 days
	// used admitted a request a day before "later".
	if err := f.raw.HSet(ctx, f.s.keys.lastUsed("acme"), keyUseField(used.ID), later.Add(-24*time.Hour).Unix()).Err(); err != nil {
		t.Fatal(err)
	}
	f.o.now = func() time.Time { return later.UTC() }
	n, err := f.o.DisableUnusedKeys(ctx, 10*24*time.Hour, "sweep")
	if err != nil || n != 1 {
		t.Fatalf("revoked %d, %v; want 1", n, err)
	}
	evs := f.expect([]audit.Type{audit.APIKeyRevoked}, invalMembership("acme", MachineUser("acme", "sync")))
	if len(evs) == 1 && (evs[0].Actor != "sweep" || !strings.Contains(evs[0].Reason, "disable_unused_after")) {
		t.Errorf("event %+v", evs[0])
	}
	ms, _ := f.s.Machines(ctx, "acme")
	for _, k := range ms[0].Machine.Keys {
		if (k.ID == unused.ID) == k.Revoked.IsZero() {
			t.Errorf("key %s: revoked %v", k.ID, k.Revoked)
		}
	}
	if n, err := f.o.DisableUnusedKeys(ctx, 10*24*time.Hour, "sweep"); err != nil || n != 0 {
		t.Errorf("a second sweep revoked %d, %v", n, err)
	}
	if n, _ := f.o.DisableUnusedKeys(ctx, 0, "sweep"); n != 0 {
		t.Error("a sweep with no age revoked keys")
	}
}

// TestSuspendOrphans: a machine whose sponsor's membership expired is suspended with its keys
// by the sweep; one whose sponsor is only suspended is left alone.
func TestSuspendOrphans(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	if _, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, ExpiresAt: time.Now().Add(time.Hour)}, admin, "contractor"); err != nil {
		t.Fatal(err)
	}
	f.drain()
	f.grant("acme", bob)
	f.createMachine("acme", "alice-sync", alice)
	f.createMachine("acme", "bob-sync", bob)
	f.createKey("acme", "alice-sync")
	if _, err := f.o.ChangeMembership(ctx, "acme", bob, func(m *Membership) error { m.Status = MembershipSuspended; return nil }, admin, "leave"); err != nil {
		t.Fatal(err)
	}
	f.drain()
	if n, err := f.o.SuspendOrphans(ctx, "sweep"); err != nil || n != 0 {
		t.Fatalf("with every sponsor's membership unexpired: %d %v", n, err)
	}
	later := time.Now().Add(2 * time.Hour)
	f.o.now = func() time.Time { return later.UTC() }
	if n, err := f.o.SuspendOrphans(ctx, "sweep"); err != nil || n != 1 {
		t.Fatalf("after alice's membership expired: %d %v", n, err)
	}
	f.expect([]audit.Type{audit.MachineSuspended}, invalMembership("acme", MachineUser("acme", "alice-sync")))
	_, m, _ := f.s.Lookup(ctx, "acme", MachineUser("acme", "alice-sync"))
	if m.Status != MembershipSuspended || m.Machine.Keys[0].Revoked.IsZero() {
		t.Errorf("alice's machine: %s, key %+v", m.Status, m.Machine.Keys[0])
	}
	_, m, _ = f.s.Lookup(ctx, "acme", MachineUser("acme", "bob-sync"))
	if m.Status != MembershipActive {
		t.Errorf("bob's machine (his membership only suspended): %s", m.Status)
	}
	if n, _ := f.o.SuspendOrphans(ctx, "sweep"); n != 0 {
		t.Errorf("a second sweep suspended %d", n)
	}
}

// TestSweepMachines: one pass suspends an orphaned machine (its keys ending with it, not
// counted as unused) and revokes another machine's unused key.
func TestSweepMachines(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	if _, err := f.o.Grant(ctx, Membership{Org: "acme", User: alice, Kind: KindEmployee, ExpiresAt: time.Now().Add(time.Hour)}, admin, "contractor"); err != nil {
		t.Fatal(err)
	}
	f.drain()
	f.grant("acme", bob)
	f.createMachine("acme", "alice-sync", alice)
	f.createMachine("acme", "bob-sync", bob)
	f.createKey("acme", "alice-sync")
	f.createKey("acme", "bob-sync")
	later := time.Now().Add(20 * 24 * time.Hour)
	f.o.now = func() time.Time { return later.UTC() }
	suspended, revoked, err := f.o.SweepMachines(ctx, 10*24*time.Hour, "sweep")
	if err != nil || suspended != 1 || revoked != 1 {
		t.Fatalf("sweep: suspended %d, revoked %d, %v; want 1 and 1", suspended, revoked, err)
	}
	for id, want := range map[string]string{"alice-sync": MembershipSuspended, "bob-sync": MembershipActive} {
		_, m, _ := f.s.Lookup(ctx, "acme", MachineUser("acme", id))
		if m.Status != want || m.Machine.Keys[0].Revoked.IsZero() {
			t.Errorf("%s: %s, key %+v", id, m.Status, m.Machine.Keys[0])
		}
	}
}
