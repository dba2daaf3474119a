package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// topology is the Redis an end-to-end bed runs against. The same tests run on each (see the
// *Sentinel tests): sign-in and sign-out, the authorisation suite with revocation across two
// processes, step-up and the recovery guard.
type topology int

const (
	oneServer topology = iota // one redis-server
	sentinel                  // a primary, a replica and three sentinels
)

func (t topology) String() string { return [...]string{"one server", "sentinel"}[t] }

// e2eRedis is the Redis a bed started: exactly one of server and sentinel is set.
type e2eRedis struct {
	server   *redistest.Server
	sentinel *redistest.Sentinel
}

func startE2ERedis(t *testing.T, top topology) *e2eRedis {
	t.Helper()
	if top == sentinel {
		return &e2eRedis{sentinel: redistest.StartSentinel(t)}
	}
	return &e2eRedis{server: redistest.Start(t)}
}

// yaml is the connection part of the redis: section, indented two spaces, one key a line.
// Behind Sentinel every change waits for the replica, as a deployment that cares about
// failovers would configure it.
func (r *e2eRedis) yaml() string {
	if r.sentinel != nil {
		return fmt.Sprintf("  sentinel_master: %s\n  addresses: [%s]\n  replica_acks: 1", r.sentinel.Master, strings.Join(r.sentinel.Addrs, ", "))
	}
	return "  address: " + r.server.Addr
}

// config is the same connection for a store the test itself opens (seeding, reading events).
func (r *e2eRedis) config() config.Redis {
	c := config.Redis{ReadTimeout: config.Duration(time.Second), DialTimeout: config.Duration(time.Second)}
	if r.sentinel != nil {
		c.SentinelMaster, c.Addresses, c.ReplicaAcks = r.sentinel.Master, r.sentinel.Addrs, 1
	} else {
		c.Address = r.server.Addr
	}
	return c
}
