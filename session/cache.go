package session

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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

const (
	sessionShards   = 64   // a power of two
	maxShardRecords = 4096 // 64 × 4096 sessions per replica; beyond that, eviction
)

// sessionCache holds decoded session records by handle. Records in it are shared between
// requests and never modified: a change stores a new record.
//
// An entry is served while the subscription is confirmed (live) and younger than ttl, counted on
// the Manager's clock from before the read that filled it. Idle and absolute expiry are checked
// by the caller on every request; an entry that looks expired or due for a last-seen write is
// read again from storage first. Every invalidation bumps its shard's generation, so a read in
// flight when it arrived answers its request but is not cached.
type sessionCache struct {
	ttl    time.Duration
	live   atomic.Bool
	seed   maphash.Seed
	shards [sessionShards]sessionShard
}

type sessionShard struct {
	mu    sync.RWMutex
	m     map[string]cachedSession
	gen   uint64
	swept time.Time // last removal of expired entries
	_     [16]byte  // keep shards' locks on separate cache lines
}

type cachedSession struct {
	rec *record
	at  time.Time
}

func newSessionCache(ttl time.Duration) *sessionCache {
	c := &sessionCache{ttl: ttl, seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = map[string]cachedSession{}
	}
	return c
}

func (c *sessionCache) shard(h string) *sessionShard {
	return &c.shards[maphash.String(c.seed, h)&(sessionShards-1)]
}

// get returns the cached record of h if it may be served at now.
func (c *sessionCache) get(h string, now time.Time) (*record, bool) {
	if !c.live.Load() {
		return nil, false
	}
	sh := c.shard(h)
	sh.mu.RLock()
	e, ok := sh.m[h]
	sh.mu.RUnlock()
	if !ok {
		return nil, false
	}
	// A clock that went back (tests move it) does not make an entry young.
	if age := now.Sub(e.at); age < 0 || age >= c.ttl {
		return nil, false
	}
	return e.rec, true
}

// begin returns the generation to hand to put for a read of h about to start.
func (c *sessionCache) begin(h string) uint64 {
	sh := c.shard(h)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.gen
}

// put caches rec for h, read at at, unless an invalidation arrived since begin returned gen or
// the subscription is not live.
func (c *sessionCache) put(h string, rec *record, at time.Time, gen uint64) {
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen || !c.live.Load() {
		return
	}
	if _, ok := sh.m[h]; !ok && (len(sh.m) >= maxShardRecords || at.Sub(sh.swept) >= c.ttl) {
		// Expired entries go at most once a TTL (records hold an ID token: memory follows the
		// sessions active in the last TTL, not all that ever were), and when the shard is full.
		sh.swept = at
		cutoff := at.Add(-c.ttl)
		for k, e := range sh.m {
			if e.at.Before(cutoff) {
				delete(sh.m, k)
			}
		}
		for k := range sh.m {
			if len(sh.m) < maxShardRecords {
				break
			}
			delete(sh.m, k)
		}
	}
	sh.m[h] = cachedSession{rec: rec, at: at}
}

// forget drops h (a change to it, here or announced).
func (c *sessionCache) forget(h string) {
	sh := c.shard(h)
	sh.mu.Lock()
	sh.gen++
	delete(sh.m, h)
	sh.mu.Unlock()
}

// forgetIf drops every record match selects (nil: all).
func (c *sessionCache) forgetIf(match func(*record) bool) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		if match == nil {
			clear(sh.m)
		} else {
			for k, e := range sh.m {
				if match(e.rec) {
					delete(sh.m, k)
				}
			}
		}
		sh.mu.Unlock()
	}
}

// setLive records the subscription's state; both a loss and a (re)confirmation drop everything.
func (c *sessionCache) setLive(live bool) {
	if !live {
		c.live.Store(false)
		c.forgetIf(nil)
		return
	}
	c.forgetIf(nil)
	c.live.Store(true)
}

// cachingStore is the Manager's Store when sessions are cached: every write through it drops the
// local copy at once (read-your-writes on this replica, before the announcement comes back),
// whether or not the write succeeded.
type cachingStore struct {
	Store
	c *sessionCache
}

func (s cachingStore) UpdateSession(ctx context.Context, h string, rec []byte, ttl time.Duration) error {
	defer s.c.forget(h)
	return s.Store.UpdateSession(ctx, h, rec, ttl)
}

func (s cachingStore) DeleteSession(ctx context.Context, h, user, iss, sid string) error {
	defer s.c.forget(h)
	return s.Store.DeleteSession(ctx, h, user, iss, sid)
}

func (s cachingStore) RevokeUser(ctx context.Context, user string) (int, error) {
	defer s.c.forgetIf(func(r *record) bool { return r.User == user })
	return s.Store.RevokeUser(ctx, user)
}

func (s cachingStore) EndFamily(ctx context.Context, family, user, iss, sid string) (int, error) {
	defer s.c.forgetIf(func(r *record) bool { return r.User == user && r.Family == family })
	return s.Store.EndFamily(ctx, family, user, iss, sid)
}

func (s cachingStore) RevokeSID(ctx context.Context, iss, sid string) (int, error) {
	defer s.c.forgetIf(func(r *record) bool { return r.Issuer == iss && r.SID == sid })
	return s.Store.RevokeSID(ctx, iss, sid)
}
