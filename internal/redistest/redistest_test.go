package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { Main(m) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestStartClientWorks(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)
	ctx := ctxT(t, 5*time.Second)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want v", got, err)
	}
	if host, _, err := net.SplitHostPort(s.Addr); err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr = %q: want 127.0.0.1:<port>", s.Addr)
	}
	if os.Getenv(RequireEnv) != "" && s.Miniredis {
		t.Fatalf("miniredis fallback in use although %s is set", RequireEnv)
	}
}

func TestStartedServerIsPrivateAndNotPersistent(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if s.Miniredis {
		t.Skip("checks redis-server configuration")
	}
	c := s.Client(t)
	ctx := ctxT(t, 5*time.Second)
	for key, want := range map[string]string{"save": "", "appendonly": "no", "bind": "127.0.0.1"} {
		got, err := c.ConfigGet(ctx, key).Result()
		if err != nil {
			t.Fatalf("CONFIG GET %s: %v", key, err)
		}
		if got[key] != want {
			t.Errorf("%s = %q, want %q", key, got[key], want)
		}
	}
}

func TestStopMakesCommandsFailAndRestartBringsItBack(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)
	addr := s.Addr
	if err := c.Set(ctxT(t, 5*time.Second), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}

	s.Stop()
	s.Stop() // idempotent
	if err := c.Ping(ctxT(t, 5*time.Second)).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}

	s.Restart()
	if s.Addr != addr {
		t.Fatalf("Addr changed across Restart: %s → %s", addr, s.Addr)
	}
	ctx := ctxT(t, 5*time.Second)
	if err := c.Ping(ctx).Err(); err != nil {
		// The pool may hand out one connection broken by the restart; the next must work.
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after Restart: %v", err)
		}
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after Restart = %d, %v; want an empty server", n, err)
	}
}

func TestPauseMakesCommandsTimeOut(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)
	if err := c.Ping(ctxT(t, 5*time.Second)).Err(); err != nil {
		t.Fatal(err)
	}

	s.Pause()
	start := time.Now()
	err := c.Ping(ctxT(t, 300*time.Millisecond)).Err()
	if err == nil {
		t.Fatal("PING on a paused server succeeded")
	}
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("PING on a paused server: %v; want a timeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("PING took %v to time out", d)
	}

	s.Resume()
	s.Resume() // harmless when not paused
	if err := c.Ping(ctxT(t, 5*time.Second)).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func TestPausedServerIsKilledAtCleanup(t *testing.T) {
	t.Parallel()
	var s *Server
	t.Run("pause", func(t *testing.T) {
		s = Start(t)
		s.Pause()
	})
	// The subtest's cleanup has run: the address must refuse connections now.
	if s.Miniredis {
		return // the subtest was skipped
	}
	conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after cleanup", s.Addr)
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	s := Start(t, WithPassword("s3cret pass"))
	ctx := ctxT(t, 5*time.Second)
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING with password: %v", err)
	}
	anon := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: %v; want NOAUTH", err)
	}
}

func TestUnixSocket(t *testing.T) {
	t.Parallel()
	s := Start(t, WithUnixSocket())
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: s.Socket})
	defer c.Close()
	if err := c.Ping(ctxT(t, 5*time.Second)).Err(); err != nil {
		t.Fatalf("PING over %s: %v", s.Socket, err)
	}
	fi, err := os.Stat(s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("socket mode %v: want no group/other access", fi.Mode().Perm())
	}
}

