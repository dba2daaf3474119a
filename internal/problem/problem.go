// Package problem renders the answers Portcullis gives itself (refusals, errors) in one way
// everywhere: an HTML page for a browser navigating, JSON for everything else, always with a
// stable reason code and the request id, never with the cause. Causes are logged by callers.
package problem

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
)

// Problem is what the client is told. Reason is a stable code (no_session, path_traversal, …)
// that also appears in logs and metrics; Message is for people; Hint, when set, tells them
// what to do next (whom to ask, where to sign in).
type Problem struct {
	Status  int    `json:"-"`
	Reason  string `json:"error"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	// RequestID lets a user quote the failed request to support. Write fills it from the
	// response's X-Request-Id header when empty.
	RequestID string `json:"request_id,omitempty"`
	// Action, when set, is a same-origin link offered on the HTML page (e.g. sign in again).
	Action     string `json:"-"`
	ActionText string `json:"-"`
}

// New returns a problem with a plain message.
func New(status int, reason, message string) Problem {
	if message == "" {
		message = http.StatusText(status)
	}
	return Problem{Status: status, Reason: reason, Message: message}
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.5rem}code{background:#f1f1f1;padding:0 .25rem}.meta{color:#555;font-size:.9rem}
a.button{display:inline-block;padding:.5rem 1rem;background:#1d4ed8;color:#fff;text-decoration:none;border-radius:.25rem}</style>
</head><body><main>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Hint}}<p>{{.Hint}}</p>{{end}}
{{if .Action}}<p><a class="button" href="{{.Action}}">{{.ActionText}}</a></p>{{end}}
<p class="meta">Reason: <code>{{.Reason}}</code>{{if .RequestID}} · Request ID: <code>{{.RequestID}}</code>{{end}}</p>
</main></body></html>
`))

// WantsHTML reports whether the client is a browser navigating, as opposed to an API client.
func WantsHTML(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// Write renders p: HTML for browsers, JSON for everything else. Headers already set on w
// (WWW-Authenticate, Allow) are kept.
func Write(w http.ResponseWriter, r *http.Request, p Problem) {
	h := w.Header()
	if p.RequestID == "" {
		p.RequestID = h.Get("X-Request-Id")
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusBadRequest {
		// A request we refused to parse may have left bytes we do not trust on the connection.
		h.Set("Connection", "close")
	}
	if r != nil && WantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
		w.WriteHeader(p.Status)
		if r.Method != http.MethodHead {
			_ = page.Execute(w, struct {
				Problem
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
