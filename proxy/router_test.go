package proxy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
)

// testBedRoutes is the route table of docs/security-cases.md section 0 (no catch-all: everything
// else is denied), plus host-specific routes for the host tests.
func testBedRoutes() []config.Route {
	return []config.Route{
		{Name: "health", Path: "/health", PathMatch: config.PathExact, Public: true},
		{Name: "public", Path: "/public/", Public: true},
		{Name: "static", Path: "/static/", Public: true, Methods: []string{"GET", "HEAD"}},
		{Name: "app", Path: "/app"},
		{Name: "admin-read", Path: "/admin", Methods: []string{"GET", "HEAD"}},
		{Name: "admin-write", Path: "/admin", Methods: []string{"POST", "GET"}},
		{Name: "api", Hosts: []string{"api.example.test"}, Path: "/api"},
		{Name: "tenant", Hosts: []string{"*.tenants.example.test"}, Path: "/"},
		{Name: "public-host", Hosts: []string{"Public.Example.Test."}, Path: "/", Public: true},
		{Name: "legacy-iis", Hosts: []string{"iis.example.test"}, Path: "/Admin", CaseInsensitive: true},
		{Name: "iis-rest", Hosts: []string{"iis.example.test"}, Path: "/", Public: true},
		{Name: "ipv6", Hosts: []string{"::1", "[fe80::1]", "127.0.0.1"}, Path: "/local"},
	}
}

func mustRouter(t testing.TB, routes []config.Route) *router {
	t.Helper()
	rt, err := newRouter(routes)
	if err != nil {
		t.Fatalf("newRouter: %v", err)
	}
	return rt
}

// routeName runs a request the way the server does (canonical host, path before "?",
// normalised) and names the route it reaches, or the refusal.
func routeName(rt *router, routes []config.Route, hostport, target, method string, strip bool) string {
	host, ok := canonicalHost(hostport)
	if !ok {
		return "400 bad_host"
	}
	raw, _, _ := strings.Cut(target, "?")
	path, _, code := normalizePath(raw, strip)
	if code != "" {
		return "400 " + string(code)
	}
	idx, res := rt.match(host, path, method)
	switch res {
	case matchOK:
		return routes[idx].Name
	case matchNotFound:
		return "404"
	case matchMethodNotAllowed:
		return "405 " + rt.allow(host, path)
	}
	return fmt.Sprintf("bad result %d", res)
}

