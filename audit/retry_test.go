package audit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// flaky is a Sink that fails while down.
type flaky struct {
	down atomic.Bool
	rec  Recorder
	mu   sync.Mutex
	seen int
}

func (f *flaky) Append(ctx context.Context, e Event) error {
	f.mu.Lock()
	f.seen++
	f.mu.Unlock()
	if f.down.Load() {
		return errors.New("store unavailable")
	}
	return f.rec.Append(ctx, e)
}

// TestRetryingKeepsEventsThroughAnOutage: events appended while the store is down are stored
// once it is back, with their own time; an invalid event is refused at once; a full queue
// drops and counts.
func TestRetryingKeepsEventsThroughAnOutage(t *testing.T) {
	f := &flaky{}
	r := NewRetrying(f, RetryOptions{Backoff: 10 * time.Millisecond, Queue: 3})
	defer r.Close()
	if err := r.Append(t.Context(), Event{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid event: %v", err)
	}
	f.down.Store(true)
	at := time.Now().Add(-time.Minute).UTC()
	// Five for a queue of three: the retry loop may hold one it took off the queue, so a
	// fifth must be dropped whichever way the loop and the appends interleave.
	for i := range 5 {
		if err := r.Append(t.Context(), Event{Type: AccessDenied, RequestID: string(rune('a' + i)), Time: at}); err != nil {
			t.Fatal(err)
		}
	}
	if r.Dropped() < 1 {
		t.Errorf("a full queue dropped %d", r.Dropped())
	}
	if n := len(f.rec.Events()); n != 0 {
		t.Fatalf("stored while down: %d", n)
	}
	f.down.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for len(f.rec.Events())+r.Dropped() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of 5 after the store came back (dropped %d)", len(f.rec.Events()), r.Dropped())
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, e := range f.rec.Events() {
		if !e.Time.Equal(at) {
			t.Errorf("an event's time changed: %v", e.Time)
		}
	}
}

// TestRetryingCloseStoresWhatItCan: what is queued at Close is tried once more.
func TestRetryingCloseStoresWhatItCan(t *testing.T) {
	f := &flaky{}
	r := NewRetrying(f, RetryOptions{Backoff: time.Hour})
	f.down.Store(true)
	_ = r.Append(t.Context(), Event{Type: AccessDenied})
	_ = r.Append(t.Context(), Event{Type: AccessDenied})
	f.down.Store(false)
	r.Close()
	if n := len(f.rec.Events()); n != 2 {
		t.Errorf("stored %d of 2 at Close", n)
	}
}

// hung is a Sink that blocks every append until its context ends while hanging is set.
type hung struct {
	hanging atomic.Bool
	calls   atomic.Int64
	rec     Recorder
}

func (h *hung) Append(ctx context.Context, e Event) error {
	h.calls.Add(1)
	if h.hanging.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.rec.Append(ctx, e)
}

// TestRetryingBacklogQueuesAtOnceAndInOrder: once one append has failed, later events join the
// queue without waiting a timeout each (a request is not held up by every hung append), and
// everything is stored in the order it happened once the store answers.
func TestRetryingBacklogQueuesAtOnceAndInOrder(t *testing.T) {
	h := &hung{}
	h.hanging.Store(true)
	r := NewRetrying(h, RetryOptions{Timeout: 200 * time.Millisecond, Backoff: 20 * time.Millisecond})
	defer r.Close()
	start := time.Now()
	if err := r.Append(t.Context(), Event{Type: AccessDenied, RequestID: "0"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("the first append returned after %v: it should have waited for its timeout", d)
	}
	start = time.Now()
	for i := 1; i < 50; i++ {
		if err := r.Append(t.Context(), Event{Type: AccessDenied, RequestID: string(rune('0' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("49 appends behind a backlog took %v: each waited for the hung store", d)
	}
	h.hanging.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for len(h.rec.Events()) < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of 50", len(h.rec.Events()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, e := range h.rec.Events() {
		if e.RequestID != string(rune('0'+i)) {
			t.Fatalf("event %d stored as %q: out of order", i, e.RequestID)
		}
	}
	// Caught up: the next append is synchronous again.
	if err := r.Append(t.Context(), Event{Type: AccessDenied, RequestID: "z"}); err != nil {
		t.Fatal(err)
	}
	if ev := h.rec.Events(); ev[len(ev)-1].RequestID != "z" {
		t.Fatal("an append after the backlog cleared was not stored at once")
	}
}
