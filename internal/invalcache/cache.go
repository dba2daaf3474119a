// Package invalcache is the local cache Portcullis keeps in front of Redis, for session
// records and for memberships alike: entries live for a short TTL and are dropped at once by
// invalidations that every change announces over pub/sub, so a warm request costs no round
// trip and a change is seen on every replica within milliseconds.
//
// The rules that make it safe are in one place here:
//
//   - Nothing is served, and nothing stored, unless the invalidation subscription is confirmed
//     (SetLive(true)); a loss or a re-confirmation drops everything, since messages may have
//     been missed in between.
//   - An entry is served while younger than the TTL, counted on the cache's clock from before
//     the read that filled it; a clock that went back does not make an entry young.
//   - A read that was in flight when any invalidation arrived answers its callers but is not
//     stored (Begin and Put), and a read never replaces an entry read after it.
//   - Concurrent misses of one key share one read (Load).
//   - Memory is bounded: expired entries are swept at most once a TTL per shard, and a full
//     shard drops entries to make room.
//
// It does no I/O and knows nothing of Redis: package store fills it and applies invalidations.
package invalcache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

const shards = 64 // a power of two; enough that concurrent requests rarely share a lock

// Cache holds values by key. It is safe for concurrent use. Values are shared between
// callers and must not be modified.
type Cache[K comparable, V any] struct {
	ttl      time.Duration
	perShard int
	hash     func(K) uint64
	now      func() time.Time

	live   atomic.Bool
	gen    atomic.Uint64 // bumped by every invalidation
	shards [shards]shard[K, V]
}

type shard[K comparable, V any] struct {
	mu       sync.RWMutex
	m        map[K]entry[V]
	inflight map[K]*fill[V] // written only under the exclusive lock
	swept    time.Time      // last sweep of expired entries
	_        [40]byte       // keep shards' locks on separate cache lines
}

type entry[V any] struct {
	v  V
	at time.Time // when the read that filled it began
}

// fill is one read shared by every concurrent miss of its key, begun in generation gen.
type fill[V any] struct {
	done chan struct{}
	gen  Gen
	v    V
	err  error
}

// Options configure a Cache.
type Options[K comparable] struct {
	// TTL is how long an entry is served; it must be positive.
	TTL time.Duration
	// PerShard bounds the entries of each of the 64 shards; 0 means 4096.
	PerShard int
	// Hash spreads keys over the shards; it must not allocate (it runs on every lookup).
	Hash func(K) uint64
	// Now is the clock entries are aged on; nil means time.Now.
	Now func() time.Time
}

// New returns an empty cache that serves nothing until SetLive(true).
func New[K comparable, V any](o Options[K]) *Cache[K, V] {
	c := &Cache[K, V]{ttl: o.TTL, perShard: o.PerShard, hash: o.Hash, now: o.Now}
	if c.perShard <= 0 {
		c.perShard = 4096
	}
	if c.now == nil {
		c.now = time.Now
	}
	for i := range c.shards {
		c.shards[i].m = map[K]entry[V]{}
		c.shards[i].inflight = map[K]*fill[V]{}
	}
	return c
}

func (c *Cache[K, V]) shard(k K) *shard[K, V] { return &c.shards[c.hash(k)&(shards-1)] }

// TTL is the lifetime of an entry.
func (c *Cache[K, V]) TTL() time.Duration { return c.ttl }

// Now reads the cache's clock: the time to give Put for a read about to start.
func (c *Cache[K, V]) Now() time.Time { return c.now() }

// Live reports whether the invalidation subscription is confirmed (SetLive).
func (c *Cache[K, V]) Live() bool { return c.live.Load() }

// fresh reports whether an entry read at at may be served at now.
func (c *Cache[K, V]) fresh(at, now time.Time) bool {
	age := now.Sub(at)
	return age >= 0 && age < c.ttl
}

// Get returns the value of k if it may be served now. It allocates nothing.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	var zero V
	if !c.live.Load() {
		return zero, false
	}
	sh := c.shard(k)
	sh.mu.RLock()
	e, ok := sh.m[k]
	sh.mu.RUnlock()
	if !ok || !c.fresh(e.at, c.now()) {
		return zero, false
	}
	return e.v, true
}

