// Package problem renders the answers Portcullis gives itself (refusals, errors, the step-up
// challenge) in one way everywhere: an HTML page for a browser navigating, JSON for
// everything else, always with a stable reason code (package reason's table) and the request
// id, never with the cause. Handlers return an *Error; the one place that writes it also logs
// its cause.
package problem

import (
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// Problem is what the client is told. Reason is a stable code that also appears in logs and
// metrics; Message is for people; Hint, when set, tells them what to do next (whom to ask,
// where to sign in).
type Problem struct {
	Status  int         `json:"-"`
	Reason  reason.Code `json:"error"`
	Message string      `json:"message"`
	Hint    string      `json:"hint,omitempty"`
	// Challenge, on a step-up refusal, is the RFC 9470 challenge: its fields join the JSON
	// answer and the WWW-Authenticate header.
	*Challenge
	// RequestID lets a user quote the failed request to support. Write fills it from the
	// response's X-Request-Id header when empty.
	RequestID string `json:"request_id,omitempty"`
	// Action, when set, is a same-origin link offered on the HTML page (e.g. sign in again);
	// Return, when set, is added to it as the rd parameter (where to come back to).
	Action     string `json:"-"`
	ActionText string `json:"-"`
	Return     string `json:"-"`
	// Bearer, when set, is the RFC 6750 error of the WWW-Authenticate challenge (from the
	// reason table).
	Bearer string `json:"-"`
	// Page, when set, is the page browsers get instead of the generic problem page (the
	// step-up interstitial); its Status is the problem's.
	Page *page.Page `json:"-"`
}

// Challenge is a step-up demand as RFC 9470 states it to API clients, with what a client
// needs to tell its user.
type Challenge struct {
	Route string `json:"route"`
	Org   string `json:"org,omitempty"`
	// ACRValues are the acceptable acr values and AMR the required amr methods, each
	// space-separated as RFC 9470's acr_values is.
	ACRValues string `json:"acr_values,omitempty"`
	AMR       string `json:"amr,omitempty"`
	// MaxAge is how recent the authentication must be, in seconds.
	MaxAge int64 `json:"max_age"`
}

// header is the WWW-Authenticate challenge of RFC 9470.
func (c *Challenge) header() string {
	v := `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required"`
	if c.ACRValues != "" {
		// Config validation keeps quotes and spaces out of acr values.
		v += `, acr_values="` + c.ACRValues + `"`
	}
	return v + ", max_age=" + strconv.FormatInt(c.MaxAge, 10)
}

// New is the problem for code, as the table states it, with no facts named.
func New(code reason.Code) Problem { return For(code, reason.Facts{}) }

// For is the problem for code, its message naming facts f (reason.Spec.Text).
func For(code reason.Code, f reason.Facts) Problem {
	s := reason.Of(code)
	return Problem{Status: s.Status, Reason: code, Message: s.Text(f), Hint: s.Hint, Action: s.Action, ActionText: s.ActionText, Bearer: s.Bearer}
}

var body = template.Must(template.New("problem").Parse(`<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Hint}}<p>{{.Hint}}</p>{{end}}
{{if .Action}}<p><a class="button" href="{{.Action}}">{{.ActionText}}</a></p>{{end}}
<p class="meta">Reason: <code>{{.Reason}}</code>{{if .RequestID}} · Request ID: <code>{{.RequestID}}</code>{{end}}</p>`))

// ReasonTagger is a ResponseWriter that carries the code of a refusal outside its body
// (the proxy's forward-auth answers, for an ingress that drops the body). Write tells it.
type ReasonTagger interface {
	TagReason(code reason.Code)
}

// WantsHTML reports whether the client is a browser navigating, as opposed to an API client.
func WantsHTML(r *http.Request) bool {
	if r.Header.Get("Sec-Fetch-Mode") == "navigate" {
		return true
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// Write renders p: HTML for browsers, JSON for everything else. Headers already set on w
// (Allow, Retry-After) are kept. A 401 always carries a challenge: the step-up's when p has
// one (RFC 9470), else `Bearer realm="portcullis"` unless the caller set another.
func Write(w http.ResponseWriter, r *http.Request, p Problem) {
	h := w.Header()
	if p.RequestID == "" {
		p.RequestID = h.Get("X-Request-Id")
	}
	if t, ok := w.(ReasonTagger); ok {
		t.TagReason(p.Reason)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch {
	case p.Challenge != nil:
		h.Set("WWW-Authenticate", p.Challenge.header())
	case p.Bearer != "":
		// RFC 6750 §3: the error code, and the message (table text: no quotes) to describe it.
		h.Set("WWW-Authenticate", `Bearer realm="portcullis", error="`+p.Bearer+`", error_description="`+quotable(p.Message)+`"`)
	case p.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "":
		h.Set("WWW-Authenticate", `Bearer realm="portcullis"`)
	}
	if p.Status == http.StatusBadRequest {
		// A request we refused to parse may have left bytes we do not trust on the connection.
		h.Set("Connection", "close")
	}
	if r != nil && WantsHTML(r) {
		if p.Page != nil {
			pg := *p.Page
			pg.Status = p.Status
			page.Render(w, r, pg)
			return
		}
		if p.Action != "" && p.Return != "" {
			p.Action += "?rd=" + url.QueryEscape(p.Return)
		}
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
	b, _ := json.Marshal(p)
	b = append(b, '\n')
	// A definite length: the answer is complete on the wire as soon as it is flushed, even
	// while the handler still drains a refused request's body (proxy linger).
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(p.Status)
	if r == nil || r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// Error is a refusal a handler returns instead of writing it: what the client is told
// (Problem) and what is logged (Msg, at Level, with Cause and Attrs). Fail logs and writes it.
type Error struct {
	Problem
	// Msg is the log message ("sign-in refused"); Level its level.
	Msg   string
	Level slog.Level
	// Cause is why, for the log only; never shown.
	Cause error
	// Attrs are further log attributes (user, session, route).
	Attrs []slog.Attr
}

// Error returns the code and the cause, for logs and tests.
func (e *Error) Error() string {
	if e.Cause == nil {
		return string(e.Reason)
	}
	return string(e.Reason) + ": " + e.Cause.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Cause }

// Refuse returns the refusal for code, logged at Info as msg with cause (a fixed phrase,
// never request data).
func Refuse(code reason.Code, msg, cause string, attrs ...slog.Attr) *Error {
	var err error
	if cause != "" {
		err = errors.New(cause)
	}
	return &Error{Problem: New(code), Msg: msg, Level: slog.LevelInfo, Cause: err, Attrs: attrs}
}

// Outage returns the refusal for an outage of what op needed (store_unavailable,
// idp_unavailable, internal_error), logged at Error as msg with err.
func Outage(code reason.Code, msg, op string, err error, attrs ...slog.Attr) *Error {
	if op != "" {
		attrs = append([]slog.Attr{slog.String("op", op)}, attrs...)
	}
	return &Error{Problem: New(code), Msg: msg, Level: slog.LevelError, Cause: err, Attrs: attrs}
}

// At returns e logged at level instead.
func (e *Error) At(level slog.Level) *Error {
	e.Level = level
	return e
}

// Fail is the one place a refusal returned by a handler is logged and written. An error that
// is not an *Error is an internal error: its text is logged, never shown.
func Fail(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = Outage(reason.InternalError, "internal error", "", err)
	}
	if e.Msg != "" {
		attrs := make([]slog.Attr, 0, len(e.Attrs)+2)
		attrs = append(attrs, slog.String("reason", string(e.Reason)))
		if e.Cause != nil {
			key := "cause"
			if e.Level >= slog.LevelError {
				key = "error"
			}
			attrs = append(attrs, slog.String(key, e.Cause.Error()))
		}
		log.LogAttrs(r.Context(), e.Level, e.Msg, append(attrs, e.Attrs...)...)
	}
	Write(w, r, e.Problem)
}

// quotable makes s safe inside a quoted-string of a challenge: no quote, backslash or
// control character survives.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r == 0x7f {
			return '\''
		}
		return r
	}, s)
}
