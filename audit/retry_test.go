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
	for i := range 4 {
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
	for len(f.rec.Events())+r.Dropped() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of 4 after the store came back (dropped %d)", len(f.rec.Events()), r.Dropped())
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
