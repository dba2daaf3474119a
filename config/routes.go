package config

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// routeNamePattern keeps route names usable as metric labels and in log queries.
var routeNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// routes checks the route table: each route alone, names unique, and routes that an earlier
// route hides.
func (v *validator) routes(rs []Route) {
	if len(rs) == 0 {
		v.errorf("routes", "at least one route is required")
		return
	}
	first := map[string]int{}
	for i := range rs {
		r := &rs[i]
		p := fmt.Sprintf("routes[%d]", i)
		at := v.at(p)
		r.Line, r.Column = at.line, at.col
		v.route(p, r)
		if r.Name == "" {
			continue
		}
		if j, dup := first[r.Name]; dup {
			v.errorf(p+".name", "duplicate route name %s; the route at line %d already uses it", v.show(p+".name", r.Name), rs[j].Line)
		} else {
			first[r.Name] = i
		}
	}
	bad := v.badRoutes(rs)
	v.shadows(rs, bad)
	v.recoveryFlows(rs, bad)
	v.oneHostPerUpstream(rs)
	v.guardTwins(rs)
}

// guardTwins warns when a recovery guard matches its path exactly and the same page with the
// trailing slash toggled (Django and Rails write /accounts/password_reset/) goes to a route
// that guards nothing: a reset sent there would reach the portal uninspected.
func (v *validator) guardTwins(rs []Route) {
	for i := range rs {
		r := &rs[i]
		if r.RecoveryGuard == nil || r.PathMatch != PathExact || r.Path == "/" {
			continue
		}
		twin := *r
		if strings.HasSuffix(r.Path, "/") {
			twin.Path = strings.TrimSuffix(r.Path, "/")
		} else {
			twin.Path = r.Path + "/"
		}
		for j := range rs {
			if j == i || !covers(&rs[j], &twin) {
				continue
			}
			if rs[j].RecoveryGuard == nil {
				v.warnf(fmt.Sprintf("routes[%d].path", i), "%s is guarded only as written; %s goes to route %s, which does not guard it: use a prefix match, or guard that route too",
					r.Path, twin.Path, rs[j].Name)
			}
			break
		}
	}
}

// oneHostPerUpstream refuses routes to one upstream that disagree on preserve_host: the
// portal would see two hosts, and build links and check CSRF origins against the wrong one
// on some of its pages.
func (v *validator) oneHostPerUpstream(rs []Route) {
	type seen struct {
		name     string
		preserve bool
	}
	by := map[string]seen{}
	for i := range rs {
		r := &rs[i]
		if r.UpstreamURL == nil || r.PreserveHost == nil {
			continue
		}
		origin := r.UpstreamURL.Scheme + "://" + r.UpstreamURL.Host
		prev, ok := by[origin]
		switch {
		case !ok:
			by[origin] = seen{r.Name, *r.PreserveHost}
		case prev.preserve != *r.PreserveHost:
			p := fmt.Sprintf("routes[%d].preserve_host", i)
			v.errorf(p, "is %v, but route %s to the same upstream %s has %v: a portal sees one host, so routes to it must agree",
				*r.PreserveHost, prev.name, origin, prev.preserve)
		}
	}
}

func (v *validator) route(p string, r *Route) {
	v.policy(p, r)
	switch {
	case r.Name == "":
		v.errorf(p+".name", "is required")
	case !routeNamePattern.MatchString(r.Name):
		v.errorf(p+".name", "must be lower-case letters, digits, \"_\" and \"-\", starting with a letter or digit")
	}
	seen := map[string]bool{}
	for i, h := range r.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", p, i)
		if msg := routeHostProblem(h); msg != "" {
			v.errorf(hp, "%s", msg)
		} else if seen[h] {
			v.errorf(hp, "%s is listed twice", v.show(hp, h))
		}
		seen[h] = true
	}
	if msg := pathProblem(r.Path); msg != "" {
		v.errorf(p+".path", "%s", msg)
	}
	v.oneOf(p+".path_match", r.PathMatch, PathPrefix, PathExact)
	v.oneOf(p+".method_override", r.MethodOverride, MethodOverrideRefuse, MethodOverrideAllow)
	clear(seen)
	for i, m := range r.Methods {
		mp := fmt.Sprintf("%s.methods[%d]", p, i)
		dup := seen[m]
		seen[m] = true
		switch {
		case !syntax.Token(m):
			v.errorf(mp, "must be an HTTP method such as \"GET\", got %s", v.show(mp, m))
		case strings.ToUpper(m) != m:
			v.errorf(mp, "must be upper-case: methods are case-sensitive, so %s would never match", v.show(mp, m))
		case dup:
			v.errorf(mp, "%s is listed twice", v.show(mp, m))
		}
	}
	r.UpstreamURL = v.upstream(p+".upstream", r.Upstream)
	v.headers(p+".request_headers", r.RequestHeaders)
	v.headers(p+".response_headers", r.ResponseHeaders)
	v.nonNegative(p+".timeouts.dial", r.Timeouts.Dial)
	v.nonNegative(p+".timeouts.response_header", r.Timeouts.ResponseHeader)
	v.nonNegative(p+".timeouts.idle_conn", r.Timeouts.IdleConn)
	if r.UpstreamTLS.CAFile != "" {
		v.fileExists(p+".upstream_tls.ca_file", r.UpstreamTLS.CAFile)
	}
	if r.UpstreamTLS.InsecureSkipVerify {
		v.warnf(p+".upstream_tls.insecure_skip_verify", "the upstream's certificate is not verified: anyone between Portcullis and the portal can read and change the traffic; never use this in production")
	}
}

