package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// byteUpstream is a portal that records, byte for byte, everything each connection sent it,
// and answers each request it can parse with 200 "ok".
type byteUpstream struct {
	ln    net.Listener
	URL   string
	mu    sync.Mutex
	conns []*bytes.Buffer
	reqs  int
}

func newByteUpstream(t *testing.T) *byteUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &byteUpstream{ln: ln, URL: "http://" + ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u
}

func (u *byteUpstream) serve(c net.Conn) {
	defer c.Close()
	rec := &lockedBuffer{mu: &u.mu}
	u.mu.Lock()
	u.conns = append(u.conns, &rec.buf)
	u.mu.Unlock()
	br := bufio.NewReader(io.TeeReader(c, rec))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		u.mu.Lock()
		u.reqs++
		u.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// received is everything the upstream received, over all its connections.
func (u *byteUpstream) received() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var all strings.Builder
	for _, b := range u.conns {
		all.Write(b.Bytes())
	}
	return all.String()
}

func (u *byteUpstream) requests() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.reqs
}

type lockedBuffer struct {
	mu  *sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// exchangeRaw writes req on a new connection and returns every response read back until the
// proxy closes the connection. halfClose ends the client's side after req, so a body cut
// short ends instead of waiting for the read timeout (net/http then cancels a request being
// forwarded: only for requests that must be refused).
func exchangeRaw(t *testing.T, addr, req string, halfClose bool) []*http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for {
		if _, err := br.Peek(1); err != nil {
			return out // closed by the proxy
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d responses: %v", len(out), err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
}

func framingProxy(t *testing.T, extra string) (*testProxy, *byteUpstream) {
	t.Helper()
	up := newByteUpstream(t)
	cfg := loadConfig(t, baseConfig(up.URL, extra))
	cfg.Server.MaxBufferedBody = 1024
	return newTestProxy(t, cfg, Options{}), up
}

const chunkedHead = "POST /app/upload HTTP/1.1\r\nHost: portal.example.test\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"

// TestMalformedChunkedBodyNeverReachesThePortal: a chunked body whose framing is broken is
// refused with 400 bad_framing and the connection closed, before the upstream is contacted:
// not a byte of the request reaches it (it used to receive the started request, and the
// client a 502).
func TestMalformedChunkedBodyNeverReachesThePortal(t *testing.T) {
	tp, up := framingProxy(t, "")
	addr := tp.http.Listener.Addr().String()
	for name, body := range map[string]string{
		"bare LF after the size":     "5\nhello\r\n0\r\n\r\n",
		"bare LF in an extension":    "5;ext\nhello\r\n0\r\n\r\n",
		"CR inside the size line":    "5\r;x\r\nhello\r\n0\r\n\r\n",
		"negative size":              "-5\r\nhello\r\n0\r\n\r\n",
		"size of 2^64-1":             "ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
		"size longer than 16 digits": "10000000000000005\r\nhello\r\n0\r\n\r\n",
		"not hex":                    "5x\r\nhello\r\n0\r\n\r\n",
		"empty size":                 "\r\nhello\r\n0\r\n\r\n",
		"data longer than its size":  "3\r\nhello\r\n0\r\n\r\n",
		"no last chunk":              "5\r\nhello\r\n",
		"cut inside a chunk":         "a\r\nhel",
	} {
		t.Run(name, func(t *testing.T) {
			resps := exchangeRaw(t, addr, chunkedHead+body+"GET /app/next HTTP/1.1\r\nHost: portal.example.test\r\n\r\n", true)
			if len(resps) != 1 {
				t.Fatalf("%d responses; want one, then the connection closed", len(resps))
			}
			resp := resps[0]
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
			}
			if p := decodeProblem(t, resp); p.Reason != reason.BadFraming {
				t.Errorf("reason %q", p.Reason)
			}
		})
	}
	if got := up.received(); got != "" {
		t.Fatalf("the upstream received %q", got)
	}
}

// TestChunkedBodyIsForwardedWithItsLength: a good chunked body up to max_buffered_body
// reaches the portal whole, with a Content-Length and no Transfer-Encoding (chunk extensions
// and trailers stay behind), and the client's connection is closed after the answer.
func TestChunkedBodyIsForwardedWithItsLength(t *testing.T) {
	tp, up := framingProxy(t, "")
	resps := exchangeRaw(t, tp.http.Listener.Addr().String(),
		chunkedHead+"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", false)
	if len(resps) != 1 || resps[0].StatusCode != 200 || !resps[0].Close {
		t.Fatalf("responses %d, first %+v", len(resps), resps)
	}
	got := up.received()
	if !strings.Contains(got, "\r\nContent-Length: 11\r\n") || !strings.HasSuffix(got, "\r\n\r\nhello world") {
		t.Errorf("upstream received %q", got)
	}
	for _, bad := range []string{"Transfer-Encoding", "chunked", "name=value", "X-Trailer"} {
		if strings.Contains(got, bad) {
			t.Errorf("%q reached the upstream: %q", bad, got)
		}
	}
}

// TestLongChunkedBodyStreams: a chunked body longer than max_buffered_body is streamed to
// the portal whole, its first part from the buffer.
func TestLongChunkedBodyStreams(t *testing.T) {
	tp, up := framingProxy(t, "")
	payload := strings.Repeat("0123456789abcdef", 200) // 3200 bytes, over the 1024 limit
	var body strings.Builder
	for i := 0; i < len(payload); i += 500 {
		chunk := payload[i:min(i+500, len(payload))]
		body.WriteString(strconv.FormatInt(int64(len(chunk)), 16) + "\r\n" + chunk + "\r\n")
	}
	body.WriteString("0\r\n\r\n")
	resps := exchangeRaw(t, tp.http.Listener.Addr().String(), chunkedHead+body.String(), false)
	if len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Fatalf("responses %+v", resps)
	}
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(up.received())))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil || string(got) != payload {
		t.Fatalf("upstream body %d bytes (%v), want %d", len(got), err, len(payload))
	}
}