func TestRouterMatch(t *testing.T) {
	routes := testBedRoutes()
	rt := mustRouter(t, routes)
	const h = "portal.example.test"
	cases := []struct {
		name, host, target, method, want string
	}{
		{"health exact", h, "/health", "GET", "health"},
		{"health is exact only", h, "/health/x", "GET", "404"},
		{"health trailing slash", h, "/health/", "GET", "404"},
		{"public dir", h, "/public/logo.png", "GET", "public"},
		{"public without slash", h, "/public", "GET", "public"},
		{"public prefix is segment-aligned", h, "/publicity", "GET", "404"},
		{"app", h, "/app", "GET", "app"},
		{"app sub", h, "/app/secret", "PUT", "app"},
		{"app trailing slash", h, "/app/", "GET", "app"},
		{"not administrator", h, "/administrator", "GET", "404"},
		{"admin first match", h, "/admin/users", "GET", "admin-read"},
		{"admin second route by method", h, "/admin/users", "POST", "admin-write"},
		{"admin method not allowed", h, "/admin/users", "DELETE", "405 GET, HEAD, POST"},
		{"methods are case-sensitive", h, "/admin/users", "get", "405 GET, HEAD, POST"},
		{"static method not allowed", h, "/static/a.js", "POST", "405 GET, HEAD"},
		{"no route", h, "/", "GET", "404"},

		// Case sensitivity (brief: /ADMIN).
		{"ADMIN does not match case-sensitive", h, "/ADMIN", "GET", "404"},
		{"ADMIN matches case-insensitive", "iis.example.test", "/ADMIN/users", "GET", "legacy-iis"},
		{"any-host route listed first wins", "iis.example.test", "/admin", "GET", "admin-read"},
		{"aDmIn dot segments case-insensitive", "iis.example.test", "/x/../aDmIn/", "GET", "legacy-iis"},
		{"case-insensitive stays segment-aligned", "iis.example.test", "/ADMINISTRATOR", "GET", "iis-rest"},
		{"no unicode folding", "iis.example.test", "/%E2%84%AAdmin", "GET", "iis-rest"},

		// AUTHN-01: rules never see the query.
		{"AUTHN-01 x=/public", h, "/app/secret?x=/public/a", "GET", "app"},
		{"AUTHN-01 ?/health", h, "/admin/users?/health", "GET", "admin-read"},
		{"AUTHN-01 next=/static", h, "/app/secret?next=/static/x.js", "GET", "app"},
		{"AUTHN-01 encoded", h, "/app/secret?%2Fpublic%2Fa", "GET", "app"},
		{"AUTHN-01 two params", h, "/app/secret?a=1&b=/public/", "GET", "app"},
		{"AUTHN-03 health query", h, "/health?x=/admin/users", "GET", "health"},
		{"AUTHN-03 health dotdot", h, "/health/../admin/users", "GET", "admin-read"},

		// AUTHN-04: "#" raw is refused; "%23" is an ordinary character of the path.
		{"AUTHN-04 raw #", h, "/admin/users#/public/x", "GET", "400 path_fragment"},
		{"AUTHN-04 %23", h, "/admin/users%23/public/x", "GET", "admin-read"},
		{"AUTHN-04 %23 in admin segment", h, "/admin%23/public/x", "GET", "404"},
		{"AUTHN-04 %23 dotdot", h, "/public/%23/../admin/users", "GET", "public"},
		{"AUTHN-04 /#", h, "/#/../admin/users", "GET", "400 path_fragment"},
		{"%3F is data", h, "/admin%3F/public/x", "GET", "404"},
		{"%3F after admin segment", h, "/admin/%3F/public/x", "GET", "admin-read"},

		// PATH-01..05 reach the admin rule or are refused; never a public route.
		{"dotdot to admin", h, "/public/../admin/users", "GET", "admin-read"},
		{"admin dotdot admin", h, "/admin/../admin", "GET", "admin-read"},
		{"//admin", h, "//admin", "GET", "admin-read"},
		{"%61dmin", h, "/%61dmin", "GET", "admin-read"},
		{"admin%2f..", h, "/admin%2f..", "GET", "400 path_encoded_slash"},
		{"admin%2F never falls through", h, "/admin%2F", "GET", "400 path_encoded_slash"},
		{"encoded dots", h, "/public/%2e%2e/admin/users", "GET", "admin-read"},
		{"semicolon rejected", h, "/public/..;/admin/users", "GET", "400 path_semicolon"},

		// Hosts.
		{"host exact", "api.example.test", "/api/v1", "GET", "api"},
		{"host case and port", "API.Example.Test:8443", "/api/v1", "GET", "api"},
		{"host trailing dot", "api.example.test.", "/api/v1", "GET", "api"},
		{"host route only on its host", h, "/api/v1", "GET", "404"},
		{"config host canonicalised", "public.example.test", "/anything", "GET", "public-host"},
		{"wildcard one label", "acme.tenants.example.test", "/x", "GET", "tenant"},
		{"wildcard upper case", "ACME.Tenants.Example.Test:443", "/x", "GET", "tenant"},
		{"wildcard not the apex", "tenants.example.test", "/x", "GET", "404"},
		{"wildcard not two labels", "a.b.tenants.example.test", "/x", "GET", "404"},
		{"wildcard not a suffix lookalike", "eviltenants.example.test", "/x", "GET", "404"},
		{"wildcard empty label", ".tenants.example.test", "/x", "GET", "400 bad_host"},
		{"userinfo", "a:443@evil.test", "/x", "GET", "400 bad_host"},
		{"ipv6 bracketed with port", "[::1]:8443", "/local", "GET", "ipv6"},
		{"ipv6 non-canonical", "[0:0::1]", "/local", "GET", "ipv6"},
		{"ipv6 config with brackets", "[FE80::1]", "/local", "GET", "ipv6"},
		{"ipv4", "127.0.0.1:8443", "/local", "GET", "ipv6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := routeName(rt, routes, tc.host, tc.target, tc.method, false); got != tc.want {
				t.Errorf("%s %s (Host %s) → %q, want %q", tc.method, tc.target, tc.host, got, tc.want)
			}
		})
	}
}

