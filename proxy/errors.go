package proxy

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
)

// Reason codes for the answers the proxy itself gives. They appear in the page, the JSON body,
// the access log and metrics; they are stable and never contain request data.
const (
	reasonNotFound         = "no_route"
	reasonMethodNotAllowed = "method_not_allowed"
	reasonBadHost          = "bad_host"
	reasonBadRequest       = "bad_request"
	reasonNoSession        = "no_session"
	reasonUpstreamDown     = "upstream_unavailable"
	reasonUpstreamTimeout  = "upstream_timeout"
	reasonNotReady         = "not_ready"
	reasonDuplicateAuthz   = "duplicate_authorization"
)

// problem is what the client is told about a request the proxy answers itself. The cause of
// the problem (an error string, a stack) is logged, never put here.
type problem struct {
	Status  int    `json:"-"`
	Reason  string `json:"error"`
	Message string `json:"message"`
	// RequestID lets a user quote the failed request to support.
	RequestID string `json:"request_id,omitempty"`
}

var messages = map[string]string{
	reasonNotFound:         "There is nothing at this address.",
	reasonMethodNotAllowed: "This address does not accept that kind of request.",
	reasonBadHost:          "The requested host name is not valid.",
	reasonBadRequest:       "The request could not be understood.",
	reasonNoSession:        "You need to sign in to reach this page.",
	reasonUpstreamDown:     "The application behind this address is not answering. Try again in a moment.",
	reasonUpstreamTimeout:  "The application behind this address took too long to answer. Try again in a moment.",
	reasonNotReady:         "The service is starting or a dependency is unavailable.",
	reasonDuplicateAuthz:   "The request carries more than one Authorization header.",
}

func newProblem(status int, reason string) problem {
	msg, ok := messages[reason]
	if !ok {
		// Path rejections share one message; their reason code says which rule.
		if strings.HasPrefix(reason, "path_") {
			msg = "The address contains characters or sequences that are not allowed."
		} else {
			msg = http.StatusText(status)
		}
	}
	return problem{Status: status, Reason: reason, Message: msg}
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.5rem}code{background:#f1f1f1;padding:0 .25rem}.meta{color:#555;font-size:.9rem}</style>
</head><body><main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
<p class="meta">Reason: <code>{{.Reason}}</code>{{if .RequestID}} · Request ID: <code>{{.RequestID}}</code>{{end}}</p>
</main></body></html>
`))

// wantsHTML reports whether the client is a browser navigating, as opposed to an API client.
func wantsHTML(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// writeProblem is the one place that renders the proxy's own error answers: HTML for browsers,
// JSON for everything else.
func writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusBadRequest {
		// A request we refused to parse may have left bytes we do not trust on the connection.
		h.Set("Connection", "close")
	}
	if r != nil && wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		w.WriteHeader(p.Status)
		if r.Method != http.MethodHead {
			_ = pageTmpl.Execute(w, struct {
				problem
				Title string
			}{p, http.StatusText(p.Status)})
		}
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(p.Status)
	if r == nil || r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(p)
	}
}
