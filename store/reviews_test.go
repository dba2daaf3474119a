package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

func TestReviews(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	now := time.Now().UTC()
	late, early := now.Add(200*24*time.Hour), now.Add(24*time.Hour)
	for _, m := range []Membership{
		{Org: "acme", User: alice, Kind: KindEmployee, Roles: []string{"user"}, ReviewBy: late},
		{Org: "acme", User: bob, Kind: KindPartner, ExpiresAt: now.Add(300 * 24 * time.Hour), ReviewBy: early},
		{Org: "acme", User: carol, Kind: KindService, ExpiresAt: now.Add(24 * time.Hour)},
		{Org: "acme", User: dave, Kind: KindEmployee},
	} {
		if _, err := f.o.Grant(ctx, m, admin, "setup"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.o.Revoke(ctx, "acme", dave, admin, "left"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.MembershipGranted, audit.MembershipGranted, audit.MembershipGranted, audit.MembershipGranted, audit.MembershipRevoked},
		invalMembership("acme", alice), invalMembership("acme", bob), invalMembership("acme", carol), invalMembership("acme", dave), invalMembership("acme", dave))

	_, err := f.o.StartReview(ctx, "acme", nil, now.Add(-time.Hour), admin, "Q1")
	wantErr(t, "deadline in the past", err, ErrInvalid)
	_, err = f.o.StartReview(ctx, "acme", []string{"vendor"}, now.Add(time.Hour), admin, "Q1")
	wantErr(t, "unknown kind", err, ErrInvalid)
	_, err = f.o.StartReview(ctx, "acme", []string{KindReseller}, now.Add(time.Hour), admin, "Q1")
	wantErr(t, "nothing to review", err, ErrInvalid)
	_, err = f.o.StartReview(ctx, "nope", nil, now.Add(time.Hour), admin, "Q1")
	wantErr(t, "unknown org", err, ErrNotFound)
	f.expect(nil)

	deadline := now.Add(14 * 24 * time.Hour).Truncate(time.Second)
	rv, err := f.o.StartReview(ctx, "acme", nil, deadline, admin, "quarterly review Q1")
	if err != nil {
		t.Fatal(err)
	}
	// alice, bob and carol (service memberships, machine identities', are reviewed too) are
	// reviewed, dave is gone; alice's later review date comes forward to the deadline, bob's
	// earlier one stays, carol's (none) becomes the deadline.
	users := []string{}
	for _, it := range rv.Items {
		users = append(users, it.User)
	}
	if !slices.Equal(users, []string{alice, bob, carol}) || rv.State != ReviewOpen || !rv.Items[0].ReviewBy.Equal(late) {
		t.Fatalf("review %+v", rv)
	}
	evs := f.expect([]audit.Type{audit.ReviewStarted, audit.MembershipChanged, audit.MembershipChanged}, invalMembership("acme", alice), invalMembership("acme", carol))
	if evs[0].Detail["review"] != rv.ID || evs[0].Detail["items"] != "3" || evs[1].User != alice || evs[2].User != carol {
		t.Errorf("events %+v", evs)
	}
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); !m.ReviewBy.Equal(deadline) {
		t.Errorf("alice's review date %v, want the deadline", m.ReviewBy)
	}
	if _, m, _ := f.s.Lookup(ctx, "acme", bob); !m.ReviewBy.Equal(early.Truncate(time.Microsecond)) && !m.ReviewBy.Equal(early) {
		t.Errorf("bob's earlier review date moved: %v", m.ReviewBy)
	}

	next := now.Add(365 * 24 * time.Hour)
	got, err := f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: alice, Decision: DecisionChange, Roles: []string{"viewer"}, NextReview: next, Note: "moved"}, nil, admin)
	if err != nil {
		t.Fatal(err)
	}
	if it := got.Items[0]; it.Decision != DecisionChange || it.DecidedBy != admin || !slices.Equal(it.NewRoles, []string{"viewer"}) || got.State != ReviewOpen {
		t.Errorf("after alice's decision %+v", got)
	}
	f.expect([]audit.Type{audit.ReviewDecided, audit.MembershipChanged}, invalMembership("acme", alice))
	if _, m, _ := f.s.Lookup(ctx, "acme", alice); !slices.Equal(m.Roles, []string{"viewer"}) || !m.ReviewBy.Equal(next) {
		t.Errorf("alice after the change: %+v", m)
	}
	// An item is decided once; a refusal of the check writes nothing.
	_, err = f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: alice, Decision: DecisionRevoke}, nil, admin)
	wantErr(t, "decided twice", err, ErrConflict)
	refused := errors.New("not yours to decide")
	_, err = f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: bob, Decision: DecisionRevoke}, func(*Review, *Membership, *Membership) error { return refused }, admin)
	if !errors.Is(err, refused) {
		t.Errorf("a refused check: %v", err)
	}
	_, err = f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: dave, Decision: DecisionKeep, NextReview: next}, nil, admin)
	wantErr(t, "not an item", err, ErrNotFound)
	_, err = f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: bob, Decision: "maybe"}, nil, admin)
	wantErr(t, "unknown decision", err, ErrInvalid)
	_, err = f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: bob, Decision: DecisionKeep, NextReview: now.Add(-time.Hour)}, nil, admin)
	wantErr(t, "next review in the past", err, ErrInvalid)
	f.expect(nil)
	if _, err := f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: carol, Decision: DecisionKeep, NextReview: now.Add(24 * time.Hour)}, nil, admin); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.ReviewDecided, audit.MembershipChanged}, invalMembership("acme", carol))
	// The last decision closes the campaign.
	got, err = f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: bob, Decision: DecisionRevoke, Note: "contract over"}, nil, admin)
	if err != nil || got.State != ReviewClosed || got.Undecided() != 0 {
		t.Fatalf("after the last decision: %+v %v", got, err)
	}
	f.expect([]audit.Type{audit.ReviewDecided, audit.MembershipRevoked}, invalMembership("acme", bob))
	_, err = f.o.DecideReview(ctx, "acme", rv.ID, ReviewDecision{User: bob, Decision: DecisionKeep, NextReview: next}, nil, admin)
	wantErr(t, "closed campaign", err, ErrConflict)
	if rs, _ := f.s.Reviews(ctx, "acme"); len(rs) != 1 || rs[0].ID != rv.ID {
		t.Errorf("reviews %+v", rs)
	}
	if _, err := f.s.Review(ctx, "acme", "rev_nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown review: %v", err)
	}
}

