package main

// Protocol upgrades through the real binary (issue 19, item 4): an h2c upgrade never reaches
// the portal, a WebSocket only on a route that allows it, after its authorisation, and its
// tunnel closes when the membership it was opened on is revoked.

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// echoTunnel answers a WebSocket upgrade with 101 and then echoes every byte back.
func echoTunnel(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var upgrades atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "not an upgrade", http.StatusBadRequest)
			return
		}
		upgrades.Add(1)
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		_ = rw.Flush()
		_, _ = io.Copy(conn, rw)
	}))
	t.Cleanup(s.Close)
	return s, &upgrades
}

// dialUpgrade opens a TLS connection to px, sends an upgrade request for path with the
// client's cookies, and returns the connection and the response.
func (c *azClient) dialUpgrade(px *azProxy, path, upgrade string) (net.Conn, *bufio.Reader, *http.Response) {
	t := c.b.t
	t.Helper()
	u, _ := url.Parse(px.base)
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	var cookies []string
	for _, ck := range c.c.Jar.Cookies(u) {
		cookies = append(cookies, ck.Name+"="+ck.Value)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nAccept: application/json\r\nUpgrade: %s\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, u.Host, strings.Join(cookies, "; "), upgrade)
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

func TestE2EUpgrades(t *testing.T) {
	t.Parallel()
	tunnel, upgrades := echoTunnel(t)
	b := newAZBedWith(t, azOptions{extra: func(b *azBed, _ int) string {
		return fmt.Sprintf(`  - name: ws
    path: /ws
    upstream: %s
    websocket: true
    org: {from: path, path_segment: 2}
    require: {verified_email_domain: false}
`, tunnel.URL)
	}})
	px := b.px[0]
	alice, mallory := b.newClient(), b.newClient()
	alice.signIn(px, "alice")
	mallory.signIn(px, "mallory") // no membership anywhere

	t.Run("h2c never reaches the portal", func(t *testing.T) {
		r := alice.do("GET", px.base+"/orgs/acme/home", "", nil, http.Header{"Accept": {"application/json"},
			"Upgrade": {"h2c"}, "Connection": {"Upgrade, HTTP2-Settings"}, "HTTP2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"}})
		s := r.seen()
		if r.status != 200 || s == nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for name := range s.Header {
			if n := strings.ToLower(name); n == "upgrade" || n == "http2-settings" {
				t.Errorf("%s reached the portal", name)
			}
		}
	})

	t.Run("websocket only where the route allows it", func(t *testing.T) {
		before := b.portal.hits.Load()
		conn, _, resp := alice.dialUpgrade(px, "/orgs/acme/home", "websocket")
		conn.Close()
		if resp.StatusCode != 400 || b.portal.hits.Load() != before {
			t.Errorf("a websocket on a route without websocket: %d, portal hits %d", resp.StatusCode, b.portal.hits.Load()-before)
		}
		conn, _, resp = alice.dialUpgrade(px, "/ws/acme/chat", "spdy/3")
		conn.Close()
		if resp.StatusCode != 400 {
			t.Errorf("another protocol: %d", resp.StatusCode)
		}
		// Someone without a membership is refused before the portal is asked.
		n := upgrades.Load()
		conn, _, resp = mallory.dialUpgrade(px, "/ws/acme/chat", "websocket")
		conn.Close()
		if resp.StatusCode != 403 || upgrades.Load() != n {
			t.Errorf("mallory's websocket: %d (upgrades %d)", resp.StatusCode, upgrades.Load()-n)
		}
	})

	t.Run("the tunnel closes when the membership is revoked", func(t *testing.T) {
		conn, br, resp := alice.dialUpgrade(px, "/ws/acme/chat", "websocket")
		defer conn.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("alice's websocket: %d", resp.StatusCode)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "hello\n"); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
			t.Fatalf("echo: %q %v", line, err)
		}
		if _, err := b.orgs.Revoke(context.Background(), "acme", b.user("sub-alice"), azActor, "left"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadString('\n'); err == nil {
			t.Fatal("the tunnel still carries data after the revocation")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the tunnel was not closed within 5s of the revocation")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("closed %s after the revocation", d)
		}
		line := px.proc.waitLog(t, "websocket closed: access ended", 5*time.Second)
		if line["reason"] != "membership_revoked" {
			t.Errorf("logged %v", line)
		}
		// Re-granted for the tests that follow.
		if _, err := b.orgs.Grant(context.Background(), b.aliceMembership(), azActor, "back"); err != nil {
			t.Fatal(err)
		}
	})
}
