package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// DefaultAuditMaxLen is how many events the audit stream keeps when the constructor is given
// no bound. Older events are trimmed (approximately, see Audit), so the stream cannot fill
// Redis's memory; ship the stream elsewhere (audit tail) to keep more.
const DefaultAuditMaxLen = 100_000

// Audit is the audit event stream in Redis (XADD with MAXLEN ~ n). It implements audit.Sink and
// is safe for concurrent use.
//
// The stream key is a single key outside every hash tag. Organisation changes append their
// event inside the same MULTI/EXEC as the change (see Orgs), which a single Redis (or a
// primary with replicas) executes atomically.
type Audit struct {
	s      *Store
	maxLen int64
}

var _ audit.Sink = (*Audit)(nil)

// NewAudit returns the audit stream of s, bounded to about maxLen events; maxLen <= 0 means
// DefaultAuditMaxLen. Trimming is approximate ("~"), which lets Redis trim whole macro-nodes:
// the stream holds at least maxLen events and rarely a few hundred more.
func NewAudit(s *Store, maxLen int64) *Audit {
	if maxLen <= 0 {
		maxLen = DefaultAuditMaxLen
	}
	return &Audit{s: s, maxLen: maxLen}
}

// Untrimmed returns the stream with appends that never trim it: for a deployment with audit
// sinks, where events leave the stream only once every sink has them (TrimDelivered).
func (a *Audit) Untrimmed() *Audit { return &Audit{s: a.s, maxLen: 0} }

// Stream entries hold two fields: the type, so an operator can filter in redis-cli, and the
// event in its stable JSON form (audit.Event.MarshalJSON).
const (
	auditFieldType  = "type"
	auditFieldEvent = "event"
)

// Append stores e. A zero e.Time becomes now (UTC); e.ID is ignored (the stream assigns one).
// Errors wrap audit.ErrInvalid for an event that cannot be stored and ErrUnavailable when Redis
// does not answer.
func (a *Audit) Append(ctx context.Context, e audit.Event) error {
	args, err := a.xadd(e, time.Now())
	if err != nil {
		return err
	}
	if err := a.s.rdb.XAdd(ctx, args).Err(); err != nil {
		return a.s.unavailable("audit append", err)
	}
	return nil
}

// xadd builds the XADD of e, for Append and for the transactions of Orgs.
func (a *Audit) xadd(e audit.Event, now time.Time) (*redis.XAddArgs, error) {
	if err := e.Check(); err != nil {
		return nil, fmt.Errorf("audit append %s: %w", e.Type, err)
	}
	if e.Time.IsZero() {
		e.Time = now
	}
	e.Time = e.Time.UTC()
	e.ID = ""
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("audit append %s: %w: %w", e.Type, audit.ErrInvalid, err)
	}
	return &redis.XAddArgs{
		Stream: a.s.keys.audit(),
		MaxLen: a.maxLen, // 0: no MAXLEN
		Approx: a.maxLen > 0,
		Values: []any{auditFieldType, string(e.Type), auditFieldEvent, b},
	}, nil
}

// Tail returns up to count events (default 100) that follow the stream position since, and the
// position to pass next time. since "" gives the newest count events (what tail(1) shows), "0"
// starts at the oldest event kept, "$" starts after the newest (only events appended from now
// on); anything else must be a position returned
// earlier (an event ID). With block > 0 Tail waits up to block for an event when none is there;
// with block <= 0 it returns at once. No events is not an error: the slice is empty and the
// position unchanged (for "$", resolved to the current end, so nothing is missed between calls).
//
// It serves `portcullis admin audit tail`: call it in a loop with the returned position.
func (a *Audit) Tail(ctx context.Context, since string, count int, block time.Duration) ([]audit.Event, string, error) {
	if count <= 0 {
		count = 100
	}
	key := a.s.keys.audit()
	switch since {
	case "":
		// The newest count events, oldest first, as tail(1) does; a follower goes on after
		// the newest.
		last, err := a.s.rdb.XRevRangeN(ctx, key, "+", "-", int64(count)).Result()
		if err != nil {
			return nil, "", a.s.unavailable("audit tail", err)
		}
		slices.Reverse(last)
		next := "0-0"
		if len(last) > 0 {
			next = last[len(last)-1].ID
		}
		return decodeMessages(last), next, nil
	case "0":
		since = "0-0"
	case "$":
		last, err := a.s.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
		if err != nil {
			return nil, "", a.s.unavailable("audit tail", err)
		}
		since = "0-0"
		if len(last) == 1 {
			since = last[0].ID
		}
	default:
		if !validStreamID(since) {
			return nil, "", fmt.Errorf("audit tail: position %q: %w", since, ErrInvalid)
		}
	}
	args := &redis.XReadArgs{Streams: []string{key, since}, Count: int64(count), Block: -1}
	if block > 0 {
		args.Block = block
	}
	res, err := a.s.rdb.XRead(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, since, nil
	}
	if err != nil {
		return nil, "", a.s.unavailable("audit tail", err)
	}
	var out []audit.Event
	next := since
	for _, st := range res {
		out = append(out, decodeMessages(st.Messages)...)
		if n := len(st.Messages); n > 0 {
			next = st.Messages[n-1].ID
		}
	}
	return out, next, nil
}

