package session_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// countingStore is a replica's store that counts session reads: a warm request reads none.
type countingStore struct {
	*store.Store
	loads atomic.Int64
}

func (c *countingStore) LoadSession(ctx context.Context, h string) ([]byte, error) {
	c.loads.Add(1)
	return c.Store.LoadSession(ctx, h)
}

// replica is a second Manager on the env's Redis, with its own client and session cache.
func (e *env) replica(t *testing.T, ttl time.Duration) (*session.Manager, *countingStore) {
	t.Helper()
	st, err := store.New(e.cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	m, err := session.NewManager(e.cfg.OIDC, e.cfg.Session, e.cfg.Server.PublicBase, cs, session.Options{Now: e.clock.now, CacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	if ttl >= 0 {
		waitFor(t, "subscription", m.CacheLive)
		waitFor(t, "subscription of the env's manager", e.m.CacheLive)
	}
	return m, cs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
	}
}

// admits reports whether m admits a request carrying the session cookie v.
func admits(t *testing.T, e *env, m *session.Manager, v string) (bool, int) {
	t.Helper()
	req := httptest.NewRequest("GET", "https://portal.example.test/app/x", nil)
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: v})
	w := httptest.NewRecorder()
	_, ok := m.Admit(w, req, &e.cfg.Routes[len(e.cfg.Routes)-1])
	return ok, w.Code
}

func TestSessionCacheWarmRequestReadsNothing(t *testing.T) {
	e := newEnv(t, envOpts{})
	m, cs := e.replica(t, 0)
	b := e.browser()
	b.mustSignIn("alice")
	v := b.sessionCookie()
	if ok, code := admits(t, e, m, v); !ok {
		t.Fatalf("cold: %d", code)
	}
	if n := cs.loads.Load(); n != 1 {
		t.Errorf("cold request: %d session reads, want 1", n)
	}
	for range 100 {
		if ok, code := admits(t, e, m, v); !ok {
			t.Fatalf("warm: %d", code)
		}
	}
	if n := cs.loads.Load(); n != 1 {
		t.Errorf("100 warm requests: %d session reads in all, want still 1", n)
	}
	// Older than the TTL: read again, once.
	e.clock.advance(session.DefaultCacheTTL)
	admits(t, e, m, v)
	admits(t, e, m, v)
	if n := cs.loads.Load(); n != 2 {
		t.Errorf("after the TTL: %d reads, want 2", n)
	}
	// Disabled: every request reads.
	off, offCS := e.replica(t, -1)
	if off.CacheLive() {
		t.Error("a disabled cache subscribes")
	}
	for range 3 {
		admits(t, e, off, v)
	}
	if n := offCS.loads.Load(); n != 3 {
		t.Errorf("cache disabled: %d reads for 3 requests", n)
	}
}

