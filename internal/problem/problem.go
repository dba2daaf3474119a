// Package problem renders the answers Portcullis gives itself (refusals, errors) in one way
// everywhere: an HTML page for a browser navigating, JSON for everything else, always with a
// stable reason code and the request id, never with the cause. Causes are logged by callers.
package problem

import (
	"encoding/json"
	"html/template"
	"net/http"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/page"
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

var body = template.Must(template.New("problem").Parse(`<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Hint}}<p>{{.Hint}}</p>{{end}}
{{if .Action}}<p><a class="button" href="{{.Action}}">{{.ActionText}}</a></p>{{end}}
<p class="meta">Reason: <code>{{.Reason}}</code>{{if .RequestID}} · Request ID: <code>{{.RequestID}}</code>{{end}}</p>`))

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
		title := http.StatusText(p.Status)
		html, err := page.Execute(body, struct {
			Problem
			Title string
		}{p, title})
		if err != nil {
			html = ""
		}
		page.Render(w, r, page.Page{Status: p.Status, Title: title, Body: html, Support: true})
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(p.Status)
	if r == nil || r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(p)
	}
}
