package invalcache

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a test clock the cache ages entries on.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

var seed = maphash.MakeSeed()

func newTest(ttl time.Duration, perShard int) (*Cache[string, *string], *clock) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := New[string, *string](Options[string]{TTL: ttl, PerShard: perShard, Now: clk.now,
		Hash: func(k string) uint64 { return maphash.String(seed, k) }})
	return c, clk
}

func TestCacheRules(t *testing.T) {
	c, clk := newTest(2*time.Second, 0)
	t0 := clk.now()
	v := new(string)
	c.Put("h", v, t0, c.Begin())
	if _, ok := c.Get("h"); ok {
		t.Error("stored while the subscription is not live")
	}
	c.SetLive(true)
	c.Put("h", v, t0, c.Begin())
	clk.set(t0.Add(time.Second))
	if got, ok := c.Get("h"); !ok || got != v {
		t.Error("not served within the TTL")
	}
	for _, at := range []time.Duration{2 * time.Second, -time.Millisecond} {
		clk.set(t0.Add(at))
		if _, ok := c.Get("h"); ok {
			t.Errorf("served at %v", at)
		}
	}
	clk.set(t0)

	// An invalidation between the start of a read and its end keeps the read out, whichever
	// key it named.
	g := c.Begin()
	c.Forget("h2")
	c.Put("h2", v, t0, g)
	if _, ok := c.Get("h2"); ok {
		t.Error("a read older than an invalidation was cached")
	}
	g = c.Begin()
	c.ForgetIf(func(k string, _ *string) bool { return k == "unrelated" })
	c.Put("h3", v, t0, g)
	if _, ok := c.Get("h3"); ok {
		t.Error("a read older than an invalidation elsewhere was cached")
	}

	// A read never replaces one read after it.
	newer, older := new(string), new(string)
	c.Put("k", newer, t0.Add(time.Millisecond), c.Begin())
	c.Put("k", older, t0, c.Begin())
	clk.set(t0.Add(time.Millisecond))
	if got, _ := c.Get("k"); got != newer {
		t.Error("an older read replaced a younger entry")
	}

	c.ForgetIf(func(_ string, got *string) bool { return got == v })
	if _, ok := c.Get("h"); ok {
		t.Error("ForgetIf kept a match")
	}
	if _, ok := c.Get("k"); !ok {
		t.Error("ForgetIf dropped what it did not match")
	}

	// A loss of the subscription empties the cache and stops serving; so does a re-confirmation.
	c.Put("h", v, clk.now(), c.Begin())
	c.SetLive(false)
	if _, ok := c.Get("h"); ok || c.Len() != 0 {
		t.Error("served or kept while the subscription is lost")
	}
	c.SetLive(true)
	if c.Len() != 0 {
		t.Error("kept across a subscription loss")
	}
	c.Put("h", v, clk.now(), c.Begin())
	c.SetLive(true)
	if _, ok := c.Get("h"); ok {
		t.Error("kept across a re-confirmation")
	}
}

func TestCacheSweepsAndBounds(t *testing.T) {
	c, clk := newTest(2*time.Second, 0)
	c.SetLive(true)
	t0 := clk.now()
	v := new(string)
	// Expired entries are swept once a TTL, when a new key arrives in their shard.
	keys := sameShard(c, 3)
	c.Put(keys[0], v, t0, c.Begin())
	c.Put(keys[1], v, t0.Add(3*time.Second), c.Begin())
	c.Put(keys[2], v, t0.Add(6*time.Second), c.Begin())
	if _, _, ok := c.Peek(keys[0]); ok {
		t.Error("expired entry not swept")
	}

	// A full shard makes room: first the expired, then any.
	c, clk = newTest(time.Hour, 8)
	c.SetLive(true)
	for i := range 2000 {
		c.Put(strconv.Itoa(i), v, clk.now(), c.Begin())
	}
	for i := range c.shards {
		if n := len(c.shards[i].m); n > 8 {
			t.Fatalf("shard %d holds %d entries, bound 8", i, n)
		}
	}
}

