package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/config"
)

// Default timeouts when the configuration leaves them zero. They are short because Portcullis
// answers a request only after Redis does: a hung Redis must turn into a quick 503, not a hung
// proxy. A request's context deadline, when shorter, wins.
const (
	DefaultDialTimeout  = 5 * time.Second
	DefaultReadTimeout  = 2 * time.Second
	DefaultWriteTimeout = 2 * time.Second
)

// maxPoolSize bounds the connection pool whatever the CPU count, so a burst of requests queues in
// the proxy (bounded by PoolTimeout) instead of opening thousands of connections to Redis.
const maxPoolSize = 64

// Store is Portcullis's Redis access. It is safe for concurrent use. The zero value is not
// usable; call New.
type Store struct {
	rdb   *redis.Client
	keys  keys
	addr  string // for messages; never contains credentials
	trips *tripCounter
}

// New builds a Store from c. It checks the configuration but does not connect: Redis may start
// after Portcullis, and Ping says whether it answers.
//
// c.Address is "host:port" or "unix:/path/to/socket". Zero timeouts take the Default values;
// c.KeyPrefix defaults to "pc". Errors never contain the password.
func New(c config.Redis) (*Store, error) {
	opt, err := options(c)
	if err != nil {
		return nil, err
	}
	k, err := newKeys(c.KeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("redis key_prefix: %w", err)
	}
	s := &Store{rdb: redis.NewClient(opt), keys: k, addr: c.Address, trips: &tripCounter{}}
	s.rdb.AddHook(s.trips)
	return s, nil
}

// RoundTrips returns how many requests this Store has sent to Redis so far: a command, a
// pipeline, a transaction and a script count one each (so does setting up a new connection).
// Subscriptions are not counted. It is for tests and measurements of the performance budget.
func (s *Store) RoundTrips() uint64 { return s.trips.n.Load() }

// tripCounter is the go-redis hook behind RoundTrips.
type tripCounter struct{ n atomic.Uint64 }

func (t *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		t.n.Add(1)
		return next(ctx, cmd)
	}
}

func (t *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		t.n.Add(1)
		return next(ctx, cmds)
	}
}

// options translates the configuration into client options, validating what go-redis would
// otherwise accept silently or interpret surprisingly (negative timeouts mean "none" there).
func options(c config.Redis) (*redis.Options, error) {
	if c.Address == "" {
		return nil, ErrNotConfigured
	}
	opt := &redis.Options{
		Username: c.Username,
		Password: c.Password.Reveal(),
		DB:       c.DB,
		// Honour request deadlines on every command, so the proxy's own timeouts bound Redis.
		ContextTimeoutEnabled: true,
		ClientName:            "portcullis",
		// Skip CLIENT SETINFO: it only adds a round trip and an error line on older servers.
		DisableIdentity: true,
		PoolSize:        min(10*runtime.GOMAXPROCS(0), maxPoolSize),
		MaxActiveConns:  maxPoolSize,
		MaxRetries:      1,
		// One dial per attempt: go-redis would otherwise dial five times, 100 ms apart, with
		// dial_timeout each, so a Redis that refuses answered a request after 0.8-1.6 s and
		// one that does not answer after up to 50 s. MaxRetries already tries a command twice.
		DialerRetries: 1,
	}
	if path, ok := strings.CutPrefix(c.Address, "unix:"); ok {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("redis address %q: a unix socket needs an absolute path (unix:/path)", c.Address)
		}
		if c.TLS {
			return nil, fmt.Errorf("redis address %q: tls is not supported over a unix socket", c.Address)
		}
		opt.Network, opt.Addr = "unix", path
	} else {
		host, port, err := splitAddress(c.Address)
		if err != nil {
			return nil, err
		}
		opt.Network, opt.Addr = "tcp", net.JoinHostPort(host, port)
		if c.TLS {
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		}
	}
	if c.DB < 0 {
		return nil, fmt.Errorf("redis db %d: must not be negative", c.DB)
	}
	var errs []error
	for _, t := range []struct {
		name string
		v    config.Duration
		def  time.Duration
		dst  *time.Duration
	}{
		{"dial_timeout", c.DialTimeout, DefaultDialTimeout, &opt.DialTimeout},
		{"read_timeout", c.ReadTimeout, DefaultReadTimeout, &opt.ReadTimeout},
		{"write_timeout", c.WriteTimeout, DefaultWriteTimeout, &opt.WriteTimeout},
	} {
		switch {
		case t.v < 0:
			errs = append(errs, fmt.Errorf("redis %s %v: must not be negative", t.name, t.v.D()))
		case t.v == 0:
			*t.dst = t.def
		default:
			*t.dst = t.v.D()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	opt.PoolTimeout = opt.ReadTimeout + time.Second
	return opt, nil
}

// splitAddress checks a "host:port" address. The address is quoted in errors only when it cannot
// hold credentials: someone who writes a URL with user:password@ there must not see the password
// echoed into logs.
func splitAddress(addr string) (host, port string, err error) {
	if strings.ContainsAny(addr, "@/") {
		return "", "", errors.New(`redis address: want "host:port" or "unix:/path" (not a URL; credentials go in username and password)`)
	}
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("redis address %q: want host:port", addr)
	}
	if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("redis address %q: port must be 1-65535", addr)
	}
	if host == "" {
		return "", "", fmt.Errorf("redis address %q: host is missing", addr)
	}
	return host, port, nil
}

// Ping checks that Redis answers and accepts the credentials. Its error wraps ErrUnavailable and
// the cause.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return s.unavailable("ping", err)
	}
	return nil
}

// Close closes the connections. Calls after Close fail with ErrUnavailable.
func (s *Store) Close() error {
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("close redis %s: %w", s.addr, err)
	}
	return nil
}

// unavailable wraps a failure to reach Redis with the operation and address, marked so callers
// can fail closed. go-redis errors name the address and the server's reply, never the password.
func (s *Store) unavailable(op string, err error) error {
	return fmt.Errorf("redis %s %s: %w: %w", op, s.addr, ErrUnavailable, err)
}
