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

// channelWatch keeps one invalidation subscription alive for a local cache (Cache, and the
// session cache behind WatchSessions). go-redis re-dials and re-subscribes after a connection
// error; silence is checked with a ping every `every`, and an unanswered ping (a hung server, or
// a dead connection the kernel has not noticed) replaces the subscription. Messages published
// while it is down are lost, so every loss and every (re)confirmation is reported through
// onLive and the cache must drop everything on both.
type channelWatch struct {
	s            *Store
	channel      string
	every        time.Duration
	log          *slog.Logger
	lost, active string // log messages

	onMessage func(payload string)
	// onLive(false) runs before the loss is logged, so whoever reads the log line knows the
	// cache no longer serves what it held.
	onLive func(live bool)

	done chan struct{}
	mu   sync.Mutex
	ps   *redis.PubSub
}

// start subscribes and runs the watch in the background until close.
func (w *channelWatch) start(ctx context.Context) {
	w.done = make(chan struct{})
	w.ps = w.s.rdb.Subscribe(ctx, w.channel)
	go w.run(ctx)
}

// close ends the subscription and waits for the watch to stop; cancel its context first.
func (w *channelWatch) close() error {
	w.mu.Lock()
	err := w.ps.Close()
	w.mu.Unlock()
	<-w.done
	return err
}

func (w *channelWatch) run(ctx context.Context) {
	defer close(w.done)
	backoff := 50 * time.Millisecond
	pinged, live := false, false
	for {
		w.mu.Lock()
		ps := w.ps
		w.mu.Unlock()
		msg, err := ps.ReceiveTimeout(ctx, w.every)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				// Silence is normal; ask the server to prove it is still there.
				pinged = true
				if err := ps.Ping(ctx); err == nil {
					continue
				}
			}
			w.onLive(false)
			if live {
				w.log.Warn(w.lost, "error", err)
			}
			live = false
			if pinged && errors.As(err, &ne) && ne.Timeout() {
				w.mu.Lock()
				_ = w.ps.Close()
				w.ps = w.s.rdb.Subscribe(ctx, w.channel)
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
			w.onMessage(m.Payload)
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				w.onLive(true)
				if !live {
					w.log.Info(w.active, "channel", m.Channel)
				}
				live = true
			}
		}
	}
}
