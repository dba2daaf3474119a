package store

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/invalcache"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// DefaultCacheTTL is the cache lifetime docs/design.md asks for: short enough to be the backstop when
// an invalidation is lost, long enough that a busy portal rarely asks Redis.
const DefaultCacheTTL = 2 * time.Second

// CacheDisabled, given to NewCache as the TTL, makes every Lookup go to Redis (benchmarks, and
// operators who want no cache at all).
const CacheDisabled time.Duration = 0

const (
	// maxShardEntries bounds memory: org ids can come from the Host header, so absent
	// memberships of made-up orgs are cached too. 64 shards × 4096 = 262144 entries.
	maxShardEntries = 4096
	// fillTimeout bounds a shared Redis read, which does not follow any single caller's
	// context (one caller giving up must not fail the others waiting for the same key).
	fillTimeout = 5 * time.Second
	// healthEvery is how long the subscription may stay silent before it is pinged; no answer
	// for twice as long means the connection is dead and is replaced.
	healthEvery = 15 * time.Second
)

// Cache is a local cache in front of Store.Lookup, kept fresh by the invalidations that every
// change (Orgs) publishes, with a TTL as backstop for a lost message: an invalcache.Cache,
// whose rules (nothing served unless the subscription is confirmed, a read that raced an
// invalidation is not kept, concurrent misses share one read) are the session cache's too. A
// cold key costs one Redis round trip; a warm one costs none and does not allocate.
//
// An invalidation drops the entries it names (org-wide, membership, or user-wide); absent
// records are cached like present ones.
//
// Cache is safe for concurrent use. Returned records are shared between callers and must not be
// modified.
type Cache struct {
	s   *Store
	log *slog.Logger
	// c is nil when the cache is disabled: every Lookup then asks Redis.
	c    *invalcache.Cache[cacheKey, cacheEntry]
	seed maphash.Seed
	// keys caches API key index entries (APIKeyOwner), absent ones included; nil when the
	// cache is disabled. A present entry never changes; an absent one is forgotten when a
	// key of that id is created (invalKey).
	keys *invalcache.Cache[string, indexEntry[APIKeyOwner]]
	// clients caches federated client index entries (ClientOwner), by index id, absent ones
	// included; an entry written is announced (invalClient).
	clients *invalcache.Cache[string, indexEntry[ClientOwner]]

	prefetchWarned atomic.Bool // a failed prefetch was logged (once per Cache)

	last        atomic.Pointer[string] // the last message applied, so tests can wait for it
	healthEvery time.Duration
	cancel      context.CancelFunc
	closeOnce   sync.Once
	watch       *channelWatch

	// watchers are told of changes to one membership (Watch): long-lived connections that
	// were authorised once, such as WebSocket tunnels, re-decide on them.
	wmu      sync.Mutex
	watchers map[cacheKey]map[*chan struct{}]struct{}
}

type cacheKey struct{ org, user string }

// cacheEntry is what Lookup answers for a key: either record may be nil (absent).
type cacheEntry struct {
	org *Org
	mem *Membership
}

