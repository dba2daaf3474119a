package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestE2ESentinelFailover: two proxy processes behind Redis Sentinel while requests keep
// arriving, and the primary is killed. While no primary answers, requests fail closed (503
// store_unavailable, never a grant from a cache that can no longer be invalidated); the
// proxies recover without a restart once the sentinels promote the replica; a membership
// revoked before the failover stays revoked; and a revocation after it reaches both proxies
// at once, so invalidations flow again.
func TestE2ESentinelFailover(t *testing.T) {
	b := newAZBedWith(t, azOptions{top: sentinel})
	ctx := context.Background()
	alice, erin := b.newClient(), b.newClient()
	alice.signIn(b.px[0], "alice")
	erin.signIn(b.px[1], "erin")
	azWaitAll(t, b, alice, "/orgs/acme/x", 200, "")
	azWaitAll(t, b, erin, "/orgs/acme/x", 200, "")
	if _, err := b.orgs.Revoke(ctx, "acme", b.user("sub-erin"), azActor, "contract ended"); err != nil {
		t.Fatal(err)
	}
	azWaitAll(t, b, erin, "/orgs/acme/x", 403, "membership_revoked")

	// Load on both proxies, both people, until told to stop.
	type result struct {
		who, proxy string
		status     int
		reason     string
		err        error
	}
	var mu sync.Mutex
	var results []result
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, px := range b.px {
		for who, c := range map[string]*azClient{"alice": alice, "erin": erin} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, err := c.try("GET", px.base+"/orgs/acme/x", "", nil, azAPI)
					res := result{who: who, proxy: px.name, err: err}
					if err == nil {
						res.status, res.reason = r.status, r.reason()
					}
					mu.Lock()
					results = append(results, res)
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
	}

	time.Sleep(300 * time.Millisecond) // some requests before the failure
	old := b.rs.sentinel.KillPrimary()
	killed := time.Now()
	now := b.rs.sentinel.WaitFailover(old, 30*time.Second)
	promoted := time.Since(killed)
	// Recovered without a restart: alice is let in again by both processes.
	azWaitAll(t, b, alice, "/orgs/acme/x", 200, "")
	recovered := time.Since(killed)
	time.Sleep(300 * time.Millisecond) // and some requests after it
	close(stop)
	wg.Wait()
	t.Logf("primary %s killed; sentinels promoted %s after %v; both proxies let alice in again after %v",
		old, now, promoted.Round(time.Millisecond), recovered.Round(time.Millisecond))

	counts := map[string]int{}
	for _, r := range results {
		key := fmt.Sprintf("%s %d %s", r.who, r.status, r.reason)
		if r.err != nil {
			t.Errorf("%s via %s: %v (the proxy must answer, not drop the connection)", r.who, r.proxy, r.err)
			continue
		}
		counts[key]++
		switch {
		case r.who == "erin" && r.status == 200:
			t.Errorf("erin, revoked before the failover, was let in via %s", r.proxy)
		case r.status == 503 && r.reason == "store_unavailable":
		case r.who == "alice" && r.status == 200:
		case r.who == "erin" && r.status == 403 && r.reason == "membership_revoked":
		default:
			t.Errorf("%s via %s: %d %q (want a grant, the revocation, or a closed failure)", r.who, r.proxy, r.status, r.reason)
		}
	}
	t.Logf("answers during the run: %v", counts)
	if counts["alice 503 store_unavailable"]+counts["erin 503 store_unavailable"] == 0 {
		t.Error("no request failed closed while no primary answered: something was served without Redis")
	}

	// The old primary returns as a replica (changes wait for one: replica_acks 1), and changes
	// take effect again at once on both processes: the invalidations reach them.
	b.rs.sentinel.RestartNode(old)
	start := time.Now()
	if _, err := b.orgs.Revoke(ctx, "acme", b.user("sub-alice"), azActor, "after the failover"); err != nil {
		t.Fatal(err)
	}
	for _, px := range b.px {
		if d, err := azUntilDenied(alice, px, "/orgs/acme/x", "membership_revoked", start, time.Second); err != nil {
			t.Fatalf("revocation after the failover via %s: %v", px.name, err)
		} else {
			t.Logf("revocation after the failover refused via %s after %v", px.name, d.Round(time.Microsecond))
		}
	}
}
