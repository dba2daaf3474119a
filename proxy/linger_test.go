package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// TestOwnEndpointRefusesALargeBody: a 10 MB body to an own endpoint gets a 413 the client
// can read, not a connection reset while it is still sending (it used to be cut off).
func TestOwnEndpointRefusesALargeBody(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	for _, path := range []string{"/.portcullis/logout", "/.portcullis/orgs", "/.portcullis/nothing-here"} {
		t.Run(path, func(t *testing.T) { postTooLarge(t, tp.http.Listener.Addr().String(), path) })
	}
	// The admin API's listener: the same.
	api := httptest.NewServer(limitBody(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("the handler ran for a body over the limit")
	}), 1<<20))
	defer api.Close()
	postTooLarge(t, api.Listener.Addr().String(), "/api/v1/orgs")
}

// postTooLarge sends a 10 MB body as fast as the connection takes it while reading the answer,
// which must be a readable 413 body_too_large that closes the connection.
func postTooLarge(t *testing.T, addr, path string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	const size = 10 << 20
	go func() {
		_, _ = io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: portal.example.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		chunk := []byte(strings.Repeat("a", 64<<10))
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("%s: status %d, close %v", path, resp.StatusCode, resp.Close)
	}
	if p := decodeProblem(t, resp); p.Reason != reason.BodyTooLarge {
		t.Errorf("%s: reason %q", path, p.Reason)
	}
}

// TestRefusalWithExpectContinueIsImmediate: a client that asks "Expect: 100-continue" and is
// refused reads the whole refusal at once; the drain (linger) does not hold it for seconds.
func TestRefusalWithExpectContinueIsImmediate(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	for name, head := range map[string]string{
		"own endpoint, 413":      "POST /.portcullis/logout HTTP/1.1\r\nHost: portal.example.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n",
		"chunked, 401":           "POST /admin/x HTTP/1.1\r\nHost: portal.example.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
		"two Authorization, 400": "POST /app/x HTTP/1.1\r\nHost: portal.example.test\r\nAuthorization: a\r\nAuthorization: b\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
		"chunked, no route, 404": "POST /nothing HTTP/1.1\r\nHost: portal.example.test\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
		"body sent anyway, 400":  "POST /app/x HTTP/1.1\r\nHost: portal.example.test\r\nAuthorization: a\r\nAuthorization: b\r\nContent-Length: 10\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", tp.http.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			start := time.Now()
			_, _ = io.WriteString(c, head)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(resp.Body); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > time.Second || resp.ContentLength < 0 {
				t.Errorf("%d, length %d: the whole answer after %v", resp.StatusCode, resp.ContentLength, d)
			}
		})
	}
}