// TestContentLengthAndChunkedClosesTheConnection: a request with both Content-Length and
// Transfer-Encoding is read by its Transfer-Encoding (the Content-Length never reaches the
// portal) and its connection is closed after the answer, so a request pipelined behind it,
// which a front proxy reading the Content-Length would have seen as this one's body, is
// never served (RFC 9112 §6.1; it used to be).
func TestContentLengthAndChunkedClosesTheConnection(t *testing.T) {
	tp, up := framingProxy(t, "")
	smuggled := "GET /admin/secret HTTP/1.1\r\nHost: portal.example.test\r\n\r\n"
	req := "POST /app/upload HTTP/1.1\r\nHost: portal.example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
	resps := exchangeRaw(t, tp.http.Listener.Addr().String(), req, false)
	if len(resps) != 1 || !resps[0].Close {
		t.Fatalf("%d responses, want one and the connection closed", len(resps))
	}
	got := up.received()
	if up.requests() != 1 || strings.Contains(got, "/admin/secret") || strings.Contains(got, "Content-Length: 5") {
		t.Errorf("upstream received %d requests: %q", up.requests(), got)
	}
}

// TestHTTP10BodyWithoutLength: an HTTP/1.0 request has no framing but Content-Length, so a
// body method without one is refused, whatever Transfer-Encoding it claims (net/http ignores
// Transfer-Encoding on HTTP/1.0; the chunked body used to be forwarded as Content-Length: 0).
func TestHTTP10BodyWithoutLength(t *testing.T) {
	tp, up := framingProxy(t, "")
	addr := tp.http.Listener.Addr().String()
	for _, method := range []string{"POST", "PUT", "PATCH"} {
		resps := exchangeRaw(t, addr, method+" /app/upload HTTP/1.0\r\nHost: portal.example.test\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false)
		if len(resps) != 1 || resps[0].StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: responses %+v", method, resps)
		}
		if p := decodeProblem(t, resps[0]); p.Reason != reason.BadFraming {
			t.Errorf("%s: reason %q", method, p.Reason)
		}
	}
	if got := up.received(); got != "" {
		t.Fatalf("the upstream received %q", got)
	}
	// With a Content-Length, and for a GET, HTTP/1.0 works as before.
	resps := exchangeRaw(t, addr, "POST /app/upload HTTP/1.0\r\nHost: portal.example.test\r\nContent-Length: 5\r\n\r\nhello", false)
	if len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Fatalf("POST with a length: %+v", resps)
	}
	if resps := exchangeRaw(t, addr, "GET /app/x HTTP/1.0\r\nHost: portal.example.test\r\n\r\n", false); len(resps) != 1 || resps[0].StatusCode != 200 {
		t.Fatalf("GET: %+v", resps)
	}
}

// TestHTTP10WithBodyClosesTheConnection: net/http reads an HTTP/1.0 body by its
// Content-Length and ignores a Transfer-Encoding; a front proxy honouring it would read
// another body, so such a connection ends after the answer and nothing pipelined behind it is
// served (RFC 9112 §6.1).
func TestHTTP10WithBodyClosesTheConnection(t *testing.T) {
	tp, up := framingProxy(t, "")
	req := "POST /app/upload HTTP/1.0\r\nHost: portal.example.test\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n" +
		"GET /app/pipelined HTTP/1.0\r\nHost: portal.example.test\r\n\r\n"
	if resps := exchangeRaw(t, tp.http.Listener.Addr().String(), req, false); len(resps) != 1 || strings.Contains(up.received(), "/app/pipelined") {
		t.Errorf("%d responses; the upstream received %q", len(resps), up.received())
	}
}
