package session

import (
	"context"
	"hash/maphash"
	"log/slog"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/invalcache"
	"github.com/portcullis-proxy/portcullis/store"
)

// DefaultCacheTTL is how long a session record read from storage is reused without asking
// again (Options.CacheTTL). Every change to a session (update, sign-out, back-channel logout,
// revocation, step-up rotation, organisation switch) is announced over Redis pub/sub and drops
// the copy on every replica within milliseconds; the TTL is the backstop when a message is lost.
const DefaultCacheTTL = 2 * time.Second

// watcher is what a store must offer for the Manager to cache sessions: announcements of
// changes (store.Store.WatchSessions) and a last-seen write that is not announced.
type watcher interface {
	WatchSessions(ev store.SessionEvents, log *slog.Logger) (stop func())
	TouchSession(ctx context.Context, h string, rec []byte, ttl time.Duration) error
}

// maxShardRecords bounds the session cache: 64 shards × 4096 sessions per replica; beyond
// that, eviction.
const maxShardRecords = 4096

// sessionCache holds decoded session records by handle, on the invalcache rules (served only
// while the subscription is confirmed and younger than the TTL on the Manager's clock; a read
// that raced an invalidation is not kept). Records in it are shared between requests and never
// modified: a change stores a new record. Idle and absolute expiry are checked by the caller on
// every request; an entry that looks expired or due for a last-seen write is read again from
// storage first.
type sessionCache = invalcache.Cache[string, *record]

func newSessionCache(ttl time.Duration, now func() time.Time) *sessionCache {
	seed := maphash.MakeSeed()
	return invalcache.New[string, *record](invalcache.Options[string]{TTL: ttl, PerShard: maxShardRecords, Now: now,
		Hash: func(h string) uint64 { return maphash.String(seed, h) }})
}

// cachingStore is the Manager's Store when sessions are cached: every write through it drops the
// local copy at once (read-your-writes on this replica, before the announcement comes back),
// whether or not the write succeeded.
type cachingStore struct {
	Sessions
	c *sessionCache
}

func (s cachingStore) UpdateSession(ctx context.Context, h string, rec []byte, ttl time.Duration) error {
	defer s.c.Forget(h)
	return s.Sessions.UpdateSession(ctx, h, rec, ttl)
}

func (s cachingStore) DeleteSession(ctx context.Context, h, user, iss, sid string) error {
	defer s.c.Forget(h)
	return s.Sessions.DeleteSession(ctx, h, user, iss, sid)
}

func (s cachingStore) EndSession(ctx context.Context, h, user, iss, sid string) (bool, error) {
	defer s.c.Forget(h)
	return s.Sessions.EndSession(ctx, h, user, iss, sid)
}

func (s cachingStore) RevokeUser(ctx context.Context, user string) (int, error) {
	defer s.c.ForgetIf(func(_ string, r *record) bool {
		return r.User == user || r.OIDCSub != "" && store.UserKey(r.Issuer, r.OIDCSub) == user
	})
	return s.Sessions.RevokeUser(ctx, user)
}

func (s cachingStore) EndFamily(ctx context.Context, family, user, iss, sid string) (int, error) {
	defer s.c.ForgetIf(func(_ string, r *record) bool { return r.User == user && r.Family == family })
	return s.Sessions.EndFamily(ctx, family, user, iss, sid)
}

func (s cachingStore) RevokeSID(ctx context.Context, iss, sid string) (int, error) {
	defer s.c.ForgetIf(func(_ string, r *record) bool { return r.Issuer == iss && r.SID == sid })
	return s.Sessions.RevokeSID(ctx, iss, sid)
}
