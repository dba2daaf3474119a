package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

func TestAuditStreamBounded(t *testing.T) {
	srv := redistest.Shared(t)
	s := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t)})
	a := NewAudit(s, 50)
	ctx := ctxT(t, 30*time.Second)
	for i := range 1000 {
		if err := a.Append(ctx, audit.Event{Type: audit.AccessDenied, Reason: "role_missing", Detail: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := srv.Client(t).XLen(ctx, s.keys.audit()).Result()
	if err != nil {
		t.Fatal(err)
	}
	// "~" trims whole stream nodes (100 entries by default), so a little more than 50 remains.
	if n < 50 || n > 250 {
		t.Errorf("stream holds %d events after 1000 appends with max 50", n)
	}
	t.Logf("1000 appends, bound ~50: %d kept", n)
	evs, _, err := a.Tail(ctx, "", 1000, 0)
	if err != nil || int64(len(evs)) != n || evs[len(evs)-1].Detail["i"] != "999" {
		t.Errorf("tail of bounded stream: %d events (want %d), %v", len(evs), n, err)
	}
	if NewAudit(s, 0).maxLen != DefaultAuditMaxLen {
		t.Error("zero bound is not the default")
	}
}

func TestAuditTail(t *testing.T) {
	srv := redistest.Shared(t)
	s := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t)})
	a := NewAudit(s, 0)
	ctx := ctxT(t, 10*time.Second)

	// An empty stream: nothing, and "$" resolves to the start.
	evs, pos, err := a.Tail(ctx, "$", 10, 0)
	if err != nil || len(evs) != 0 || pos != "0-0" {
		t.Errorf("tail of empty stream = %v, %q, %v", evs, pos, err)
	}
	when := time.Date(2026, 11, 29, 10, 0, 0, 0, time.FixedZone("CET", 3600))
	for i := range 5 {
		e := audit.Event{Time: when, Type: audit.MembershipChanged, Actor: admin, Org: "acme", User: alice, Detail: map[string]string{"n": fmt.Sprint(i)}}
		if i == 4 {
			e.Time = time.Time{} // filled in
		}
		if err := a.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// "" is the newest events; "0" pages from the oldest.
	if evs, next, err := a.Tail(ctx, "", 2, 0); err != nil || len(evs) != 2 || evs[0].Detail["n"] != "3" || evs[1].Detail["n"] != "4" || next != evs[1].ID {
		t.Errorf("newest two: %+v %q %v", evs, next, err)
	}
	var all []audit.Event
	pos = "0"
	for range 10 {
		evs, next, err := a.Tail(ctx, pos, 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			if next != pos {
				t.Errorf("empty page moved the position %q → %q", pos, next)
			}
			break
		}
		all = append(all, evs...)
		pos = next
	}
	if len(all) != 5 {
		t.Fatalf("paged %d events, want 5", len(all))
	}
	for i, e := range all {
		if e.ID == "" || e.Detail["n"] != fmt.Sprint(i) || e.Actor != admin || e.Time.Location() != time.UTC {
			t.Errorf("event %d = %+v", i, e)
		}
		if i > 0 && e.ID == all[i-1].ID {
			t.Errorf("duplicate id %s", e.ID)
		}
	}
	if !all[0].Time.Equal(when) || all[4].Time.IsZero() {
		t.Errorf("times %v, %v", all[0].Time, all[4].Time)
	}

	// "$" follows from now on; a blocking tail wakes up for a new event.
	_, pos, err = a.Tail(ctx, "$", 10, 0)
	if err != nil || pos != all[4].ID {
		t.Fatalf(`tail "$" = %q, %v; want the newest id %s`, pos, err, all[4].ID)
	}
	got := make(chan []audit.Event, 1)
	go func() {
		evs, _, err := a.Tail(ctx, pos, 10, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- evs
	}()
	time.Sleep(50 * time.Millisecond)
	if err := a.Append(ctx, audit.Event{Type: audit.StepUpGranted, User: alice}); err != nil {
		t.Fatal(err)
	}
	if evs := <-got; len(evs) != 1 || evs[0].Type != audit.StepUpGranted {
		t.Errorf("blocking tail got %+v", evs)
	}
	start := time.Now()
	if evs, _, err := a.Tail(ctx, "$", 10, 100*time.Millisecond); err != nil || len(evs) != 0 || time.Since(start) < 90*time.Millisecond {
		t.Errorf("blocking tail with nothing new = %v, %v after %v", evs, err, time.Since(start))
	}

	if err := a.Append(ctx, audit.Event{}); !errors.Is(err, audit.ErrInvalid) {
		t.Errorf("event without type: %v", err)
	}
}

func TestAuditUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(300 * time.Millisecond)})
	a := NewAudit(s, 0)
	srv.Stop()
	ctx := ctxT(t, 5*time.Second)
	errs := concurrently(map[string]func() error{
		"Append": func() error { return a.Append(ctx, audit.Event{Type: audit.AccessDenied}) },
		"Tail":   func() error { _, _, err := a.Tail(ctx, "", 1, 0); return err },
	})
	if err := errs["Append"]; !errors.Is(err, ErrUnavailable) {
		t.Errorf("Append with Redis down: %v", err)
	}
	if err := errs["Tail"]; !errors.Is(err, ErrUnavailable) {
		t.Errorf("Tail with Redis down: %v", err)
	}
}

// TestAuditBefore pages from the newest event to the oldest, each event once.
func TestAuditBefore(t *testing.T) {
	srv := redistest.Shared(t)
	s := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t)})
	a := NewAudit(s, 0)
	ctx := ctxT(t, 10*time.Second)
	if evs, next, err := a.Before(ctx, "", 10); err != nil || len(evs) != 0 || next != "" {
		t.Fatalf("empty stream: %v %q %v", evs, next, err)
	}
	for i := range 5 {
		if err := a.Append(ctx, audit.Event{Type: audit.MembershipChanged, Org: "acme", Detail: map[string]string{"n": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	pos := ""
	for range 10 {
		evs, next, err := a.Before(ctx, pos, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			got = append(got, e.Detail["n"])
		}
		if next == "" {
			break
		}
		pos = next
	}
	if strings.Join(got, "") != "43210" {
		t.Errorf("pages newest first gave %v, want 4 3 2 1 0", got)
	}
	for _, bad := range []string{"x", "123", "1-2-3", "(1-0"} {
		if _, _, err := a.Before(ctx, bad, 2); !errors.Is(err, ErrInvalid) {
			t.Errorf("Before(%q): %v, want ErrInvalid", bad, err)
		}
	}
}