func TestParallelStartsGetDistinctServers(t *testing.T) {
	t.Parallel()
	var live sync.Map // addresses of servers currently running
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			s := Start(t)
			if _, dup := live.LoadOrStore(s.Addr, true); dup {
				t.Fatalf("two live servers on %s", s.Addr)
			}
			t.Cleanup(func() { live.Delete(s.Addr) }) // runs before the server is killed
			if err := s.Client(t).Ping(ctxT(t, 5*time.Second)).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// recordingTB stands in for a test so the helper's Fatal and Skip can be observed; like the real
// ones they end the calling goroutine.
type recordingTB struct {
	testing.TB
	mu                  sync.Mutex
	fatal, skip, logged string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) set(p *string, s string) {
	r.mu.Lock()
	*p += s + "\n"
	r.mu.Unlock()
}
func (r *recordingTB) Fatal(a ...any) {
	r.set(&r.fatal, fmt.Sprint(a...))
	runtime.Goexit()
}

func (r *recordingTB) Fatalf(f string, a ...any) {
	r.set(&r.fatal, fmt.Sprintf(f, a...))
	runtime.Goexit()
}

func (r *recordingTB) Skip(a ...any) {
	r.set(&r.skip, fmt.Sprint(a...))
	runtime.Goexit()
}

func (r *recordingTB) Skipf(f string, a ...any) {
	r.set(&r.skip, fmt.Sprintf(f, a...))
	runtime.Goexit()
}

func (r *recordingTB) Log(a ...any)            { r.set(&r.logged, fmt.Sprint(a...)) }
func (r *recordingTB) Logf(f string, a ...any) { r.set(&r.logged, fmt.Sprintf(f, a...)) }

// run calls f with r in a goroutine of its own, as the testing package would, and reports whether
// f returned normally (rather than through Fatal or Skip).
func (r *recordingTB) run(f func(tb testing.TB)) (returned bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
		returned = true
	}()
	<-done
	return returned
}

// withoutBinary simulates a machine without redis-server for the rest of the test. Tests using it
// must not run in parallel with other tests (findBinary is package state).
func withoutBinary(t *testing.T) {
	orig := findBinary
	findBinary = func() (string, error) { return "", errors.New("redis-server not found (simulated)") }
	t.Cleanup(func() { findBinary = orig })
}

func TestRequireRedisForbidsFallback(t *testing.T) {
	withoutBinary(t)
	t.Setenv(RequireEnv, "1")
	r := &recordingTB{TB: t}
	if r.run(func(tb testing.TB) { Start(tb) }) {
		t.Fatal("Start returned without redis-server although fallback is forbidden")
	}
	if !strings.Contains(r.fatal, RequireEnv) || !strings.Contains(r.fatal, "redis-server") {
		t.Fatalf("Fatal message %q: want it to name %s and redis-server", r.fatal, RequireEnv)
	}
}

func TestFallbackToMiniredis(t *testing.T) {
	withoutBinary(t)
	t.Setenv(RequireEnv, "")
	r := &recordingTB{TB: t}
	var s *Server
	if !r.run(func(tb testing.TB) { s = Start(tb, WithPassword("pw")) }) {
		t.Fatalf("Start failed: fatal=%q skip=%q", r.fatal, r.skip)
	}
	if !s.Miniredis || !strings.Contains(r.logged, "miniredis") {
		t.Fatalf("Miniredis=%v, log %q: want the fallback, announced", s.Miniredis, r.logged)
	}
	c := s.Client(t)
	ctx := ctxT(t, 5*time.Second)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Stop()
	if err := c.Ping(ctxT(t, 5*time.Second)).Err(); err == nil {
		t.Fatal("PING after Stop succeeded")
	}
	r.run(func(testing.TB) { s.Restart() })
	if r.fatal != "" {
		t.Fatalf("Restart: %s", r.fatal)
	}
	_ = c.Ping(ctx) // may hit a connection broken by the restart
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after Restart = %d, %v; want an empty server", n, err)
	}
	s.tb = r // Pause skips the test that owns the server
	if r.run(func(testing.TB) { s.Pause() }) || !strings.Contains(r.skip, "miniredis") {
		t.Fatalf("Pause under miniredis: skip=%q; want a skip naming miniredis", r.skip)
	}
}

