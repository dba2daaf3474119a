package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// matchResult says how a request fared against the route table.
type matchResult uint8

const (
	// matchOK: a route matched host, path and method; its index is returned.
	matchOK matchResult = iota
	// matchNotFound: no route matched host and path (404).
	matchNotFound
	// matchMethodNotAllowed: at least one route matched host and path, but none of those
	// also matched the method (405; router.allow gives the Allow header).
	matchMethodNotAllowed
)

// router is the compiled, immutable route table. It is built once per configuration and
// shared by all requests; match is safe for concurrent use and does not allocate.
type router struct {
	routes []compiledRoute
}

// compiledRoute is a config.Route reduced to what matching needs, parsed once.
type compiledRoute struct {
	// anyHost: the route has no host list and answers for every host.
	anyHost bool
	// hosts are canonical exact host names.
	hosts []string
	// suffixes are the wildcard hosts "*.example.com" as ".example.com".
	suffixes []string
	// pattern is the path pattern; dir is true when a prefix pattern ends in "/" (other than
	// the root), so that it also matches the pattern without the slash.
	pattern string
	dir     bool
	// first is the pattern's byte after the leading "/" (lower-cased when fold), 0 for "/":
	// a one-byte check that rejects most routes of a large table before comparing strings.
	first byte
	exact bool
	fold  bool
	// methods allowed; nil means any.
	methods []string
}

// newRouter compiles routes, in file order. It reports every problem it finds at once, each
// with the route's name and place in the file. config.Load validates routes too; the router
// checks again what its own correctness depends on, so a hand-built Config cannot produce a
// table that silently matches the wrong thing.
func newRouter(routes []config.Route) (*router, error) {
	rt := &router{routes: make([]compiledRoute, 0, len(routes))}
	var errs []error
	for i := range routes {
		r := &routes[i]
		fail := func(format string, args ...any) {
			where := fmt.Sprintf("routes[%d]", i)
			if r.Name != "" {
				where += fmt.Sprintf(" (%s)", r.Name)
			}
			if r.Line > 0 {
				where = fmt.Sprintf("%d:%d: %s", r.Line, r.Column, where)
			}
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		c := compiledRoute{anyHost: len(r.Hosts) == 0, fold: r.CaseInsensitive}
		for _, h := range r.Hosts {
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				name, valid := configHost(rest)
				if !valid || strings.Contains(name, ":") {
					fail("hosts: %q is not a valid wildcard host (want *.example.com)", h)
					continue
				}
				c.suffixes = append(c.suffixes, "."+name)
				continue
			}
			name, valid := configHost(h)
			if !valid {
				fail("hosts: %q is not a valid host name (no port, no scheme, no path)", h)
				continue
			}
			c.hosts = append(c.hosts, name)
		}
		c.pattern = r.Path
		if c.pattern == "" {
			c.pattern = "/"
		}
		if !validPattern(c.pattern) {
			fail("path: %q must start with \"/\" and contain no empty, \".\" or \"..\" segment, control or non-ASCII-escaped byte", c.pattern)
		}
		if len(c.pattern) > 1 {
			c.first = c.pattern[1]
			if c.fold {
				c.first = lowerASCII(c.first)
			}
		}
		switch r.PathMatch {
		case "", config.PathPrefix:
			c.dir = len(c.pattern) > 1 && strings.HasSuffix(c.pattern, "/")
		case config.PathExact:
			c.exact = true
		default:
			fail("path_match: %q must be %q or %q", r.PathMatch, config.PathPrefix, config.PathExact)
		}
		for _, m := range r.Methods {
			if !syntax.Token(m) {
				fail("methods: %q is not a valid HTTP method", m)
				continue
			}
			c.methods = append(c.methods, m)
		}
		rt.routes = append(rt.routes, c)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rt, nil
}

// configHost canonicalises a host name from the configuration the way canonicalHost does a
// Host header, so that the two compare equal. A port is refused: routes match names, and a
// port would make the route silently unreachable. IP literals may be written with or without
// brackets.
func configHost(h string) (string, bool) {
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return "", false
		}
		return a.String(), true
	}
	if strings.Contains(h, ":") && !(strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")) {
		return "", false
	}
	return canonicalHost(h)
}

// validPattern reports whether a route path can ever equal a normalised request path prefix:
// it starts with "/" and has no empty (except a final one), "." or ".." segment and no
// control byte. A pattern such as "/a//b" would otherwise never match and fail open to a later
// route.
func validPattern(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(p, "//")
}

