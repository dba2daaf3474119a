package session

import (
	"testing"
	"time"
)

func TestSessionCacheRules(t *testing.T) {
	c := newSessionCache(2 * time.Second)
	t0 := time.Now()
	rec := &record{User: "u"}
	c.put("h", rec, t0, c.begin("h"))
	if _, ok := c.get("h", t0); ok {
		t.Error("stored while the subscription is not live")
	}
	c.setLive(true)
	c.put("h", rec, t0, c.begin("h"))
	if got, ok := c.get("h", t0.Add(time.Second)); !ok || got != rec {
		t.Error("not served within the TTL")
	}
	for _, at := range []time.Duration{2 * time.Second, -time.Millisecond} {
		if _, ok := c.get("h", t0.Add(at)); ok {
			t.Errorf("served at %v", at)
		}
	}
	// An invalidation between the start of a read and its end keeps the read out.
	gen := c.begin("h2")
	c.forget("h2")
	c.put("h2", rec, t0, gen)
	if _, ok := c.get("h2", t0); ok {
		t.Error("a read older than an invalidation was cached")
	}
	c.forgetIf(func(r *record) bool { return r.User == "u" })
	if _, ok := c.get("h", t0); ok {
		t.Error("forgetIf kept a match")
	}
	// A loss of the subscription empties the cache and stops serving.
	c.put("h", rec, t0, c.begin("h"))
	c.setLive(false)
	c.setLive(true)
	if _, ok := c.get("h", t0); ok {
		t.Error("kept across a subscription loss")
	}
	// Expired entries are swept once a TTL.
	sh := c.shard("a")
	sh.mu.Lock()
	clear(sh.m)
	sh.m["old"] = cachedSession{rec: rec, at: t0}
	sh.swept = t0
	sh.mu.Unlock()
	c.put("a", rec, t0.Add(3*time.Second), c.begin("a"))
	sh.mu.RLock()
	_, old := sh.m["old"]
	sh.mu.RUnlock()
	if old {
		t.Error("expired entry not swept")
	}
}
