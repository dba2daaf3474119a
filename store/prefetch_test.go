package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// pfFixture is a Store on the shared server (own database and prefix) with a Cache, the change
// API and a round-trip counter.
type pfFixture struct {
	t   *testing.T
	s   *Store
	o   *Orgs
	c   *Cache
	h   *countHook
	raw *redis.Client
}

func newPF(t *testing.T, ttl time.Duration) *pfFixture {
	t.Helper()
	srv := redistest.Shared(t)
	s := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: redistest.Prefix(t)})
	f := &pfFixture{t: t, s: s, o: NewOrgs(s, nil), c: NewCache(s, ttl, testLogger(t)), h: &countHook{}, raw: srv.Client(t)}
	t.Cleanup(func() { f.c.Close() })
	if ttl > 0 {
		waitFor(t, 5*time.Second, "subscription", f.c.Subscribed)
	}
	s.rdb.AddHook(f.h)
	// The script is sent once per server (EVALSHA, then EVAL on NOSCRIPT); load it so that
	// every test counts its steady state.
	if err := prefetchScript.Load(t.Context(), f.raw).Err(); err != nil {
		t.Fatal(err)
	}
	return f
}

// session stores a session record under h: the members the script reads, plus the kind of
// company a real record keeps (strings with escapes, bytes, times).
func (f *pfFixture) session(h string, rec map[string]any) {
	f.t.Helper()
	full := map[string]any{"iss": "https://idp.example", "sub": "x", "email": "a@b.example",
		"id_token": "eyJ<&>\u2028", "csrf_key": []byte{0, 1, 2}, "created": time.Now(), "amr": []string{"pwd"}}
	for k, v := range rec {
		full[k] = v
	}
	b, err := json.Marshal(full)
	if err != nil {
		f.t.Fatal(err)
	}
	f.rawSession(h, b)
}

func (f *pfFixture) rawSession(h string, b []byte) {
	f.t.Helper()
	if err := f.raw.Set(f.t.Context(), f.s.keys.sessionRecord(h), b, time.Minute).Err(); err != nil {
		f.t.Fatal(err)
	}
}

// load is LoadSession with a prefetch for org ("" = the record's choice); it returns the
// record, what was prefetched (nil: nothing), the round trips it took, and the context.
func (f *pfFixture) load(h, org string) ([]byte, *prefetched, int64, context.Context, error) {
	f.t.Helper()
	ctx := f.c.WithPrefetch(ctxT(f.t, 10*time.Second), org)
	before := f.h.trips.Load()
	b, err := f.s.LoadSession(ctx, h)
	n := f.h.trips.Load() - before
	var r *prefetched
	if p := prefetchFrom(ctx); p != nil {
		r = p.res.Load()
	}
	return b, r, n, ctx, err
}

// lookup is Cache.Lookup with ctx, returning the membership status ("" none), whether an
// org record came back, and the round trips it took.
func (f *pfFixture) lookup(ctx context.Context, org, user string) (string, bool, int64) {
	f.t.Helper()
	before := f.h.trips.Load()
	o, m, err := f.c.Lookup(ctx, org, user)
	if err != nil {
		f.t.Fatalf("Lookup(%s, %s): %v", org, user, err)
	}
	st := ""
	if m != nil {
		st = m.Status
		if m.Org != org || m.User != user {
			f.t.Fatalf("Lookup(%s, %s) returned the membership of %s/%s", org, user, m.Org, m.User)
		}
	}
	if o != nil && o.ID != org {
		f.t.Fatalf("Lookup(%s) returned org %s", org, o.ID)
	}
	return st, o != nil, f.h.trips.Load() - before
}