func TestUseRecorder(t *testing.T) {
	f := newOrgFixture(t)
	u := NewUseRecorder(f.s, time.Hour, nil)
	defer u.Close()
	now := time.Now().Truncate(time.Second)
	u.Used("acme", alice, now)
	u.Used("acme", alice, now.Add(time.Minute)) // coalesced: within the interval
	u.Used("acme", bob, now)
	deadline := time.Now().Add(5 * time.Second)
	for {
		used, err := f.s.LastUsed(f.ctx(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		if len(used) == 2 {
			if !used[alice].Equal(now) || !used[bob].Equal(now) {
				t.Errorf("last used %v", used)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last used never recorded: %v", used)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A use within the interval costs no allocation and no write.
	if n := testing.AllocsPerRun(100, func() { u.Used("acme", alice, now.Add(2*time.Minute)) }); n != 0 {
		t.Errorf("a coalesced use allocates %v times", n)
	}
	// After the interval it is written again.
	u.Used("acme", alice, now.Add(2*time.Hour))
	for {
		used, _ := f.s.LastUsed(f.ctx(), "acme")
		if used[alice].Equal(now.Add(2 * time.Hour)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the later use was not recorded: %v", used)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUseRecorderReaches: what someone from outside reaches becomes an access.reached event
// per person, organisation and route per ReachInterval; a coalesced note allocates nothing;
// without ReportReaches nothing is recorded.
func TestUseRecorderReaches(t *testing.T) {
	f := newOrgFixture(t)
	rec := &audit.Recorder{}
	silent := NewUseRecorder(f.s, time.Hour, nil)
	silent.Reached("acme", bob, "support", KindPartner, "incident", "INC-1", time.Now())
	silent.Close()
	u := NewUseRecorder(f.s, time.Hour, nil)
	u.ReportReaches(rec)
	defer u.Close()
	now := time.Now()
	u.Reached("acme", bob, "support", KindPartner, "incident", "INC-1", now)
	u.Reached("acme", bob, "support", KindPartner, "incident", "INC-1", now.Add(time.Minute)) // coalesced
	u.Reached("acme", bob, "billing", KindPartner, "", "", now)
	u.Reached("globex", bob, "support", KindPartner, "incident", "INC-2", now)
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.Events()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("reach events: %+v", rec.Events())
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // nothing more comes
	evs := rec.Events()
	if len(evs) != 3 {
		t.Fatalf("reach events: %+v", evs)
	}
	for _, e := range evs {
		if e.Type != audit.AccessReached || e.User != bob || e.Detail["kind"] != KindPartner {
			t.Errorf("event %+v", e)
		}
		if e.Org == "acme" && e.Route == "support" && (e.Detail["ticket"] != "INC-1" || e.Detail["purpose"] != "incident") {
			t.Errorf("support reach without its purpose and ticket: %+v", e)
		}
	}
	if n := testing.AllocsPerRun(100, func() { u.Reached("acme", bob, "support", KindPartner, "incident", "INC-1", now.Add(2*time.Minute)) }); n != 0 {
		t.Errorf("a coalesced reach allocates %v times", n)
	}
	u.Reached("acme", bob, "support", KindPartner, "incident", "INC-1", now.Add(ReachInterval))
	for len(rec.Events()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the reach after the interval was not recorded: %+v", rec.Events())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