// NewCache returns a cache over s.Lookup with entries living ttl (CacheDisabled, or any ttl <= 0:
// no cache, every Lookup asks Redis) and starts its subscription to the invalidation channel in
// the background: Redis need not be up yet. log receives subscription trouble; nil discards.
// Close stops it.
func NewCache(s *Store, ttl time.Duration, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{s: s, log: log, seed: maphash.MakeSeed(), healthEvery: healthEvery}
	if ttl <= 0 {
		return c
	}
	c.c = invalcache.New[cacheKey, cacheEntry](invalcache.Options[cacheKey]{
		TTL: ttl, PerShard: maxShardEntries,
		Hash: func(k cacheKey) uint64 { return maphash.String(c.seed, k.org)*31 ^ maphash.String(c.seed, k.user) },
	})
	c.keys = invalcache.New[string, indexEntry[APIKeyOwner]](invalcache.Options[string]{
		TTL: ttl, PerShard: maxShardEntries,
		Hash: func(k string) uint64 { return maphash.String(c.seed, k) },
	})
	c.clients = invalcache.New[string, indexEntry[ClientOwner]](invalcache.Options[string]{
		TTL: ttl, PerShard: maxShardEntries,
		Hash: func(k string) uint64 { return maphash.String(c.seed, k) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.watch = &channelWatch{
		s: s, channel: s.keys.invalidations(), every: c.healthEvery, log: log,
		lost:      "cache: invalidation subscription lost; dropping all entries until it is back",
		active:    "cache: invalidation subscription active",
		onMessage: c.invalidate,
		onLive: func(live bool) {
			c.c.SetLive(live)
			c.keys.SetLive(live)
			c.clients.SetLive(live)
			if !live {
				c.notify(nil) // changes may be missed now: every watcher re-decides
			}
		},
	}
	c.watch.start(ctx)
	return c
}

// Close stops the subscription and waits for it to end; later calls do nothing. The cache then
// answers from Redis only: nothing it holds is served once nobody tells it of changes.
func (c *Cache) Close() error {
	if c.cancel == nil {
		return nil
	}
	var err error
	c.closeOnce.Do(func() {
		c.cancel()
		err = c.watch.close()
		c.c.SetLive(false)
		c.keys.SetLive(false)
		c.clients.SetLive(false)
	})
	return err
}

// Subscribed reports whether the invalidation subscription is currently confirmed. While it is
// not, nothing is served from the cache; a health check may report it.
func (c *Cache) Subscribed() bool { return c.c != nil && c.c.Live() }

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
	if c.c == nil {
		if r, ok := c.takePrefetched(ctx, org, user); ok {
			return r.o, r.m, nil
		}
		return c.s.Lookup(ctx, org, user)
	}
	k := cacheKey{org, user}
	if e, ok := c.c.Get(k); ok {
		return e.org, e.mem, nil
	}
	if r, ok := c.takePrefetched(ctx, org, user); ok {
		c.c.Put(k, cacheEntry{org: r.o, mem: r.m}, r.at, r.gen)
		return r.o, r.m, nil
	}
	e, err := c.c.Load(ctx, k, fillTimeout, func(ctx context.Context) (cacheEntry, error) {
		o, m, err := c.s.Lookup(ctx, org, user)
		return cacheEntry{org: o, mem: m}, err
	})
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
		return nil, nil, c.s.unavailable("lookup "+org, err)
	}
	return e.org, e.mem, err
}

// APIKeyOwner is Store.APIKeyOwner through the cache: the index entry of API key id, nil (and
// no error) when there is none. A warm id costs no Redis round trip and does not allocate.
func (c *Cache) APIKeyOwner(ctx context.Context, id string) (*APIKeyOwner, error) {
	if e, ok := cachedEntry(c.keys, id); ok {
		return e, nil
	}
	return loadEntry(c, ctx, c.keys, id, "api key index", func(ctx context.Context) (*APIKeyOwner, error) { return c.s.APIKeyOwner(ctx, id) })
}

// indexEntry is what an index says about one id: its entry, nil when it has none.
type indexEntry[T any] struct{ owner *T }

// cachedEntry is the entry of id that ix holds, if it holds one (ix nil: the cache is off).
func cachedEntry[T any](ix *invalcache.Cache[string, indexEntry[T]], id string) (*T, bool) {
	if ix == nil {
		return nil, false
	}
	e, ok := ix.Get(id)
	return e.owner, ok
}

// loadEntry reads index entry id with read, through ix when the cache is on, an absent entry
// (ErrNotFound) cached as nil like a present one. what names the index in errors.
func loadEntry[T any](c *Cache, ctx context.Context, ix *invalcache.Cache[string, indexEntry[T]], id, what string, read func(context.Context) (*T, error)) (*T, error) {
	fill := func(ctx context.Context) (indexEntry[T], error) {
		a, err := read(ctx)
		if errors.Is(err, ErrNotFound) {
			return indexEntry[T]{}, nil
		}
		return indexEntry[T]{a}, err
	}
	if ix == nil {
		e, err := fill(ctx)
		return e.owner, err
	}
	e, err := ix.Load(ctx, id, fillTimeout, fill)
	if err != nil && ctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
		return nil, c.s.unavailable(what, err)
	}
	return e.owner, err
}

// LookupMachine is Store.LookupMachine through the cache: with both memberships cached it
// costs no round trip; otherwise one, whose records are cached as Lookup's would be.
func (c *Cache) LookupMachine(ctx context.Context, org, machine, sponsor string) (*Org, *Membership, *Membership, error) {
	if c.c == nil || !syntax.OrgID(org) {
		return c.s.LookupMachine(ctx, org, machine, sponsor)
	}
	km, ks := cacheKey{org, machine}, cacheKey{org, sponsor}
	em, okm := c.c.Get(km)
	es, oks := c.c.Get(ks)
	if okm && oks {
		return em.org, em.mem, es.mem, nil
	}
	g, at := c.c.Begin(), c.c.Now()
	o, m, sp, err := c.s.LookupMachine(ctx, org, machine, sponsor)
	if err != nil {
		return nil, nil, nil, err
	}
	c.c.Put(km, cacheEntry{org: o, mem: m}, at, g)
	c.c.Put(ks, cacheEntry{org: o, mem: sp}, at, g)
	return o, m, sp, nil
}

