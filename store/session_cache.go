package store

import (
	"context"
	"log/slog"
	"sync"
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
	w := &channelWatch{
		s: s, channel: s.keys.sessionInvalidations(), every: healthEvery, log: log,
		lost: SessionSubscriptionLost, active: "session cache: invalidation subscription active",
		onMessage: ev.Changed, onLive: ev.Live,
	}
	w.start(ctx)
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			_ = w.close()
			// Nothing is heard any more: the cache must stop serving what it holds.
			ev.Live(false)
		})
	}
}

// SessionSubscriptionLost is the log message of WatchSessions when the subscription breaks;
// by then the cache behind it has been told (SessionEvents.Live(false)).
const SessionSubscriptionLost = "session cache: invalidation subscription lost; sessions are read from Redis until it is back"