// TestPrefetchScript: what one LoadSession with a prefetch returns and reads, for each shape of
// record and data; always one round trip, and the same session bytes as a plain GET.
func TestPrefetchScript(t *testing.T) {
	f := newPF(t, CacheDisabled)
	mustCreate(t, f.o, "acme", "globex")
	mustGrant(t, f.o, "acme", alice)
	mustGrant(t, f.o, "globex", bob)
	f.session("alice-acme", map[string]any{"user": alice, "active_org": "acme"})
	f.session("alice-none", map[string]any{"user": alice})
	f.session("alice-null", map[string]any{"user": alice, "active_org": nil})
	f.session("bob-acme", map[string]any{"user": bob, "active_org": "acme"})
	f.session("alice-gone", map[string]any{"user": alice, "active_org": "gone"})
	f.session("no-user", map[string]any{"active_org": "acme"})
	f.session("num-user", map[string]any{"user": 42, "active_org": "acme"})
	f.session("ctl-user", map[string]any{"user": "a\x00b", "active_org": "acme"})
	f.session("bad-org", map[string]any{"user": alice, "active_org": "ACME}"})
	f.session("num-org", map[string]any{"user": alice, "active_org": 7})
	f.rawSession("not-json", []byte("not json"))
	f.rawSession("array", []byte(`["user"]`))

	for _, tc := range []struct {
		name, h, hint string
		// want: "" nothing prefetched; "error" a prefetch error; else "org user org? member?"
		want string
	}{
		{"active org", "alice-acme", "", "acme " + alice + " org member"},
		{"no active org", "alice-none", "", ""},
		{"null active org", "alice-null", "", ""},
		{"hint over active org", "alice-acme", "globex", "globex " + alice + " org -"},
		{"hint without active org", "alice-none", "acme", "acme " + alice + " org member"},
		{"absent membership", "bob-acme", "", "acme " + bob + " org -"},
		{"absent org", "alice-gone", "", "gone " + alice + " - -"},
		{"absent org by hint", "alice-none", "nowhere", "nowhere " + alice + " - -"},
		{"no user", "no-user", "", "error"},
		{"user not a string", "num-user", "", "error"},
		{"user with a control byte", "ctl-user", "", "error"},
		{"active org malformed", "bad-org", "", "error"},
		{"active org not a string", "num-org", "", "error"},
		{"record not JSON", "not-json", "acme", "error"},
		{"record a JSON array", "array", "acme", "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, r, n, _, err := f.load(tc.h, tc.hint)
			if err != nil {
				t.Fatalf("LoadSession: %v", err)
			}
			want, err := f.s.getSession(t.Context(), tc.h)
			if err != nil || string(b) != string(want) {
				t.Errorf("session bytes %q, want %q (%v)", b, want, err)
			}
			if n != 1 {
				t.Errorf("%d round trips, want 1", n)
			}
			got := ""
			switch {
			case r == nil:
			case r.err != nil:
				got = "error"
				if !strings.HasPrefix(r.err.Error(), "prefetch script: ") {
					t.Errorf("error %q does not say where it comes from", r.err)
				}
			default:
				got = r.org + " " + r.user + " " + map[bool]string{true: "org", false: "-"}[r.o != nil] +
					" " + map[bool]string{true: "member", false: "-"}[r.m != nil]
				if r.m != nil && (r.m.User != r.user || r.m.Org != r.org) {
					t.Errorf("membership of %s/%s prefetched for %s/%s", r.m.Org, r.m.User, r.org, r.user)
				}
			}
			if got != tc.want {
				t.Errorf("prefetched %q, want %q", got, tc.want)
			}
		})
	}

	t.Run("absent session", func(t *testing.T) {
		b, r, n, _, err := f.load("nobody", "acme")
		if !errors.Is(err, ErrNotFound) || b != nil || r != nil || n != 1 {
			t.Errorf("absent: %q %v, prefetched %v, %d round trips", b, err, r, n)
		}
	})
	t.Run("second load reads plainly", func(t *testing.T) {
		ctx := f.c.WithPrefetch(t.Context(), "acme")
		for range 2 {
			if _, err := f.s.LoadSession(ctx, "alice-acme"); err != nil {
				t.Fatal(err)
			}
		}
		info := f.raw.Info(t.Context(), "commandstats").Val()
		if !strings.Contains(info, "cmdstat_evalsha") && !strings.Contains(info, "cmdstat_eval:") {
			t.Errorf("the script never ran:\n%s", info)
		}
	})
	t.Run("invalid hint is no prefetch", func(t *testing.T) {
		ctx := t.Context()
		if f.c.WithPrefetch(ctx, "ACME") != ctx || f.c.WithPrefetch(ctx, "a}b") != ctx {
			t.Error("an org id that cannot exist was prefetched")
		}
	})
}