// Revocation on one replica ends the session on another within milliseconds (pub/sub), for
// every kind of change: sign-out (DeleteSession), back-channel logout and offboarding
// (RevokeUser/RevokeSID), organisation switch (UpdateSession).
func TestSessionCacheRevocationReachesOtherReplica(t *testing.T) {
	e := newEnv(t, envOpts{})
	m2, _ := e.replica(t, 10*time.Minute) // a TTL that cannot be what ends it
	for _, tc := range []struct {
		name string
		// local: the revocation goes through e.m, whose own copy is dropped synchronously;
		// otherwise it is made in the store and both replicas learn it over pub/sub.
		local  bool
		revoke func(t *testing.T, b *browser)
	}{
		{"revoke user", true, func(t *testing.T, b *browser) {
			if n, err := e.m.RevokeUser(t.Context(), store.UserKey(e.idpURL, "sub-alice")); err != nil || n == 0 {
				t.Fatalf("revoke: %d %v", n, err)
			}
		}},
		{"revoke through the store (admin offboarding)", false, func(t *testing.T, b *browser) {
			if n, err := e.st.RevokeUser(t.Context(), store.UserKey(e.idpURL, "sub-alice")); err != nil || n == 0 {
				t.Fatalf("revoke: %d %v", n, err)
			}
		}},
		{"sign-out", false, func(t *testing.T, b *browser) {
			if err := e.st.DeleteSession(t.Context(), session.HandleOf(b.sessionCookie()), store.UserKey(e.idpURL, "sub-alice"), "", ""); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := e.browser()
			b.mustSignIn("alice")
			v := b.sessionCookie()
			if ok, code := admits(t, e, m2, v); !ok {
				t.Fatalf("before: %d", code)
			}
			admits(t, e, e.m, v) // e.m holds a copy too
			tc.revoke(t, b)
			if tc.local {
				// The replica that revoked stops at once: its own copy is dropped synchronously.
				if ok, _ := admits(t, e, e.m, v); ok {
					t.Error("the revoking replica still admits")
				}
			}
			start := time.Now()
			replicas := []*session.Manager{m2}
			if !tc.local {
				replicas = append(replicas, e.m)
			}
			for _, m := range replicas {
				for {
					ok, code := admits(t, e, m, v)
					if !ok {
						if code != http.StatusUnauthorized {
							t.Errorf("after revocation: %d", code)
						}
						break
					}
					if time.Since(start) > time.Second {
						t.Fatal("a replica still admits the session after 1s")
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
			// Milliseconds in practice (the benchmark's revocation table); the bound leaves room
			// for a loaded test machine under -race.
			d := time.Since(start)
			t.Logf("revocation reached the other replicas in %v", d)
			if d > 500*time.Millisecond {
				t.Errorf("revocation took %v to reach the other replicas", d)
			}
		})
	}
	t.Run("update is seen by the other replica", func(t *testing.T) {
		b := e.browser()
		b.mustSignIn("alice")
		v := b.sessionCookie()
		admits(t, e, m2, v)
		// SetActiveOrg through the first replica: admitted request, then the change.
		req := httptest.NewRequest("GET", "https://portal.example.test/app/x", nil)
		req.AddCookie(&http.Cookie{Name: session.CookieName, Value: v})
		r, ok := e.m.Admit(httptest.NewRecorder(), req, &e.cfg.Routes[len(e.cfg.Routes)-1])
		if !ok {
			t.Fatal("not admitted")
		}
		if err := e.m.SetActiveOrg(t.Context(), r, "acme"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "active org on the other replica", func() bool {
			req := httptest.NewRequest("GET", "https://portal.example.test/app/x", nil)
			req.AddCookie(&http.Cookie{Name: session.CookieName, Value: v})
			r, ok := m2.Admit(httptest.NewRecorder(), req, &e.cfg.Routes[len(e.cfg.Routes)-1])
			if !ok {
				return false
			}
			s, _ := session.FromContext(r.Context())
			return s.ActiveOrg == "acme"
		})
	})
}

// A lost message: the record changes in Redis without an announcement. The other replica keeps
// its copy at most until the cache TTL; when the subscription breaks, it drops everything at
// once and reads Redis until the subscription is back.
func TestSessionCacheLostMessageBoundedByTTL(t *testing.T) {
	e := newEnv(t, envOpts{})
	m2, cs := e.replica(t, 0)
	b := e.browser()
	b.mustSignIn("alice")
	v := b.sessionCookie()
	admits(t, e, m2, v)
	// Deleted behind the cache's back (no announcement).
	rdb := e.redis.Client(t)
	if n := rdb.Del(t.Context(), rdb.Keys(t.Context(), "*:sess").Val()...).Val(); n != 1 {
		t.Fatalf("deleted %d records", n)
	}
	if ok, _ := admits(t, e, m2, v); !ok {
		t.Error("served from the cache within the TTL: expected (the documented bound)")
	}
	e.clock.advance(session.DefaultCacheTTL / 2)
	if ok, _ := admits(t, e, m2, v); !ok {
		t.Error("still within the TTL")
	}
	e.clock.advance(session.DefaultCacheTTL / 2)
	if ok, code := admits(t, e, m2, v); ok || code != http.StatusUnauthorized {
		t.Errorf("after the TTL: admitted=%v %d", ok, code)
	}

	t.Run("subscription cut drops everything", func(t *testing.T) {
		b := e.browser()
		b.mustSignIn("alice")
		v := b.sessionCookie()
		admits(t, e, m2, v)
		before := cs.loads.Load()
		admits(t, e, m2, v)
		if cs.loads.Load() != before {
			t.Fatal("not cached")
		}
		if n := rdb.Del(t.Context(), rdb.Keys(t.Context(), "*:sess").Val()...).Val(); n != 1 {
			t.Fatalf("deleted %d records", n)
		}
		if err := rdb.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
			t.Fatal(err)
		}
		// No clock movement: only the dropped cache can end it.
		start := time.Now()
		waitFor(t, "denied after the subscription broke", func() bool {
			ok, _ := admits(t, e, m2, v)
			return !ok
		})
		t.Logf("denied %v after the cut", time.Since(start))
		waitFor(t, "resubscribed", m2.CacheLive)
	})
}