// Before returns up to count events older than before (an event ID; "" for the newest),
// newest first, and the position to pass for the next older page ("" once the oldest kept
// event was read). It serves the pages that show recent activity.
func (a *Audit) Before(ctx context.Context, before string, count int) ([]audit.Event, string, error) {
	if count <= 0 {
		count = 100
	}
	end := "+"
	if before != "" {
		if !validStreamID(before) || !strings.Contains(before, "-") {
			return nil, "", fmt.Errorf("audit before: position %q: %w", before, ErrInvalid)
		}
		end = "(" + before // exclusive
	}
	msgs, err := a.s.rdb.XRevRangeN(ctx, a.s.keys.audit(), end, "-", int64(count)).Result()
	if err != nil {
		return nil, "", a.s.unavailable("audit before", err)
	}
	next := ""
	if len(msgs) == count {
		next = msgs[len(msgs)-1].ID
	}
	return decodeMessages(msgs), next, nil
}

// validStreamID accepts "<ms>-<seq>" and "<ms>", digits only.
func validStreamID(id string) bool {
	ms, seq, hasSeq := strings.Cut(id, "-")
	return len(ms) <= 20 && syntax.Digits(ms) && (!hasSeq || len(seq) <= 20 && syntax.Digits(seq))
}

// Deliveries of the audit stream to one consumer group (package notify's webhooks): each
// event goes to one consumer of the group, stays pending until acknowledged, and is retried
// from the pending list, by any consumer, when its consumer did not acknowledge it.

// EnsureGroup creates the consumer group group on the stream (and the stream), starting after
// the newest event: a new webhook is sent what happens from now on. It is a no-op when the
// group exists.
func (a *Audit) EnsureGroup(ctx context.Context, group string) error {
	return a.EnsureGroupAt(ctx, group, "$")
}

// EnsureGroupAt is EnsureGroup with the position a new group starts after: "$" (the newest
// event) or "0" (before the oldest kept, so an audit sink is sent the whole trail still held).
func (a *Audit) EnsureGroupAt(ctx context.Context, group, start string) error {
	if start != "$" && start != "0" {
		return fmt.Errorf("audit group %s: %w: start %q (want \"$\" or \"0\")", group, ErrInvalid, start)
	}
	err := a.s.rdb.XGroupCreateMkStream(ctx, a.s.keys.audit(), group, start).Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return a.s.unavailable("audit group", err)
	}
	return nil
}

// ReadGroup returns up to count events never delivered to group, for consumer, waiting up to
// block for one when there is none.
func (a *Audit) ReadGroup(ctx context.Context, group, consumer string, count int, block time.Duration) ([]audit.Event, error) {
	res, err := a.s.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer,
		Streams: []string{a.s.keys.audit(), ">"}, Count: int64(count), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, a.s.unavailable("audit read group", err)
	}
	var out []audit.Event
	for _, st := range res {
		out = append(out, decodeMessages(st.Messages)...)
	}
	return out, nil
}

// Pending is an event delivered to a group and not acknowledged: how long ago, and how often.
type Pending struct {
	ID       string
	Idle     time.Duration
	Attempts int64
}

// Pending lists up to count of group's unacknowledged events idle for at least minIdle,
// oldest first.
func (a *Audit) Pending(ctx context.Context, group string, minIdle time.Duration, count int) ([]Pending, error) {
	ps, err := a.s.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: a.s.keys.audit(), Group: group, Idle: minIdle,
		Start: "-", End: "+", Count: int64(count)}).Result()
	if err != nil {
		return nil, a.s.unavailable("audit pending", err)
	}
	out := make([]Pending, len(ps))
	for i, p := range ps {
		out[i] = Pending{ID: p.ID, Idle: p.Idle, Attempts: p.RetryCount}
	}
	return out, nil
}

// Claim takes the pending events ids (still idle for minIdle) for consumer, counting a new
// delivery of each, and returns them; an id trimmed from the stream meanwhile comes back
// with an empty Type.
func (a *Audit) Claim(ctx context.Context, group, consumer string, minIdle time.Duration, ids ...string) ([]audit.Event, error) {
	ms, err := a.s.rdb.XClaim(ctx, &redis.XClaimArgs{Stream: a.s.keys.audit(), Group: group, Consumer: consumer,
		MinIdle: minIdle, Messages: ids}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, a.s.unavailable("audit claim", err)
	}
	return decodeMessages(ms), nil
}

// Ack acknowledges ids for group: delivered, or given up.
func (a *Audit) Ack(ctx context.Context, group string, ids ...string) error {
	if err := a.s.rdb.XAck(ctx, a.s.keys.audit(), group, ids...).Err(); err != nil {
		return a.s.unavailable("audit ack", err)
	}
	return nil
}