// sameShard returns n keys that land in one shard.
func sameShard(c *Cache[string, *string], n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		k := strconv.Itoa(i)
		if c.hash(k)&(shards-1) == c.hash("0")&(shards-1) {
			out = append(out, k)
		}
	}
	return out
}

func TestCacheLoadSharesOneRead(t *testing.T) {
	c, _ := newTest(time.Hour, 0)
	c.SetLive(true)
	var reads atomic.Int32
	release := make(chan struct{})
	v := new(string)
	read := func(context.Context) (*string, error) {
		reads.Add(1)
		<-release
		return v, nil
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if got, err := c.Load(context.Background(), "k", time.Second, read); err != nil || got != v {
				t.Errorf("Load = %v, %v", got, err)
			}
		})
	}
	// Every caller is waiting on the one read before it answers.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		c.shards[c.hash("k")&(shards-1)].mu.RLock()
		n := len(c.shards[c.hash("k")&(shards-1)].inflight)
		c.shards[c.hash("k")&(shards-1)].mu.RUnlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
	}
	close(release)
	wg.Wait()
	if n := reads.Load(); n != 1 {
		t.Errorf("%d reads for concurrent misses of one key", n)
	}
	if _, ok := c.Get("k"); !ok {
		t.Error("the shared read was not stored")
	}

	// Errors are not stored; a caller that gives up gets its own cause.
	boom := errors.New("boom")
	if _, err := c.Load(context.Background(), "e", time.Second, func(context.Context) (*string, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("err = %v", err)
	}
	if _, _, ok := c.Peek("e"); ok {
		t.Error("an error was cached")
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	gone := errors.New("client went away")
	cancel(gone)
	block := make(chan struct{})
	defer close(block)
	if _, err := c.Load(ctx, "slow", time.Second, func(context.Context) (*string, error) { <-block; return v, nil }); !errors.Is(err, gone) {
		t.Errorf("cancelled caller: %v", err)
	}
}

func TestCacheGetAllocatesNothing(t *testing.T) {
	c, clk := newTest(time.Hour, 0)
	c.SetLive(true)
	c.Put("k", new(string), clk.now(), c.Begin())
	if n := testing.AllocsPerRun(1000, func() { _, _ = c.Get("k") }); n != 0 {
		t.Errorf("Get allocates %v times", n)
	}
}

// TestLoadAfterAnInvalidationReadsAgain: a caller that arrives after an invalidation does not
// join a read begun before it (which may answer what was true before the change), and the
// older read is not kept.
func TestLoadAfterAnInvalidationReadsAgain(t *testing.T) {
	c, _ := newTest(time.Hour, 0)
	c.SetLive(true)
	before, after := new(string), new(string)
	started, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		got, _ := c.Load(context.Background(), "k", time.Second, func(context.Context) (*string, error) {
			close(started)
			<-release
			return before, nil
		})
		if got != before {
			t.Error("the first caller did not get its own read")
		}
	})
	<-started
	c.Forget("k") // the record changed while the first read was in flight
	got, err := c.Load(context.Background(), "k", time.Second, func(context.Context) (*string, error) { return after, nil })
	if err != nil || got != after {
		t.Errorf("a caller after the invalidation got %v, %v: the read from before it", got, err)
	}
	close(release)
	wg.Wait()
	if v, ok := c.Get("k"); !ok || v != after {
		t.Error("the read from before the invalidation replaced the one after it")
	}
}

// TestSameInstantReadReplaces: a read begun at the same instant as the entry's (a clock that
// does not move) replaces it, so a frozen clock cannot pin an old record.
func TestSameInstantReadReplaces(t *testing.T) {
	c, clk := newTest(time.Hour, 0)
	c.SetLive(true)
	a, b := new(string), new(string)
	c.Put("k", a, clk.now(), c.Begin())
	c.Put("k", b, clk.now(), c.Begin())
	if got, _ := c.Get("k"); got != b {
		t.Error("a read at the same instant did not replace the entry")
	}
}
