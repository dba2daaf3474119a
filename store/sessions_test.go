package store

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

func sharedStore(t *testing.T) (*Store, *redistest.Server) {
	t.Helper()
	srv := redistest.Shared(t)
	return newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t)}), srv
}

func TestSessionKeysAreTaggedAndEscaped(t *testing.T) {
	k := mustKeys(t, "")
	for _, tc := range []struct{ got, want, tag string }{
		{k.sessionRecord("abc_-"), "pc:{s:abc_-}:sess", "s:abc_-"},
		{k.sidSessions("https://idp.example", "s1"), "pc:{i:https%3A%2F%2Fidp.example:s1}:sessions", "i:https%3A%2F%2Fidp.example:s1"},
		{k.loginState("x"), "pc:{l:x}:login", "l:x"},
		{k.logoutJTI("https://idp", "j}{:1"), "pc:{j:https%3A%2F%2Fidp:j%7D%7B%3A1}:jti", "j:https%3A%2F%2Fidp:j%7D%7B%3A1"},
	} {
		if tc.got != tc.want {
			t.Errorf("key %q, want %q", tc.got, tc.want)
		}
		if hashTag(tc.got) != tc.tag {
			t.Errorf("hash tag of %q is %q, want %q", tc.got, hashTag(tc.got), tc.tag)
		}
	}
	// An issuer cannot borrow the sid separator: (iss "a:b", sid "c") ≠ (iss "a", sid "b:c").
	if k.sidSessions("a:b", "c") == k.sidSessions("a", "b:c") {
		t.Error("sid index keys collide")
	}
}

