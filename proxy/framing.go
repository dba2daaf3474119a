package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// Request framing (RFC 9112 §6): how long a request body is. A front proxy and Portcullis
// that read the same bytes as different requests is request smuggling, so every request
// whose length could be read two ways is refused or ends its connection, and a chunked body
// is read and checked before the portal sees a byte of it.
//
// Go's parser (net/http) has already decided the framing when a handler runs, and keeps only
// its conclusion: a Content-Length sent beside "Transfer-Encoding: chunked" is removed
// (chunked wins, as RFC 9112 §6.3 says), and Transfer-Encoding on an HTTP/1.0 request is
// removed and ignored. Neither leaves a trace Portcullis can see, so the rules below are
// stated on what is left:
//
//   - every chunked request is answered with "Connection: close": RFC 9112 §6.1 lets a server
//     process a request with both headers by its Transfer-Encoding but requires it to close
//     the connection, and since the Content-Length is gone by now, every chunked request is
//     treated as if it had carried one (clients that stream request bodies are rare, and pay
//     one new connection per such request);
//   - an HTTP/1.0 request of a method that carries a body (POST, PUT, PATCH) without a
//     Content-Length is refused (400 bad_framing, connection closed): HTTP/1.0 has no other
//     way to say how long a body is (RFC 1945 §7.2.2), so what follows the header block is
//     either a body the portal would never see or, on a kept-alive connection, the next
//     request;
//   - a chunked body up to server.max_buffered_body is read whole before the upstream is
//     contacted: a malformed one (a bad chunk size or extension, a bare LF, a truncated
//     chunk) is refused with 400 bad_framing and the connection closed, and a good one is
//     forwarded with its exact Content-Length. A longer one is streamed; if its framing
//     breaks later, the upstream connection it was being written to is closed, never reused
//     (net/http's Transport closes a connection whose request write failed).
//
// HTTP/2 has no such ambiguity (DATA frames and END_STREAM), and none of this applies to it.

// framingRefused is the refusal of a request whose framing cannot be trusted; its connection
// is closed after the answer.
func (ex *exchange) framingRefused() error {
	ex.w.Header().Set("Connection", "close")
	return reject(reason.BadFraming)
}

// checkFraming runs before anything else reads the request.
func (ex *exchange) checkFraming() error {
	r := ex.r
	if r.ProtoMajor != 1 {
		return nil
	}
	if r.ProtoMinor == 0 {
		if r.Header["Content-Length"] == nil {
			switch r.Method {
			case http.MethodPost, http.MethodPut, http.MethodPatch:
				return ex.framingRefused()
			}
		}
		if r.ContentLength > 0 {
			// net/http ignores Transfer-Encoding on HTTP/1.0 and reads by Content-Length; a
			// front proxy honouring the chunked coding would read another body. RFC 9112
			// §6.1: close the connection after such a message; we cannot see whether it had
			// one, so every HTTP/1.0 request with a body closes its connection.
			ex.w.Header().Set("Connection", "close")
		}
	}
	if isChunked(r) {
		ex.w.Header().Set("Connection", "close")
	}
	return nil
}

func isChunked(r *http.Request) bool {
	return len(r.TransferEncoding) > 0 && r.TransferEncoding[0] == "chunked"
}

// bufferChunked reads a chunked request body before it is forwarded (see the rules above).
// It runs after the decision, so a refused request never makes Portcullis read its body.
func (ex *exchange) bufferChunked() error {
	r := ex.r
	if r.ProtoMajor != 1 || !isChunked(r) {
		return nil
	}
	limit := int64(ex.st.set.Server.MaxBufferedBody)
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	if err != nil {
		ex.s.log.LogAttrs(r.Context(), slog.LevelInfo, "request body framing error",
			slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID), slog.Any("error", err))
		return ex.framingRefused()
	}
	if n <= limit {
		restoreBody(r, buf.Bytes())
		return nil
	}
	// Longer than the buffer: the part read goes first, the rest streams.
	r.Body = &prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf.Bytes()), r.Body), body: r.Body}
	return nil
}

// prefixedBody is a request body whose first bytes were read already.
type prefixedBody struct {
	io.Reader
	body io.ReadCloser
}

func (b *prefixedBody) Close() error { return b.body.Close() }

// Lingering: a refusal that closes the connection (a body too large, a framing error) is
// answered before the body is read, while the client may still be sending it. Closing at
// once makes the client's TCP stack answer the rest with a reset, which discards the answer
// it has not read yet: the client sees "connection reset", not the 413. So, as nginx does
// (lingering_close), the rest of the body is read and thrown away for a bounded time and
// amount after the answer is sent; then the connection closes.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 64 << 20
)

// linger flushes the answer and discards what is left of r's body, within the bounds above.
// A client that asked "Expect: 100-continue" has sent no body (it waits for a 100 it will not
// get, and reads the refusal instead): there is nothing to drain, and reading would only make
// the server send the 100 after all.
func linger(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, r.Body, lingerBytes)
}
