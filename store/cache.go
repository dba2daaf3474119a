package store

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// DefaultCacheTTL is the cache lifetime DESIGN.md asks for: short enough to be the backstop when
// an invalidation is lost, long enough that a busy portal rarely asks Redis.
const DefaultCacheTTL = 2 * time.Second

// CacheDisabled, given to NewCache as the TTL, makes every Lookup go to Redis (benchmarks, and
// operators who want no cache at all).
const CacheDisabled time.Duration = 0

const (
	cacheShards = 64 // a power of two; enough that concurrent requests rarely share a lock
	// maxShardEntries bounds memory: org ids can come from the Host header, so absent
	// memberships of made-up orgs are cached too. 64 × 4096 = 262144 entries.
	maxShardEntries = 4096
	// fillTimeout bounds a shared Redis read, which does not follow any single caller's
	// context (one caller giving up must not fail the others waiting for the same key).
	fillTimeout = 5 * time.Second
	// healthEvery is how long the subscription may stay silent before it is pinged; no answer
	// for twice as long means the connection is dead and is replaced.
	healthEvery = 15 * time.Second
)

// Cache is a local cache in front of Store.Lookup, kept fresh by the invalidations that every
// change (Orgs) publishes, with a TTL as backstop for a lost message. A cold key costs one Redis
// round trip (concurrent misses of one key share it); a warm one costs none and does not
// allocate.
//
// Freshness: an entry, present or absent, is served while younger than the TTL (counted from
// before the read that filled it). An invalidation drops the entries it names (org-wide,
// membership, or user-wide). When the subscription breaks or is re-established, everything is
// dropped, since messages may have been lost in between. A read that was in flight when any
// invalidation arrived answers its callers but is not cached.
//
// Cache is safe for concurrent use. Returned records are shared between callers and must not be
// modified.
type Cache struct {
	s   *Store
	ttl time.Duration
	log *slog.Logger

	seed   maphash.Seed
	start  time.Time     // origin of the monotonic clock used for ages
	gen    atomic.Uint64 // bumped by every invalidation, see fill
	shards [cacheShards]cacheShard

	prefetchWarned atomic.Bool // a failed prefetch was logged (once per Cache)

	live        atomic.Bool            // the subscription is confirmed
	last        atomic.Pointer[string] // the last message applied, so tests can wait for it
	healthEvery time.Duration
	cancel      context.CancelFunc
	closeOnce   sync.Once
	watch       *channelWatch
}

type cacheKey struct{ org, user string }

type cacheEntry struct {
	org *Org
	mem *Membership
	at  time.Duration // since Cache.start, when the read that filled it began
}

type cacheShard struct {
	mu       sync.RWMutex
	m        map[cacheKey]cacheEntry
	inflight map[cacheKey]*cacheFill // under mu, written only with the exclusive lock
	_        [64]byte                // keep shards' locks on separate cache lines
}

// cacheFill is one Redis read shared by every concurrent miss of its key.
type cacheFill struct {
	done chan struct{}
	org  *Org
	mem  *Membership
	err  error
}