// match finds the first route, in file order, that matches host, path and method. host must
// come from canonicalHost and path from normalizePath: matching is on the decoded, normalised
// path only, never on the query (AUTHN-01). Methods compare case-sensitively, as HTTP says.
// When res is not matchOK, idx is -1.
func (rt *router) match(host, path, method string) (idx int, res matchResult) {
	res = matchNotFound
	for i := range rt.routes {
		r := &rt.routes[i]
		// Path first: it differs between routes more often than the host, and fails fast.
		if !r.matchPath(path) || !r.matchHost(host) {
			continue
		}
		if r.matchMethod(method) {
			return i, matchOK
		}
		res = matchMethodNotAllowed
	}
	return -1, res
}

// allow returns the value of the Allow header for a request that got matchMethodNotAllowed:
// the methods of every route matching host and path, in table order, without duplicates.
// It allocates, which is fine on this error path.
func (rt *router) allow(host, path string) string {
	var ms []string
	for i := range rt.routes {
		r := &rt.routes[i]
		if !r.matchHost(host) || !r.matchPath(path) {
			continue
		}
		for _, m := range r.methods {
			if !containsString(ms, m) {
				ms = append(ms, m)
			}
		}
	}
	return strings.Join(ms, ", ")
}

// answersHost reports whether any route answers for host (canonical), so that listeners
// such as the HTTP-to-HTTPS redirect do not serve arbitrary names.
func (rt *router) answersHost(host string) bool {
	for i := range rt.routes {
		if rt.routes[i].matchHost(host) {
			return true
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (r *compiledRoute) matchHost(host string) bool {
	if r.anyHost {
		return true
	}
	for _, h := range r.hosts {
		if h == host {
			return true
		}
	}
	for _, suf := range r.suffixes {
		// Exactly one extra, non-empty label: "a.example.com", not "example.com" or
		// "a.b.example.com".
		if n := len(host) - len(suf); n > 0 && host[n:] == suf && strings.IndexByte(host[:n], '.') < 0 {
			return true
		}
	}
	return false
}

func (r *compiledRoute) matchPath(path string) bool {
	if r.first != 0 {
		if len(path) < 2 {
			return false
		}
		if c := path[1]; c != r.first && (!r.fold || lowerASCII(c) != r.first) {
			return false
		}
	}
	p := r.pattern
	if r.exact {
		return r.equal(path, p)
	}
	if p == "/" {
		return true
	}
	if r.dir {
		// "/static/" matches "/static/..." and "/static".
		return r.hasPrefix(path, p) || r.equal(path, p[:len(p)-1])
	}
	// "/admin" matches "/admin" and "/admin/...", not "/administrator".
	return r.hasPrefix(path, p) && (len(path) == len(p) || path[len(p)] == '/')
}

func (r *compiledRoute) equal(a, b string) bool {
	if r.fold {
		return asciiEqualFold(a, b)
	}
	return a == b
}

func (r *compiledRoute) hasPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && r.equal(s[:len(prefix)], prefix)
}

func (r *compiledRoute) matchMethod(method string) bool {
	if r.methods == nil {
		return true
	}
	return containsString(r.methods, method)
}

// asciiEqualFold compares a and b ignoring the case of ASCII letters only, without
// allocating. Unlike strings.EqualFold it does not apply Unicode folding, under which "K"
// (U+212A KELVIN SIGN) equals "k": the portals that ignore case (IIS) fold ASCII.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if x, y := a[i], b[i]; x != y && lowerASCII(x) != lowerASCII(y) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// canonicalHost turns a Host header (or the authority of an absolute-form target) into the
// name routes are matched on: lower-case, without port, without one trailing dot, IPv6
// literals without brackets in their canonical text form. ok is false for anything else:
// empty names, userinfo ("a:443@evil"), a non-numeric or out-of-range port, bad characters,
// empty labels. A name that is already canonical is returned without allocating.
func canonicalHost(hostport string) (host string, ok bool) {
	if hostport == "" {
		return "", false
	}
	if hostport[0] == '[' {
		end := strings.IndexByte(hostport, ']')
		if end < 0 || !validPort(hostport[end+1:]) {
			return "", false
		}
		a, err := netip.ParseAddr(hostport[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", false
		}
		return a.String(), true
	}
	host = hostport
	if i := strings.IndexByte(hostport, ':'); i >= 0 {
		if !validPort(hostport[i:]) {
			return "", false
		}
		host = hostport[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return "", false
	}
	upper, label := false, 0
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", false
			}
			label = 0
			continue
		case 'A' <= c && c <= 'Z':
			upper = true
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", false
		}
		if label++; label > 63 {
			return "", false
		}
	}
	if label == 0 {
		return "", false
	}
	if upper {
		host = strings.ToLower(host)
	}
	return host, true
}

// validPort reports whether s is empty (no port) or ":" followed by a decimal port 0-65535.
// An empty port after ":" is refused: it serves no client and is a parser-differential risk.
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	n := 0
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}
