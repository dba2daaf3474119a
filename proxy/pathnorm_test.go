package proxy

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// normCase is one normalizePath expectation. With reason set, path and escaped are ignored;
// with escaped empty, it is expected to equal path.
type normCase struct {
	name    string
	raw     string
	strip   bool
	path    string
	escaped string
	reason  reason.Code
}

func runNormCases(t *testing.T, cases []normCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, e, code := normalizePath(tc.raw, tc.strip)
			if code != tc.reason {
				t.Fatalf("normalizePath(%q, %v) reason = %q, want %q (path %q, escaped %q)",
					tc.raw, tc.strip, code, tc.reason, p, e)
			}
			if tc.reason != "" {
				if p != "" || e != "" {
					t.Errorf("rejected path returned path %q, escaped %q; want empty", p, e)
				}
				return
			}
			wantE := tc.escaped
			if wantE == "" {
				wantE = tc.path
			}
			if p != tc.path || e != wantE {
				t.Errorf("normalizePath(%q, %v) = %q, %q; want %q, %q", tc.raw, tc.strip, p, e, tc.path, wantE)
			}
			checkNormalInvariants(t, tc.raw, tc.strip, p, e)
		})
	}
}

// checkNormalInvariants asserts what every accepted path must satisfy; the fuzz target and
// the tables share it.
func checkNormalInvariants(t *testing.T, raw string, strip bool, p, e string) {
	t.Helper()
	if !strings.HasPrefix(p, "/") || !strings.HasPrefix(e, "/") {
		t.Fatalf("%q: results %q, %q do not start with /", raw, p, e)
	}
	if strings.Contains(p, "//") || strings.Contains(e, "//") {
		t.Fatalf("%q: results %q, %q contain //", raw, p, e)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." {
			t.Fatalf("%q: result %q has a dot segment", raw, p)
		}
	}
	if strings.ContainsRune(p, '\\') || strings.ContainsRune(e, '\\') {
		t.Fatalf("%q: results %q, %q contain a backslash", raw, p, e)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			t.Fatalf("%q: result %q has a control byte", raw, p)
		}
	}
	if !utf8.ValidString(p) {
		t.Fatalf("%q: result %q is not valid UTF-8", raw, p)
	}
	if !strip && strings.ContainsRune(p, ';') {
		t.Fatalf("%q: result %q has a ';' though params are rejected", raw, p)
	}
	u := url.URL{Path: p, RawPath: e}
	if got := u.EscapedPath(); got != e {
		t.Fatalf("%q: url.URL{Path: %q, RawPath: %q}.EscapedPath() = %q; the forwarded path would differ", raw, p, e, got)
	}
	if dec, err := url.PathUnescape(e); err != nil || dec != p {
		t.Fatalf("%q: PathUnescape(%q) = %q, %v; want %q", raw, e, dec, err, p)
	}
	// Idempotent: the forwarded form is already normal, so an upstream normalising it again
	// (or a second proxy) sees the same path.
	p2, e2, code := normalizePath(e, strip)
	if code != "" || p2 != p || e2 != e {
		t.Fatalf("%q: normalising the output %q again gave %q, %q, %q; want %q, %q", raw, e, p2, e2, code, p, e)
	}
}

