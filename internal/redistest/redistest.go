// Package redistest gives tests a real, private Redis: a redis-server process started for the
// test on a free loopback port, killed when the test ends.
//
// Portcullis fails closed when Redis cannot answer, so its tests must be able to take Redis away
// (Stop), bring it back (Restart) and make it hang (Pause). Only a real process can do all of
// that faithfully, which is why a real redis-server is the default. When the binary is missing
// the helper falls back to an in-process miniredis so a laptop without Redis can still run most
// tests; CI sets PORTCULLIS_REQUIRE_REDIS=1, which turns that fallback into a test failure.
//
// Two ways to get a server:
//
//   - Start gives the test its own server. Use it for tests that disturb Redis.
//   - Shared gives every test of the package one server started on first use (TestMain must call
//     Main). Each test gets its own logical database, so tests do not see each other's keys.
//     See Shared for what is and is not isolated.
//
// The helper never touches a Redis it did not start.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// RequireEnv names the environment variable that forbids the miniredis fallback: when it is set
// to a non-empty value and no redis-server binary is found, Start and Shared fail the test.
const RequireEnv = "PORTCULLIS_REQUIRE_REDIS"

// Server is a Redis server started for tests. Its methods must be called from the test's
// goroutine (they may call Fatal or Skip on the test that started it).
type Server struct {
	// Addr is the server's loopback TCP address, "127.0.0.1:<port>". It does not change across
	// Stop and Restart.
	Addr string
	// Socket is the path of the server's unix socket when WithUnixSocket was given, else "".
	Socket string
	// Password is the default user's password as set by WithPassword; "" means none.
	Password string
	// Miniredis reports whether this is the in-process fallback rather than a redis-server.
	Miniredis bool

	tb   testing.TB // the test that owns a private server; nil for the shared server
	proc *process   // set for a real redis-server
	mini *miniredis.Miniredis

	mu     sync.Mutex
	paused bool

	// Shared server only: logical databases handed out to tests. See Shared.
	shared bool
	dbs    map[testing.TB]int
	inUse  []bool
}

// Option configures Start.
type Option func(*options)

type options struct {
	password   string
	unixSocket bool
	databases  int

	extra        []string // further redis-server arguments (a replica's --replicaof)
	sentinelConf string   // run as a sentinel with this configuration file
}

// WithPassword makes the server require AUTH with password for the default user. Clients made by
// Server.Client authenticate automatically.
func WithPassword(password string) Option {
	return func(o *options) { o.password = password }
}

// WithUnixSocket makes the server also listen on a unix socket, named in Server.Socket. The
// miniredis fallback cannot do this, so under it the test is skipped.
func WithUnixSocket() Option {
	return func(o *options) { o.unixSocket = true }
}

// findBinary locates redis-server. It is a variable so tests can simulate a machine without one.
var findBinary = func() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	// Debian installs it in /usr/bin, but PATH in minimal containers and sudo is not always
	// complete; /usr/sbin covers distributions that put daemons there.
	for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("redis-server not found on PATH, in /usr/bin or in /usr/sbin")
}

// Start starts a private Redis for the test and returns once it answers PING. The server is
// killed when the test ends; if the test failed, the server's log is added to its output.
//
// Without a redis-server binary, Start fails the test when RequireEnv is set and otherwise falls
// back to miniredis, saying so in the test log.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := findBinary()
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			tb.Fatalf("redistest: %s is set, so the miniredis fallback is forbidden, but %v; install it (Debian: apt-get install redis-server)", RequireEnv, err)
		}
		tb.Logf("redistest: %v; falling back to in-process miniredis (set %s=1 to forbid this)", err, RequireEnv)
		return startMini(tb, o)
	}

	socketDir := ""
	if o.unixSocket {
		// Unix socket paths are limited to ~108 bytes and tb.TempDir embeds the test name, so
		// the socket gets a short directory of its own.
		socketDir, err = os.MkdirTemp("", "redistest")
		if err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		tb.Cleanup(func() { os.RemoveAll(socketDir) })
	}
	p, err := launch(bin, tb.TempDir(), socketDir, o)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	s := &Server{Addr: p.addr(), Socket: p.socket, Password: o.password, tb: tb, proc: p}
	tb.Cleanup(func() {
		p.kill()
		if tb.Failed() {
			tb.Logf("redistest: log of redis-server %s:\n%s", s.Addr, p.log.String())
		}
	})
	return s
}