func TestLoginStateIsSingleUse(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	if err := st.SaveLogin(ctx, "h1", []byte("rec"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveLogin(ctx, "h1", []byte("other"), time.Minute); err == nil {
		t.Error("SaveLogin overwrote an existing state")
	}
	// Concurrent callbacks with the same state: exactly one wins (GETDEL is atomic).
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			b, err := st.TakeLogin(ctx, "h1")
			switch {
			case err == nil && string(b) == "rec":
				wins.Add(1)
			case errors.Is(err, ErrNotFound):
			default:
				t.Errorf("TakeLogin: %q %v", b, err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d callbacks took the state, want 1", wins.Load())
	}
	if _, err := st.TakeLogin(ctx, "unknown"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown state: %v", err)
	}
}

func TestLoginStateExpires(t *testing.T) {
	st, srv := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	if err := st.SaveLogin(ctx, "h2", []byte("rec"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ttl := srv.Client(t).PTTL(ctx, st.keys.loginState("h2")).Val()
	if ttl <= 0 || ttl > 10*time.Second {
		t.Errorf("state TTL %v, want (0, 10s]", ttl)
	}
}

func TestNonPositiveTTLIsRefused(t *testing.T) {
	st, srv := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	// go-redis reads 0 as "keep for ever": that must never reach Redis.
	if err := st.SaveLogin(ctx, "h", []byte("x"), 0); err == nil {
		t.Error("SaveLogin with ttl 0 accepted")
	}
	if err := st.CreateSession(ctx, "h", "u", "i", "", []byte("x"), -time.Second, time.Hour); err == nil {
		t.Error("CreateSession with a negative ttl accepted")
	}
	if err := st.UpdateSession(ctx, "h", []byte("x"), 0); err == nil {
		t.Error("UpdateSession with ttl 0 accepted")
	}
	if _, err := st.MarkLogoutToken(ctx, "i", "j", 0); err == nil {
		t.Error("MarkLogoutToken with ttl 0 accepted")
	}
	if n := srv.Client(t).DBSize(ctx).Val(); n != 0 {
		t.Errorf("%d keys written", n)
	}
}

func TestSessionLifecycle(t *testing.T) {
	st, srv := sharedStore(t)
	rdb := srv.Client(t)
	ctx := ctxT(t, 5*time.Second)
	const user, iss = "https://idp.example|alice", "https://idp.example"
	if err := st.CreateSession(ctx, "h1", user, iss, "sid1", []byte(`{"v":1}`), time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	b, err := st.LoadSession(ctx, "h1")
	if err != nil || string(b) != `{"v":1}` {
		t.Fatalf("LoadSession: %q %v", b, err)
	}
	if ttl := rdb.PTTL(ctx, st.keys.sessionRecord("h1")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("record TTL %v", ttl)
	}
	for _, k := range []string{st.keys.userSessions(user), st.keys.sidSessions(iss, "sid1")} {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= time.Minute || ttl > time.Hour {
			t.Errorf("index %s TTL %v", k, ttl)
		}
		if !rdb.SIsMember(ctx, k, "h1").Val() {
			t.Errorf("index %s lacks the session", k)
		}
	}
	if err := st.UpdateSession(ctx, "h1", []byte(`{"v":2}`), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if b, _ := st.LoadSession(ctx, "h1"); string(b) != `{"v":2}` {
		t.Errorf("after update: %q", b)
	}
	if err := st.DeleteSession(ctx, "h1", user, iss, "sid1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadSession(ctx, "h1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	// Ending it again: nothing was there; the caller that ended it is the one that audits.
	if ended, err := st.EndSession(ctx, "h1", user, iss, "sid1"); err != nil || ended {
		t.Errorf("ending a session ended already: %v %v", ended, err)
	}
	// An update does not bring a deleted (revoked) session back.
	if err := st.UpdateSession(ctx, "h1", []byte(`{"v":3}`), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a deleted session: %v", err)
	}
	if n := rdb.Exists(ctx, st.keys.sessionRecord("h1")).Val(); n != 0 {
		t.Error("update resurrected the record")
	}
	if rdb.SIsMember(ctx, st.keys.userSessions(user), "h1").Val() {
		t.Error("user index still names the deleted session")
	}
}

func TestRevokeUserAndSID(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	const iss = "https://idp.example"
	alice, bob := iss+"|alice", iss+"|bob"
	for _, s := range []struct{ h, user, sid string }{
		{"a1", alice, "s1"}, {"a2", alice, "s2"}, {"a3", alice, ""}, {"b1", bob, "s3"},
	} {
		if err := st.CreateSession(ctx, s.h, s.user, iss, s.sid, []byte("x"), time.Minute, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := st.RevokeSID(ctx, iss, "s1"); err != nil || n != 1 {
		t.Errorf("RevokeSID: %d %v", n, err)
	}
	if _, err := st.LoadSession(ctx, "a1"); !errors.Is(err, ErrNotFound) {
		t.Error("a1 survived RevokeSID")
	}
	if _, err := st.LoadSession(ctx, "a2"); err != nil {
		t.Error("RevokeSID ended another session")
	}
	if n, err := st.RevokeUser(ctx, alice); err != nil || n != 2 {
		t.Errorf("RevokeUser: %d %v, want 2 (a1 was already gone)", n, err)
	}
	for _, h := range []string{"a2", "a3"} {
		if _, err := st.LoadSession(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s survived RevokeUser", h)
		}
	}
	if _, err := st.LoadSession(ctx, "b1"); err != nil {
		t.Error("RevokeUser(alice) ended bob's session")
	}
	if n, err := st.RevokeUser(ctx, "nobody"); err != nil || n != 0 {
		t.Errorf("RevokeUser(nobody): %d %v", n, err)
	}
}

func TestMarkLogoutToken(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	if fresh, err := st.MarkLogoutToken(ctx, "https://idp", "jti-1", time.Minute); err != nil || !fresh {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	if fresh, err := st.MarkLogoutToken(ctx, "https://idp", "jti-1", time.Minute); err != nil || fresh {
		t.Errorf("replay: fresh=%v %v", fresh, err)
	}
	// The same jti from another issuer is another token.
	if fresh, err := st.MarkLogoutToken(ctx, "https://other", "jti-1", time.Minute); err != nil || !fresh {
		t.Errorf("other issuer: %v %v", fresh, err)
	}
}

func TestSessionMethodsFailClosedWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	st := newStore(t, config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(300 * time.Millisecond), DialTimeout: config.Duration(300 * time.Millisecond)})
	ctx := ctxT(t, 10*time.Second)
	if err := st.CreateSession(ctx, "h", "u", "i", "s", []byte("x"), time.Minute, time.Hour); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	checks := concurrently(map[string]func() error{
		"load":   func() error { _, err := st.LoadSession(ctx, "h"); return err },
		"update": func() error { return st.UpdateSession(ctx, "h", []byte("y"), time.Minute) },
		"create": func() error {
			return st.CreateSession(ctx, "h2", "u", "i", "s", []byte("x"), time.Minute, time.Hour)
		},
		"delete":      func() error { return st.DeleteSession(ctx, "h", "u", "i", "s") },
		"take":        func() error { _, err := st.TakeLogin(ctx, "l"); return err },
		"save":        func() error { return st.SaveLogin(ctx, "l", []byte("x"), time.Minute) },
		"revoke user": func() error { _, err := st.RevokeUser(ctx, "u"); return err },
		"revoke sid":  func() error { _, err := st.RevokeSID(ctx, "i", "s"); return err },
		"jti":         func() error { _, err := st.MarkLogoutToken(ctx, "i", "j", time.Minute); return err },
	})
	for op, err := range checks {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want ErrUnavailable", op, err)
		}
		// A miss must never be what an outage looks like.
		if errors.Is(err, ErrNotFound) {
			t.Errorf("%s with Redis down reported a miss", op)
		}
		if err != nil && strings.Contains(err.Error(), "h2") {
			t.Errorf("%s error names a handle: %v", op, err)
		}
	}
}

// A session indexed late in another's life does not shorten the index: the other would drop
// out of it and survive offboarding.
func TestSessionIndexOnlyLengthens(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	user := "https://idp.example|" + t.Name()
	if err := st.CreateSession(ctx, "h-long", user, "https://idp.example", "sid-1", []byte("{}"), time.Hour, 12*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSession(ctx, "h-short", user, "https://idp.example", "sid-1", []byte("{}"), time.Minute, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.IndexSession(ctx, user, "h-other", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.JoinFamily(ctx, "fam-"+t.Name(), 12*time.Hour, "h-long"); err != nil {
		t.Fatal(err)
	}
	if err := st.JoinFamily(ctx, "fam-"+t.Name(), time.Minute, "h-short"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{st.keys.userSessions(user), st.keys.sidSessions("https://idp.example", "sid-1"), st.keys.sessionFamily("fam-" + t.Name())} {
		if ttl := st.rdb.PTTL(ctx, k).Val(); ttl < 11*time.Hour {
			t.Errorf("%s lives %v, want the longest member's 12h", k, ttl)
		}
	}
}