func TestNormalizePathBasics(t *testing.T) {
	runNormCases(t, []normCase{
		{name: "root", raw: "/", path: "/"},
		{name: "plain", raw: "/admin/users", path: "/admin/users"},
		{name: "trailing slash kept", raw: "/admin/", path: "/admin/"},
		{name: "sub-delims kept raw", raw: "/a/b!$&'()*+,=:@[x]~-_.z", path: "/a/b!$&'()*+,=:@[x]~-_.z"},
		{name: "dot file is not a dot segment", raw: "/.well-known/x", path: "/.well-known/x"},
		{name: "three dots is not a dot segment", raw: "/a/.../b", path: "/a/.../b"},
		{name: "dotted name", raw: "/a/..b/c.", path: "/a/..b/c."},
		{name: "empty", raw: "", reason: reason.PathInvalid},
		{name: "relative", raw: "admin", reason: reason.PathInvalid},
		{name: "asterisk-form", raw: "*", reason: reason.PathInvalid},
		{name: "absolute-form", raw: "http://evil/admin", reason: reason.PathInvalid},
		{name: "raw query mark", raw: "/a?b", reason: reason.PathInvalid},

		// Dot segments (RFC 3986 5.2.4), resolved after decoding.
		{name: "dot", raw: "/a/./b", path: "/a/b"},
		{name: "dotdot", raw: "/a/../b", path: "/b"},
		{name: "final dot keeps slash", raw: "/admin/.", path: "/admin/"},
		{name: "final dotdot keeps slash", raw: "/a/b/..", path: "/a/"},
		{name: "dotdot to root", raw: "/admin/..", path: "/"},
		{name: "lone dot", raw: "/.", path: "/"},
		{name: "dot slash", raw: "/./", path: "/"},
		{name: "traversal above root", raw: "/..", reason: reason.PathTraversal},
		{name: "traversal above root later", raw: "/a/../..", reason: reason.PathTraversal},
		{name: "traversal above root deep", raw: "/a/b/../../../etc/passwd", reason: reason.PathTraversal},
		{name: "traversal encoded", raw: "/%2e%2e/x", reason: reason.PathTraversal},

		// Empty segments collapse.
		{name: "leading double slash", raw: "//admin", path: "/admin"},
		{name: "inner double slash", raw: "/admin//users", path: "/admin/users"},
		{name: "trailing double slash", raw: "/admin//", path: "/admin/"},
		{name: "only slashes", raw: "////", path: "/"},

		// Escapes.
		{name: "unreserved escape decoded", raw: "/%61dmin", path: "/admin"},
		{name: "unreserved escapes upper and lower", raw: "/%41%2D%5f%7E%2e%30", path: "/A-_~.0"},
		{name: "reserved escape kept upper-case", raw: "/a%3db%40c", path: "/a=b@c", escaped: "/a%3Db%40c"},
		{name: "space kept encoded", raw: "/a%20b", path: "/a b", escaped: "/a%20b"},
		{name: "percent kept encoded", raw: "/100%25", path: "/100%", escaped: "/100%25"},
		{name: "percent then non-hex", raw: "/100%25off/x", path: "/100%off/x", escaped: "/100%25off/x"},
		{name: "percent then one hex", raw: "/%25a/", path: "/%a/", escaped: "/%25a/"},
		{name: "percent then hex across slash", raw: "/%25a/b", path: "/%a/b", escaped: "/%25a/b"},
		{name: "utf-8 kept encoded", raw: "/caf%c3%a9", path: "/café", escaped: "/caf%C3%A9"},
		{name: "utf-8 4 bytes", raw: "/%F0%9F%94%92", path: "/\U0001F512", escaped: "/%F0%9F%94%92"},
		{name: "replacement char is valid", raw: "/%EF%BF%BD", path: "/\uFFFD", escaped: "/%EF%BF%BD"},
		{name: "browser-unescaped chars encoded", raw: "/a|b^c{d}e\"f<g>h`i", path: "/a|b^c{d}e\"f<g>h`i",
			escaped: "/a%7Cb%5Ec%7Bd%7De%22f%3Cg%3Eh%60i"},
		{name: "already-normal escapes reused", raw: "/a%20b/%C3%A9", path: "/a b/é", escaped: "/a%20b/%C3%A9"},

		{name: "lone percent", raw: "/a%", reason: reason.PathBadEscape},
		{name: "one hex digit", raw: "/a%4", reason: reason.PathBadEscape},
		{name: "non-hex", raw: "/a%zz", reason: reason.PathBadEscape},
		{name: "half hex", raw: "/a%4g", reason: reason.PathBadEscape},
		{name: "iis %u", raw: "/%u002e", reason: reason.PathBadEscape},
		{name: "percent percent", raw: "/%%41", reason: reason.PathBadEscape},

		{name: "encoded slash", raw: "/a%2Fb", reason: reason.PathEncodedSlash},
		{name: "encoded slash lower", raw: "/a%2fb", reason: reason.PathEncodedSlash},
		{name: "encoded backslash", raw: "/a%5Cb", reason: reason.PathEncodedBackslash},
		{name: "encoded backslash lower", raw: "/a%5cb", reason: reason.PathEncodedBackslash},
		{name: "encoded NUL", raw: "/admin%00", reason: reason.PathEncodedControl},
		{name: "encoded CR", raw: "/a%0d%0aX-Auth-User:%20x", reason: reason.PathEncodedControl},
		{name: "encoded unit separator", raw: "/a%1F", reason: reason.PathEncodedControl},
		{name: "encoded DEL", raw: "/a%7f", reason: reason.PathEncodedControl},

		{name: "raw NUL", raw: "/admin\x00", reason: reason.PathInvalid},
		{name: "raw tab", raw: "/a\tb", reason: reason.PathInvalid},
		{name: "raw DEL", raw: "/a\x7f", reason: reason.PathInvalid},
		{name: "raw space", raw: "/a b", reason: reason.PathInvalid},
		{name: "raw utf-8", raw: "/café", reason: reason.PathInvalid},
		{name: "raw high byte", raw: "/a\xff", reason: reason.PathInvalid},
		{name: "raw fragment", raw: "/a#b", reason: reason.PathFragment},
		{name: "raw backslash", raw: "/a\\b", reason: reason.PathBackslash},

		{name: "double-encoded dot", raw: "/%252e", reason: reason.PathDoubleEncoding},
		{name: "double-encoded slash", raw: "/a%252Fb", reason: reason.PathDoubleEncoding},
		{name: "double-encoded backslash", raw: "/a%255cb", reason: reason.PathDoubleEncoding},
		{name: "double-encoded any hex", raw: "/a%2541", reason: reason.PathDoubleEncoding},
		{name: "double encoding hidden in escapes", raw: "/a%25%32%65", reason: reason.PathDoubleEncoding},
		{name: "double encoding half hidden", raw: "/a%252%65", reason: reason.PathDoubleEncoding},
		{name: "double-encoded iis %u", raw: "/a%25u002e", reason: reason.PathDoubleEncoding},
		{name: "double-encoded iis %U hidden", raw: "/a%25%55002E", reason: reason.PathDoubleEncoding},

		{name: "encoded hash is data", raw: "/a%23b", path: "/a#b", escaped: "/a%23b"},
		{name: "encoded query mark is data", raw: "/a%3fb", path: "/a?b", escaped: "/a%3Fb"},

		{name: "overlong dot 2 bytes", raw: "/%c0%ae", reason: reason.PathBadUTF8},
		{name: "overlong dot 3 bytes", raw: "/%e0%80%ae", reason: reason.PathBadUTF8},
		{name: "overlong slash", raw: "/%c0%af", reason: reason.PathBadUTF8},
		{name: "surrogate", raw: "/%ed%a0%80", reason: reason.PathBadUTF8},
		{name: "above U+10FFFF", raw: "/%f4%90%80%80", reason: reason.PathBadUTF8},
		{name: "lone continuation", raw: "/%a9", reason: reason.PathBadUTF8},
		{name: "truncated at end", raw: "/%c3", reason: reason.PathBadUTF8},
		{name: "truncated by raw byte", raw: "/%c3x", reason: reason.PathBadUTF8},
		{name: "truncated by slash", raw: "/%c3/%a9", reason: reason.PathBadUTF8},
		{name: "continuation bad escape", raw: "/%c3%zz", reason: reason.PathBadUTF8},
		{name: "invalid lead byte", raw: "/%ff", reason: reason.PathBadUTF8},
	})
}