// Peek returns the entry of k whatever its age, and when it was read: for tests and
// diagnostics, never for answering a request.
func (c *Cache[K, V]) Peek(k K) (V, time.Time, bool) {
	sh := c.shard(k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e, ok := sh.m[k]
	return e.v, e.at, ok
}

// Gen is the invalidation generation a read began in; see Begin.
type Gen uint64

// Begin returns the generation to give Put for a read about to start.
func (c *Cache[K, V]) Begin() Gen { return Gen(c.gen.Load()) }

// Put stores v, read at at (on the cache's clock, before the read began) in generation g,
// under k: unless an invalidation arrived since g, the subscription is not live, or the entry
// there was read later.
func (c *Cache[K, V]) Put(k K, v V, at time.Time, g Gen) {
	sh := c.shard(k)
	sh.mu.Lock()
	c.putLocked(sh, k, entry[V]{v: v, at: at}, g)
	sh.mu.Unlock()
}

func (c *Cache[K, V]) putLocked(sh *shard[K, V], k K, e entry[V], g Gen) {
	if Gen(c.gen.Load()) != g || !c.live.Load() {
		return
	}
	old, ok := sh.m[k]
	if ok && old.at.After(e.at) {
		return
	}
	if !ok && (len(sh.m) >= c.perShard || e.at.Sub(sh.swept) >= c.ttl) {
		c.sweep(sh, e.at)
	}
	sh.m[k] = e
}

// sweep drops the entries of sh expired at now, then, if the shard is still full, any;
// called with the exclusive lock.
func (c *Cache[K, V]) sweep(sh *shard[K, V], now time.Time) {
	sh.swept = now
	cutoff := now.Add(-c.ttl)
	for k, e := range sh.m {
		if e.at.Before(cutoff) {
			delete(sh.m, k)
		}
	}
	for k := range sh.m {
		if len(sh.m) < c.perShard {
			break
		}
		delete(sh.m, k)
	}
}

// Load returns the value of k, from the cache or else from read, which every concurrent
// miss of k shares and whose answer is stored (errors are not). read runs with a context
// that does not end with any one caller's (one caller giving up must not fail the others),
// bounded by timeout; a caller whose ctx ends first gets ctx's cause, which wrap may turn
// into the caller's own error.
func (c *Cache[K, V]) Load(ctx context.Context, k K, timeout time.Duration, read func(context.Context) (V, error)) (V, error) {
	if v, ok := c.Get(k); ok {
		return v, nil
	}
	sh := c.shard(k)
	sh.mu.Lock()
	if e, ok := sh.m[k]; ok && c.live.Load() && c.fresh(e.at, c.now()) {
		sh.mu.Unlock()
		return e.v, nil
	}
	// A read begun before an invalidation may answer what was true before the change: a
	// caller arriving after it starts a read of its own rather than joining that one.
	f := sh.inflight[k]
	if f == nil || f.gen != c.Begin() {
		f = &fill[V]{done: make(chan struct{}), gen: c.Begin()}
		sh.inflight[k] = f
		go c.fill(ctx, sh, k, f, timeout, read)
	}
	sh.mu.Unlock()
	select {
	case <-f.done:
		return f.v, f.err
	case <-ctx.Done():
		var zero V
		return zero, context.Cause(ctx)
	}
}

func (c *Cache[K, V]) fill(ctx context.Context, sh *shard[K, V], k K, f *fill[V], timeout time.Duration, read func(context.Context) (V, error)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	at := c.now()
	f.v, f.err = read(ctx)
	sh.mu.Lock()
	if sh.inflight[k] == f {
		delete(sh.inflight, k)
	}
	if f.err == nil {
		c.putLocked(sh, k, entry[V]{v: f.v, at: at}, f.gen)
	}
	sh.mu.Unlock()
	close(f.done)
}

// Forget drops k: it changed, here or on another replica. Reads in flight are not stored.
func (c *Cache[K, V]) Forget(k K) {
	c.gen.Add(1)
	sh := c.shard(k)
	sh.mu.Lock()
	delete(sh.m, k)
	sh.mu.Unlock()
}

// ForgetIf drops every entry match selects (nil: all). Reads in flight are not stored.
func (c *Cache[K, V]) ForgetIf(match func(K, V) bool) {
	c.gen.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		if match == nil {
			clear(sh.m)
		} else {
			for k, e := range sh.m {
				if match(k, e.v) {
					delete(sh.m, k)
				}
			}
		}
		sh.mu.Unlock()
	}
}

// SetLive records the subscription's state. A loss and a (re)confirmation both drop
// everything: what was held may have changed unannounced in between.
func (c *Cache[K, V]) SetLive(live bool) {
	if !live {
		c.live.Store(false)
		c.ForgetIf(nil)
		return
	}
	c.ForgetIf(nil)
	c.live.Store(true)
}

// Len returns how many entries the cache holds, fresh or not: for tests and metrics.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