// trickyUsers are user keys whose escaping exercises every branch: non-ASCII, "%", braces,
// ":" , spaces, SCAN pattern characters, JSON's own escapes, and a line separator Go escapes
// in JSON.
var trickyUsers = []string{
	"https://idp.example|alice",
	"https://idp.example|ünïcødé-用户",
	"https://idp.example|100%25 real",
	"https://idp.example|}{o:acme}:mem:x",
	"https://idp.example|a:b:c",
	"https://idp.example|sp ace and\u00a0nbsp",
	"https://idp.example|*?[]\\",
	`https://idp.example|"quoted" <&> ` + "\u2028\u2029",
	"https://idp.example|😀 emoji",
	"https://idp.example|~._-",
	"iss|" + strings.Repeat("é", 300),
}

// TestPrefetchKeysEqualGoKeys: the script reaches exactly the records Go's key functions
// name, for users that need escaping; Lookup then answers from the prefetch.
func TestPrefetchKeysEqualGoKeys(t *testing.T) {
	f := newPF(t, CacheDisabled)
	mustCreate(t, f.o, "acme")
	for i, u := range trickyUsers {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			mustGrant(t, f.o, "acme", u)
			h := fmt.Sprintf("h%d", i)
			f.session(h, map[string]any{"user": u, "active_org": "acme"})
			_, r, _, ctx, err := f.load(h, "")
			if err != nil {
				t.Fatal(err)
			}
			if r == nil || r.err != nil || r.user != u || r.m == nil {
				t.Fatalf("prefetch for %q: %+v", u, r)
			}
			if st, _, n := f.lookup(ctx, "acme", u); st != MembershipActive || n != 0 {
				t.Errorf("Lookup after prefetch: %q, %d round trips", st, n)
			}
		})
	}
	// The JSON escape for a character outside the BMP, as another encoder may write it.
	f.rawSession("escaped", []byte(`{"user":"https://idp.example|\ud83d\ude00 emoji","active_org":"acme"}`))
	if _, r, _, _, err := f.load("escaped", ""); err != nil || r == nil || r.err != nil || r.user != "https://idp.example|😀 emoji" || r.m == nil {
		t.Errorf("surrogate pair: %+v %v", r, err)
	}
}

// TestLuaEscapeEqualsEscape runs the script's escape function itself on every byte and on the
// tricky users.
func TestLuaEscapeEqualsEscape(t *testing.T) {
	f := newPF(t, CacheDisabled)
	ids := append([]string{""}, trickyUsers...)
	var all []byte
	for c := range 256 {
		all = append(all, byte(c))
		ids = append(ids, string([]byte{byte(c)}))
	}
	ids = append(ids, string(all), "\xff\xfe invalid utf-8 \xc3")
	script := luaEscape + `
local out = {}
for i, id in ipairs(ARGV) do out[i] = escape(id) end
return out`
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	got, err := f.raw.Eval(t.Context(), script, nil, args...).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if got[i] != escape(id) {
			t.Errorf("Lua escape(%q) = %q, Go %q", id, got[i], escape(id))
		}
	}
}