func TestNormalizePathParams(t *testing.T) {
	runNormCases(t, []normCase{
		{name: "reject raw", raw: "/admin;x=y/users", reason: reason.PathSemicolon},
		{name: "reject encoded", raw: "/admin%3bx=y/users", reason: reason.PathSemicolon},
		{name: "reject trailing", raw: "/admin/users;jsessionid=ABC", reason: reason.PathSemicolon},

		{name: "strip in segment", raw: "/admin;x=y/users", strip: true, path: "/admin/users"},
		{name: "strip empty params", raw: "/admin;/users", strip: true, path: "/admin/users"},
		{name: "strip at end", raw: "/admin/users;jsessionid=ABC", strip: true, path: "/admin/users"},
		{name: "strip encoded", raw: "/admin%3Bx=y/users", strip: true, path: "/admin/users"},
		{name: "strip keeps trailing slash", raw: "/admin/;x", strip: true, path: "/admin/"},
		{name: "strip whole segment collapses", raw: "/;x/admin", strip: true, path: "/admin"},
		{name: "strip several", raw: "/a;1;2/b;3", strip: true, path: "/a/b"},
		{name: "strip then dotdot", raw: "/public/..;/admin", strip: true, path: "/admin"},
		{name: "strip then dot", raw: "/admin/.;x/users", strip: true, path: "/admin/users"},
		{name: "strip then traversal", raw: "/..;x/etc", strip: true, reason: reason.PathTraversal},
		{name: "params still validated: bad escape", raw: "/a;%zz/b", strip: true, reason: reason.PathBadEscape},
		{name: "params still validated: encoded slash", raw: "/a;x=%2F/b", strip: true, reason: reason.PathEncodedSlash},
		{name: "params still validated: fragment", raw: "/a;#/b", strip: true, reason: reason.PathFragment},
		{name: "params still validated: utf-8", raw: "/a;%c3/b", strip: true, reason: reason.PathBadUTF8},
		{name: "params cannot complete utf-8", raw: "/a%c3;x%a9", strip: true, reason: reason.PathBadUTF8},
	})
}

