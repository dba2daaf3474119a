package session_test

import (
	"net/url"
	"testing"

	"github.com/portcullis-proxy/portcullis/session"
)

// openRedirects are rd values that must never be taken as a return path: the attack table of
// OR-01, OR-02 and OR-04, reused by the sign-in handoff's tests.
var openRedirects = []string{
	"", "//evil.test/", "/\\evil.test", "\\/evil.test", "/%5Cevil.test", "%5C/evil.test", "/%5C/evil.test",
	"%5C%5Cevil.test", "%2F%2Fevil.test", "///evil.test", "////%5C;@evil.test", "/%2F/evil.test", "//%2Fevil.test",
	"/%252F/evil.test", "/%25252F%25252Fevil.test", "/%255Cevil.test",
	// OR-02: whitespace and control characters between slashes, dot segments.
	"/\t/evil.test", "/%09/evil.test", "/%20/evil.test", "/ /evil.test", "/%0B/evil.test", "/%0A/evil.test",
	"/%0D/evil.test", "/%09%09/%09/evil.test", "/%09%09%5C%09/evil.test", "/./%5Cevil.test", "/./../../%5Cevil.test",
	"/.%2E/%2Fevil.test", "/%2E/%2E%2E/%5Cevil.test", "/./evil.test", "/../evil.test", "/a/../../evil.test",
	"/a/%2e%2e/b", "/\x00evil", "/\x7fevil", "\t//evil.test", "/\r\n/evil.test", "/%C2%A0/evil.test",
	// OR-04: schemes and parser differentials.
	"javascript:alert(1)", "JaVaScRiPt:alert(1)", "%19Jav%09asc%09ript:https%20://portal.example.test/%250Aconfirm%25281%2529",
	"data:text/html,<script>alert(1)</script>", "https:/%5Cevil.test", "https:evil.test", "http://portal.example.test/",
	"https://portal.example.test/", "//evil%E3%80%82test", "https://evil%EF%BC%8Etest/", "//evil。test",
	"/%0D%0ASet-Cookie:%20__Host-portcullis=attacker", "/%0ALocation:%20https://evil.test", "/x\r\nLocation: //evil",
	// OR-03 forms, all absolute.
	"https://portal.example.test@evil.test/", "https://evil.test%5C@portal.example.test/",
	// Not paths at all, fragments, broken escapes, too long.
	"evil.test", "app/x", "?q=1", "#x", "/app#//evil.test", "/%", "/%zz", "/" + string(make([]byte, 3000)),
}

// TestSafeRedirect is the attack table of OR-01, OR-02 and OR-04 (OR-03 has no place: only
// relative paths are ever accepted, so no host is compared). Each input is the value of rd as
// the login endpoint sees it, after the query string's own decoding.
func TestSafeRedirect(t *testing.T) {
	for _, rd := range openRedirects {
		if got, ok := session.SafeRedirect(rd); ok {
			t.Errorf("SafeRedirect(%q) = %q, accepted", rd, got)
		}
	}
	good := map[string]string{
		"/":                  "/",
		"/app":               "/app",
		"/app/":              "/app/",
		"/app/x?y=1&z=%2F":   "/app/x?y=1&z=%2F",
		"/app/caf%C3%A9":     "/app/caf%C3%A9",
		"/app/café":          "/app/caf%C3%A9",
		"/app/x?q=a b":       "/app/x?q=a%20b",
		"/app/x?next=//evil": "/app/x?next=//evil", // a query is not a path
		"/a.b/c..d/.e":       "/a.b/c..d/.e",
	}
	for rd, want := range good {
		got, ok := session.SafeRedirect(rd)
		if !ok || got != want {
			t.Errorf("SafeRedirect(%q) = %q, %v; want %q", rd, got, ok, want)
		}
		// What is accepted resolves on our origin, as a browser would resolve it.
		base, _ := url.Parse("https://portal.example.test/start")
		if u, err := base.Parse(got); ok && (err != nil || u.Host != "portal.example.test") {
			t.Errorf("%q resolves to %v", got, u)
		}
	}
}

func FuzzSafeRedirect(f *testing.F) {
	for _, s := range []string{"/app", "//evil", "/%5C", "/./..", "/a?b=//c"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://portal.example.test/start")
	f.Fuzz(func(t *testing.T, rd string) {
		got, ok := session.SafeRedirect(rd)
		if !ok {
			return
		}
		u, err := base.Parse(got)
		if err != nil || u.Host != "portal.example.test" || u.Scheme != "https" {
			t.Fatalf("SafeRedirect(%q) = %q resolves to %v", rd, got, u)
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x21 || c >= 0x7f || c == '\\' {
				t.Fatalf("SafeRedirect(%q) = %q has byte %#x", rd, got, c)
			}
		}
	})
}
