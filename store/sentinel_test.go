package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

func sentinelConfig(s *redistest.Sentinel, acks int) config.Redis {
	return config.Redis{
		SentinelMaster: s.Master, Addresses: s.Addrs, Password: config.Secret(s.Password),
		ReplicaAcks: acks, DialTimeout: config.Duration(time.Second), ReadTimeout: config.Duration(time.Second),
	}
}

// TestSentinelFailover: behind Sentinel, with replica_acks 1, a revocation made before the
// primary dies survives the failover; while no primary answers, lookups fail closed (nothing
// is served from a cache whose invalidations can no longer arrive); afterwards both proxies
// recover without being rebuilt, invalidations flow again, and a change that no replica can
// confirm (the set-up has lost its only replica) is reported as ErrNotReplicated.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := redistest.StartSentinel(t, redistest.WithPassword("pw-store"))
	cfg := sentinelConfig(s, 1)
	a := newReplica(t, cfg, time.Minute) // a TTL that cannot explain anything below
	b := newReplica(t, cfg, time.Minute)
	mustCreate(t, a.o, "acme")
	mustGrant(t, a.o, "acme", alice)
	mustGrant(t, a.o, "acme", bob)
	settle(t, a, b)
	if got := status(t, b.c, "acme", alice); got != MembershipActive {
		t.Fatalf("alice %q before the revocation", got)
	}
	status(t, b.c, "acme", bob) // warm

	// The revocation returns only once the replica holds it.
	if _, err := a.o.Revoke(t.Context(), "acme", alice, admin, "left the company"); err != nil {
		t.Fatal(err)
	}
	settle(t, a, b)
	if got := status(t, b.c, "acme", alice); got != MembershipRevoked {
		t.Fatalf("alice %q after the revocation", got)
	}

	// Proxy b answers requests all through the failover; alice must never be active.
	var stop atomic.Bool
	var failed, served, aliceActive atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, m, err := b.c.Lookup(ctx, "acme", alice)
			_, _, errBob := b.c.Lookup(ctx, "acme", bob)
			cancel()
			switch {
			case err != nil || errBob != nil:
				for _, e := range []error{err, errBob} {
					if e != nil && !errors.Is(e, ErrUnavailable) {
						t.Errorf("lookup during failover: %v (want ErrUnavailable)", e)
					}
				}
				failed.Add(1)
			case m != nil && m.Status == MembershipActive:
				aliceActive.Add(1)
			default:
				served.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	old := s.KillPrimary()
	waitFor(t, 5*time.Second, "proxy b to drop its cache", func() bool { return !b.c.Subscribed() })
	start := time.Now()
	now := s.WaitFailover(old, 30*time.Second)
	waitFor(t, 10*time.Second, "proxy b to re-subscribe", b.c.Subscribed)
	waitFor(t, 10*time.Second, "proxy a to re-subscribe", a.c.Subscribed)
	t.Logf("failover %s → %s: proxies live again %v after the sentinels named the new primary", old, now, time.Since(start))
	stop.Store(true)
	wg.Wait()
	t.Logf("during the failover: %d lookups failed closed, %d answered", failed.Load(), served.Load())
	if aliceActive.Load() != 0 {
		t.Fatalf("the revoked membership was active %d times during the failover", aliceActive.Load())
	}
	if failed.Load() == 0 {
		t.Error("no lookup failed while no primary answered: something served from a cache without invalidations")
	}

	// Recovered: the revocation held, bob's membership is there.
	if got := status(t, b.c, "acme", alice); got != MembershipRevoked {
		t.Fatalf("alice %q after the failover: the revocation was lost", got)
	}
	if got := status(t, b.c, "acme", bob); got != MembershipActive {
		t.Fatalf("bob %q after the failover", got)
	}

	// The new primary has no replica now: a change is made but reported as not replicated.
	_, err := a.o.Revoke(t.Context(), "acme", bob, admin, "no replica to confirm")
	if !errors.Is(err, ErrNotReplicated) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("change without a replica: %v; want ErrNotReplicated (and ErrUnavailable)", err)
	}
	t.Logf("change without a replica: %v", err)
	// It is in effect (the error says so), and announced: b sees it without waiting for a TTL.
	settle(t, a, b)
	if got := status(t, b.c, "acme", bob); got != MembershipRevoked {
		t.Fatalf("bob %q: the unconfirmed revocation is not in effect", got)
	}
	if _, err := a.s.EndSession(t.Context(), "h", "u", "", ""); !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("sign-out without a replica: %v; want ErrNotReplicated", err)
	}

	// The old primary comes back as a replica of the new one, and changes are confirmed again.
	s.RestartNode(old)
	mustGrant(t, a.o, "acme", bob)
	settle(t, a, b)
	if got := status(t, b.c, "acme", bob); got != MembershipActive {
		t.Fatalf("bob %q after the re-grant", got)
	}
}

// TestSentinelConfigErrors: the Sentinel form is checked before anything connects.
func TestSentinelConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    config.Redis
		want string
	}{
		{"no sentinels", config.Redis{SentinelMaster: "m"}, "needs the sentinels"},
		{"address too", config.Redis{SentinelMaster: "m", Address: "127.0.0.1:6379", Addresses: []string{"127.0.0.1:26379"}}, "address must be empty"},
		{"bad sentinel", config.Redis{SentinelMaster: "m", Addresses: []string{"user:pw@host:1"}}, "not a URL"},
		{"negative acks", config.Redis{Address: "127.0.0.1:6379", ReplicaAcks: -1}, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "pw@") {
				t.Fatalf("the error echoes a credential: %v", err)
			}
		})
	}
}