func TestSharedIsolatesTests(t *testing.T) {
	t.Parallel()
	var dbs sync.Map
	for _, name := range []string{"a", "b", "c"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := Shared(t)
			c1, c2 := s.Client(t), s.Client(t)
			ctx := ctxT(t, 5*time.Second)
			if n, err := c1.DBSize(ctx).Result(); err != nil || n != 0 {
				t.Fatalf("DBSIZE = %d, %v; want an empty database", n, err)
			}
			if err := c1.Set(ctx, "same-key", name, 0).Err(); err != nil {
				t.Fatal(err)
			}
			// Both clients of one test share its database.
			if got, err := c2.Get(ctx, "same-key").Result(); err != nil || got != name {
				t.Fatalf("second client GET = %q, %v; want %q", got, err, name)
			}
			db := s.DB(t)
			if db == 0 || c1.Options().DB != db {
				t.Fatalf("DB = %d, client DB = %d: want the same, non-zero", db, c1.Options().DB)
			}
			if other, dup := dbs.LoadOrStore(db, name); dup {
				t.Fatalf("database %d given to %s and %s at once", db, other, name)
			}
			t.Cleanup(func() { dbs.Delete(db) }) // runs before the database is released
			time.Sleep(50 * time.Millisecond)    // let the siblings write their value too
			if got, err := c1.Get(ctx, "same-key").Result(); err != nil || got != name {
				t.Fatalf("GET = %q, %v; another test's write leaked in", got, err)
			}
		})
	}
}

func TestSharedDatabaseIsFlushedAfterTest(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	var db int
	t.Run("writer", func(t *testing.T) {
		db = s.DB(t)
		if err := s.Client(t).Set(ctxT(t, 5*time.Second), "left-behind", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	c := redis.NewClient(s.clientOptions(db))
	defer c.Close()
	if n, err := c.DBSize(ctxT(t, 5*time.Second)).Result(); err != nil || n != 0 {
		t.Fatalf("database %d has %d keys after its test ended (%v)", db, n, err)
	}
}

func TestSharedRefusesDisturbance(t *testing.T) {
	t.Parallel()
	s := Shared(t)
	for name, f := range map[string]func(){"Stop": s.Stop, "Restart": s.Restart, "Pause": s.Pause, "Resume": s.Resume} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Start") {
					t.Errorf("%s on the shared server: recovered %v; want a panic pointing to Start", name, r)
				}
			}()
			f()
		}()
	}
}

func TestPrefixIsUnique(t *testing.T) {
	t.Parallel()
	if a, b := Prefix(t), Prefix(t); a == b {
		t.Fatalf("Prefix returned %q twice", a)
	}
}

func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := StartSentinel(t, WithPassword("pw-sentinel"))
	c := s.Client(t)
	ctx := ctxT(t, 30*time.Second)
	if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The replica has it before the primary dies: WAIT on the connection that wrote it.
	conn := c.Conn()
	defer conn.Close()
	if err := conn.Set(ctx, "k2", "acked", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := conn.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v; want 1 replica", n, err)
	}
	old := s.KillPrimary()
	now := s.WaitFailover(old, 20*time.Second)
	if now == old {
		t.Fatalf("primary still %s", old)
	}
	// The failover client follows the promotion without being rebuilt.
	var v string
	var err error
	for range 100 {
		if v, err = c.Get(ctx, "k2").Result(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || v != "acked" {
		t.Fatalf("after failover GET k2 = %q, %v; want the acknowledged write", v, err)
	}
	if err := c.Set(ctx, "k3", "after", 0).Err(); err != nil {
		t.Fatalf("write after failover: %v", err)
	}
	s.RestartNode(old)
	// The old node comes back as a replica of the new primary, empty, and catches up: nothing
	// written since is lost, whichever node Sentinel names. (On a loaded machine Sentinel may
	// fail over once more, to the node just restarted and in sync; that is Sentinel's call,
	// not the helper's.)
	if got := s.Primary(); got != now {
		t.Logf("Sentinel failed over again after the restart: %s, not %s", got, now)
	}
	for range 100 {
		if v, err = c.Get(ctx, "k3").Result(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || v != "after" {
		t.Fatalf("after the restart GET k3 = %q, %v; want the write made after the failover", v, err)
	}
}
