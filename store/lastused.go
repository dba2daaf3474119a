package store

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"
)

// UseRecorder records when members last used their memberships (the "last used" column of
// access reports), coalesced like a session's last-seen: at most one write per membership per
// interval in each process, made by a background worker, so the request that uses a membership
// never waits on Redis for it. A full queue drops the note (the next use after the interval
// records it): the record is a report's hint, never a decision's input.
type UseRecorder struct {
	s        *Store
	interval time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	seen map[MemberRef]time.Time
	q    chan use
	done chan struct{}
	wg   sync.WaitGroup
}

type use struct {
	ref MemberRef
	at  time.Time
}

// DefaultUseInterval is how often a membership's last use is written at most, per process.
const DefaultUseInterval = time.Hour

// NewUseRecorder starts a recorder writing to s; interval <= 0 means DefaultUseInterval. Close
// stops it.
func NewUseRecorder(s *Store, interval time.Duration, log *slog.Logger) *UseRecorder {
	if interval <= 0 {
		interval = DefaultUseInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &UseRecorder{s: s, interval: interval, log: log, seen: map[MemberRef]time.Time{},
		q: make(chan use, 1024), done: make(chan struct{})}
	u.wg.Add(1)
	go u.run()
	return u
}

// Used notes that user used their membership of org at now. It never blocks, and allocates
// only when it queues a write.
func (u *UseRecorder) Used(org, user string, now time.Time) {
	ref := MemberRef{Org: org, User: user}
	u.mu.Lock()
	last, ok := u.seen[ref]
	if ok && now.Sub(last) < u.interval {
		u.mu.Unlock()
		return
	}
	u.seen[ref] = now
	u.mu.Unlock()
	select {
	case u.q <- use{ref, now}:
	default:
		u.mu.Lock()
		delete(u.seen, ref) // dropped: the next use tries again
		u.mu.Unlock()
	}
}

func (u *UseRecorder) run() {
	defer u.wg.Done()
	prune := time.NewTicker(u.interval)
	defer prune.Stop()
	for {
		select {
		case <-u.done:
			return
		case x := <-u.q:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := u.s.rdb.HSet(ctx, u.s.keys.lastUsed(x.ref.Org), x.ref.User, strconv.FormatInt(x.at.Unix(), 10)).Err()
			cancel()
			if err != nil {
				u.log.Debug("last use not recorded", slog.String("org", x.ref.Org), slog.Any("error", err))
			}
		case now := <-prune.C:
			// Forget what is older than the interval: its next use writes anyway.
			u.mu.Lock()
			for ref, t := range u.seen {
				if now.Sub(t) >= u.interval {
					delete(u.seen, ref)
				}
			}
			u.mu.Unlock()
		}
	}
}

// Close stops the recorder; notes still queued are dropped.
func (u *UseRecorder) Close() {
	close(u.done)
	u.wg.Wait()
}

// LastUsed returns when each member of org last used their membership, as far as recorded.
func (s *Store) LastUsed(ctx context.Context, org string) (map[string]time.Time, error) {
	vals, err := s.rdb.HGetAll(ctx, s.keys.lastUsed(org)).Result()
	if err != nil {
		return nil, s.unavailable("last used", err)
	}
	out := make(map[string]time.Time, len(vals))
	for user, v := range vals {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out[user] = time.Unix(n, 0).UTC()
		}
	}
	return out, nil
}