// TestPrefetchIsUsedOnlyForWhatItRead: the adversarial cases. A prefetch answers one Lookup, on
// its own Cache, for the same organisation and the same user; everything else reads Redis and
// gets the truth.
func TestPrefetchIsUsedOnlyForWhatItRead(t *testing.T) {
	for _, ttl := range []time.Duration{CacheDisabled, time.Minute} {
		t.Run(fmt.Sprintf("ttl %v", ttl), func(t *testing.T) {
			f := newPF(t, ttl)
			mustCreate(t, f.o, "acme", "globex")
			mustGrant(t, f.o, "acme", alice)
			f.session("a", map[string]any{"user": alice, "active_org": "acme"})

			// Another organisation than the one read: Redis is asked, and alice is no member.
			_, _, _, ctx, _ := f.load("a", "acme")
			if st, org, n := f.lookup(ctx, "globex", alice); st != "" || !org || n != 1 {
				t.Errorf("other org: %q %v, %d round trips", st, org, n)
			}
			// Another user (bob's request must not get alice's membership).
			_, _, _, ctx, _ = f.load("a", "acme")
			if st, _, n := f.lookup(ctx, "acme", bob); st != "" || n != 1 {
				t.Errorf("other user: %q, %d round trips", st, n)
			}
			// The record is replaced by bob's between the read and the use: the request that
			// read alice's record can only get alice's membership; bob's lookup reads Redis.
			f.session("r", map[string]any{"user": alice, "active_org": "acme"})
			_, r, _, ctx, _ := f.load("r", "")
			if r == nil || r.user != alice {
				t.Fatalf("prefetch: %+v", r)
			}
			f.session("r", map[string]any{"user": bob, "active_org": "acme"})
			f.c.drop(nil)
			if st, _, n := f.lookup(ctx, "acme", bob); st != "" || n != 1 {
				t.Errorf("replaced record: bob got %q with %d round trips", st, n)
			}
			// Used once: a second Lookup of the same pair does not come from the prefetch.
			f.c.drop(nil)
			_, _, _, ctx, _ = f.load("a", "")
			f.lookup(ctx, "acme", alice)
			f.c.drop(nil)
			if _, _, n := f.lookup(ctx, "acme", alice); n != 1 {
				t.Errorf("second Lookup with one prefetch: %d round trips, want 1", n)
			}
			// Another Cache (another replica's, or one over another Store) ignores it.
			other := NewCache(f.s, ttl, testLogger(t))
			t.Cleanup(func() { other.Close() })
			f.c.drop(nil)
			_, _, _, ctx, _ = f.load("a", "")
			before := f.h.trips.Load()
			if _, _, err := other.Lookup(ctx, "acme", alice); err != nil || f.h.trips.Load()-before != 1 {
				t.Errorf("other cache: %v, %d round trips", err, f.h.trips.Load()-before)
			}
			// A Store other than the Cache's does not fill it.
			s2 := newStore(t, config.Redis{Address: redistest.Shared(t).Addr, DB: f.s.rdb.Options().DB, KeyPrefix: strings.TrimSuffix(f.s.keys.prefix, ":")})
			ctx = f.c.WithPrefetch(t.Context(), "acme")
			if _, err := s2.LoadSession(ctx, "a"); err != nil || prefetchFrom(ctx).res.Load() != nil || prefetchFrom(ctx).ran.Load() {
				t.Errorf("another Store filled the prefetch (%v)", err)
			}
		})
	}
}

// TestPrefetchSavesARoundTrip: session plus membership in one round trip; with the cache on
// the prefetched records are cached, unless an invalidation arrived since the read.
func TestPrefetchSavesARoundTrip(t *testing.T) {
	t.Run("cache disabled", func(t *testing.T) {
		f := newPF(t, CacheDisabled)
		mustCreate(t, f.o, "acme")
		mustGrant(t, f.o, "acme", alice)
		f.session("a", map[string]any{"user": alice, "active_org": "acme"})
		for range 3 {
			_, _, n, ctx, _ := f.load("a", "")
			st, _, m := f.lookup(ctx, "acme", alice)
			if st != MembershipActive || n+m != 1 {
				t.Errorf("%q in %d+%d round trips, want 1", st, n, m)
			}
		}
		// Revocation is seen by the very next request.
		if _, err := f.o.Revoke(t.Context(), "acme", alice, admin, ""); err != nil {
			t.Fatal(err)
		}
		_, _, _, ctx, _ := f.load("a", "")
		if st, _, _ := f.lookup(ctx, "acme", alice); st != MembershipRevoked {
			t.Errorf("after revocation: %q", st)
		}
	})
	t.Run("cache on", func(t *testing.T) {
		f := newPF(t, time.Minute)
		mustCreate(t, f.o, "acme")
		mustGrant(t, f.o, "acme", alice)
		f.session("a", map[string]any{"user": alice, "active_org": "acme"})
		settle(t, &replica{s: f.s, c: f.c})
		_, _, n, ctx, _ := f.load("a", "")
		if st, _, m := f.lookup(ctx, "acme", alice); st != MembershipActive || n+m != 1 {
			t.Errorf("cold: %q in %d+%d round trips", st, n, m)
		}
		if e, ok := f.c.peek("acme", alice); !ok || e.mem == nil {
			t.Fatal("the prefetched membership was not cached")
		}
		if st, _, m := f.lookup(t.Context(), "acme", alice); st != MembershipActive || m != 0 {
			t.Errorf("warm: %q in %d round trips", st, m)
		}

		// An invalidation between the read and its use: the read answers its request but is
		// not cached (it may predate the change).
		f.c.drop(nil)
		_, _, _, ctx, _ = f.load("a", "")
		if _, err := f.o.Revoke(t.Context(), "acme", alice, admin, ""); err != nil {
			t.Fatal(err)
		}
		settle(t, &replica{s: f.s, c: f.c})
		if st, _, m := f.lookup(ctx, "acme", alice); st != MembershipActive || m != 0 {
			t.Errorf("racing prefetch: %q, %d round trips", st, m)
		}
		if _, ok := f.c.peek("acme", alice); ok {
			t.Error("a prefetch older than the revocation was cached")
		}
		if st, _, _ := f.lookup(t.Context(), "acme", alice); st != MembershipRevoked {
			t.Errorf("after the race: %q", st)
		}
	})
}