func startMini(tb testing.TB, o options) *Server {
	tb.Helper()
	if o.unixSocket {
		tb.Skip("redistest: unix sockets need a real redis-server; the miniredis fallback is in use")
	}
	m := miniredis.NewMiniRedis()
	if o.password != "" {
		m.RequireAuth(o.password)
	}
	if err := m.Start(); err != nil {
		tb.Fatalf("redistest: start miniredis: %v", err)
	}
	tb.Cleanup(m.Close)
	return &Server{Addr: m.Addr(), Password: o.password, Miniredis: true, tb: tb, mini: m}
}

// Client returns a client for the server, closed when tb ends. On a private server it uses
// database 0. On the shared server it uses the database reserved for tb (see Shared and DB), so
// every client a test makes sees the same data and no other test's.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(s.clientOptions(s.DB(tb)))
	tb.Cleanup(func() { c.Close() })
	return c
}

// DB returns the logical database tb should use: 0 on a private server; on the shared server,
// a database reserved for tb, empty when first reserved and flushed when tb ends. Pass it as the
// DB of any client the code under test builds itself.
func (s *Server) DB(tb testing.TB) int {
	tb.Helper()
	if !s.shared {
		return 0
	}
	return s.reserveDB(tb)
}

func (s *Server) clientOptions(db int) *redis.Options {
	return &redis.Options{
		Addr:     s.Addr,
		Password: s.Password,
		DB:       db,
		// Fail fast: tests that stop or pause Redis should not wait for retries, and a test's
		// context deadline should bound each command.
		MaxRetries:            1,
		DialTimeout:           2 * time.Second,
		ContextTimeoutEnabled: true,
	}
}

// Stop kills the server. Commands fail until Restart. Calling Stop twice is harmless.
func (s *Server) Stop() {
	s.private("Stop")
	s.mu.Lock()
	s.paused = false
	s.mu.Unlock()
	if s.mini != nil {
		s.mini.Close()
		return
	}
	s.proc.kill()
}

// Restart stops the server if it runs and starts it again on the same address, empty (both
// redis-server and miniredis start without the old data, so tests cannot come to depend on
// either behaviour).
func (s *Server) Restart() {
	s.private("Restart")
	s.tb.Helper()
	s.Stop()
	if s.mini != nil {
		if err := s.mini.Restart(); err != nil {
			s.tb.Fatalf("redistest: restart miniredis on %s: %v", s.Addr, err)
		}
		s.mini.FlushAll()
		return
	}
	if err := s.proc.restart(10 * time.Second); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

// Pause freezes the server process (SIGSTOP): connections are still accepted by the kernel but
// nothing answers, which is what a hung or overloaded Redis looks like to a client. Resume undoes
// it; cleanup kills a paused server too. Under the miniredis fallback, which cannot hang, Pause
// skips the test.
func (s *Server) Pause() {
	s.private("Pause")
	s.tb.Helper()
	if s.mini != nil {
		s.tb.Skip("redistest: Pause needs a real redis-server (SIGSTOP); the miniredis fallback is in use")
	}
	if err := s.proc.signal(sigStop); err != nil {
		s.tb.Fatalf("redistest: pause: %v", err)
	}
	s.mu.Lock()
	s.paused = true
	s.mu.Unlock()
}

// Resume lets a paused server run again (SIGCONT). It does nothing when the server is not paused.
func (s *Server) Resume() {
	s.private("Resume")
	s.tb.Helper()
	s.mu.Lock()
	paused := s.paused
	s.paused = false
	s.mu.Unlock()
	if !paused {
		return
	}
	if err := s.proc.signal(sigCont); err != nil {
		s.tb.Fatalf("redistest: resume: %v", err)
	}
}

// private panics for the shared server, whose other users would see their Redis vanish.
func (s *Server) private(op string) {
	if s.shared {
		panic("redistest: " + op + " on the shared server would disturb every other test; use Start for tests that disturb Redis")
	}
}

// ping reports whether the server answers, for the helper's own readiness checks.
func ping(ctx context.Context, opt *redis.Options) (string, error) {
	c := redis.NewClient(opt)
	defer c.Close()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no process_id in INFO server")
}