// TestNormalizePathSecurityCases runs every request-target of docs/security-cases.md AUTHN-03,
// AUTHN-04 and PATH-01..05 (the path part, as the server passes it). Each is either refused
// or becomes the path the /admin rule sees; nothing reaches a permissive route in a form the
// upstream would read as /admin.
func TestNormalizePathSecurityCases(t *testing.T) {
	const admin = "/admin/users"
	runNormCases(t, []normCase{
		// AUTHN-03: health shortcuts.
		{name: "AUTHN-03 health dotdot", raw: "/health/../admin/users", path: admin},
		{name: "AUTHN-03 health encoded slash", raw: "/health%2F..%2Fadmin/users", reason: reason.PathEncodedSlash},

		// AUTHN-04: # and %23.
		{name: "AUTHN-04 raw fragment", raw: "/admin/users#/public/x", reason: reason.PathFragment},
		{name: "AUTHN-04 encoded hash", raw: "/admin/users%23/public/x", path: "/admin/users#/public/x", escaped: "/admin/users%23/public/x"},
		{name: "AUTHN-04 fragment dotdot", raw: "/public/x#/../../admin/users", reason: reason.PathFragment},
		{name: "AUTHN-04 root fragment", raw: "/#/../admin/users", reason: reason.PathFragment},
		// "%23" is data: the segment "#" is removed by "..", and /public/admin/users is both
		// matched and forwarded.
		{name: "AUTHN-04 encoded hash segment", raw: "/public/%23/../admin/users", path: "/public/admin/users"},

		// PATH-01: dot segments.
		{name: "PATH-01 public dotdot", raw: "/public/../admin/users", path: admin},
		{name: "PATH-01 public dot dotdot", raw: "/public/./../admin/users", path: admin},
		{name: "PATH-01 app dotdot", raw: "/app/../admin/users", path: admin},
		{name: "PATH-01 two dotdots", raw: "/public/x/../../admin/users", path: admin},
		{name: "PATH-01 admin dot", raw: "/admin/./users", path: admin},
		{name: "PATH-01 static encoded slash", raw: "/static/..%2F../admin/users", reason: reason.PathEncodedSlash},

		// PATH-02: encoded and double-encoded dots.
		{name: "PATH-02 %2e%2e", raw: "/public/%2e%2e/admin/users", path: admin},
		{name: "PATH-02 %2E%2E", raw: "/public/%2E%2E/admin/users", path: admin},
		{name: "PATH-02 .%2e", raw: "/public/.%2e/admin/users", path: admin},
		{name: "PATH-02 %2e.", raw: "/public/%2e./admin/users", path: admin},
		{name: "PATH-02 %252e", raw: "/public/%252e%252e/admin/users", reason: reason.PathDoubleEncoding},
		{name: "PATH-02 overlong 2", raw: "/public/%c0%ae%c0%ae/admin/users", reason: reason.PathBadUTF8},
		{name: "PATH-02 overlong 3", raw: "/public/%e0%80%ae%e0%80%ae/admin/users", reason: reason.PathBadUTF8},
		{name: "PATH-02 %u", raw: "/public/%u002e%u002e/admin/users", reason: reason.PathBadEscape},
		{name: "PATH-02 heimdall %2f", raw: "/user/%2e%2e%2fadmin", reason: reason.PathEncodedSlash},

		// PATH-03: encoded slash and backslash.
		{name: "PATH-03 admin%2Fusers", raw: "/admin%2Fusers", reason: reason.PathEncodedSlash},
		{name: "PATH-03 admin%2F", raw: "/admin%2F", reason: reason.PathEncodedSlash},
		{name: "PATH-03 %2Fadmin", raw: "/%2Fadmin/users", reason: reason.PathEncodedSlash},
		{name: "PATH-03 public%2F..", raw: "/public%2F..%2Fadmin%2Fusers", reason: reason.PathEncodedSlash},
		{name: "PATH-03 lower", raw: "/public%2f%2e%2e%2fadmin/users", reason: reason.PathEncodedSlash},
		{name: "PATH-03 %5C", raw: "/public%5C..%5Cadmin%5Cusers", reason: reason.PathEncodedBackslash},
		{name: "PATH-03 raw backslash dotdot", raw: `/public\..\admin\users`, reason: reason.PathBackslash},
		{name: "PATH-03 raw backslash", raw: `/admin\users`, reason: reason.PathBackslash},
		{name: "brief admin%2f..", raw: "/admin%2f..", reason: reason.PathEncodedSlash},

		// PATH-04: semicolons, in both modes.
		{name: "PATH-04 reject", raw: "/admin;x=y/users", reason: reason.PathSemicolon},
		{name: "PATH-04 reject %3B", raw: "/admin%3Bx=y/users", reason: reason.PathSemicolon},
		{name: "PATH-04 reject dotdot;", raw: "/public/..;/admin/users", reason: reason.PathSemicolon},
		{name: "PATH-04 strip x=y", raw: "/admin;x=y/users", strip: true, path: admin},
		{name: "PATH-04 strip empty", raw: "/admin;/users", strip: true, path: admin},
		{name: "PATH-04 strip jsessionid", raw: "/admin/users;jsessionid=ABC", strip: true, path: admin},
		{name: "PATH-04 strip dotdot;", raw: "/public/..;/admin/users", strip: true, path: admin},
		{name: "PATH-04 strip dotdot;x=y", raw: "/public/..;x=y/admin/users", strip: true, path: admin},
		{name: "PATH-04 strip public;", raw: "/public;/../admin/users", strip: true, path: admin},
		{name: "PATH-04 strip %3B", raw: "/admin%3Bx=y/users", strip: true, path: admin},
		{name: "PATH-04 strip %2e%2e;", raw: "/public/%2e%2e;/admin/users", strip: true, path: admin},
		{name: "PATH-04 fastify secret;", raw: "/secret;foo=bar", strip: true, path: "/secret"},

		// PATH-05: duplicate, empty and "." segments.
		{name: "PATH-05 //", raw: "//admin/users", path: admin},
		{name: "PATH-05 ///", raw: "///admin/users", path: admin},
		{name: "PATH-05 inner //", raw: "/admin//users", path: admin},
		{name: "PATH-05 ./", raw: "/./admin/users", path: admin},
		{name: "PATH-05 .//", raw: "/.//admin/users", path: admin},
		{name: "PATH-05 //..", raw: "/public//../admin/users", path: admin},

		{name: "brief admin dotdot admin", raw: "/admin/../admin", path: "/admin"},
		{name: "brief //admin", raw: "//admin", path: "/admin"},
		{name: "brief %61dmin", raw: "/%61dmin", path: "/admin"},
		{name: "brief /ADMIN kept", raw: "/ADMIN", path: "/ADMIN"},
	})
}