// TestPrefetchFailsClosed: Redis down is ErrUnavailable, never a miss; a hung Redis is a
// timeout, and a Redis that refuses scripts still serves the session (two round trips).
func TestPrefetchFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	c := config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(300 * time.Millisecond), DialTimeout: config.Duration(300 * time.Millisecond)}
	s := newStore(t, c)
	cache := NewCache(s, CacheDisabled, testLogger(t))
	ctx := ctxT(t, 10*time.Second)
	if err := s.CreateSession(ctx, "h", alice, "i", "", []byte(`{"user":"`+alice+`","active_org":"acme"}`), time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadSession(cache.WithPrefetch(ctx, ""), "h"); err != nil {
		t.Fatal(err)
	}

	// Scripts refused (an ACL without @scripting): the session is still read, nothing is
	// prefetched, and Lookup reads as usual.
	if !srv.Miniredis {
		raw := srv.Client(t)
		if err := raw.Do(ctx, "ACL", "SETUSER", "noscript", "on", ">pw", "~*", "&*", "+@all", "-@scripting").Err(); err != nil {
			t.Fatal(err)
		}
		c2 := c
		c2.Username, c2.Password = "noscript", "pw"
		s2 := newStore(t, c2)
		cache2 := NewCache(s2, CacheDisabled, testLogger(t))
		pctx := cache2.WithPrefetch(ctx, "")
		b, err := s2.LoadSession(pctx, "h")
		if err != nil || !strings.Contains(string(b), alice) {
			t.Fatalf("session with scripts refused: %q %v", b, err)
		}
		r := prefetchFrom(pctx).res.Load()
		if r == nil || r.err == nil || !strings.Contains(r.err.Error(), "NOPERM") {
			t.Errorf("prefetch with scripts refused: %+v", r)
		}
		if _, _, err := cache2.Lookup(pctx, "acme", alice); err != nil {
			t.Errorf("Lookup after a refused script: %v", err)
		}
	}

	srv.Stop()
	hints := []string{"", "acme"}
	calls := map[string]func() error{}
	for _, org := range hints {
		calls[org] = func() error { _, err := s.LoadSession(cache.WithPrefetch(ctx, org), "h"); return err }
	}
	stopped := concurrently(calls)
	for _, org := range hints {
		if err := stopped[org]; !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
			t.Errorf("stopped (hint %q): %v, want ErrUnavailable", org, err)
		}
	}
	// Hung (last: it skips under the miniredis fallback).
	srv.Restart()
	srv.Pause()
	_, err := s.LoadSession(cache.WithPrefetch(ctx, "acme"), "h")
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		t.Errorf("paused: %v, want ErrUnavailable", err)
	}
}
