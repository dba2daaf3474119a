package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of StartSentinel monitor the primary under.
const SentinelMaster = "portcullis-test"

// Sentinel is a Sentinel-managed Redis started for one test: a primary, one replica and three
// sentinels (quorum two), all redis-server processes on loopback, killed when the test ends.
// The sentinels declare the primary down after half a second, so a failover completes within a
// few seconds. Its methods must be called from the test's goroutine.
type Sentinel struct {
	// Master is the monitored name (SentinelMaster), for redis.sentinel_master.
	Master string
	// Addrs are the sentinels' addresses, for redis.addresses.
	Addrs []string
	// Password is the data nodes' password (WithPassword); the sentinels need none.
	Password string

	tb        testing.TB
	nodes     []*process // data nodes: [0] starts as the primary, [1] as its replica
	sentinels []*process
}

// StartSentinel starts the set-up and returns once the replica is in sync and every sentinel
// knows the replica and the other two sentinels, so a failover can happen from the first
// moment. It needs a real redis-server: without one it fails the test when RequireEnv is set and
// skips it otherwise (miniredis has no replication). WithPassword protects the data nodes; other
// options are not supported.
func StartSentinel(tb testing.TB, opts ...Option) *Sentinel {
	tb.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.unixSocket || o.databases != 0 {
		tb.Fatal("redistest: StartSentinel supports only WithPassword")
	}
	bin, err := findBinary()
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			tb.Fatalf("redistest: %s is set, but %v; install it (Debian: apt-get install redis-server)", RequireEnv, err)
		}
		tb.Skipf("redistest: %v; a Sentinel set-up needs a real redis-server", err)
	}
	s := &Sentinel{Master: SentinelMaster, Password: o.password, tb: tb}
	tb.Cleanup(func() {
		for _, p := range append(slices.Clone(s.sentinels), s.nodes...) {
			p.kill()
		}
		if tb.Failed() {
			for i, p := range s.nodes {
				tb.Logf("redistest: log of data node %d (%s):\n%s", i, p.addr(), p.log.String())
			}
			for i, p := range s.sentinels {
				tb.Logf("redistest: log of sentinel %d (%s):\n%s", i, p.addr(), p.log.String())
			}
		}
	})
	// Replication starts without waiting for more replicas (diskless sync delays 5 s by default).
	node := o
	node.extra = []string{"--repl-diskless-sync-delay", "0"}
	if o.password != "" {
		node.extra = append(node.extra, "--masterauth", o.password)
	}
	primary, err := launch(bin, tb.TempDir(), "", node)
	if err != nil {
		tb.Fatalf("redistest: primary: %v", err)
	}
	s.nodes = append(s.nodes, primary)
	rep := node
	rep.extra = append(slices.Clone(node.extra), "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
	replica, err := launch(bin, tb.TempDir(), "", rep)
	if err != nil {
		tb.Fatalf("redistest: replica: %v", err)
	}
	s.nodes = append(s.nodes, replica)

	for i := range 3 {
		dir := tb.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		lines := []string{
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", SentinelMaster, primary.port),
			fmt.Sprintf("sentinel down-after-milliseconds %s 500", SentinelMaster),
			fmt.Sprintf("sentinel failover-timeout %s 3000", SentinelMaster),
			fmt.Sprintf("sentinel parallel-syncs %s 1", SentinelMaster),
		}
		if o.password != "" {
			lines = append(lines, fmt.Sprintf("sentinel auth-pass %s %s", SentinelMaster, o.password))
		}
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		p, err := launch(bin, dir, "", options{sentinelConf: conf})
		if err != nil {
			tb.Fatalf("redistest: sentinel %d: %v", i, err)
		}
		s.sentinels = append(s.sentinels, p)
		s.Addrs = append(s.Addrs, p.addr())
	}
	s.waitReady(30 * time.Second)
	return s
}

// waitReady waits until every sentinel sees the primary, one healthy replica and the two
// other sentinels, and every live replica acknowledges a write to the primary.
func (s *Sentinel) waitReady(timeout time.Duration) {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		last = s.notReady()
		if last == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.tb.Fatalf("redistest: the Sentinel set-up was not ready within %v: %s", timeout, last)
}