// routeHostProblem says what is wrong with a route host, or "" when nothing is. Hosts are
// compared with the request's lower-cased Host without its port, so anything else could never
// match and is an error rather than a silent dead route.
func routeHostProblem(h string) string {
	switch {
	case h == "":
		return "must not be empty"
	case strings.ToLower(h) != h:
		return "must be lower-case"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if strings.Contains(h, ":") {
		return "must not contain a port: routes match the host name alone"
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if strings.Contains(name, "*") {
		return "a wildcard must be the whole leftmost label, as in \"*.example.com\""
	}
	if strings.HasSuffix(name, ".") {
		return "must not end with a dot"
	}
	if !validDNSName(name) {
		return "must be a DNS name such as \"portal.example.com\" or \"*.example.com\""
	}
	return ""
}

// pathProblem says what is wrong with a route path, or "" when nothing is. Requests are
// matched after normalisation, so a pattern holding what normalisation removes or rejects
// could never match.
func pathProblem(path string) string {
	if !strings.HasPrefix(path, "/") {
		return `must start with "/"`
	}
	for _, c := range []byte(path) {
		if c < 0x20 || c == 0x7f {
			return "must not contain control characters"
		}
	}
	if i := strings.IndexAny(path, "?#%\\;"); i >= 0 {
		return fmt.Sprintf("must not contain %q: patterns are matched against the decoded, normalised path", path[i:i+1])
	}
	if strings.Contains(path, "//") {
		return `must not contain "//"`
	}
	for seg := range strings.SplitSeq(path[1:], "/") {
		if seg == "." || seg == ".." {
			return `must not contain "." or ".." segments`
		}
	}
	return ""
}

// upstream parses a route's upstream base URL.
func (v *validator) upstream(p, raw string) *url.URL {
	if raw == "" {
		v.errorf(p, "is required: the portal's base URL, such as \"http://10.0.0.5:8080\"")
		return nil
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "":
		// url's own message quotes the URL, which may hold credentials: say it plainly.
		v.errorf(p, "must be an absolute URL such as \"http://10.0.0.5:8080\"")
	case u.Scheme == "":
		v.errorf(p, "must be an absolute URL such as \"http://10.0.0.5:8080\"")
	case u.Scheme != "http" && u.Scheme != "https":
		v.errorf(p, "must use http or https")
	case u.User != nil:
		v.errorf(p, "must not contain user information: send credentials with request_headers")
	case u.Hostname() == "":
		v.errorf(p, "must have a host")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		v.errorf(p, "must not have a query or fragment")
	default:
		return u
	}
	return nil
}

// headers checks a header map: the names must be tokens that a proxy may set.
func (v *validator) headers(p string, h map[string]string) {
	// In file order, so that a duplicate is reported where it is, naming the earlier one.
	names := slices.Sorted(maps.Keys(h))
	slices.SortStableFunc(names, func(a, b string) int {
		pa, pb := v.d.keyPos[p+"."+a], v.d.keyPos[p+"."+b]
		return cmp.Or(cmp.Compare(pa.line, pb.line), cmp.Compare(pa.col, pb.col))
	})
	first := map[string]string{}
	for _, name := range names {
		hp := p + "." + name
		lower := strings.ToLower(name)
		other, dup := first[lower]
		if !dup {
			first[lower] = name
		}
		switch {
		case dup:
			v.keyErrorf(hp, "names the same header as %s (line %d): header names are case-insensitive", other, v.d.keyPos[p+"."+other].line)
		case !syntax.Token(name):
			v.keyErrorf(hp, "is not a valid header name")
		case lower == "host":
			v.keyErrorf(hp, "Host cannot be set here; use preserve_host")
		case hopByHop[lower] || strings.HasPrefix(lower, "proxy-"):
			v.keyErrorf(hp, "is a hop-by-hop header, which applies to one connection and is never forwarded")
		}
		for _, c := range []byte(h[name]) {
			if c < 0x20 && c != '\t' || c == 0x7f {
				v.errorf(hp, "value must not contain control characters")
				break
			}
		}
	}
}

// hopByHop lists the headers of RFC 9110 section 7.6.1 (lower-case); Proxy-* is checked apart.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "te": true, "trailer": true,
	"transfer-encoding": true, "upgrade": true,
}
