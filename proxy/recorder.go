package proxy

import (
	"net/http"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// recorder remembers the status and size of a response for the access log and metrics.
// Unwrap lets http.ResponseController (and so ReverseProxy's WebSocket hijack and flushes)
// reach the real writer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	reason reason.Code // the refusal's code, when the answer was one (problem.ReasonTagger)
}

// TagReason implements problem.ReasonTagger: the code of the refusal written.
func (r *recorder) TagReason(code reason.Code) {
	if r.reason == "" {
		r.reason = code
	}
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	if code == http.StatusSwitchingProtocols {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Flush keeps streaming responses streaming even for callers that type-assert http.Flusher.
func (r *recorder) Flush() {
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusOr200() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
