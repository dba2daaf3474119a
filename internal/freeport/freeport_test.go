package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestGetIsBindableAndOutsideEphemeralRange(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for range 50 {
		p, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if p < low || p >= high {
			t.Fatalf("port %d outside [%d, %d)", p, low, high)
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			t.Fatalf("port %d not bindable: %v", p, err)
		}
		_ = ln.Close()
		seen[p] = true
	}
	if len(seen) != 50 { // a port is handed out once per process
		t.Errorf("%d distinct ports in 50 draws: a port was handed out twice", len(seen))
	}
}

func TestGetSkipsPortsInUse(t *testing.T) {
	t.Parallel()
	// A two-port range with one of them held: get must never return the held one (over 200
	// draws a broken check would return it about 100 times), and returns the other or, when
	// something else on the machine holds that too, an error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := ln.Addr().(*net.TCPAddr).Port
	for range 200 {
		p, err := get(held, held+2)
		if err != nil {
			continue // held+1 busy too: still never held
		}
		if p == held {
			t.Fatalf("get returned port %d, which is held", p)
		}
		if p != held+1 {
			t.Fatalf("get returned %d outside [%d, %d)", p, held, held+2)
		}
	}
}
