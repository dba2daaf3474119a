package config

import (
	"fmt"
	"strings"
)

// maxShadowRoutes bounds the quadratic shadow analysis; real route tables are far smaller.
const maxShadowRoutes = 5000

// shadows warns about every route that can never match because an earlier route matches
// every request it would (the first matching route wins). It names the first such route.
// Routes with errors are left out: their warnings would only add noise to the errors.
func (v *validator) shadows(rs []Route, bad []bool) {
	if len(rs) > maxShadowRoutes {
		return
	}
	sets := make([]hostSet, len(rs))
	for i := range rs {
		sets[i] = newHostSet(rs[i].Hosts)
	}
	for j := 1; j < len(rs); j++ {
		if bad[j] {
			continue
		}
		for i := range j {
			if !bad[i] && coversWith(&rs[i], sets[i], &rs[j]) {
				v.warnf(fmt.Sprintf("routes[%d]", j),
					"route %s can never match: route %s (line %d) comes first and matches every request it would",
					v.show(fmt.Sprintf("routes[%d].name", j), rs[j].Name), v.show(fmt.Sprintf("routes[%d].name", i), rs[i].Name), rs[i].Line)
				break
			}
		}
	}
}

// badRoutes marks the routes with errors, which the analyses across routes leave out: their
// warnings would only add noise to the errors.
func (v *validator) badRoutes(rs []Route) []bool {
	bad := make([]bool, len(rs))
	for _, list := range []Errors{v.d.errs, v.errs} {
		for _, e := range list {
			var i int
			if _, err := fmt.Sscanf(e.Key, "routes[%d]", &i); err == nil && i >= 0 && i < len(rs) {
				bad[i] = true
			}
		}
	}
	return bad
}

// covers reports whether every request that b matches is matched by a: a's hosts, path and
// methods each include b's.
func covers(a, b *Route) bool { return coversWith(a, newHostSet(a.Hosts), b) }

// coversWith is covers with a's hosts already in a set, which keeps the analysis of large
// route tables linear in the number of hosts.
func coversWith(a *Route, aHosts hostSet, b *Route) bool {
	return pathCovers(a, b) && methodsCover(a.Methods, b.Methods) && hostsCover(aHosts, b.Hosts)
}

// hostSet holds a route's hosts as written (validation made them lower-case); nil is any host.
type hostSet map[string]bool

func newHostSet(hosts []string) hostSet {
	if len(hosts) == 0 {
		return nil
	}
	s := make(hostSet, len(hosts))
	for _, h := range hosts {
		s[h] = true
	}
	return s
}

// hostsCover: an empty list is any host; "*.x.com" covers "a.x.com" (one extra label only).
func hostsCover(a hostSet, b []string) bool {
	if a == nil {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, h := range b {
		if a[h] {
			continue
		}
		i := strings.IndexByte(h, '.')
		if strings.HasPrefix(h, "*") || i <= 0 || !a["*"+h[i:]] {
			return false
		}
	}
	return true
}

// pathCovers compares the path patterns. Prefix matching is segment-aligned: /a covers /a
// and /a/b but not /ab. A case-insensitive route compares case-folded; a case-sensitive one
// covers a case-insensitive one only when its pattern has no letters to differ in case.
func pathCovers(a, b *Route) bool {
	pa, pb := a.Path, b.Path
	if a.CaseInsensitive {
		pa, pb = strings.ToLower(pa), strings.ToLower(pb)
	} else if b.CaseInsensitive && strings.ToLower(pa) != strings.ToUpper(pa) {
		return false
	}
	if a.PathMatch == PathExact {
		return b.PathMatch == PathExact && pa == pb
	}
	return pa == "/" || pa == pb || strings.HasPrefix(pb, pa+"/") ||
		strings.HasSuffix(pa, "/") && strings.HasPrefix(pb, pa)
}

// methodsCover: an empty list is every method.
func methodsCover(a, b []string) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, m := range b {
		found := false
		for _, ma := range a {
			if ma == m {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
