package store

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SessionEvents receives what WatchSessions hears. Both functions are called from one goroutine,
// never concurrently with each other.
type SessionEvents struct {
	// Changed is called with the handle of a session record that was updated, deleted or
	// revoked by any replica (UpdateSession, DeleteSession, RevokeUser, RevokeSID); not for
	// TouchSession.
	Changed func(h string)
	// Live is called with false when the subscription is lost (messages may be lost until it is
	// back), and with true each time it is (re)confirmed. A cache must drop everything on both:
	// what it holds may have changed unannounced in between.
	Live func(live bool)
}

// WatchSessions subscribes to the session invalidation channel in the background (Redis need
// not be up yet) and reports to ev until the returned stop is called; stop waits for the
// subscription to end. Silence is checked with a ping every healthEvery; a dead or hung
// connection is replaced. log receives subscription trouble; nil discards.
func (s *Store) WatchSessions(ev SessionEvents, log *slog.Logger) (stop func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &sessionWatch{s: s, ev: ev, log: log, done: make(chan struct{}), every: healthEvery}
	w.ps = s.rdb.Subscribe(ctx, s.keys.sessionInvalidations())
	go w.run(ctx)
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			w.mu.Lock()
			_ = w.ps.Close()
			w.mu.Unlock()
			<-w.done
		})
	}
}

// SessionSubscriptionLost is the log message of WatchSessions when the subscription breaks;
// by then the cache behind it has been told (SessionEvents.Live(false)).
const SessionSubscriptionLost = "session cache: invalidation subscription lost; sessions are read from Redis until it is back"

type sessionWatch struct {
	s     *Store
	ev    SessionEvents
	log   *slog.Logger
	done  chan struct{}
	every time.Duration
	mu    sync.Mutex
	ps    *redis.PubSub
}

// run is Cache.subscribe for the session channel: go-redis re-dials and re-subscribes after a
// connection error, and every loss and every (re)confirmation is reported so the cache drops
// everything.
func (w *sessionWatch) run(ctx context.Context) {
	defer close(w.done)
	backoff := 50 * time.Millisecond
	pinged, live := false, false
	for {
		w.mu.Lock()
		ps := w.ps
		w.mu.Unlock()
		msg, err := ps.ReceiveTimeout(ctx, w.every)
		if ctx.Err() != nil {
			if live {
				w.ev.Live(false)
			}
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				pinged = true
				if err := ps.Ping(ctx); err == nil {
					continue
				}
			}
			// The cache is emptied before the loss is logged, so whoever reads the log line
			// knows no cached session is served any more.
			w.ev.Live(false)
			if live {
				w.log.Warn(SessionSubscriptionLost, "error", err)
			}
			live = false
			if pinged && errors.As(err, &ne) && ne.Timeout() {
				w.mu.Lock()
				_ = w.ps.Close()
				w.ps = w.s.rdb.Subscribe(ctx, w.s.keys.sessionInvalidations())
				w.mu.Unlock()
			}
			pinged = false
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		pinged, backoff = false, 50*time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			w.ev.Changed(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if !live {
					w.log.Info("session cache: invalidation subscription active", "channel", m.Channel)
				}
				live = true
				w.ev.Live(true)
			}
		}
	}
}
