package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// mgetHook counts MGETs, the command of Lookup: a cache hit must not send one.
type mgetHook struct{ n atomic.Int64 }

func (h *mgetHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *mgetHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "mget" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *mgetHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// replica is one proxy's view of Redis: its own client, Cache and change API.
type replica struct {
	s     *Store
	o     *Orgs
	c     *Cache
	mgets *mgetHook
}

func newReplica(t testing.TB, c config.Redis, ttl time.Duration) *replica {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	h := &mgetHook{}
	s.rdb.AddHook(h)
	r := &replica{s: s, o: NewOrgs(s, nil), c: NewCache(s, ttl, testLogger(t)), mgets: h}
	t.Cleanup(func() {
		r.c.Close()
		s.Close()
	})
	if ttl > 0 {
		waitFor(t, 5*time.Second, "subscription", r.c.Subscribed)
	}
	return r
}

var settleSeq atomic.Int64

// settle waits until every invalidation published so far has reached the caches of rs: it
// publishes a marker (a membership nobody has) and waits for each cache to apply it, which it
// does after everything published before it.
func settle(t testing.TB, rs ...*replica) {
	t.Helper()
	marker := invalMembership("settle", fmt.Sprint(settleSeq.Add(1)))
	if err := rs[0].s.rdb.Publish(context.Background(), rs[0].s.keys.invalidations(), marker).Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		waitFor(t, 5*time.Second, "invalidations to settle", func() bool {
			p := r.c.last.Load()
			return p != nil && *p == marker
		})
	}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func sharedConfig(t testing.TB) config.Redis {
	srv := redistest.Shared(t)
	return config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: redistest.Prefix(t)}
}