func (s *Sentinel) notReady() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	primary := ""
	for i, addr := range s.Addrs {
		c := s.sentinelClient(addr)
		m, err := c.Master(ctx, s.Master).Result()
		if err != nil {
			c.Close()
			return fmt.Sprintf("sentinel %d: %v", i, err)
		}
		if primary == "" {
			primary = m["ip"] + ":" + m["port"]
		} else if primary != m["ip"]+":"+m["port"] {
			c.Close()
			return fmt.Sprintf("sentinels disagree on the primary (%s, %s:%s)", primary, m["ip"], m["port"])
		}
		if m["flags"] != "master" {
			c.Close()
			return fmt.Sprintf("sentinel %d sees the primary as %q", i, m["flags"])
		}
		reps, err := c.Replicas(ctx, s.Master).Result()
		if err != nil {
			c.Close()
			return fmt.Sprintf("sentinel %d: %v", i, err)
		}
		healthy := 0
		for _, r := range reps {
			if r["flags"] == "slave" && r["master-link-status"] == "ok" {
				healthy++
			}
		}
		if healthy == 0 {
			c.Close()
			return fmt.Sprintf("sentinel %d knows no healthy replica", i)
		}
		others, err := c.Sentinels(ctx, s.Master).Result()
		c.Close()
		if err != nil {
			return fmt.Sprintf("sentinel %d: %v", i, err)
		}
		if len(others) < len(s.Addrs)-1 {
			return fmt.Sprintf("sentinel %d knows %d other sentinels", i, len(others))
		}
	}
	// The sentinels' view of a replica can be seconds old: ask the primary itself which
	// replicas are online, so a WAIT right after this finds them.
	want := 0
	for _, p := range s.nodes {
		if p.running() && p.addr() != primary {
			want++
		}
	}
	c := redis.NewClient(&redis.Options{Addr: primary, Password: s.Password, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Sprintf("primary %s: %v", primary, err)
	}
	if online := strings.Count(info, ",state=online,"); online < want {
		return fmt.Sprintf("primary %s has %d of %d replicas online", primary, online, want)
	}
	// Online is not yet acknowledging: a write the replicas confirm (WAIT) is what a test
	// with replica_acks needs. The probe key is removed in the same step.
	const probe = "redistest:ready-probe"
	if err := c.Set(ctx, probe, "1", 0).Err(); err != nil {
		return fmt.Sprintf("primary %s: probe write: %v", primary, err)
	}
	if err := c.Del(ctx, probe).Err(); err != nil {
		return fmt.Sprintf("primary %s: probe delete: %v", primary, err)
	}
	n, err := c.Do(ctx, "WAIT", want, 1000).Int()
	if err != nil {
		return fmt.Sprintf("primary %s: WAIT: %v", primary, err)
	}
	if n < want {
		return fmt.Sprintf("primary %s: %d of %d replicas acknowledged a write", primary, n, want)
	}
	return ""
}

func (s *Sentinel) sentinelClient(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
}

// Primary returns the address the sentinels currently name as the primary.
func (s *Sentinel) Primary() string {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var err error
	for _, addr := range s.Addrs {
		c := s.sentinelClient(addr)
		var a []string
		a, err = c.GetMasterAddrByName(ctx, s.Master).Result()
		c.Close()
		if err == nil {
			return a[0] + ":" + a[1]
		}
	}
	s.tb.Fatalf("redistest: no sentinel names the primary: %v", err)
	return ""
}

// Client returns a failover client for the set-up (database 0), closed when the test ends.
func (s *Sentinel) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName: s.Master, SentinelAddrs: s.Addrs, Password: s.Password,
		MaxRetries: 1, DialTimeout: 2 * time.Second, ContextTimeoutEnabled: true,
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// NodeClient returns a plain client of the data node at addr (a primary or a replica), closed
// when the test ends: for reading what one node holds.
func (s *Sentinel) NodeClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: s.Password, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	tb.Cleanup(func() { c.Close() })
	return c
}

// Nodes returns the data nodes' addresses.
func (s *Sentinel) Nodes() []string {
	var a []string
	for _, p := range s.nodes {
		a = append(a, p.addr())
	}
	return a
}

// node returns the data node at addr.
func (s *Sentinel) node(addr string) *process {
	s.tb.Helper()
	for _, p := range s.nodes {
		if p.addr() == addr {
			return p
		}
	}
	s.tb.Fatalf("redistest: %s is not a data node of this set-up", addr)
	return nil
}

// KillPrimary kills the current primary (SIGKILL: no goodbye to its clients or replicas) and
// returns its address. The sentinels notice within about half a second and promote the replica;
// WaitFailover waits for that.
func (s *Sentinel) KillPrimary() string {
	s.tb.Helper()
	addr := s.Primary()
	s.node(addr).kill()
	return addr
}

// WaitFailover waits until every sentinel names a primary other than old and that node answers
// as a primary, and returns its address.
func (s *Sentinel) WaitFailover(old string, timeout time.Duration) string {
	s.tb.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		last = s.promoted(old)
		if strings.HasPrefix(last, "ok ") {
			return strings.TrimPrefix(last, "ok ")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.tb.Fatalf("redistest: no failover from %s within %v: %s", old, timeout, last)
	return ""
}

func (s *Sentinel) promoted(old string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	now := ""
	for i, addr := range s.Addrs {
		c := s.sentinelClient(addr)
		a, err := c.GetMasterAddrByName(ctx, s.Master).Result()
		c.Close()
		if err != nil {
			return fmt.Sprintf("sentinel %d: %v", i, err)
		}
		got := a[0] + ":" + a[1]
		if got == old {
			return fmt.Sprintf("sentinel %d still names %s", i, old)
		}
		if now != "" && got != now {
			return fmt.Sprintf("sentinels disagree (%s, %s)", now, got)
		}
		now = got
	}
	c := redis.NewClient(&redis.Options{Addr: now, Password: s.Password, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return fmt.Sprintf("new primary %s: %v", now, err)
	}
	if len(role) == 0 || role[0] != "master" {
		return fmt.Sprintf("new primary %s answers ROLE %v", now, role)
	}
	return "ok " + now
}

// RestartNode starts the killed data node at addr again, empty, as a replica of the current
// primary, and waits until the sentinels see it in sync. The set-up can then fail over again.
func (s *Sentinel) RestartNode(addr string) {
	s.tb.Helper()
	p := s.node(addr)
	primary := s.Primary()
	_, port, _ := strings.Cut(primary, ":")
	extra := []string{"--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", port}
	if s.Password != "" {
		extra = append(extra, "--masterauth", s.Password)
	}
	p.opts.extra = extra
	if err := p.restart(10 * time.Second); err != nil {
		s.tb.Fatalf("redistest: restart %s: %v", addr, err)
	}
	s.waitReady(30 * time.Second)
}