// decodeMessages reads stream entries back into events, with their ids.
func decodeMessages(ms []redis.XMessage) []audit.Event {
	out := make([]audit.Event, 0, len(ms))
	for _, m := range ms {
		raw, _ := m.Values[auditFieldEvent].(string)
		var e audit.Event
		if err := json.Unmarshal([]byte(raw), &e); err != nil {
			// One damaged entry must not hide the rest of the trail; say where it is.
			e = audit.Event{Type: audit.Type(fmt.Sprint(m.Values[auditFieldType])), Detail: map[string]string{"decode_error": err.Error()}}
		}
		e.ID = m.ID
		out = append(out, e)
	}
	return out
}

// GroupStatus is how far one consumer group is behind the stream.
type GroupStatus struct {
	Group string
	// Exists is false when the group has not been created yet (nothing delivered).
	Exists bool
	// Pending counts the events delivered to a consumer and not acknowledged.
	Pending int64
	// Lag counts the events not yet delivered to any consumer; -1 when Redis cannot tell
	// (after a trim of entries the group had not read, see XINFO GROUPS).
	Lag int64
	// Oldest is the id of the oldest event the group has not acknowledged ("" for none):
	// the oldest pending one, or else the first not yet delivered.
	Oldest string
	// LastDelivered is the id of the newest event delivered to the group.
	LastDelivered string
}

// Groups reports the status of each of groups, in order.
func (a *Audit) Groups(ctx context.Context, groups ...string) ([]GroupStatus, error) {
	key := a.s.keys.audit()
	infos, err := a.s.rdb.XInfoGroups(ctx, key).Result()
	if err != nil && !isNoSuchKey(err) {
		return nil, a.s.unavailable("audit groups", err)
	}
	byName := map[string]redis.XInfoGroup{}
	for _, g := range infos {
		byName[g.Name] = g
	}
	out := make([]GroupStatus, len(groups))
	for i, name := range groups {
		g, ok := byName[name]
		out[i] = GroupStatus{Group: name, Exists: ok, Lag: -1}
		if !ok {
			continue
		}
		out[i].Pending, out[i].Lag, out[i].LastDelivered = g.Pending, g.Lag, g.LastDeliveredID
		if g.Pending > 0 {
			p, err := a.s.rdb.XPending(ctx, key, name).Result()
			if err != nil {
				return nil, a.s.unavailable("audit pending", err)
			}
			out[i].Oldest = p.Lower
			continue
		}
		// Nothing pending: the oldest unacknowledged event is the first after the group's
		// last delivered one, if there is one.
		next, err := a.s.rdb.XRangeN(ctx, key, "("+g.LastDeliveredID, "+", 1).Result()
		if err != nil {
			return nil, a.s.unavailable("audit range", err)
		}
		if len(next) > 0 {
			out[i].Oldest = next[0].ID
		}
	}
	return out, nil
}

// isNoSuchKey reports XINFO's error for a stream that does not exist yet.
func isNoSuchKey(err error) bool { return err != nil && strings.Contains(err.Error(), "no such key") }

// TrimDelivered removes from the stream the events every one of groups has acknowledged and
// that are older than keep, and returns the position it trimmed before ("" when it trimmed
// nothing). It never trims by count: an event a group has not acknowledged, or that a group not
// created yet would be sent, stays whatever the stream's length. The trim is exact (MINID
// without "~"): it runs every few seconds, not with every append, so its cost does not matter.
func (a *Audit) TrimDelivered(ctx context.Context, keep time.Duration, groups ...string) (string, error) {
	if len(groups) == 0 {
		return "", nil
	}
	st, err := a.Groups(ctx, groups...)
	if err != nil {
		return "", err
	}
	// Events older than keep may go: ids begin with their append time in milliseconds.
	minID := streamID{ms: uint64(max(0, time.Now().Add(-keep).UnixMilli()))}
	for _, g := range st {
		if !g.Exists {
			return "", nil // it will be sent everything still here
		}
		// Keep from the oldest event the group lacks; when it has everything, from the one
		// after its newest: an event appended since (by Redis's clock, which need not agree
		// with ours) is newer than that, so it is never trimmed before the group has it.
		oldest, next := g.Oldest, g.Oldest == ""
		if next {
			oldest = g.LastDelivered
		}
		id, ok := parseStreamID(oldest)
		if !ok {
			return "", fmt.Errorf("audit trim: group %s: unexpected id %q", g.Group, oldest)
		}
		if next {
			id.seq++
		}
		if id.less(minID) {
			minID = id
		}
	}
	if minID.ms == 0 && minID.seq == 0 {
		return "", nil
	}
	if err := a.s.rdb.XTrimMinID(ctx, a.s.keys.audit(), minID.String()).Err(); err != nil {
		return "", a.s.unavailable("audit trim", err)
	}
	return minID.String(), nil
}

// streamID is a Redis stream entry id, "ms-seq".
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return streamID{ms, seq}, err1 == nil && err2 == nil
}

func (x streamID) less(y streamID) bool { return x.ms < y.ms || x.ms == y.ms && x.seq < y.seq }

func (x streamID) String() string {
	return strconv.FormatUint(x.ms, 10) + "-" + strconv.FormatUint(x.seq, 10)
}