// TestRouterSecurityCasesStrip runs PATH-04 with path_params: strip: every variant is the
// admin route, as Tomcat would read it.
func TestRouterSecurityCasesStrip(t *testing.T) {
	routes := testBedRoutes()
	rt := mustRouter(t, routes)
	for _, target := range []string{
		"/admin;x=y/users", "/admin;/users", "/admin/users;jsessionid=ABC", "/public/..;/admin/users",
		"/public/..;x=y/admin/users", "/public;/../admin/users", "/admin%3Bx=y/users",
		"/public/%2e%2e;/admin/users",
	} {
		t.Run(target, func(t *testing.T) {
			if got := routeName(rt, routes, "portal.example.test", target, "GET", true); got != "admin-read" {
				t.Errorf("GET %s → %q, want admin-read", target, got)
			}
		})
	}
}

func TestRouterPathPatterns(t *testing.T) {
	cases := []struct {
		name    string
		route   config.Route
		path    string
		matches bool
	}{
		{"root prefix matches all", config.Route{Path: "/"}, "/anything/at/all", true},
		{"default path is root", config.Route{}, "/x", true},
		{"prefix itself", config.Route{Path: "/admin"}, "/admin", true},
		{"prefix slash", config.Route{Path: "/admin"}, "/admin/", true},
		{"prefix sub", config.Route{Path: "/admin"}, "/admin/x", true},
		{"prefix not longer segment", config.Route{Path: "/admin"}, "/administrator", false},
		{"prefix not shorter", config.Route{Path: "/admin"}, "/adm", false},
		{"dir prefix", config.Route{Path: "/static/"}, "/static/a.css", true},
		{"dir prefix without slash", config.Route{Path: "/static/"}, "/static", true},
		{"dir prefix itself", config.Route{Path: "/static/"}, "/static/", true},
		{"dir prefix not longer", config.Route{Path: "/static/"}, "/staticx", false},
		{"exact", config.Route{Path: "/login", PathMatch: "exact"}, "/login", true},
		{"exact not slash", config.Route{Path: "/login", PathMatch: "exact"}, "/login/", false},
		{"exact not sub", config.Route{Path: "/login", PathMatch: "exact"}, "/login/x", false},
		{"exact case", config.Route{Path: "/login", PathMatch: "exact"}, "/LOGIN", false},
		{"exact folded", config.Route{Path: "/login", PathMatch: "exact", CaseInsensitive: true}, "/LOGIN", true},
		{"prefix folded", config.Route{Path: "/Admin/", CaseInsensitive: true}, "/aDMIN", true},
		{"folded segment-aligned", config.Route{Path: "/admin", CaseInsensitive: true}, "/ADMINX", false},
		{"hash is an ordinary character", config.Route{Path: "/a#b", PathMatch: "exact"}, "/a#b", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rt := mustRouter(t, []config.Route{tc.route})
			_, res := rt.match("h", tc.path, "GET")
			if (res == matchOK) != tc.matches {
				t.Errorf("route %+v on %q: %v, want match %v", tc.route.Path, tc.path, res, tc.matches)
			}
		})
	}
}