// TestNormalizePathNoAllocWhenNormal guards the fast path: an already normal path costs
// nothing, and comes back as the very same string.
func TestNormalizePathNoAllocWhenNormal(t *testing.T) {
	for _, raw := range []string{"/", "/admin/users", "/static/app.min.js", "/app/v1/orders/42/", "/a-b_c~d.e/x:y@z"} {
		n := testing.AllocsPerRun(100, func() {
			p, e, reason := normalizePath(raw, true)
			if reason != "" || p != raw || e != raw {
				t.Fatalf("normalizePath(%q) = %q, %q, %q", raw, p, e, reason)
			}
		})
		if n != 0 {
			t.Errorf("normalizePath(%q): %v allocations, want 0", raw, n)
		}
	}
	// A kept escape needs the decoded path, but the escaped form is the input itself.
	n := testing.AllocsPerRun(100, func() {
		raw := "/files/caf%C3%A9"
		if _, e, _ := normalizePath(raw, false); e != raw {
			t.Fatalf("escaped %q, want the input", e)
		}
	})
	if n > 1 {
		t.Errorf("normalizePath with a kept escape: %v allocations, want at most 1", n)
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, raw string }{
		{"normal", "/app/v1/orders/12345/items"},
		{"dotdot", "/public/../admin/users"},
		{"escapes", "/files/caf%C3%A9/%61dmin%20x"},
		{"params", "/admin;jsessionid=ABC/users"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				normalizePath(bc.raw, true)
			}
		})
	}
}

// FuzzNormalizePath checks the invariants of every accepted path on arbitrary input, in
// both ";" modes. A crash here is a path the proxy could match one way and forward another.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "/admin/users", "//admin", "/a/./b/../c", "/%61dmin", "/admin%2f..", "/admin;x=y/users",
		"/public/..;/admin", "/caf%c3%a9", "/%c0%ae", "/%252e", "/a%23b", "/a%3Fb", "/a|b", "/100%25",
		"/%25%32%65", "/%u002e", "/admin/.", "/..", "/a\\b", "/a#b", "/\x00", "/%e0%80%ae",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, strip bool) {
		p, e, reason := normalizePath(raw, strip)
		if reason != "" {
			if p != "" || e != "" {
				t.Fatalf("%q rejected (%s) but returned %q, %q", raw, reason, p, e)
			}
			return
		}
		checkNormalInvariants(t, raw, strip, p, e)
	})
}
