package authz

import (
	"slices"

	"github.com/portcullis-proxy/portcullis/config"
)

// Requirement is a route's `require` section compiled once, at configuration load, into the
// form Decide checks without allocating. Its lists are sorted and free of duplicates and
// empty entries; an empty list requires nothing of that kind.
//
// The zero Requirement requires a membership and a verified email domain and nothing else:
// the same as an org-scoped route with no `require` section. Fields are unexported so a
// Requirement always keeps the invariants CompileRequire gives it; it is immutable and safe
// to share between goroutines.
type Requirement struct {
	roles    []string
	purposes []string
	kinds    []string
	// skipEmailDomain is set only by an explicit `verified_email_domain: false`, so the zero
	// value keeps the safer check.
	skipEmailDomain bool
}

// CompileRequire compiles a route's requirements. A nil r (an org-scoped route without a
// `require` section) gives the zero Requirement. A nil VerifiedEmailDomain means true, as in
// the configuration defaults.
//
// Values are taken as written: config validation has already refused malformed role,
// purpose and kind names. An unknown kind in the list is harmless: Decide refuses every
// membership of an unknown kind anyway.
func CompileRequire(r *config.Require) Requirement {
	if r == nil {
		return Requirement{}
	}
	return Requirement{
		roles:           compileList(r.Roles),
		purposes:        compileList(r.Purposes),
		kinds:           compileList(r.Kinds),
		skipEmailDomain: r.VerifiedEmailDomain != nil && !*r.VerifiedEmailDomain,
	}
}

// compileList returns a sorted, deduplicated copy without empty strings (an empty name must
// never match an empty role on a record), or nil when nothing is left.
func compileList(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Clip(slices.Compact(out))
}

// Roles returns the roles of which the membership must hold at least one; nil: no role
// required. The slice is shared: callers must not modify it.
func (q Requirement) Roles() []string { return q.roles }

// Purposes returns the purposes of which the membership must hold at least one unexpired
// grant; nil: no purpose required. The slice is shared: callers must not modify it.
func (q Requirement) Purposes() []string { return q.purposes }

// Kinds returns the membership kinds the route admits; nil: every known kind. The slice is
// shared: callers must not modify it.
func (q Requirement) Kinds() []string { return q.kinds }

// VerifiedEmailDomain reports whether the person's email domain must be currently verified
// for the organisation (true unless the route says `verified_email_domain: false`).
func (q Requirement) VerifiedEmailDomain() bool { return !q.skipEmailDomain }

// has reports whether the sorted list holds s. Lists are short (a handful of names), so a
// binary search is plenty and allocates nothing.
func has(sorted []string, s string) bool {
	_, found := slices.BinarySearch(sorted, s)
	return found
}
