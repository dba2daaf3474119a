package page

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func render(t *testing.T, b Brand, p Page, method string) *httptest.ResponseRecorder {
	t.Helper()
	SetBrand(b)
	t.Cleanup(func() { SetBrand(Brand{}) })
	w := httptest.NewRecorder()
	Render(w, httptest.NewRequest(method, "/", nil), p)
	return w
}

// TestStyleHash: the CSP allows the inline stylesheet by hash only, so the hash must be of
// exactly the bytes the page carries, or every page would render unstyled.
func TestStyleHash(t *testing.T) {
	w := render(t, Brand{}, Page{Title: "T", Body: "<p>x</p>"}, http.MethodGet)
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no stylesheet in page:\n%s", w.Body)
	}
	sum := sha256.Sum256([]byte(m[1]))
	want := "style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, want) {
		t.Errorf("CSP %q does not allow the page's stylesheet (%s)", csp, want)
	}
	for _, bad := range []string{"unsafe-inline", "script-src", "unsafe-eval"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q contains %s", csp, bad)
		}
	}
	if strings.Count(w.Body.String(), "<style>") != 1 || strings.Contains(w.Body.String(), "style=") {
		t.Error("a page must carry exactly the one stylesheet and no inline style attributes")
	}
}

func TestBrand(t *testing.T) {
	b := Brand{ProductName: "Acme <Portal>", LogoURL: "https://cdn.acme.example/logo.svg",
		SupportEmail: "help@acme.example", SupportURL: "https://support.acme.example/access"}
	w := render(t, b, Page{Status: http.StatusForbidden, Title: "Forbidden", Body: "<p>no</p>", Support: true}, http.MethodGet)
	body := w.Body.String()
	for _, want := range []string{
		"<title>Forbidden · Acme &lt;Portal&gt;</title>",
		`<img src="https://cdn.acme.example/logo.svg" alt="">`,
		`<span>Acme &lt;Portal&gt;</span>`,
		`href="mailto:help@acme.example"`,
		`href="https://support.acme.example/access"`,
		"<p>no</p>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if w.Code != http.StatusForbidden {
		t.Errorf("status %d", w.Code)
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "img-src https://cdn.acme.example;") {
		t.Errorf("CSP %q does not allow the logo's origin (and only it)", csp)
	}
	for h, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
		"X-Frame-Options": "DENY", "Content-Type": "text/html; charset=utf-8", "Referrer-Policy": "same-origin"} {
		if got := w.Header().Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
}

func TestDefaultsAndSupportOnlyWhenAsked(t *testing.T) {
	w := render(t, Brand{SupportEmail: "help@acme.example"}, Page{Title: "Choose", Body: "<p>x</p>"}, http.MethodGet)
	body := w.Body.String()
	if !strings.Contains(body, "<title>Choose · Portcullis</title>") {
		t.Errorf("an unbranded page should read Portcullis:\n%s", body)
	}
	if strings.Contains(body, "<footer") || strings.Contains(body, "<img") {
		t.Errorf("no support footer unless asked, no logo unless configured:\n%s", body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); strings.Contains(csp, "img-src") {
		t.Errorf("CSP %q allows images without a logo", csp)
	}
	w = render(t, Brand{}, Page{Title: "Oops", Body: "<p>x</p>", Support: true}, http.MethodGet)
	if strings.Contains(w.Body.String(), "<footer") {
		t.Error("a support footer without any contact says nothing useful")
	}
}

func TestCSPSources(t *testing.T) {
	for _, tc := range []struct {
		logo, formAction, want, notWant string
	}{
		{"/static/logo.svg", "", "img-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'", ""},
		{"//evil.example/x.png", "", "form-action 'self'", "img-src"},
		{"http://cdn.example/x.png", "", "form-action 'self'", "img-src"},
		{"", NoFormAction, "frame-ancestors 'none'", "form-action"},
		{"", "'self' https://idp.example", "form-action 'self' https://idp.example", "img-src"},
	} {
		got := CSP(Brand{LogoURL: tc.logo}, tc.formAction)
		if !strings.Contains(got, tc.want) || tc.notWant != "" && strings.Contains(got, tc.notWant) {
			t.Errorf("CSP(logo %q, form-action %q) = %q; want it to contain %q and not %q", tc.logo, tc.formAction, got, tc.want, tc.notWant)
		}
		if !strings.HasPrefix(got, "default-src 'none'; ") {
			t.Errorf("CSP %q must start from default-src 'none'", got)
		}
	}
}

func TestHeadHasNoBody(t *testing.T) {
	w := render(t, Brand{}, Page{Status: http.StatusUnauthorized, Title: "T", Body: "<p>x</p>"}, http.MethodHead)
	if w.Code != http.StatusUnauthorized || w.Body.Len() != 0 {
		t.Errorf("HEAD: status %d, %d body bytes", w.Code, w.Body.Len())
	}
}

// TestExecuteEscapes: bodies are html/template output, so values from requests and records
// cannot inject markup.
func TestExecuteEscapes(t *testing.T) {
	tmpl := template.Must(template.New("t").Parse(`<p>{{.}}</p>`))
	got, err := Execute(tmpl, `<script>alert(1)</script>`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(got), "<script>") {
		t.Errorf("Execute did not escape: %s", got)
	}
}

// TestScriptAllowedByHashOnly: a page's one script runs because the CSP names its hash; no
// other script (an injected one) could.
func TestScriptAllowedByHashOnly(t *testing.T) {
	const js = `document.getElementById("f").submit();`
	w := render(t, Brand{}, Page{Title: "T", Body: `<form id="f"></form>`, AutoSubmit: "f"}, http.MethodGet)
	m := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindStringSubmatch(w.Body.String())
	if m == nil || m[1] != js {
		t.Fatalf("script not carried verbatim:\n%s", w.Body)
	}
	sum := sha256.Sum256([]byte(m[1]))
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.HasSuffix(csp, "; script-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") || strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q does not allow exactly the page's script", csp)
	}
}

// TestAutoSubmitOnlyPlainIDs: an id that could break out of the script's string literal gets
// no script at all (and no script-src).
func TestAutoSubmitOnlyPlainIDs(t *testing.T) {
	for _, id := range []string{`f");alert(1);("`, "f g", "f\n", "f'"} {
		w := render(t, Brand{}, Page{Title: "T", Body: `<form id="f"></form>`, AutoSubmit: id}, http.MethodGet)
		if strings.Contains(w.Body.String(), "<script") || strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src") {
			t.Errorf("AutoSubmit %q produced a script", id)
		}
	}
}