func mustCreate(t testing.TB, o *Orgs, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := o.CreateOrg(context.Background(), Org{ID: id}, admin, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func mustGrant(t testing.TB, o *Orgs, org, user string) {
	t.Helper()
	if _, err := o.Grant(context.Background(), Membership{Org: org, User: user, Kind: KindEmployee}, admin, ""); err != nil {
		t.Fatal(err)
	}
}

// status is the membership status the cache reports ("" for none), failing on errors.
func status(t testing.TB, c *Cache, org, user string) string {
	t.Helper()
	_, m, err := c.Lookup(context.Background(), org, user)
	if err != nil {
		t.Fatalf("Lookup %s/%s: %v", org, user, err)
	}
	if m == nil {
		return ""
	}
	return m.Status
}

func TestCacheHitsAndMisses(t *testing.T) {
	r := newReplica(t, sharedConfig(t), time.Minute)
	mustCreate(t, r.o, "acme")
	mustGrant(t, r.o, "acme", alice)
	settle(t, r)

	for i, want := range []int64{1, 1, 2, 2} { // alice cold, alice warm, bob cold (absent), bob warm
		user := alice
		if i >= 2 {
			user = bob
		}
		o, m, err := r.c.Lookup(t.Context(), "acme", user)
		if err != nil || o == nil || (user == alice) != (m != nil) {
			t.Fatalf("Lookup %s = %v, %v, %v", user, o, m, err)
		}
		if got := r.mgets.n.Load(); got != want {
			t.Errorf("after lookup %d: %d MGETs, want %d", i, got, want)
		}
	}
	// Impossible org ids are answered without Redis and not cached.
	if o, m, err := r.c.Lookup(t.Context(), "Not An Org", alice); o != nil || m != nil || err != nil || r.mgets.n.Load() != 2 {
		t.Errorf("impossible org: %v %v %v, %d MGETs", o, m, err, r.mgets.n.Load())
	}
	if _, _, err := r.c.Lookup(t.Context(), "acme", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty user: %v", err)
	}
	if orgs, err := r.c.OrgsOf(t.Context(), alice); err != nil || !slices.Equal(orgs, []string{"acme"}) {
		t.Errorf("OrgsOf = %v, %v", orgs, err)
	}
}

func TestCacheDisabled(t *testing.T) {
	r := newReplica(t, sharedConfig(t), CacheDisabled)
	mustCreate(t, r.o, "acme")
	for range 3 {
		if _, _, err := r.c.Lookup(t.Context(), "acme", alice); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.mgets.n.Load(); n != 3 {
		t.Errorf("disabled cache: %d MGETs for 3 lookups", n)
	}
	if r.c.Subscribed() {
		t.Error("disabled cache subscribed")
	}
	if err := r.c.Close(); err != nil {
		t.Error(err)
	}
}

// TestCacheCollapsesMisses: concurrent misses of one key cost one round trip.
func TestCacheCollapsesMisses(t *testing.T) {
	r := newReplica(t, sharedConfig(t), time.Minute)
	mustCreate(t, r.o, "acme")
	mustGrant(t, r.o, "acme", alice)
	settle(t, r)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			<-start
			if got := status(t, r.c, "acme", alice); got != MembershipActive {
				t.Errorf("status %q", got)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := r.mgets.n.Load(); n != 1 {
		t.Errorf("100 concurrent cold lookups cost %d MGETs, want 1", n)
	}
	// A caller that gives up does not break the read for the others.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := r.c.Lookup(ctx, "acme", bob); !errors.Is(err, ErrUnavailable) {
		t.Errorf("cancelled lookup: %v", err)
	}
	waitFor(t, 5*time.Second, "the abandoned read to be cached", func() bool {
		before := r.mgets.n.Load()
		status(t, r.c, "acme", bob)
		return r.mgets.n.Load() == before
	})
}

// TestCacheInvalidationScope: a membership message drops one entry, an org message all of the
// org's, a user message all of the person's; the rest stay warm.
func TestCacheInvalidationScope(t *testing.T) {
	r := newReplica(t, sharedConfig(t), time.Minute)
	mustCreate(t, r.o, "acme", "beta")
	mustGrant(t, r.o, "acme", alice)
	mustGrant(t, r.o, "acme", bob)
	mustGrant(t, r.o, "beta", alice)
	mustGrant(t, r.o, "beta", bob)
	settle(t, r)
	all := [][2]string{{"acme", alice}, {"acme", bob}, {"beta", alice}, {"beta", bob}}
	warm := func() {
		for _, k := range all {
			status(t, r.c, k[0], k[1])
		}
	}
	// cold returns which entries had to be read again, once the change's messages have been
	// applied.
	cold := func() [][2]string {
		settle(t, r)
		var out [][2]string
		for _, k := range all {
			before := r.mgets.n.Load()
			status(t, r.c, k[0], k[1])
			if r.mgets.n.Load() != before {
				out = append(out, k)
			}
		}
		return out
	}
	warm()
	if _, err := r.o.Revoke(t.Context(), "acme", bob, admin, ""); err != nil {
		t.Fatal(err)
	}
	if got := cold(); !slices.Equal(got, all[1:2]) {
		t.Errorf("membership change re-read %v", got)
	}
	if _, err := r.o.SetOrgStatus(t.Context(), "acme", OrgStatus{Status: OrgSuspended}, admin, ""); err != nil {
		t.Fatal(err)
	}
	if got := cold(); !slices.Equal(got, all[0:2]) {
		t.Errorf("org change re-read %v", got)
	}
	if _, err := r.o.Offboard(t.Context(), alice, admin, ""); err != nil {
		t.Fatal(err)
	}
	if got := cold(); !slices.Equal(got, [][2]string{all[0], all[2]}) {
		t.Errorf("offboarding re-read %v", got)
	}
	// A message the cache cannot read drops everything.
	warm()
	if err := r.s.rdb.Publish(t.Context(), r.s.keys.invalidations(), "session:xyz").Err(); err != nil {
		t.Fatal(err)
	}
	if got := cold(); !slices.Equal(got, all) {
		t.Errorf("unreadable message re-read %v", got)
	}
}

// peekedEntry is an entry as peek finds it: the records and when their read began.
type peekedEntry struct {
	cacheEntry
	at time.Time
}

// peek reports whether an entry for org/user is cached (fresh or not), for tests.
func (c *Cache) peek(org, user string) (peekedEntry, bool) {
	if c.c == nil {
		return peekedEntry{}, false
	}
	e, at, ok := c.c.Peek(cacheKey{org, user})
	return peekedEntry{e, at}, ok
}

// TestCacheInvalidationAcrossReplicas is the revocation delay of docs/design.md: a change made
// through one replica reaches another replica's cache by pub/sub, long before its TTL.
func TestCacheInvalidationAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	c := config.Redis{Address: srv.Addr}
	a := newReplica(t, c, time.Minute) // a TTL that cannot explain a quick convergence
	b := newReplica(t, c, time.Minute)
	mustCreate(t, a.o, "acme")
	mustGrant(t, a.o, "acme", alice)
	settle(t, a, b)

	const trials = 50
	var delays, commits []time.Duration
	for i := range trials {
		if got := status(t, b.c, "acme", alice); got == "" {
			t.Fatal("no membership")
		}
		want := MembershipRevoked
		change := func() error { _, err := a.o.Revoke(t.Context(), "acme", alice, admin, "trial"); return err }
		if i%2 == 1 {
			want = MembershipActive
			change = func() error {
				_, err := a.o.Grant(t.Context(), Membership{Org: "acme", User: alice, Kind: KindEmployee}, admin, "trial")
				return err
			}
		}
		before := b.mgets.n.Load()
		status(t, b.c, "acme", alice)
		if b.mgets.n.Load() != before {
			t.Fatal("replica b's entry was not warm before the change")
		}
		start := time.Now()
		if err := change(); err != nil {
			t.Fatal(err)
		}
		commits = append(commits, time.Since(start))
		for status(t, b.c, "acme", alice) != want {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("trial %d: replica b still sees the old membership after 5s", i)
			}
			// Poll like requests arrive, not in a spin that would take a CPU from Redis and
			// the subscriber on a small machine (and measure the scheduler instead).
			time.Sleep(20 * time.Microsecond)
		}
		delays = append(delays, time.Since(start))
		if d := delays[len(delays)-1]; d > 5*time.Millisecond {
			t.Logf("trial %d: %v", i, d)
		}
	}
	p50, p99, maxD := percentiles(delays)
	c50, c99, _ := percentiles(commits)
	t.Logf("change on replica a → visible on replica b, %d trials: p50 %v, p99 %v, max %v (the change itself: p50 %v, p99 %v)",
		trials, p50, p99, maxD, c50, c99)
	if p99 > 500*time.Millisecond {
		t.Errorf("p99 invalidation delay %v; pub/sub should take milliseconds", p99)
	}
}

func percentiles(d []time.Duration) (p50, p99, maxD time.Duration) {
	s := slices.Sorted(slices.Values(d))
	return s[len(s)/2], s[(len(s)*99)/100], s[len(s)-1]
}

// TestCacheLostMessage: a change whose message never arrives (written behind the cache's back)
// is served stale only until the TTL.
func TestCacheLostMessage(t *testing.T) {
	const ttl = 300 * time.Millisecond
	r := newReplica(t, sharedConfig(t), ttl)
	mustCreate(t, r.o, "acme")
	mustGrant(t, r.o, "acme", alice)
	settle(t, r)
	status(t, r.c, "acme", alice)
	entry, _ := r.c.peek("acme", alice)
	// Revoke without the invalidation: write the record directly.
	_, m, _ := r.s.Lookup(t.Context(), "acme", alice)
	m.Status = MembershipRevoked
	b, _ := jsonMarshal(m)
	if err := r.s.rdb.Set(t.Context(), r.s.keys.membership("acme", alice), b, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := status(t, r.c, "acme", alice); got != MembershipActive {
		t.Fatalf("status %q: the cache was not warm", got)
	}
	for status(t, r.c, "acme", alice) != MembershipRevoked {
		time.Sleep(time.Millisecond)
	}
	age := time.Since(entry.at)
	t.Logf("lost message: stale answer replaced %v after the entry was filled (TTL %v)", age, ttl)
	if age > ttl+100*time.Millisecond {
		t.Errorf("converged after %v, TTL is %v", age, ttl)
	}
}

// TestCacheSubscriptionCut: when the subscription connection is killed, the cache drops
// everything, re-subscribes, and a change made meanwhile is seen within the TTL.
func TestCacheSubscriptionCut(t *testing.T) {
	const ttl = time.Second
	srv := redistest.Start(t)
	c := config.Redis{Address: srv.Addr}
	a := newReplica(t, c, ttl)
	b := newReplica(t, c, ttl)
	mustCreate(t, a.o, "acme")
	mustGrant(t, a.o, "acme", alice)
	settle(t, a, b)
	status(t, b.c, "acme", alice)

	raw := srv.Client(t)
	if err := raw.ClientKillByFilter(t.Context(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := a.o.Revoke(t.Context(), "acme", alice, admin, "during the cut"); err != nil {
		t.Fatal(err)
	}
	for status(t, b.c, "acme", alice) != MembershipRevoked {
		if time.Since(start) > ttl+time.Second {
			t.Fatalf("replica b still sees the membership %v after the cut", time.Since(start))
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("subscription cut: change visible after %v (TTL %v)", time.Since(start), ttl)
	waitFor(t, 5*time.Second, "re-subscription", b.c.Subscribed)
	if time.Since(start) > ttl+200*time.Millisecond {
		t.Errorf("converged after %v, TTL %v", time.Since(start), ttl)
	}
	// And invalidations flow again.
	status(t, b.c, "acme", alice)
	start = time.Now()
	mustGrant(t, a.o, "acme", alice)
	for status(t, b.c, "acme", alice) != MembershipActive {
		if time.Since(start) > ttl/2 {
			t.Fatal("no invalidation after re-subscribing")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestCacheWithoutRedis: a hung Redis (paused, the connection stays up) leaves warm entries
// answering until their TTL, after which lookups fail with ErrUnavailable (callers fail
// closed). A dead one (killed: the subscription breaks) drops everything at once, since
// invalidations can no longer arrive.
func TestCacheWithoutRedis(t *testing.T) {
	const ttl = 500 * time.Millisecond
	srv := redistest.Start(t)
	c := config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(200 * time.Millisecond), DialTimeout: config.Duration(200 * time.Millisecond)}
	r := newReplica(t, c, ttl)
	mustCreate(t, r.o, "acme")
	mustGrant(t, r.o, "acme", alice)
	settle(t, r)

	status(t, r.c, "acme", alice)
	status(t, r.c, "acme", bob) // absent: cached too
	entry, _ := r.c.peek("acme", alice)
	srv.Pause()
	before := r.mgets.n.Load()
	if status(t, r.c, "acme", alice) != MembershipActive || status(t, r.c, "acme", bob) != "" || r.mgets.n.Load() != before {
		t.Fatal("warm entries did not answer from memory while Redis hangs")
	}
	if _, _, err := r.c.Lookup(t.Context(), "acme", "https://idp.example|carol"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("cold lookup with Redis hung: %v", err)
	}
	for {
		_, _, err := r.c.Lookup(t.Context(), "acme", alice)
		age := time.Since(entry.at)
		if err != nil {
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("after TTL: %v", err)
			}
			if age < ttl {
				t.Errorf("failed after %v, before the TTL %v", age, ttl)
			}
			break
		}
		if age > ttl+50*time.Millisecond {
			t.Fatalf("still answering %v after the fill, TTL %v", age, ttl)
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.Resume()

	waitFor(t, 5*time.Second, "Redis back", func() bool { _, _, err := r.c.Lookup(t.Context(), "acme", alice); return err == nil })
	srv.Stop()
	waitFor(t, 2*time.Second, "subscription loss", func() bool { return !r.c.Subscribed() })
	if _, ok := r.c.peek("acme", alice); ok {
		t.Error("entries kept after the subscription broke")
	}
	if _, _, err := r.c.Lookup(t.Context(), "acme", alice); !errors.Is(err, ErrUnavailable) {
		t.Errorf("lookup after the subscription broke: %v, want ErrUnavailable (entries dropped)", err)
	}
}

// TestCacheStartsBeforeRedis: a cache made while Redis is down subscribes once it is up.
func TestCacheStartsBeforeRedis(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	s := newStore(t, config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(200 * time.Millisecond), DialTimeout: config.Duration(200 * time.Millisecond)})
	c := NewCache(s, time.Minute, testLogger(t))
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.Lookup(t.Context(), "acme", alice); !errors.Is(err, ErrUnavailable) {
		t.Errorf("lookup with Redis down: %v", err)
	}
	srv.Restart()
	waitFor(t, 10*time.Second, "subscription after Redis came up", c.Subscribed)
	o := NewOrgs(s, nil)
	mustCreate(t, o, "acme")
	if got := status(t, c, "acme", alice); got != "" {
		t.Fatalf("status %q", got)
	}
	mustGrant(t, o, "acme", alice)
	waitFor(t, 2*time.Second, "invalidation", func() bool { return status(t, c, "acme", alice) == MembershipActive })
	if err := c.Close(); err != nil {
		t.Error(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestInvalidationMessages(t *testing.T) {
	for _, id := range append(attackIDs[1:], "acme", alice) {
		if !validUser(id) {
			continue
		}
		for _, tc := range []struct {
			msg             string
			kind            byte
			wantOrg, wantUs string
		}{
			{invalMembership("acme", id), 'm', "acme", id},
			{invalUser(id), 'u', "", id},
			{invalOrg(id), 'o', id, ""},
			{invalKey(id), 'k', "", id},
		} {
			kind, org, user, ok := parseInval(tc.msg)
			if !ok || kind != tc.kind || org != tc.wantOrg || user != tc.wantUs {
				t.Errorf("parseInval(%q) = %c %q %q %v", tc.msg, kind, org, user, ok)
			}
		}
	}
	for _, bad := range []string{"", "o:", "m:acme", "m:acme:", "m::x", "x:acme", "o:a%zz", "o:a%4", "o:a}b", "u:a:b", "oacme", "k:", "k:a:b"} {
		if _, _, _, ok := parseInval(bad); ok {
			t.Errorf("parseInval(%q) accepted", bad)
		}
	}
}

// getHook counts GETs, the command of the API key index.
type getHook struct{ n atomic.Int64 }

func (h *getHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *getHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "get" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *getHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestCacheAPIKeyIndex: an index entry, present or absent, is read once; creating a key on
// another replica makes a cached absence go at once.
func TestCacheAPIKeyIndex(t *testing.T) {
	cfg := sharedConfig(t)
	r1, r2 := newReplica(t, cfg, time.Minute), newReplica(t, cfg, time.Minute)
	gets := &getHook{}
	r1.s.rdb.AddHook(gets)
	ctx := context.Background()
	mustCreate(t, r2.o, "acme")
	mustGrant(t, r2.o, "acme", alice)
	if _, err := r2.o.CreateMachine(ctx, Membership{Org: "acme", ExpiresAt: time.Now().Add(24 * time.Hour),
		Machine: &Machine{ID: "sync", Name: "Sync", Sponsor: alice}}, admin, "t"); err != nil {
		t.Fatal(err)
	}
	key, k, err := r2.o.CreateAPIKey(ctx, "acme", "sync", time.Now().Add(time.Hour), "", 0, admin, "t")
	if err != nil {
		t.Fatal(err)
	}
	settle(t, r1, r2)
	for range 3 {
		a, err := r1.c.APIKeyOwner(ctx, k.ID)
		if err != nil || a == nil || a.Org != "acme" || a.Machine != "sync" || !apikey.Match(key, a.Hash) {
			t.Fatalf("owner %+v %v", a, err)
		}
	}
	if n := gets.n.Load(); n != 1 {
		t.Errorf("%d GETs for three lookups of one key", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = r1.c.APIKeyOwner(ctx, k.ID) }); n != 0 {
		t.Errorf("a warm index lookup allocates %v times", n)
	}

	// An id nobody holds is cached as absent, then becomes present when a key gets it.
	const id = "aaaaaaaaaaaaaaaa"
	if a, err := r1.c.APIKeyOwner(ctx, id); err != nil || a != nil {
		t.Fatalf("absent id: %+v %v", a, err)
	}
	before := gets.n.Load()
	if a, _ := r1.c.APIKeyOwner(ctx, id); a != nil || gets.n.Load() != before {
		t.Error("an absent id is read again")
	}
	if err := r2.s.rdb.Set(ctx, r2.s.keys.apiKeyIndex(id), `{"org":"acme","machine":"sync","hash":"`+apikey.Hash("x")+`"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r2.s.rdb.Publish(ctx, r2.s.keys.invalidations(), invalKey(id)).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the absence forgotten", func() bool {
		a, err := r1.c.APIKeyOwner(ctx, id)
		return err == nil && a != nil
	})
}

// TestCacheLookupMachine: a key's machine and sponsor are read in one round trip when cold,
// none when warm, and a change to either on another replica is seen.
func TestCacheLookupMachine(t *testing.T) {
	cfg := sharedConfig(t)
	r1, r2 := newReplica(t, cfg, time.Minute), newReplica(t, cfg, time.Minute)
	ctx := context.Background()
	mustCreate(t, r2.o, "acme")
	mustGrant(t, r2.o, "acme", alice)
	if _, err := r2.o.CreateMachine(ctx, Membership{Org: "acme", ExpiresAt: time.Now().Add(24 * time.Hour),
		Machine: &Machine{ID: "sync", Name: "Sync", Sponsor: alice}}, admin, "t"); err != nil {
		t.Fatal(err)
	}
	_, k, err := r2.o.CreateAPIKey(ctx, "acme", "sync", time.Now().Add(time.Hour), "", 0, admin, "t")
	if err != nil {
		t.Fatal(err)
	}
	if a, err := r1.s.APIKeyOwner(ctx, k.ID); err != nil || a.Sponsor != alice {
		t.Fatalf("the key's entry names its sponsor: %+v %v", a, err)
	}
	settle(t, r1, r2)
	before := r1.mgets.n.Load()
	o, m, sp, err := r1.c.LookupMachine(ctx, "acme", MachineUser("acme", "sync"), alice)
	if err != nil || o == nil || m == nil || sp == nil || m.Machine.Sponsor != alice || sp.User != alice {
		t.Fatalf("cold: %v %v %v %v", o, m, sp, err)
	}
	if n := r1.mgets.n.Load() - before; n != 1 {
		t.Errorf("a cold machine lookup sent %d MGETs, want 1", n)
	}
	for range 3 {
		if _, _, _, err := r1.c.LookupMachine(ctx, "acme", MachineUser("acme", "sync"), alice); err != nil {
			t.Fatal(err)
		}
	}
	if n := r1.mgets.n.Load() - before; n != 1 {
		t.Errorf("warm machine lookups sent %d MGETs in all, want the first only", n)
	}
	// The sponsor's revocation on another replica reaches this one's entries.
	if _, err := r2.o.Revoke(ctx, "acme", alice, admin, "left"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "the revocation", func() bool {
		_, m, sp, err := r1.c.LookupMachine(ctx, "acme", MachineUser("acme", "sync"), alice)
		return err == nil && sp != nil && sp.Status == MembershipRevoked && m.Status == MembershipSuspended
	})
}

func BenchmarkCacheWarmHit(b *testing.B) {
	r := newReplica(b, sharedConfig(b), time.Hour)
	mustCreate(b, r.o, "acme")
	mustGrant(b, r.o, "acme", alice)
	settle(b, r)
	ctx := context.Background()
	if _, _, err := r.c.Lookup(ctx, "acme", alice); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, m, err := r.c.Lookup(ctx, "acme", alice); err != nil || m == nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, m, err := r.c.Lookup(ctx, "acme", alice); err != nil || m == nil {
					b.Fatal(err)
				}
			}
		})
	})
	if n := r.mgets.n.Load(); n != 1 {
		b.Errorf("%d MGETs for one cold and many warm lookups", n)
	}
}

// BenchmarkCacheColdLookup is the cold path: one MGET round trip and decoding (cache disabled).
func BenchmarkCacheColdLookup(b *testing.B) {
	r := newReplica(b, sharedConfig(b), CacheDisabled)
	mustCreate(b, r.o, "acme")
	mustGrant(b, r.o, "acme", alice)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, m, err := r.c.Lookup(ctx, "acme", alice); err != nil || m == nil {
			b.Fatal(err)
		}
	}
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// gateHook holds every MGET until the gate opens, to freeze a read in flight.
type gateHook struct {
	gate    chan struct{}
	waiting chan struct{}
}

func (h *gateHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *gateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "mget" {
			err := next(ctx, cmd) // the read happens before the change...
			h.waiting <- struct{}{}
			<-h.gate // ...and its answer arrives after the change's invalidation
			return err
		}
		return next(ctx, cmd)
	}
}
func (h *gateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestCacheDiscardsReadRacingAChange: a read that started before a change and answers after its
// invalidation was applied is returned to its caller but not cached, so the cache cannot keep a
// revoked membership alive for a whole TTL.
func TestCacheDiscardsReadRacingAChange(t *testing.T) {
	r := newReplica(t, sharedConfig(t), time.Minute)
	mustCreate(t, r.o, "acme")
	mustGrant(t, r.o, "acme", alice)
	settle(t, r)
	h := &gateHook{gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
	r.s.rdb.AddHook(h)
	got := make(chan string, 1)
	go func() { got <- status(t, r.c, "acme", alice) }()
	<-h.waiting // the read saw the active membership
	if _, err := r.o.Revoke(t.Context(), "acme", alice, admin, ""); err != nil {
		t.Fatal(err)
	}
	settle(t, r)
	close(h.gate)
	if s := <-got; s != MembershipActive {
		t.Fatalf("racing read returned %q", s)
	}
	if _, ok := r.c.peek("acme", alice); ok {
		t.Error("a read older than the revocation was cached")
	}
	h.waiting = make(chan struct{}, 10)
	if s := status(t, r.c, "acme", alice); s != MembershipRevoked {
		t.Errorf("after the race: %q", s)
	}
}

// FuzzInvalidation: every id survives the trip through an invalidation message, and no message
// parses to something its writer did not name.
func FuzzInvalidation(f *testing.F) {
	f.Add("acme", alice)
	f.Add("a:b", "}%:")
	f.Fuzz(func(t *testing.T, org, user string) {
		if org == "" || user == "" {
			return
		}
		kind, o, u, ok := parseInval(invalMembership(org, user))
		if !ok || kind != 'm' || o != org || u != user {
			t.Errorf("membership message of %q/%q parsed as %c %q %q %v", org, user, kind, o, u, ok)
		}
		if kind, o, _, ok := parseInval(invalOrg(org)); !ok || kind != 'o' || o != org {
			t.Errorf("org message of %q parsed as %q", org, o)
		}
		if kind, o, u, ok := parseInval(org); ok {
			// Whatever parses must re-encode to the same message.
			var again string
			switch kind {
			case 'm':
				again = invalMembership(o, u)
			case 'o':
				again = invalOrg(o)
			case 'u':
				again = invalUser(u)
			}
			if again != org {
				t.Errorf("%q parsed, but re-encodes as %q", org, again)
			}
		}
	})
}
