package session

import (
	"net/http"
	"strings"
	"testing"
)

// referenceCookie is sessionCookie as it was, on net/http's own parser: the in-place reader
// must find exactly what it finds.
func referenceCookie(r *http.Request, name string) (string, error) {
	v := ""
	for _, c := range r.CookiesNamed(name) {
		if v != "" && c.Value != v {
			return "", errAmbiguousCookie
		}
		v = c.Value
	}
	return v, nil
}

var cookieCases = [][]string{
	nil,
	{""},
	{CookieName + "=abc"},
	{"a=1; " + CookieName + "=abc; b=2"},
	{" \t" + CookieName + "=abc \t"},
	{CookieName + " = abc"},
	{CookieName + `="abc"`},
	{CookieName + `="abc`},
	{CookieName + `=""`},
	{CookieName + `="`},
	{CookieName + "=a\\bc"},
	{CookieName + "=a,b c"},
	{CookieName + "=a\x7fb"},
	{CookieName + "=a\x00b; " + CookieName + "=ok"},
	{CookieName + "=abc; " + CookieName + "=abc"},
	{CookieName + "=abc; " + CookieName + "=xyz"},
	{CookieName + "=abc", CookieName + "=xyz"},
	{CookieName + "=; " + CookieName + "=xyz"},
	{CookieName + "=xyz; " + CookieName + "="},
	{CookieName + "=abc; " + CookieName + "=a\"b"},
	{CookieName},
	{CookieName + "=abc=def"},
	{";;; ;" + CookieName + "=abc;;"},
	{strings.ToUpper(CookieName) + "=abc"},
	{"x" + CookieName + "=abc"},
	{CookieName + "x=abc"},
	{CookieName + "=abc;" + strings.Repeat("a=1;", 3000)},
	{CookieName + "=abc;" + strings.Repeat("a=1;", 2998)},
	{CookieName + "=abc", strings.Repeat(";", 2999)},
}

// TestSessionCookieMatchesNetHTTP: the session cookie is read exactly as net/http reads
// cookies (trimming, quotes, invalid bytes, duplicates, the cap on their number at its default:
// GODEBUG httpcookiemaxnum is not followed), so no spelling makes the session reader and the
// rest of Portcullis, which uses net/http's, disagree on which session a request has.
func TestSessionCookieMatchesNetHTTP(t *testing.T) {
	for _, lines := range cookieCases {
		r := &http.Request{Header: http.Header{}}
		if lines != nil {
			r.Header["Cookie"] = lines
		}
		got, gerr := sessionCookie(r, CookieName)
		want, werr := referenceCookie(r, CookieName)
		if got != want || gerr != werr {
			t.Errorf("%.80q: %q, %v; net/http: %q, %v", lines, got, gerr, want, werr)
		}
	}
}

func FuzzSessionCookie(f *testing.F) {
	for _, lines := range cookieCases {
		f.Add(strings.Join(lines, "\n"))
	}
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{Header: http.Header{"Cookie": strings.Split(raw, "\n")}}
		got, gerr := sessionCookie(r, CookieName)
		want, werr := referenceCookie(r, CookieName)
		if got != want || gerr != werr {
			t.Errorf("%q: %q, %v; net/http: %q, %v", raw, got, gerr, want, werr)
		}
	})
}

func BenchmarkSessionCookie(b *testing.B) {
	r := &http.Request{Header: http.Header{"Cookie": {"_ga=GA1.2.3; " + CookieName + "=" + strings.Repeat("a", 43) + "; theme=dark"}}}
	b.ReportAllocs()
	for b.Loop() {
		if v, err := sessionCookie(r, CookieName); err != nil || v == "" {
			b.Fatal(v, err)
		}
	}
}