// NewCache returns a cache over s.Lookup with entries living ttl (CacheDisabled, or any ttl <= 0:
// no cache, every Lookup asks Redis) and starts its subscription to the invalidation channel in
// the background: Redis need not be up yet. log receives subscription trouble; nil discards.
// Close stops it.
func NewCache(s *Store, ttl time.Duration, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{s: s, ttl: ttl, log: log, seed: maphash.MakeSeed(), start: time.Now(), healthEvery: healthEvery}
	for i := range c.shards {
		c.shards[i].m = map[cacheKey]cacheEntry{}
		c.shards[i].inflight = map[cacheKey]*cacheFill{}
	}
	if ttl <= 0 {
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.watch = &channelWatch{
		s: s, channel: s.keys.invalidations(), every: c.healthEvery, log: log,
		lost:      "cache: invalidation subscription lost; dropping all entries until it is back",
		active:    "cache: invalidation subscription active",
		onMessage: c.invalidate,
		onLive: func(live bool) {
			if !live {
				c.live.Store(false)
			}
			c.drop(nil)
			if live {
				c.live.Store(true)
			}
		},
	}
	c.watch.start(ctx)
	return c
}

// Close stops the subscription and waits for it to end; later calls do nothing. The cache keeps
// answering, from Redis and from entries younger than the TTL, but no longer hears
// invalidations; close it only when done with it.
func (c *Cache) Close() error {
	if c.cancel == nil {
		return nil
	}
	var err error
	c.closeOnce.Do(func() {
		c.cancel()
		err = c.watch.close()
	})
	return err
}

// Subscribed reports whether the invalidation subscription is currently confirmed. While it is
// not, entries still expire after the TTL; a health check may report it.
func (c *Cache) Subscribed() bool { return c.live.Load() }

// Lookup is Store.Lookup through the cache: the organisation and the user's membership of it,
// nil when absent. Errors are not cached.
//
// On a miss, records that the session load of this request read for exactly (org, user) (see
// WithPrefetch) answer without asking Redis again, and are cached like a read of Lookup's own.
// With the cache disabled they answer this request only.
func (c *Cache) Lookup(ctx context.Context, org, user string) (*Org, *Membership, error) {
	if !syntax.OrgID(org) || user == "" {
		// Ids that cannot exist are answered without Redis and not cached, so made-up hosts
		// cannot fill the cache.
		return c.s.Lookup(ctx, org, user)
	}
	if c.ttl <= 0 {
		if r, ok := c.takePrefetched(ctx, org, user); ok {
			return r.o, r.m, nil
		}
		return c.s.Lookup(ctx, org, user)
	}
	k := cacheKey{org, user}
	sh := c.shard(org, user)
	now := time.Since(c.start)
	sh.mu.RLock()
	e, ok := sh.m[k]
	sh.mu.RUnlock()
	if ok && now-e.at < c.ttl {
		return e.org, e.mem, nil
	}
	if r, ok := c.takePrefetched(ctx, org, user); ok {
		c.keep(k, r)
		return r.o, r.m, nil
	}
	return c.miss(ctx, sh, k)
}

// OrgsOf is Store.OrgsOf, uncached: the org picker is not on every request, and it must not
// offer an org the person just lost. It lets a Cache stand wherever Lookup and OrgsOf are needed.
func (c *Cache) OrgsOf(ctx context.Context, user string) ([]string, error) {
	return c.s.OrgsOf(ctx, user)
}

func (c *Cache) shard(org, user string) *cacheShard {
	h := maphash.String(c.seed, org)*31 ^ maphash.String(c.seed, user)
	return &c.shards[h&(cacheShards-1)]
}

// miss joins the read in flight for k, or starts one, and waits for it or for ctx.
func (c *Cache) miss(ctx context.Context, sh *cacheShard, k cacheKey) (*Org, *Membership, error) {
	sh.mu.Lock()
	if e, ok := sh.m[k]; ok && time.Since(c.start)-e.at < c.ttl {
		sh.mu.Unlock()
		return e.org, e.mem, nil
	}
	f := sh.inflight[k]
	if f == nil {
		f = &cacheFill{done: make(chan struct{})}
		sh.inflight[k] = f
		go c.fill(ctx, sh, k, f)
	}
	sh.mu.Unlock()
	select {
	case <-f.done:
		return f.org, f.mem, f.err
	case <-ctx.Done():
		return nil, nil, c.s.unavailable("lookup "+k.org, context.Cause(ctx))
	}
}

// fill reads k from Redis for every caller waiting on f and caches the answer, unless an
// invalidation arrived while it read (the answer may predate the change).
func (c *Cache) fill(ctx context.Context, sh *cacheShard, k cacheKey, f *cacheFill) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
	defer cancel()
	gen := c.gen.Load()
	at := time.Since(c.start)
	f.org, f.mem, f.err = c.s.Lookup(ctx, k.org, k.user)
	sh.mu.Lock()
	delete(sh.inflight, k)
	if f.err == nil {
		c.storeLocked(sh, k, cacheEntry{org: f.org, mem: f.mem, at: at}, gen)
	}
	sh.mu.Unlock()
	close(f.done)
}

