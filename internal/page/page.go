// Package page renders the HTML pages Portcullis shows people itself (refusals, errors, the
// organisation picker, step-up, sign-out) in one layout: one small stylesheet embedded in the
// binary, the operator's branding (pages: in the configuration), and a strict
// Content-Security-Policy that allows exactly that stylesheet and no script at all.
package page

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

//go:embed style.css
var styleSheet string

// styleSource is the CSP source allowing the inline stylesheet, by its hash: no
// 'unsafe-inline', so markup injected into a page could not style (or hide) anything either.
var styleSource = hashSource(styleSheet)

// hashSource is the CSP source allowing exactly the inline element whose text is s.
func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Brand is how the pages present themselves. The configuration validates the values
// (config.Pages): links are https URLs or same-origin paths.
type Brand struct {
	// ProductName is shown at the top of every page and in its title; empty means
	// "Portcullis".
	ProductName string
	// LogoURL is an image shown beside the product name; empty shows none.
	LogoURL string
	// SupportEmail and SupportURL are offered on refusals and errors as where to get help.
	SupportEmail, SupportURL string
}

var brand atomic.Pointer[Brand]

// SetBrand sets the branding of every page this process renders from now on. It is
// process-wide like the logger: the serve command sets it from the configuration at start and
// at every accepted reload.
func SetBrand(b Brand) { brand.Store(&b) }

// CurrentBrand returns the branding pages are rendered with.
func CurrentBrand() Brand {
	if b := brand.Load(); b != nil {
		return *b
	}
	return Brand{}
}

// Page is one page to render.
type Page struct {
	// Status is the HTTP status; 0 means 200.
	Status int
	// Title names the page (the browser tab reads "Title · ProductName").
	Title string
	// Body is the page's content, rendered by the caller with html/template (so escaped).
	Body template.HTML
	// FormAction lists the CSP form-action sources: "" means 'self'. Browsers apply
	// form-action to every redirect after a submission, so a form whose answer redirects on
	// to the provider must allow it (or use NoFormAction).
	FormAction string
	// Support shows the support contact, on pages where something went wrong.
	Support bool
	// AutoSubmit, when set, is the id of a form in Body that the page submits at once (the
	// person can still press its button without script): one inline script, allowed by its
	// hash and nothing else. Ids are the callers' constants: letters, digits and "-".
	AutoSubmit string
	// Brand, when set, is the brand of this page instead of the current one: a page that is
	// not the portal's (the development identity provider's sign-in).
	Brand *Brand
}

// submitScript is the script submitting the form with the given id, or "" for an id that is
// not a plain constant (nothing is then put in a script).
func submitScript(id string) string {
	if id == "" || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
		return ""
	}
	return `document.getElementById("` + id + `").submit();`
}

// NoFormAction, as Page.FormAction, leaves form-action out of the policy: for a form posting
// here whose answer redirects to wherever the provider sends the browser next.
const NoFormAction = "-"

var layout = template.Must(template.New("layout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}} · {{.Product}}</title>
<style>{{.CSS}}</style>
</head><body>
<header class="brand">{{if .Logo}}<img src="{{.Logo}}" alt="">{{end}}<span>{{.Product}}</span></header>
<main>
{{.Body}}
</main>
{{- if .Script}}
<script>{{.Script}}</script>
{{- end}}
{{- if .Support}}
<footer><p>Need help?{{if .Email}} Write to <a href="mailto:{{.Email}}">{{.Email}}</a>{{end}}{{if and .Email .URL}} or see{{end}}{{if .URL}} <a href="{{.URL}}">the support page</a>{{end}}.</p></footer>
{{- end}}
</body></html>
`))

// Render writes p with the current brand and the headers every own page carries: no caching,
// no sniffing, no framing, and a CSP allowing only the embedded stylesheet and the logo.
func Render(w http.ResponseWriter, r *http.Request, p Page) {
	b := CurrentBrand()
	if p.Brand != nil {
		b = *p.Brand
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Not no-referrer: with it, browsers send "Origin: null" on the pages' own form posts,
	// which the CSRF checks rightly refuse. same-origin still tells a logo's or support
	// site's host nothing about where the person was.
	h.Set("Referrer-Policy", "same-origin")
	csp := CSP(b, p.FormAction)
	script := submitScript(p.AutoSubmit)
	if script != "" {
		csp += "; script-src " + hashSource(script)
	}
	h.Set("Content-Security-Policy", csp)
	status := p.Status
	if status == 0 {
		status = http.StatusOK
	}
	if r != nil && r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	var buf bytes.Buffer
	err := layout.Execute(&buf, layoutData{
		Title: p.Title, Product: productName(b), Logo: b.LogoURL, CSS: template.CSS(styleSheet), Body: p.Body,
		Support: p.Support && (b.SupportEmail != "" || b.SupportURL != ""), Email: b.SupportEmail, URL: b.SupportURL,
		Script: template.JS(script), //nolint:gosec // built from a checked constant id, never request data
	})
	if err != nil {
		// Only a broken template gets here; say so plainly rather than send half a page.
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	// A definite length: the answer is complete on the wire as soon as it is flushed, even
	// while the handler still drains a refused request's body (proxy linger).
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type layoutData struct {
	Title, Product, Logo, Email, URL string
	CSS                              template.CSS
	Script                           template.JS
	Body                             template.HTML
	Support                          bool
}

func productName(b Brand) string {
	if b.ProductName == "" {
		return "Portcullis"
	}
	return b.ProductName
}

// CSP is the Content-Security-Policy of a page rendered with brand b; formAction as in
// Page.FormAction.
func CSP(b Brand, formAction string) string {
	var sb strings.Builder
	sb.WriteString("default-src 'none'; style-src ")
	sb.WriteString(styleSource)
	if src := imageSource(b.LogoURL); src != "" {
		sb.WriteString("; img-src ")
		sb.WriteString(src)
	}
	sb.WriteString("; base-uri 'none'; frame-ancestors 'none'")
	switch formAction {
	case NoFormAction:
	case "":
		sb.WriteString("; form-action 'self'")
	default:
		sb.WriteString("; form-action ")
		sb.WriteString(formAction)
	}
	return sb.String()
}

// imageSource is the CSP source of the logo: 'self' for a path, its origin for a URL.
func imageSource(logo string) string {
	if logo == "" {
		return ""
	}
	if strings.HasPrefix(logo, "/") && !strings.HasPrefix(logo, "//") {
		return "'self'"
	}
	u, err := url.Parse(logo)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "" // config validation refuses these; no source means the image is not loaded
	}
	return "https://" + u.Host
}

// Execute renders t with data into an HTML fragment for Page.Body.
func Execute(t *template.Template, data any) (template.HTML, error) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return "", err
	}
	return template.HTML(buf.String()), nil //nolint:gosec // html/template output, already escaped
}
