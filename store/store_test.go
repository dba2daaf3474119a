package store

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }

const password = "hunter2-correct-horse"

func newStore(t *testing.T, c config.Redis) *Store {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// concurrently runs every call at once and returns each one's error under its name. Tests of a
// Redis that is down use it: against a closed port each call fails only after go-redis's dial
// retries (5 attempts 100 ms apart, twice with MaxRetries 1: about 0.8 s), so called one after
// another a handful of store methods take seconds.
func concurrently(calls map[string]func() error) map[string]error {
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(map[string]error, len(calls))
	for name, call := range calls {
		wg.Go(func() {
			err := call()
			mu.Lock()
			errs[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return errs
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    config.Redis
		want string
	}{
		{"no address", config.Redis{}, "not configured"},
		{"no port", config.Redis{Address: "localhost"}, "host:port"},
		{"bad port", config.Redis{Address: "localhost:http"}, "port"},
		{"port out of range", config.Redis{Address: "localhost:70000"}, "port"},
		{"no host", config.Redis{Address: ":6379"}, "host"},
		{"relative socket", config.Redis{Address: "unix:redis.sock"}, "absolute"},
		{"tls over socket", config.Redis{Address: "unix:/run/redis.sock", TLS: true}, "tls"},
		{"negative db", config.Redis{Address: "localhost:6379", DB: -1}, "db"},
		{"negative timeout", config.Redis{Address: "localhost:6379", ReadTimeout: -1}, "read_timeout"},
		{"brace in prefix", config.Redis{Address: "localhost:6379", KeyPrefix: "{pc}"}, "key_prefix"},
		{"url with password", config.Redis{Address: "redis://:" + password + "@localhost:6379"}, "not a URL"},
		{"userinfo with password", config.Redis{Address: "admin:" + password + "@localhost:6379"}, "not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Password = password
			_, err := New(tc.c)
			if err == nil {
				t.Fatal("New accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
	if _, err := New(config.Redis{}); !errors.Is(err, ErrNotConfigured) {
		t.Errorf("New with no address: %v, want ErrNotConfigured", err)
	}
}

func TestOptions(t *testing.T) {
	opt, err := options(config.Redis{Address: "redis.internal:6380", Username: "pc", Password: password, DB: 3, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	if opt.Network != "tcp" || opt.Addr != "redis.internal:6380" || opt.Username != "pc" || opt.Password != password || opt.DB != 3 {
		t.Errorf("options = %s %s user %q db %d", opt.Network, opt.Addr, opt.Username, opt.DB)
	}
	if opt.TLSConfig == nil || opt.TLSConfig.ServerName != "redis.internal" || opt.TLSConfig.InsecureSkipVerify {
		t.Errorf("TLS config %+v: want verification against redis.internal", opt.TLSConfig)
	}
	if opt.DialTimeout != DefaultDialTimeout || opt.ReadTimeout != DefaultReadTimeout || opt.WriteTimeout != DefaultWriteTimeout {
		t.Errorf("timeouts %v/%v/%v: want the defaults", opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout)
	}
	if opt.PoolSize < 1 || opt.PoolSize > maxPoolSize || opt.MaxActiveConns != maxPoolSize {
		t.Errorf("pool %d (max active %d): want bounded by %d", opt.PoolSize, opt.MaxActiveConns, maxPoolSize)
	}
	if !opt.ContextTimeoutEnabled {
		t.Error("request deadlines are ignored")
	}

	opt, err = options(config.Redis{Address: "unix:/run/redis/redis.sock", ReadTimeout: config.Duration(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if opt.Network != "unix" || opt.Addr != "/run/redis/redis.sock" || opt.TLSConfig != nil || opt.ReadTimeout != time.Second {
		t.Errorf("unix options = %s %s tls %v read %v", opt.Network, opt.Addr, opt.TLSConfig, opt.ReadTimeout)
	}
}

// TestDownRedisIsDialledOnce: against a Redis that refuses connections, a command dials once
// per attempt (two attempts), so a request fails closed at once instead of after go-redis's
// five dials per attempt.
func TestDownRedisIsDialledOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	opt, err := options(config.Redis{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(t.Context()).Err(); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	if n := dials.Load(); n < 1 || n > 2 {
		t.Errorf("%d dials for one command against a closed port, want at most 2", n)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	st := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t)})
	if err := st.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Ping(ctxT(t, 5*time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping after Close: %v, want ErrUnavailable", err)
	}
}

func TestPingUnixSocket(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithUnixSocket())
	st := newStore(t, config.Redis{Address: "unix:" + srv.Socket})
	if err := st.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Ping over %s: %v", srv.Socket, err)
	}
}

func TestPasswordNeverInErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithPassword(password))

	right := newStore(t, config.Redis{Address: srv.Addr, Password: password})
	if err := right.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Ping with the right password: %v", err)
	}

	const wrong = "wrong-" + password
	for name, c := range map[string]config.Redis{
		"wrong password": {Address: srv.Addr, Password: wrong},
		"wrong user":     {Address: srv.Addr, Username: "nobody", Password: wrong},
	} {
		err := newStore(t, c).Ping(ctxT(t, 5*time.Second))
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: Ping = %v, want ErrUnavailable", name, err)
			continue
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: error %q contains the password", name, err)
		}
	}

	srv.Stop()
	err := right.Ping(ctxT(t, 5*time.Second))
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("Ping of a stopped server: %v; want an error without the password", err)
	}
}

func TestUsername(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	if srv.Miniredis {
		t.Skip("ACL SETUSER needs a real redis-server")
	}
	ctx := ctxT(t, 5*time.Second)
	if err := srv.Client(t).Do(ctx, "ACL", "SETUSER", "portcullis", "on", ">"+password, "~pc:*", "&*", "+@all").Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	st := newStore(t, config.Redis{Address: srv.Addr, Username: "portcullis", Password: password})
	if err := st.Ping(ctx); err != nil {
		t.Fatalf("Ping as portcullis: %v", err)
	}
}

func TestPingWhenRedisGoesAwayAndComesBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := newStore(t, config.Redis{Address: srv.Addr})
	if err := st.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	err := st.Ping(ctxT(t, 5*time.Second))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "ping "+srv.Addr) {
		t.Fatalf("Ping of a stopped Redis: %v; want ErrUnavailable naming the operation and address", err)
	}

	srv.Restart()
	// The store must recover by itself; allow the pool to discard connections the restart broke.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := st.Ping(ctxT(t, 5*time.Second))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping after Restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPingFailsFastWhenRedisHangs(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	st := newStore(t, config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(200 * time.Millisecond)})
	if err := st.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()

	// The configured read timeout bounds a command...
	start := time.Now()
	if err := st.Ping(ctxT(t, 10*time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping of a hung Redis: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Ping of a hung Redis took %v; want about the 200ms read timeout (one retry)", d)
	}

	// ...and so does a shorter request deadline, whatever the configured timeout.
	slow := newStore(t, config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(time.Minute)})
	start = time.Now()
	if err := slow.Ping(ctxT(t, 200*time.Millisecond)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ping of a hung Redis: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Ping with a 200ms deadline took %v", d)
	}
}

// TestKeysInRedis checks that escaped keys behave as literal names in a real server: a key built
// from a hostile id is found by an exact SCAN pattern and matches nothing else.
func TestKeysInRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	c := srv.Client(t)
	ctx := ctxT(t, 5*time.Second)
	k := mustKeys(t, redistest.Prefix(t))
	for _, id := range attackIDs {
		if err := c.Set(ctx, k.membership("acme", id), id, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range attackIDs {
		got, _, err := c.Scan(ctx, 0, k.membership("acme", id), 10000).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != k.membership("acme", id) {
			t.Errorf("id %q: SCAN MATCH its key found %q", id, got)
		}
	}
}