// storeLocked caches e, read when the invalidation generation was gen, under k in sh (whose
// lock the caller holds): not if an invalidation arrived since (the read may predate the
// change), nor over an entry read later than e.
func (c *Cache) storeLocked(sh *cacheShard, k cacheKey, e cacheEntry, gen uint64) {
	if c.gen.Load() != gen {
		return
	}
	if old, ok := sh.m[k]; ok && old.at >= e.at {
		return
	}
	if len(sh.m) >= maxShardEntries {
		sh.evict(time.Since(c.start) - c.ttl)
	}
	sh.m[k] = e
}

// evict makes room: first entries filled before cutoff (expired), then, if none, any one.
// Called with the exclusive lock.
func (sh *cacheShard) evict(cutoff time.Duration) {
	for k, e := range sh.m {
		if e.at < cutoff {
			delete(sh.m, k)
		}
	}
	for k := range sh.m {
		if len(sh.m) < maxShardEntries {
			break
		}
		delete(sh.m, k)
	}
}

// drop removes the entries match selects from every shard (nil: all of them). The generation is
// bumped first, so a read in flight cannot store an answer older than this invalidation.
func (c *Cache) drop(match func(cacheKey) bool) {
	c.gen.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		if match == nil {
			clear(sh.m)
		} else {
			for k := range sh.m {
				if match(k) {
					delete(sh.m, k)
				}
			}
		}
		sh.mu.Unlock()
	}
}

// invalidate applies one message from the invalidation channel.
func (c *Cache) invalidate(msg string) {
	defer c.last.Store(&msg)
	kind, org, user, ok := parseInval(msg)
	switch {
	case !ok:
		// Something we cannot read may concern anything: be safe, it costs one refill.
		c.log.Warn("cache: unreadable invalidation, dropping all entries", "message", msg)
		c.drop(nil)
	case kind == 'm':
		c.gen.Add(1)
		k := cacheKey{org, user}
		sh := c.shard(org, user)
		sh.mu.Lock()
		delete(sh.m, k)
		sh.mu.Unlock()
	case kind == 'o':
		c.drop(func(k cacheKey) bool { return k.org == org })
	case kind == 'u':
		c.drop(func(k cacheKey) bool { return k.user == user })
	}
}

// Invalidation messages name what changed, with ids escaped (escape never produces ":"):
//
//	o:<org>          the organisation record (status, domains): drop all of its entries
//	m:<org>:<user>   one membership
//	u:<user>         everything of one person (offboarding)
func invalOrg(org string) string              { return "o:" + escape(org) }
func invalMembership(org, user string) string { return "m:" + escape(org) + ":" + escape(user) }
func invalUser(user string) string            { return "u:" + escape(user) }

// parseInval reads a message written by the functions above.
func parseInval(msg string) (kind byte, org, user string, ok bool) {
	if len(msg) < 3 || msg[1] != ':' {
		return 0, "", "", false
	}
	kind, rest := msg[0], msg[2:]
	switch kind {
	case 'o':
		org, ok = unescape(rest)
	case 'u':
		user, ok = unescape(rest)
	case 'm':
		o, u, found := strings.Cut(rest, ":")
		if !found {
			return 0, "", "", false
		}
		var ok1, ok2 bool
		org, ok1 = unescape(o)
		user, ok2 = unescape(u)
		ok = ok1 && ok2
	}
	if !ok || (kind != 'u' && org == "") || (kind != 'o' && user == "") {
		return 0, "", "", false
	}
	return kind, org, user, true
}

// unescape inverts escape; it rejects anything escape cannot have produced.
func unescape(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		for i := 0; i < len(s); i++ {
			if !isUnreserved(s[i]) {
				return "", false
			}
		}
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isUnreserved(c):
			b.WriteByte(c)
		case c == '%' && i+2 < len(s) && isUpperHex(s[i+1]) && isUpperHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			return "", false
		}
	}
	return b.String(), true
}

func isUpperHex(c byte) bool { return '0' <= c && c <= '9' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
