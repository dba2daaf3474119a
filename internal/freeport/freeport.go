// Package freeport finds a loopback TCP port for a test to hand to something that binds it
// later itself (redis-server, Portcullis's Run, a Pebble VA that must know the port first).
//
// Asking the kernel for port 0 and closing the listener is racy: the port is in the
// ephemeral range, and until the real server binds it any outgoing connection on the
// machine (a Redis client, an HTTP client in a parallel test) may be given it as its local
// port, and the server then fails with "address already in use". Ports here come from below
// Linux's default ephemeral range (ip_local_port_range starts at 32768), where the kernel
// never places outgoing connections, chosen at random so that parallel packages rarely pick
// the same one, and checked free by binding before they are returned.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

const (
	low  = 20000 // above the well-known and most registered services' ports
	high = 32768 // Linux's default ip_local_port_range starts here
)

// Get returns a loopback port that was free a moment ago and is outside the range the kernel
// hands to outgoing connections.
func Get() (int, error) { return get(low, high) }

// handed are the ports this process has returned: a port handed to one test and not yet
// bound by its server is free to a bind check, so without this two parallel tests of a
// package could be given the same one.
var handed struct {
	sync.Mutex
	ports map[int]bool
}

func get(low, high int) (int, error) {
	var last error
	handed.Lock()
	defer handed.Unlock()
	if handed.ports == nil {
		handed.ports = map[int]bool{}
	}
	for range 100 {
		p := low + rand.IntN(high-low)
		if handed.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			last = err
			continue
		}
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("freeport: close %d: %w", p, err)
		}
		handed.ports[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port in [%d, %d) after 100 tries: %w", low, high, last)
}

// Addr is Get as a "127.0.0.1:port" address.
func Addr() (string, error) {
	p, err := Get()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}