func TestRouterFirstMatchWins(t *testing.T) {
	routes := []config.Route{
		{Name: "specific", Path: "/app/reports", Methods: []string{"GET"}},
		{Name: "app", Path: "/app"},
		{Name: "never", Path: "/app/reports"},
		{Name: "all", Path: "/"},
	}
	rt := mustRouter(t, routes)
	for _, tc := range []struct{ path, method, want string }{
		{"/app/reports/1", "GET", "specific"},
		{"/app/reports/1", "POST", "app"},
		{"/app/other", "GET", "app"},
		{"/elsewhere", "GET", "all"},
	} {
		if got := routeName(rt, routes, "h", tc.path, tc.method, false); got != tc.want {
			t.Errorf("%s %s → %s, want %s", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestRouterAnswersHost(t *testing.T) {
	rt := mustRouter(t, []config.Route{
		{Name: "a", Hosts: []string{"a.example.test", "*.w.example.test"}},
	})
	for host, want := range map[string]bool{
		"a.example.test": true, "x.w.example.test": true, "w.example.test": false, "evil.test": false,
	} {
		if got := rt.answersHost(host); got != want {
			t.Errorf("answersHost(%q) = %v, want %v", host, got, want)
		}
	}
	if !mustRouter(t, []config.Route{{Name: "any"}}).answersHost("anything.test") {
		t.Error("a route without hosts must answer for any host")
	}
}

func TestNewRouterErrors(t *testing.T) {
	routes := []config.Route{
		{Name: "ok", Path: "/ok"},
		{Name: "rel", Path: "admin", Line: 7, Column: 5},
		{Name: "dots", Path: "/a/../b"},
		{Name: "slashes", Path: "/a//b"},
		{Name: "kind", Path: "/k", PathMatch: "regex"},
		{Name: "port", Hosts: []string{"a.example.test:443"}},
		{Name: "wild", Hosts: []string{"*example.test", "a.*.example.test", "*", "*.", "*.[::1]"}},
		{Name: "userinfo", Hosts: []string{"u@a.example.test"}},
		{Name: "method", Methods: []string{"GET", "", "BAD METHOD"}},
	}
	_, err := newRouter(routes)
	if err == nil {
		t.Fatal("newRouter accepted invalid routes")
	}
	msg := err.Error()
	for _, want := range []string{
		`7:5: routes[1] (rel): path: "admin"`,
		`routes[2] (dots): path`,
		`routes[3] (slashes): path`,
		`routes[4] (kind): path_match: "regex"`,
		`routes[5] (port): hosts: "a.example.test:443"`,
		`hosts: "*example.test"`,
		`hosts: "a.*.example.test"`,
		`hosts: "*"`,
		`hosts: "*."`,
		`hosts: "*.[::1]"`,
		`routes[7] (userinfo): hosts`,
		`methods: ""`,
		`methods: "BAD METHOD"`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "(ok)") {
		t.Errorf("error mentions the valid route:\n%s", msg)
	}
}

func TestCanonicalHost(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"example.com", "example.com", true},
		{"Example.COM", "example.com", true},
		{"example.com:8443", "example.com", true},
		{"example.com.", "example.com", true},
		{"example.com.:443", "example.com", true},
		{"a-b_c.example", "a-b_c.example", true},
		{"127.0.0.1:80", "127.0.0.1", true},
		{"[::1]:8443", "::1", true},
		{"[::1]", "::1", true},
		{"[FE80:0::1]", "fe80::1", true},
		{"[::ffff:127.0.0.1]", "::ffff:127.0.0.1", true},
		{"localhost:0", "localhost", true},

		{"", "", false},
		{":443", "", false},
		{".", "", false},
		{"example.com..", "", false},
		{".example.com", "", false},
		{"a..b", "", false},
		{"example.com:", "", false},
		{"example.com:https", "", false},
		{"example.com:65536", "", false},
		{"example.com:123456", "", false},
		{"example.com:-1", "", false},
		{"example.com:443:443", "", false},
		{"a:443@evil.test", "", false},
		{"user@example.com", "", false},
		{"::1", "", false},
		{"[::1", "", false},
		{"[::1]x", "", false},
		{"[::1]:", "", false},
		{"[127.0.0.1]", "", false},
		{"[fe80::1%25eth0]", "", false},
		{"[fe80::1%eth0]", "", false},
		{"exa mple.com", "", false},
		{"example.com/", "", false},
		{"*.example.com", "", false},
		{"exämple.com", "", false},
		{"xn--exmple-cua.com", "xn--exmple-cua.com", true},
		{"a\x00b", "", false},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com", true},
		{strings.Repeat("a", 64) + ".com", "", false},
		{strings.Repeat("a.", 127) + "a", strings.Repeat("a.", 127) + "a", false},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := canonicalHost(tc.in)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("canonicalHost(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestAsciiEqualFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"/Admin", "/aDMIN", true},
		{"/admin", "/admin", true},
		{"/admin", "/admi", false},
		{"/[", "/{", false}, // '[' + 0x20 is '{': only letters fold
		{"/@", "/`", false},
		{"/\u212a", "/k", false},
		{"/é", "/É", false},
	} {
		if got := asciiEqualFold(tc.a, tc.b); got != tc.want {
			t.Errorf("asciiEqualFold(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// fiftyRoutes is a table of 50 routes like a portal with many applications; the benchmark
// request matches near the end, the worst realistic case.
func fiftyRoutes() []config.Route {
	var routes []config.Route
	for i := range 48 {
		routes = append(routes, config.Route{
			Name:            fmt.Sprintf("app%02d", i),
			Hosts:           []string{fmt.Sprintf("portal%d.example.test", i%3), "*.tenants.example.test"},
			Path:            fmt.Sprintf("/apps/app%02d/", i),
			CaseInsensitive: i%2 == 0,
			Methods:         []string{"GET", "POST"},
		})
	}
	return append(routes,
		config.Route{Name: "admin", Hosts: []string{"portal1.example.test"}, Path: "/admin"},
		config.Route{Name: "all", Path: "/"})
}

func TestRouterMatchNoAlloc(t *testing.T) {
	rt := mustRouter(t, fiftyRoutes())
	for _, tc := range []struct{ host, path, method string }{
		{"portal1.example.test", "/admin/users/42", "GET"},
		{"x.tenants.example.test", "/APPS/APP46/index", "POST"},
		{"portal1.example.test", "/apps/app47/x", "DELETE"},
		{"other.test", "/nowhere", "GET"},
	} {
		n := testing.AllocsPerRun(100, func() { rt.match(tc.host, tc.path, tc.method) })
		if n != 0 {
			t.Errorf("match(%q, %q, %q): %v allocations, want 0", tc.host, tc.path, tc.method, n)
		}
	}
	n := testing.AllocsPerRun(100, func() { canonicalHost("portal.example.test:8443") })
	if n != 0 {
		t.Errorf("canonicalHost of a canonical name with port: %v allocations, want 0", n)
	}
}

func BenchmarkRouterMatch(b *testing.B) {
	rt := mustRouter(b, fiftyRoutes())
	for _, bc := range []struct{ name, host, path, method string }{
		{"50routes/late", "portal1.example.test", "/admin/users/42", "GET"},
		{"50routes/folded", "x.tenants.example.test", "/APPS/APP46/index", "POST"},
		{"50routes/fallthrough", "other.test", "/nowhere", "GET"},
		{"testbed/admin", "portal.example.test", "/admin/users", "GET"},
	} {
		if bc.name == "testbed/admin" {
			rt = mustRouter(b, testBedRoutes())
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rt.match(bc.host, bc.path, bc.method)
			}
		})
	}
}

func BenchmarkCanonicalHost(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		canonicalHost("portal.example.test:8443")
	}
}

// FuzzCanonicalHost checks that an accepted host is canonical: lower-case, no port, no
// trailing dot or userinfo, and unchanged by a second pass (hosts are compared as strings).
func FuzzCanonicalHost(f *testing.F) {
	for _, s := range []string{"example.com", "Ex.COM.:443", "[::1]:8443", "a:443@evil", "[fe80::1%25x]", "1.2.3.4", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		h, ok := canonicalHost(in)
		if !ok {
			if h != "" {
				t.Fatalf("canonicalHost(%q) failed but returned %q", in, h)
			}
			return
		}
		if h == "" || strings.ContainsAny(h, "@[]/% ") || strings.HasSuffix(h, ".") || h != strings.ToLower(h) {
			t.Fatalf("canonicalHost(%q) = %q, not canonical", in, h)
		}
		again := h
		if strings.Contains(h, ":") {
			again = "[" + h + "]" // an IPv6 literal, written as in a Host header
		}
		if h2, ok := canonicalHost(again); !ok || h2 != h {
			t.Fatalf("canonicalHost(%q) = %q, but canonicalHost(%q) = %q, %v", in, h, again, h2, ok)
		}
	})
}
