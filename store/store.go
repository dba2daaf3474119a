package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

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

	// acks and ackWait: replicas that must confirm a change (WAIT), and how long to wait for
	// them (in milliseconds, below the read timeout so the reply arrives before it). 0: no WAIT.
	acks, ackWait int
}

// New builds a Store from c. It checks the configuration but does not connect: Redis may start
// after Portcullis, and Ping says whether it answers.
//
// c.Address is "host:port" or "unix:/path/to/socket". Zero timeouts take the Default values;
// c.KeyPrefix defaults to "pc". Errors never contain the password.
//
// With c.SentinelMaster set, the client asks the sentinels in c.Addresses for the current
// primary, and after a failover reconnects to the new one (go-redis's failover client): every
// command goes to the primary, so reads see every change made before them.
func New(c config.Redis) (*Store, error) {
	k, err := newKeys(c.KeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("redis key_prefix: %w", err)
	}
	if c.ReplicaAcks < 0 {
		return nil, fmt.Errorf("redis replica_acks %d: must not be negative", c.ReplicaAcks)
	}
	s := &Store{keys: k, trips: &tripCounter{}}
	if c.SentinelMaster != "" {
		fo, err := failoverOptions(c)
		if err != nil {
			return nil, err
		}
		s.rdb = redis.NewFailoverClient(fo)
		s.addr = fmt.Sprintf("sentinel master %q via %s", c.SentinelMaster, strings.Join(c.Addresses, ","))
		s.ackWait = int(fo.ReadTimeout.Milliseconds() / 2)
	} else {
		opt, err := options(c)
		if err != nil {
			return nil, err
		}
		s.rdb = redis.NewClient(opt)
		s.addr = c.Address
		s.ackWait = int(opt.ReadTimeout.Milliseconds() / 2)
	}
	s.acks = c.ReplicaAcks
	s.rdb.AddHook(s.trips)
	return s, nil
}

// failoverOptions is options for a Sentinel set-up: the same pool, timeouts, TLS and
// credentials for the primary, plus the sentinels' addresses and credentials.
func failoverOptions(c config.Redis) (*redis.FailoverOptions, error) {
	if c.Address != "" {
		return nil, errors.New("redis: address must be empty with sentinel_master (the sentinels in addresses name the primary)")
	}
	if len(c.Addresses) == 0 {
		return nil, errors.New("redis: sentinel_master needs the sentinels' host:port in addresses")
	}
	if strings.HasPrefix(c.SentinelMaster, "unix:") {
		return nil, errors.New("redis: sentinel_master is a name, not an address")
	}
	var sentinels []string
	for _, a := range c.Addresses {
		host, port, err := splitAddress(a)
		if err != nil {
			return nil, fmt.Errorf("redis addresses: %w", err)
		}
		sentinels = append(sentinels, net.JoinHostPort(host, port))
	}
	// The pool, retry and timeout settings are those of a single server; only the address
	// is a placeholder that options requires.
	c.Address = sentinels[0]
	opt, err := options(c)
	if err != nil {
		return nil, err
	}
	fo := &redis.FailoverOptions{
		MasterName:            c.SentinelMaster,
		SentinelAddrs:         sentinels,
		SentinelUsername:      c.SentinelUsername,
		SentinelPassword:      c.SentinelPassword.Reveal(),
		Username:              opt.Username,
		Password:              opt.Password,
		DB:                    opt.DB,
		ClientName:            opt.ClientName,
		ContextTimeoutEnabled: opt.ContextTimeoutEnabled,
		DisableIdentity:       opt.DisableIdentity,
		PoolSize:              opt.PoolSize,
		MaxActiveConns:        opt.MaxActiveConns,
		MaxRetries:            opt.MaxRetries,
		DialerRetries:         opt.DialerRetries,
		DialTimeout:           opt.DialTimeout,
		ReadTimeout:           opt.ReadTimeout,
		WriteTimeout:          opt.WriteTimeout,
		PoolTimeout:           opt.PoolTimeout,
	}
	if c.TLS {
		// No ServerName: the primary changes with every failover, and crypto/tls takes the
		// name from the address each connection dials.
		fo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return fo, nil
}

// waitReplicas queues WAIT on p after the writes it follows, on the same connection (WAIT
// counts the replicas that hold that connection's last write), when replica_acks asks for it;
// it returns nil otherwise. Check the reply with replicated.
func (s *Store) waitReplicas(ctx context.Context, p processor) *redis.IntCmd {
	if s.acks == 0 {
		return nil
	}
	cmd := redis.NewIntCmd(ctx, "wait", s.acks, s.ackWait)
	_ = p.Process(ctx, cmd)
	return cmd
}

// processor is what runs a command on one connection: a pipeline (queued) or a transaction's
// connection (at once).
type processor interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// replicated turns the reply of waitReplicas into an error: ErrNotReplicated (which also wraps
// ErrUnavailable) when fewer replicas confirmed the write than replica_acks asks.
func (s *Store) replicated(op string, wait *redis.IntCmd) error {
	if wait == nil {
		return nil
	}
	n, err := wait.Result()
	if err != nil {
		return s.unavailable(op+": wait for replicas", err)
	}
	if int(n) < s.acks {
		return fmt.Errorf("redis %s %s: %w: %w: %d of %d replicas within %d ms; the change is in effect on the primary, but a failover now would undo it",
			op, s.addr, ErrNotReplicated, ErrUnavailable, n, s.acks, s.ackWait)
	}
	return nil
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

// Addr describes the Redis Portcullis talks to, for messages: the server's address, or the
// Sentinel master's name and the sentinels. It never contains credentials.
func (s *Store) Addr() string { return s.addr }

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

// SetClientLog sends the Redis client library's own messages (a Sentinel naming a new primary,
// a connection it dropped) to l, as warnings, instead of to standard error. It is process-wide,
// as the library's logger is; call it once at start.
func SetClientLog(l *slog.Logger) { redis.SetLogger(clientLog{l}) }

type clientLog struct{ l *slog.Logger }

func (c clientLog) Printf(ctx context.Context, format string, v ...any) {
	c.l.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// TraceWith records a span for every Redis command and pipeline made for a traced request,
// as children of the span in the caller's context (go-redis's OpenTelemetry hook); commands
// of no trace (background work: last-use writes, the audit sinks) are not recorded, rather
// than each starting a trace of its own. Neither the statement (keys name people and
// sessions) nor the caller is recorded. Call it once, before use.
func (s *Store) TraceWith(tp trace.TracerProvider) error {
	return redisotel.InstrumentTracing(s.rdb, redisotel.WithTracerProvider(childOnly{tp}),
		redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false))
}

// childOnly is a tracer provider whose spans are children only: a span started without a
// parent in its context is not recorded.
type childOnly struct{ trace.TracerProvider }

func (p childOnly) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childTracer{p.TracerProvider.Tracer(name, opts...)}
}

type childTracer struct{ trace.Tracer }

func (t childTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, trace.SpanFromContext(ctx) // the no-op span of an untraced context
	}
	return t.Tracer.Start(ctx, name, opts...)
}
