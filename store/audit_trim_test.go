package store

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

func appendN(t *testing.T, a *Audit, n int) {
	t.Helper()
	for i := range n {
		if err := a.Append(context.Background(), audit.Event{Type: audit.AccessDenied, Actor: "t", Reason: "r", Detail: map[string]string{"i": string(rune('a' + i%26))}}); err != nil {
			t.Fatal(err)
		}
	}
}

func streamLen(t *testing.T, s *Store) int64 {
	t.Helper()
	n, err := s.rdb.XLen(context.Background(), s.keys.audit()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAuditUntrimmedNeverTrimsByCount: with sinks the appends carry no MAXLEN, whatever the
// stream's length, through Append and through a change's transaction alike.
func TestAuditUntrimmedNeverTrimsByCount(t *testing.T) {
	s := newStore(t, sharedConfig(t))
	a := NewAudit(s, 1000).Untrimmed()
	appendN(t, a, 1500)
	o := NewOrgs(s, a)
	if _, err := o.CreateOrg(context.Background(), Org{ID: "acme"}, admin, ""); err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, s); n != 1501 {
		t.Fatalf("stream holds %d events, want all 1501", n)
	}
	// The bounded form still trims (about) to its bound.
	b := NewAudit(s, 1000)
	appendN(t, b, 10)
	if n := streamLen(t, s); n > 1200 {
		t.Fatalf("bounded stream holds %d events, want about 1000", n)
	}
}

// TestAuditTrimDelivered: the stream loses only what every sink group acknowledged and is
// older than the retention; a pending event, an undelivered one, or a group not yet created
// keeps everything from there.
func TestAuditTrimDelivered(t *testing.T) {
	s := newStore(t, sharedConfig(t))
	ctx := context.Background()
	a := NewAudit(s, 0).Untrimmed()
	appendN(t, a, 10)

	// No group yet: a sink created later is sent everything, so nothing goes.
	if at, err := a.TrimDelivered(ctx, 0, "sink:a", "sink:b"); err != nil || at != "" {
		t.Fatalf("trim before the groups exist: %q, %v", at, err)
	}
	for _, g := range []string{"sink:a", "sink:b"} {
		if err := a.EnsureGroupAt(ctx, g, "0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.EnsureGroupAt(ctx, "sink:c", "now"); err == nil {
		t.Fatal("a start other than $ or 0 was accepted")
	}
	// Created but nothing read: nothing goes.
	if _, err := a.TrimDelivered(ctx, 0, "sink:a", "sink:b"); err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, s); n != 10 {
		t.Fatalf("%d events after a trim with nothing delivered, want 10", n)
	}

	// a reads six and acknowledges the first four; b has everything.
	evs, err := a.ReadGroup(ctx, "sink:a", "c1", 6, 0)
	if err != nil || len(evs) != 6 {
		t.Fatalf("read a: %d, %v", len(evs), err)
	}
	if err := a.Ack(ctx, "sink:a", evs[0].ID, evs[1].ID, evs[2].ID, evs[3].ID); err != nil {
		t.Fatal(err)
	}
	all, err := a.ReadGroup(ctx, "sink:b", "c1", 100, 0)
	if err != nil || len(all) != 10 {
		t.Fatalf("read b: %d, %v", len(all), err)
	}
	var ids []string
	for _, e := range all {
		ids = append(ids, e.ID)
	}
	if err := a.Ack(ctx, "sink:b", ids...); err != nil {
		t.Fatal(err)
	}
	st, err := a.Groups(ctx, "sink:a", "sink:b", "sink:none")
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Pending != 2 || st[0].Oldest != evs[4].ID || st[0].Lag != 4 {
		t.Fatalf("group a: %+v, want 2 pending, 4 not delivered, oldest %s", st[0], evs[4].ID)
	}
	if st[1].Pending != 0 || st[1].Oldest != "" || st[1].Lag != 0 {
		t.Fatalf("group b: %+v, want nothing outstanding", st[1])
	}
	if st[2].Exists {
		t.Fatalf("group none: %+v", st[2])
	}

	// Retention keeps even what everyone has.
	if _, err := a.TrimDelivered(ctx, time.Hour, "sink:a", "sink:b"); err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, s); n != 10 {
		t.Fatalf("%d events after a trim within the retention, want 10", n)
	}
	// Without retention, exactly the four a acknowledged go: its pending ones stay.
	at, err := a.TrimDelivered(ctx, 0, "sink:a", "sink:b")
	if err != nil || at != evs[4].ID {
		t.Fatalf("trim: %q, %v; want before %s", at, err, evs[4].ID)
	}
	if n := streamLen(t, s); n != 6 {
		t.Fatalf("%d events after the trim, want 6", n)
	}
	// The pending ones are still claimable, whole.
	back, err := a.Claim(ctx, "sink:a", "c2", 0, evs[4].ID, evs[5].ID)
	if err != nil || len(back) != 2 || back[0].Type != audit.AccessDenied {
		t.Fatalf("claim after trim: %+v, %v", back, err)
	}
	// Once a has everything too, only the retention keeps events.
	if err := a.Ack(ctx, "sink:a", evs[4].ID, evs[5].ID); err != nil {
		t.Fatal(err)
	}
	rest, _ := a.ReadGroup(ctx, "sink:a", "c1", 100, 0)
	for _, e := range rest {
		_ = a.Ack(ctx, "sink:a", e.ID)
	}
	if _, err := a.TrimDelivered(ctx, 0, "sink:a", "sink:b"); err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, s); n != 0 {
		t.Fatalf("%d events after everyone has everything, want 0", n)
	}
	// A new event is kept until the groups have it, even with no retention at all.
	appendN(t, a, 1)
	if _, err := a.TrimDelivered(ctx, 0, "sink:a", "sink:b"); err != nil {
		t.Fatal(err)
	}
	if n := streamLen(t, s); n != 1 {
		t.Fatalf("%d events after a trim with one undelivered, want 1", n)
	}
}
