// Package demoportal is a small stand-in for a legacy B2B portal, used by `portcullis dev` and
// by tests: a home page, an admin area, a billing page, a forgot-password form and a page that
// shows the request headers it received, so one can see exactly what Portcullis forwards.
// It trusts whatever headers arrive, as the legacy portals Portcullis protects do.
package demoportal

import (
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// Portal is the demo portal. Its zero value is not usable; call New.
type Portal struct {
	mux    *http.ServeMux
	mu     sync.Mutex
	resets []string
}

// New returns a demo portal.
func New() *Portal {
	p := &Portal{mux: http.NewServeMux()}
	p.mux.HandleFunc("GET /{$}", p.page("Customer portal", "Welcome to the demo customer portal. Everything here is served by an unmodified legacy application behind Portcullis."))
	p.mux.HandleFunc("GET /admin/", p.page("Admin console", "Manage your organisation's users. Privileged: Portcullis guards it."))
	p.mux.HandleFunc("GET /billing/", p.page("Billing", "Invoices and payment methods."))
	p.mux.HandleFunc("GET /support/", p.page("Support cases", "Open incidents and the partner staff working on them."))
	p.mux.HandleFunc("GET /static/portal.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		_, _ = w.Write([]byte("body{font-family:sans-serif}"))
	})
	p.mux.HandleFunc("GET /static/logo.svg", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "max-age=3600")
		_, _ = w.Write([]byte(logoSVG))
	})
	p.mux.HandleFunc("GET /static/help.html", p.page("Getting help", "Write to it-help@acme.example or call the service desk. Access to Acme's portal is granted by your organisation's administrator."))
	p.mux.HandleFunc("GET /headers", p.headers)
	p.mux.HandleFunc("GET /api/invoices", p.invoices)
	p.mux.HandleFunc("GET /password/reset", p.resetForm)
	p.mux.HandleFunc("POST /password/reset", p.reset)
	return p
}

// logoSVG is the demo brand's logo, shown by Portcullis's own pages (pages.logo_url).
const logoSVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32" width="32" height="32">` +
	`<rect width="32" height="32" rx="6" fill="#0f766e"/><path d="M8 24V8h9a5 5 0 0 1 0 10h-5v6z" fill="#fff"/></svg>`

// ServeHTTP serves the portal.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// Resets returns the addresses password resets were requested for, oldest first.
func (p *Portal) Resets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.resets...)
}

var layout = template.Must(template.New("p").Parse(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{.Title}} · Demo portal</title></head><body>
<nav><a href="/">Home</a> · <a href="/billing/">Billing</a> · <a href="/admin/">Admin</a> · <a href="/support/">Support</a> · <a href="/headers">Headers received</a> · <a href="/password/reset">Forgot password</a></nav>
<h1>{{.Title}}</h1><p>{{.Text}}</p>
{{if .User}}<p>Signed in as <strong>{{.User}}</strong>{{if .Org}} for <strong>{{.Org}}</strong>{{end}}.</p>{{end}}
{{if .Headers}}<table>{{range .Headers}}<tr><th align="left">{{index . 0}}</th><td><code>{{index . 1}}</code></td></tr>{{end}}</table>{{end}}
{{if .Form}}<form method="post" action="/password/reset"><label>Email <input name="email" type="email" required></label> <button>Send reset link</button></form>{{end}}
</body></html>`))

type view struct {
	Title, Text, User, Org string
	Headers                [][2]string
	Form                   bool
}

func render(w http.ResponseWriter, v view) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = layout.Execute(w, v)
}

func (p *Portal) page(title, text string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		render(w, view{Title: title, Text: text, User: r.Header.Get("X-Portcullis-User"), Org: r.Header.Get("X-Portcullis-Org")})
	}
}

func (p *Portal) headers(w http.ResponseWriter, r *http.Request) {
	var hs [][2]string
	for k, vs := range r.Header {
		hs = append(hs, [2]string{k, strings.Join(vs, ", ")})
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i][0] < hs[j][0] })
	hs = append([][2]string{{"(request)", r.Method + " " + r.RequestURI}, {"(host)", r.Host}}, hs...)
	render(w, view{Title: "Headers received", Text: "Exactly what reached the portal.", Headers: hs})
}

// invoices is the portal's API for integrations: it answers who asked, as Portcullis told it.
func (p *Portal) invoices(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"org":      r.Header.Get("X-Portcullis-Org"),
		"caller":   r.Header.Get("X-Portcullis-User"),
		"kind":     r.Header.Get("X-Portcullis-Kind"),
		"sponsor":  r.Header.Get("X-Portcullis-Sponsor"),
		"invoices": []map[string]any{{"id": "INV-2026-11-001", "amount": "1250.00 EUR", "status": "paid"}, {"id": "INV-2026-12-001", "amount": "980.00 EUR", "status": "open"}},
	})
}

func (p *Portal) resetForm(w http.ResponseWriter, r *http.Request) {
	render(w, view{Title: "Forgot password", Text: "We will email you a link to choose a new password.", Form: true})
}

func (p *Portal) reset(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	email := r.PostFormValue("email")
	p.mu.Lock()
	p.resets = append(p.resets, email)
	p.mu.Unlock()
	render(w, view{Title: "Check your inbox", Text: "If an account exists for that address, a reset link is on its way."})
}
