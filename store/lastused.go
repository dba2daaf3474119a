package store

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/coalesce"

	"github.com/portcullis-proxy/portcullis/audit"
)

// UseRecorder records when members last used their memberships (the "last used" column of
// access reports), coalesced like a session's last-seen: at most one write per membership per
// interval in each process, made by a background worker, so the request that uses a membership
// never waits on Redis for it. A full queue drops the note (the next use after the interval
// records it): the record is a report's hint, never a decision's input.
//
// With ReportReaches, it also records what partners, resellers and support staff reach in an
// organisation (Reached): an access.reached audit event per person, organisation and route
// per reach interval, for the organisation's activity page.
type UseRecorder struct {
	s   *Store
	log *slog.Logger

	uses    *coalesce.Set[MemberRef]
	reaches *coalesce.Set[reachRef]
	// aud receives the reach events; nil records none.
	aud  audit.Sink
	q    chan use
	rq   chan reachNote
	done chan struct{}
	wg   sync.WaitGroup
}

type use struct {
	ref MemberRef
	at  time.Time
}

// reachRef is a person's use of one route of one organisation, for one purpose under one
// ticket: a support engineer who moves to another ticket is recorded again at once.
type reachRef struct{ org, user, route, purpose, ticket string }

type reachNote struct {
	reachRef
	kind string
	at   time.Time
}

// DefaultUseInterval is how often a membership's last use is written at most, per process.
const DefaultUseInterval = time.Hour

// ReachInterval is how often a person's use of one route of an organisation is recorded at
// most, per process: a support engineer's session shows as one event per area and quarter
// hour, not one per click.
const ReachInterval = 15 * time.Minute

// NewUseRecorder starts a recorder writing to s; interval <= 0 means DefaultUseInterval. Close
// stops it.
func NewUseRecorder(s *Store, interval time.Duration, log *slog.Logger) *UseRecorder {
	if interval <= 0 {
		interval = DefaultUseInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u := &UseRecorder{s: s, log: log, uses: coalesce.New[MemberRef](interval), reaches: coalesce.New[reachRef](ReachInterval),
		q: make(chan use, 1024), rq: make(chan reachNote, 256), done: make(chan struct{})}
	u.wg.Add(1)
	go u.run()
	return u
}

// ReportReaches makes Reached record its notes as audit events in a. Call it before the
// recorder is used.
func (u *UseRecorder) ReportReaches(a audit.Sink) { u.aud = a }

// Used notes that user used their membership of org at now. It never blocks, and allocates
// only when it queues a write.
func (u *UseRecorder) Used(org, user string, now time.Time) {
	ref := MemberRef{Org: org, User: user}
	if !u.uses.Admit(ref, now) {
		return
	}
	select {
	case u.q <- use{ref, now}:
	default:
		u.uses.Forget(ref) // dropped: the next use tries again
	}
}

// Reached notes that user, whose membership of org is of kind, reached route at now, for the
// purpose and under the ticket (the purpose grant's reason) the decision used. It is for the
// kinds from outside the organisation (partner, reseller, support): their access is what the
// organisation's administrators must be able to see. It never blocks; without ReportReaches
// it records nothing.
func (u *UseRecorder) Reached(org, user, route, kind, purpose, ticket string, now time.Time) {
	if u.aud == nil {
		return
	}
	ref := reachRef{org, user, route, purpose, ticket}
	if !u.reaches.Admit(ref, now) {
		return
	}
	select {
	case u.rq <- reachNote{ref, kind, now}:
	default:
		u.reaches.Forget(ref)
		// A report's record, not a decision's input; but the organisation's administrators
		// look for it: say it was not written.
		u.log.Warn("access reached not recorded: queue full", slog.String("org", org), slog.String("user", user), slog.String("route", route))
	}
}

func (u *UseRecorder) run() {
	defer u.wg.Done()
	prune := time.NewTicker(u.uses.Interval())
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
		case x := <-u.rq:
			detail := map[string]string{"kind": x.kind}
			if x.purpose != "" {
				detail["purpose"] = x.purpose
			}
			if x.ticket != "" {
				detail["ticket"] = x.ticket
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := u.aud.Append(ctx, audit.Event{Time: x.at, Type: audit.AccessReached, Org: x.org, User: x.user, Route: x.route, Detail: detail})
			cancel()
			if err != nil {
				u.log.Warn("access reached not recorded", slog.String("org", x.org), slog.String("user", x.user), slog.Any("error", err))
			}
		case now := <-prune.C:
			// Forget what is older than the interval: its next use writes anyway.
			u.uses.Prune(now)
			u.reaches.Prune(now)
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
