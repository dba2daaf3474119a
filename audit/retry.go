package audit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Retrying is a Sink for the events of requests (denials, blocked recoveries, sign-ins): an
// event whose append fails (the store is down or hangs) is kept in memory and appended again
// in the background until it is stored, instead of being lost while the request is answered
// from caches. Delivery is at least once: an append that timed out after the store took it is
// appended again, with the same Time and RequestID, so consumers can tell the copy.
//
// The queue is bounded; beyond it an event is dropped and counted (Dropped), and logged.
// Close stops the retries after one last attempt to store what is queued.
type Retrying struct {
	next    Sink
	log     *slog.Logger
	timeout time.Duration

	q    queue
	done chan struct{}
	wg   sync.WaitGroup
	// backlog counts the events queued or being retried. While it is not zero the store is
	// known to be failing: a new event joins the queue at once instead of waiting a timeout
	// of its own (a request is not held up by every hung append), and stays behind the
	// earlier ones, so events are stored in the order they happened.
	backlog atomic.Int64

	mu      sync.Mutex
	dropped int
	// requeue is the event the retry loop was holding when Close stopped it.
	requeue *Event
}

// RetryOptions tune a Retrying sink; zero values take the defaults.
type RetryOptions struct {
	// Timeout bounds one append. Default 2s.
	Timeout time.Duration
	// Queue is how many failed events wait at most. Default 10000.
	Queue int
	// Backoff is the first wait between retries, doubled up to 30s. Default 500ms.
	Backoff time.Duration
	Logger  *slog.Logger
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Queue <= 0 {
		o.Queue = 10000
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// NewRetrying returns next behind a retry queue in memory; Close stops it.
func NewRetrying(next Sink, o RetryOptions) *Retrying {
	o = o.withDefaults()
	return newRetrying(next, &memQueue{c: make(chan Event, o.Queue)}, o)
}

func newRetrying(next Sink, q queue, o RetryOptions) *Retrying {
	r := &Retrying{next: next, log: o.Logger, timeout: o.Timeout, q: q, done: make(chan struct{})}
	r.wg.Add(1)
	go r.run(o.Backoff)
	return r
}

// Append stores e, or queues it for a retry when the store does not take it now; it returns
// an error only for an event that can never be stored (ErrInvalid).
func (r *Retrying) Append(ctx context.Context, e Event) error {
	if err := e.Check(); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC() // the event's own time, kept through the retries
	}
	var err error
	if r.backlog.Load() == 0 {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
		err = r.next.Append(actx, e)
		cancel()
		if err == nil || errors.Is(err, ErrInvalid) {
			return err
		}
	} else {
		err = errBacklog
	}
	r.backlog.Add(1)
	if r.q.push(e) {
		r.log.Warn("audit append failed; queued for a retry", slog.String("type", string(e.Type)),
			slog.String("request_id", e.RequestID), slog.Any("error", err))
	} else {
		r.backlog.Add(-1)
		r.mu.Lock()
		r.dropped++
		r.mu.Unlock()
		r.log.Error("audit append failed and the retry queue is full; event dropped", slog.String("type", string(e.Type)),
			slog.String("request_id", e.RequestID), slog.Any("error", err))
	}
	return nil
}

// errBacklog is the reason logged for an event queued behind earlier failed ones.
var errBacklog = errors.New("earlier events are still waiting for the store")

// Queued is how many events wait for a retry (the one being retried included).
func (r *Retrying) Queued() int { return int(r.backlog.Load()) }

// Dropped is how many events were lost because the queue was full.
func (r *Retrying) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

func (r *Retrying) run(backoff time.Duration) {
	defer r.wg.Done()
	for {
		e, ok := r.q.next(r.done)
		if !ok {
			return
		}
		wait := backoff
		for {
			ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
			err := r.next.Append(ctx, e)
			cancel()
			if err == nil || errors.Is(err, ErrInvalid) {
				r.q.stored()
				r.backlog.Add(-1)
				break
			}
			select {
			case <-r.done:
				// Still queued (next returned it without removing it): Close tries it once
				// more, and a spool keeps it after that.
				r.requeue = &e
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 30*time.Second)
		}
	}
}

// Close stops the retries, then tries once more, within one timeout for all of them, to store
// what is queued; what still fails is logged as lost.
func (r *Retrying) Close() {
	close(r.done)
	r.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	left := 0
	for {
		var e Event
		var ok bool
		if r.requeue != nil {
			e, ok, r.requeue = *r.requeue, true, nil
		} else {
			e, ok = r.q.take()
		}
		if !ok {
			break
		}
		if ctx.Err() == nil {
			if err := r.next.Append(ctx, e); err == nil || errors.Is(err, ErrInvalid) {
				r.q.stored()
				continue
			}
		}
		left++
		if r.q.durable() {
			break // it and everything after it stay in the spool, for the next process
		}
		r.q.stored() // in memory: gone with the process
	}
	if err := r.q.close(); err != nil {
		r.log.Error("audit spool: close", slog.Any("error", err))
	}
	switch {
	case left > 0 && r.q.durable():
		r.log.Warn("audit events left in the spool at shutdown: the next process started with it stores them", slog.Int64("events", r.backlog.Load()))
	case left > 0:
		r.log.Error("audit events lost at shutdown: the store did not take them", slog.Int("events", left))
	}
}
