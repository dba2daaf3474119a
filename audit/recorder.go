package audit

import (
	"context"
	"sync"
	"time"
)

// Recorder is a Sink that keeps events in memory, for tests of packages that write events. It is
// safe for concurrent use; the zero value is ready.
type Recorder struct {
	mu     sync.Mutex
	events []Event
}

var _ Sink = (*Recorder)(nil)

// Append records e, filling in Time like a real Sink would.
func (r *Recorder) Append(_ context.Context, e Event) error {
	if err := e.Check(); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

// Events returns a copy of the events recorded so far, oldest first.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}