// ClientOwner is Store.ClientOwner through the cache: the machine issuer's subject is bound to,
// nil (and no error) when none is. A warm client costs no Redis round trip.
func (c *Cache) ClientOwner(ctx context.Context, issuer, subject string) (*ClientOwner, error) {
	id := clientIndexID(issuer, subject)
	if e, ok := cachedEntry(c.clients, id); ok {
		return e, nil
	}
	return loadEntry(c, ctx, c.clients, id, "client index", func(ctx context.Context) (*ClientOwner, error) {
		return c.s.ClientOwner(ctx, issuer, subject)
	})
}

// OrgsOf is Store.OrgsOf, uncached: the org picker is not on every request, and it must not
// offer an org the person just lost. It lets a Cache stand wherever Lookup and OrgsOf are needed.
func (c *Cache) OrgsOf(ctx context.Context, user string) ([]string, error) {
	return c.s.OrgsOf(ctx, user)
}

// drop removes the entries match selects (nil: all of them); reads in flight are not kept.
func (c *Cache) drop(match func(cacheKey) bool) {
	if c.c == nil {
		return
	}
	if match == nil {
		c.c.ForgetIf(nil)
		c.keys.ForgetIf(nil)
		c.clients.ForgetIf(nil)
		return
	}
	c.c.ForgetIf(func(k cacheKey, _ cacheEntry) bool { return match(k) })
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
		c.notify(nil)
	case kind == 'm':
		c.c.Forget(cacheKey{org, user})
		c.notify(func(k cacheKey) bool { return k.org == org && k.user == user })
	case kind == 'o':
		c.drop(func(k cacheKey) bool { return k.org == org })
		c.notify(func(k cacheKey) bool { return k.org == org })
	case kind == 'u':
		c.drop(func(k cacheKey) bool { return k.user == user })
		c.notify(func(k cacheKey) bool { return k.user == user })
	case kind == 'k':
		if c.keys != nil {
			c.keys.Forget(user)
		}
	case kind == 'c':
		if c.clients != nil {
			c.clients.Forget(user)
		}
	}
}

// Watch returns a channel that receives a value whenever an invalidation may concern user's
// membership of org (the membership, the organisation, the person, or anything while the
// subscription is lost), and a function that ends the watch. The holder re-decides on each
// value: it is a hint that something changed, not what. A value not yet taken is not
// repeated.
func (c *Cache) Watch(org, user string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	k := cacheKey{org, user}
	c.wmu.Lock()
	if c.watchers == nil {
		c.watchers = map[cacheKey]map[*chan struct{}]struct{}{}
	}
	if c.watchers[k] == nil {
		c.watchers[k] = map[*chan struct{}]struct{}{}
	}
	c.watchers[k][&ch] = struct{}{}
	c.wmu.Unlock()
	return ch, func() {
		c.wmu.Lock()
		delete(c.watchers[k], &ch)
		if len(c.watchers[k]) == 0 {
			delete(c.watchers, k)
		}
		c.wmu.Unlock()
	}
}

// notify tells the watchers match selects (nil: all).
func (c *Cache) notify(match func(cacheKey) bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	for k, chs := range c.watchers {
		if match != nil && !match(k) {
			continue
		}
		for ch := range chs {
			select {
			case *ch <- struct{}{}:
			default:
			}
		}
	}
}

// Invalidation messages name what changed, with ids escaped (escape never produces ":"):
//
//	o:<org>          the organisation record (status, domains): drop all of its entries
//	m:<org>:<user>   one membership
//	u:<user>         everything of one person (offboarding)
//	k:<key id>       an API key's index entry was written (forget a cached absence)
//	c:<index id>     a federated client's index entry was written or removed
func invalOrg(org string) string              { return "o:" + escape(org) }
func invalMembership(org, user string) string { return "m:" + escape(org) + ":" + escape(user) }
func invalUser(user string) string            { return "u:" + escape(user) }
func invalKey(id string) string               { return "k:" + escape(id) }
func invalClient(issuer, subject string) string {
	return "c:" + clientIndexID(issuer, subject)
}

// parseInval reads a message written by the functions above.
func parseInval(msg string) (kind byte, org, user string, ok bool) {
	if len(msg) < 3 || msg[1] != ':' {
		return 0, "", "", false
	}
	kind, rest := msg[0], msg[2:]
	switch kind {
	case 'o':
		org, ok = unescape(rest)
	case 'u', 'k', 'c':
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
	if !ok || ((kind == 'o' || kind == 'm') && org == "") || (kind != 'o' && user == "") {
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
