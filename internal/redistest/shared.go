package redistest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// sharedDatabases is how many logical databases the shared server has. Database 0 is never handed
// out, so code that forgets to select its database finds nothing rather than another test's keys.
const sharedDatabases = 1024

var (
	mainActive atomic.Bool

	sharedOnce sync.Once
	sharedSrv  *Server
	sharedErr  error
	sharedDir  string

	prefixSeq atomic.Int64
)

// Main runs the package's tests and then stops the shared server. A package that uses Shared
// calls it from TestMain:
//
//	func TestMain(m *testing.M) { redistest.Main(m) }
//
// Without it the shared server would outlive the test binary, so Shared refuses to run.
func Main(m *testing.M) {
	mainActive.Store(true)
	code := m.Run()
	stopShared()
	os.Exit(code)
}

// Shared returns the package's shared server, starting it on first use. It saves starting a
// server per test in packages with many small Redis tests.
//
// Isolation: each test (each testing.TB, so each subtest too) gets its own logical database —
// Client and DB return it, and it is empty when the test first asks and flushed when the test
// ends — so parallel tests neither see nor clobber each other's keys. What databases do not
// separate: pub/sub channels, server configuration, ACL users, and FLUSHALL. Tests that use
// pub/sub should name channels with Prefix; tests that change server state, or Stop, Restart or
// Pause it (which panic here), must use Start.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	if !mainActive.Load() {
		tb.Fatal("redistest: Shared needs TestMain to call redistest.Main(m), which stops the shared server")
	}
	sharedOnce.Do(func() { sharedSrv, sharedErr = startShared() })
	if sharedErr != nil {
		tb.Fatalf("redistest: shared server: %v", sharedErr)
	}
	if sharedSrv.Miniredis {
		tb.Logf("redistest: the shared server is an in-process miniredis (no redis-server found; set %s=1 to forbid this)", RequireEnv)
	} else {
		tb.Cleanup(func() {
			if tb.Failed() {
				tb.Logf("redistest: log of the shared redis-server %s:\n%s", sharedSrv.Addr, sharedSrv.proc.log.String())
			}
		})
	}
	return sharedSrv
}

// Prefix returns a string unique within the test binary, for the test to put in front of its
// pub/sub channel names (or key prefix), which logical databases do not separate. It contains
// only letters and digits, so it is safe in any key or channel name.
func Prefix(tb testing.TB) string {
	return fmt.Sprintf("test%d", prefixSeq.Add(1))
}

func startShared() (*Server, error) {
	s := &Server{shared: true, dbs: map[testing.TB]int{}, inUse: make([]bool, sharedDatabases)}
	s.inUse[0] = true
	bin, err := findBinary()
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			return nil, fmt.Errorf("%s is set, so the miniredis fallback is forbidden, but %w", RequireEnv, err)
		}
		m, err := miniredis.Run()
		if err != nil {
			return nil, fmt.Errorf("start miniredis: %w", err)
		}
		s.Addr, s.Miniredis, s.mini = m.Addr(), true, m
		return s, nil
	}
	sharedDir, err = os.MkdirTemp("", "redistest-shared")
	if err != nil {
		return nil, err
	}
	p, err := launch(bin, sharedDir, "", options{databases: sharedDatabases})
	if err != nil {
		os.RemoveAll(sharedDir)
		return nil, err
	}
	s.Addr, s.proc = p.addr(), p
	return s, nil
}

func stopShared() {
	if sharedSrv == nil {
		return
	}
	if sharedSrv.mini != nil {
		sharedSrv.mini.Close()
	}
	if sharedSrv.proc != nil {
		sharedSrv.proc.kill()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
}

// reserveDB returns tb's database on the shared server, reserving and emptying one on first use
// and registering its release (flush, then free) for when tb ends.
func (s *Server) reserveDB(tb testing.TB) int {
	tb.Helper()
	s.mu.Lock()
	if db, ok := s.dbs[tb]; ok {
		s.mu.Unlock()
		return db
	}
	db := -1
	for i, used := range s.inUse {
		if !used {
			db = i
			break
		}
	}
	if db < 0 {
		s.mu.Unlock()
		tb.Fatalf("redistest: all %d databases of the shared server are in use; too many parallel tests", sharedDatabases-1)
	}
	s.inUse[db] = true
	s.dbs[tb] = db
	s.mu.Unlock()

	// Flush on reservation too: a test binary killed mid-test cannot leave keys behind for the
	// next test, but a cleanup that failed to flush can.
	if err := s.flushDB(db); err != nil {
		tb.Fatalf("redistest: flush shared database %d: %v", db, err)
	}
	tb.Cleanup(func() {
		err := s.flushDB(db)
		s.mu.Lock()
		delete(s.dbs, tb)
		// A database that could not be emptied is never handed out again.
		s.inUse[db] = err != nil
		s.mu.Unlock()
		if err != nil {
			tb.Errorf("redistest: flush shared database %d: %v", db, err)
		}
	})
	return db
}

func (s *Server) flushDB(db int) error {
	c := redis.NewClient(s.clientOptions(db))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.FlushDB(ctx).Err()
}
