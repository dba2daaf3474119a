package pebbletest

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startDNS starts a resolver that answers every A question with 127.0.0.1 and every other
// question with an empty NOERROR answer, so any test domain resolves to the test process and
// only over IPv4 (the VA dials the first address it gets; answering AAAA ::1 would send it to
// a family the test's listeners do not bind).
//
// It serves UDP and TCP on the same port: the address is handed to Pebble's VA as its custom
// resolver, and the VA queries over TCP; UDP is there for any ordinary client.
func startDNS(t testing.TB) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		for _, q := range req.Question {
			if q.Qtype == dns.TypeA && q.Qclass == dns.ClassINET {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		_ = w.WriteMsg(m)
	})

	// Take a random UDP port, then the same port for TCP; retry if another process holds
	// the TCP side of the port the kernel gave us.
	var pc net.PacketConn
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("pebbletest: dns: listen udp: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		_ = pc.Close()
		if attempt == 20 {
			t.Fatalf("pebbletest: dns: listen tcp beside udp: %v", err)
		}
	}

	servers := []*dns.Server{
		{PacketConn: pc, Handler: handler},
		{Listener: ln, Handler: handler},
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatalf("pebbletest: dns server did not start")
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}
