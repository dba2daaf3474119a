package authz

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// The access lifecycle policy (README, "Governance"): per kind of membership, how long it may last,
// how often it is reviewed, who approves it and how many approvals it needs; which roles are
// privileged, held only just in time. Policy is the lifecycle section, compiled once. The same rules apply
// when a grant is written (CheckMembership, CheckRequest), when a request is approved
// (Approval) and at every decision (Decide with Input.Policy): a record that does not meet
// them, however it was written, stops granting.

// Policy is the compiled lifecycle policy; immutable and safe to share. A nil *Policy applies
// no lifecycle rule (for callers that decide without one: tests, the recovery guard's
// liveness check).
type Policy struct {
	kinds      [numKinds]KindRule
	privileged []privilegedRole // sorted by role
	adminRole  string
	requestTTL time.Duration
	// keyLife and keyOverlap bound machine identities' API keys (lifecycle.api_keys).
	keyLife, keyOverlap time.Duration
}

const numKinds = 5

var kindNames = [numKinds]string{store.KindEmployee, store.KindPartner, store.KindReseller, store.KindSupport, store.KindService}

func kindIndex(kind string) (int, bool) {
	switch kind {
	case store.KindEmployee:
		return 0, true
	case store.KindPartner:
		return 1, true
	case store.KindReseller:
		return 2, true
	case store.KindSupport:
		return 3, true
	case store.KindService:
		return 4, true
	}
	return 0, false
}

type privilegedRole struct {
	role         string
	maxElevation time.Duration
}

// KindRule is the policy of one kind, as it applies in one organisation.
type KindRule struct {
	// MaxDuration is the longest a grant may last; 0: no end required.
	MaxDuration time.Duration
	// ReviewEvery is the review period; 0: none.
	ReviewEvery time.Duration
	// Approvers are the approver rules (config.Approver*).
	Approvers []string
	// ApprovalsRequired is how many distinct approvers a request needs.
	ApprovalsRequired int
	// RequiresTicket: a request or grant needs a ticket reference.
	RequiresTicket bool
	// AllowedRoles, sorted; empty: any role, unless RestrictsRoles.
	AllowedRoles []string
	// restricted: an organisation named the roles allowed, and none of them is still
	// allowed by the platform (AllowedRoles is then empty, and means no role).
	restricted bool
}

// RestrictsRoles reports whether only AllowedRoles may be held (possibly none).
func (r *KindRule) RestrictsRoles() bool { return r.restricted || len(r.AllowedRoles) > 0 }

// CompilePolicy compiles the lifecycle section of a loaded configuration.
func CompilePolicy(l *config.Lifecycle) *Policy {
	p := &Policy{adminRole: l.AdminRole, requestTTL: l.RequestTTL.D(),
		keyLife: l.APIKeys.MaxLifetime.D(), keyOverlap: l.APIKeys.MaxOverlap.D()}
	for i, kind := range kindNames {
		k, _ := l.Kinds.Of(kind)
		p.kinds[i] = KindRule{
			MaxDuration: k.MaxDuration.OrZero(), ReviewEvery: k.ReviewEvery.OrZero(),
			Approvers: slices.Clone(k.Approvers), ApprovalsRequired: max(k.ApprovalsRequired, 1),
			RequiresTicket: k.RequiresTicket != nil && *k.RequiresTicket, AllowedRoles: compileList(k.AllowedRoles),
		}
	}
	for role, pr := range l.PrivilegedRoles {
		p.privileged = append(p.privileged, privilegedRole{role: role, maxElevation: pr.MaxElevation.D()})
	}
	slices.SortFunc(p.privileged, func(a, b privilegedRole) int { return strings.Compare(a.role, b.role) })
	return p
}

// AdminRole is the role that makes a member an administrator of their organisation.
func (p *Policy) AdminRole() string { return p.adminRole }

// RequestTTL is how long a request waits for its approvals.
func (p *Policy) RequestTTL() time.Duration { return p.requestTTL }

// APIKeyLimits are the longest an API key may live and the longest a rotated-out key keeps
// working beside its replacement.
func (p *Policy) APIKeyLimits() (lifetime, overlap time.Duration) { return p.keyLife, p.keyOverlap }

// Privileged reports whether role is reached only just in time, and for how long at most.
func (p *Policy) Privileged(role string) (time.Duration, bool) {
	i, ok := slices.BinarySearchFunc(p.privileged, role, func(pr privilegedRole, r string) int { return strings.Compare(pr.role, r) })
	if !ok {
		return 0, false
	}
	return p.privileged[i].maxElevation, true
}

// Kind returns the rule of kind in the organisation o (whose policy may tighten the
// platform's), and false for a kind Portcullis does not know. It allocates nothing.
func (p *Policy) Kind(kind string, o *store.Org) (KindRule, bool) {
	i, ok := kindIndex(kind)
	if !ok {
		return KindRule{}, false
	}
	r := p.kinds[i]
	if o == nil || o.Policy == nil {
		return r, true
	}
	l, ok := o.Policy.Kinds[kind]
	if !ok {
		return r, true
	}
	// The stricter of both, field by field: an organisation can only tighten.
	if l.MaxDuration > 0 && (r.MaxDuration == 0 || l.MaxDuration < r.MaxDuration) {
		r.MaxDuration = l.MaxDuration
	}
	if l.ReviewEvery > 0 && (r.ReviewEvery == 0 || l.ReviewEvery < r.ReviewEvery) {
		r.ReviewEvery = l.ReviewEvery
	}
	r.ApprovalsRequired = max(r.ApprovalsRequired, l.ApprovalsRequired)
	r.RequiresTicket = r.RequiresTicket || l.RequiresTicket
	if len(l.Approvers) > 0 {
		// Those of the organisation's the platform still has (all of them, unless the
		// configuration changed since): never a rule the platform does not name.
		r.Approvers = narrow(r.Approvers, l.Approvers, false)
	}
	if len(l.AllowedRoles) > 0 {
		if len(r.AllowedRoles) == 0 {
			r.AllowedRoles = sortedList(l.AllowedRoles)
		} else {
			r.AllowedRoles = narrow(r.AllowedRoles, l.AllowedRoles, true)
		}
		r.restricted = true
	}
	return r, true
}

// narrow returns the elements of org that platform holds: org itself when it holds them all
// (the usual case, which allocates nothing; callers must not modify the result), else a new
// list. sorted: platform is sorted, and the result must be.
func narrow(platform, org []string, sorted bool) []string {
	in := func(s string) bool {
		if sorted {
			return has(platform, s)
		}
		return slices.Contains(platform, s)
	}
	all := true
	for _, s := range org {
		all = all && in(s)
	}
	if all && (!sorted || slices.IsSorted(org)) {
		return slices.Clip(org) // an append by a caller copies rather than writes into the org's record
	}
	out := []string{}
	for _, s := range org {
		if in(s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if sorted {
		slices.Sort(out)
	}
	return out
}

// sortedList is l when it is sorted (no allocation), else a sorted copy.
func sortedList(l []string) []string {
	if slices.IsSorted(l) {
		return slices.Clip(l)
	}
	c := slices.Clone(l)
	slices.Sort(c)
	return slices.Compact(c)
}

// roleAllowed reports whether r lets a membership of its kind hold role.
func (r *KindRule) roleAllowed(role string) bool {
	if len(r.AllowedRoles) == 0 {
		return !r.restricted
	}
	return has(r.AllowedRoles, role)
}

// policySlack absorbs clock differences between the replica that wrote a membership and the
// one deciding on it, so a grant of exactly max_duration is not refused a second later.
const policySlack = time.Minute

// exceeds reports whether m lasts longer than r allows: no end where one is required, or an
// end further from the last time the membership was written than max_duration.
func (r *KindRule) exceeds(m *store.Membership) bool {
	if r.MaxDuration == 0 {
		return false
	}
	if m.ExpiresAt.IsZero() {
		return true
	}
	from := m.Updated
	if from.IsZero() {
		from = m.Created
	}
	return !from.IsZero() && m.ExpiresAt.Sub(from) > r.MaxDuration+policySlack
}

// holdsRequiredRole reports whether m holds one of the required roles under p at now: a
// standing role the kind allows that is not privileged, or a role grant that counts
// (grantCounts). privilegedOnly reports that a required role is held, but only as
// a standing privileged role, which must be requested.
func (p *Policy) holdsRequiredRole(m *store.Membership, kr *KindRule, required []string, now time.Time) (held, privilegedOnly bool) {
	for _, role := range m.Roles {
		if !has(required, role) || !kr.roleAllowed(role) {
			continue
		}
		if _, priv := p.Privileged(role); priv {
			privilegedOnly = true
			continue
		}
		return true, false
	}
	for i := range m.RoleGrants {
		g := &m.RoleGrants[i]
		if has(required, g.Role) && p.grantCounts(g, kr, now) {
			return true, false
		}
	}
	return false, privilegedOnly
}

// grantCounts reports whether the role grant g counts at now: unexpired, a role the kind
// allows, and, for a privileged role, no longer from its grant to its end than the role's
// max_elevation, however it was written (a grant from before the policy tightened, a record
// written around the admin API).
func (p *Policy) grantCounts(g *store.RoleGrant, kr *KindRule, now time.Time) bool {
	if passed(g.ExpiresAt, now) || !kr.roleAllowed(g.Role) {
		return false
	}
	if maxEl, priv := p.Privileged(g.Role); priv && (g.GrantedAt.IsZero() || g.ExpiresAt.Sub(g.GrantedAt) > maxEl+policySlack) {
		return false
	}
	return true
}

// effectiveRoles returns the roles m holds at now, for the identity headers: m.Roles itself
// when the policy changes nothing (no allocation), else the standing roles that count and the
// live role grants.
func (p *Policy) effectiveRoles(m *store.Membership, kr *KindRule, now time.Time) []string {
	plain := len(m.RoleGrants) == 0
	for _, role := range m.Roles {
		if _, priv := p.Privileged(role); priv || !kr.roleAllowed(role) {
			plain = false
		}
	}
	if plain {
		return m.Roles
	}
	out := make([]string, 0, len(m.Roles)+len(m.RoleGrants))
	for _, role := range m.Roles {
		if _, priv := p.Privileged(role); !priv && kr.roleAllowed(role) {
			out = append(out, role)
		}
	}
	for i := range m.RoleGrants {
		g := &m.RoleGrants[i]
		if p.grantCounts(g, kr, now) && !slices.Contains(out, g.Role) {
			out = append(out, g.Role)
		}
	}
	slices.Sort(out)
	return out
}

// Violation is a write that the policy refuses: Rule names the configuration key (or
// organisation limit) that refuses it, Message says how, for the person who asked.
type Violation struct {
	Rule    string
	Message string
}

func (v Violation) Error() string { return v.Rule + ": " + v.Message }

// CheckMembership reports every way m, about to be written at now in organisation o, breaks
// the policy: a kind Portcullis does not know, no end or an end too far for its kind, a role
// its kind does not allow, a privileged role as a standing role, a role grant longer than
// the role's max_elevation, or no ticket where one is required (ticket: the reason given).
func (p *Policy) CheckMembership(m *store.Membership, o *store.Org, ticket string, now time.Time) []Violation {
	kr, ok := p.Kind(m.Kind, o)
	if !ok {
		return []Violation{{"kind", fmt.Sprintf("%q is not a membership kind", m.Kind)}}
	}
	key := "lifecycle.kinds." + m.Kind
	var out []Violation
	if kr.MaxDuration > 0 {
		switch {
		case m.ExpiresAt.IsZero():
			out = append(out, Violation{key + ".max_duration", fmt.Sprintf("%s membership must end, within %s", article(m.Kind), showDuration(kr.MaxDuration))})
		case m.ExpiresAt.Sub(now) > kr.MaxDuration:
			out = append(out, Violation{key + ".max_duration", fmt.Sprintf("%s membership may last at most %s; this one would last %s",
				article(m.Kind), showDuration(kr.MaxDuration), showDuration(m.ExpiresAt.Sub(now)))})
		}
	}
	switch {
	case kr.MaxDuration > 0 || kr.ReviewEvery == 0 || !m.ReviewBy.IsZero():
	case m.ExpiresAt.IsZero():
		out = append(out, Violation{key + ".review_every", fmt.Sprintf("%s membership without an end needs a review date", article(m.Kind))})
	case m.ExpiresAt.Sub(now) > kr.ReviewEvery+policySlack:
		// One that ends before a review would be due needs none.
		out = append(out, Violation{key + ".review_every", fmt.Sprintf("%s membership lasting longer than %s needs a review date",
			article(m.Kind), showDuration(kr.ReviewEvery))})
	}
	if kr.ReviewEvery > 0 && !m.ReviewBy.IsZero() && m.ReviewBy.Sub(now) > kr.ReviewEvery+policySlack {
		out = append(out, Violation{key + ".review_every", fmt.Sprintf("%s membership is reviewed at least every %s; this review date is %s away",
			article(m.Kind), showDuration(kr.ReviewEvery), showDuration(m.ReviewBy.Sub(now)))})
	}
	for _, role := range m.Roles {
		if !kr.roleAllowed(role) {
			out = append(out, Violation{key + ".allowed_roles", fmt.Sprintf("%s membership may not hold the role %q", article(m.Kind), role)})
		}
		if _, priv := p.Privileged(role); priv {
			out = append(out, Violation{"lifecycle.privileged_roles." + role, fmt.Sprintf("%q is privileged: it is held only just in time, through an approved request", role)})
		}
	}
	for _, g := range m.RoleGrants {
		if !kr.roleAllowed(g.Role) {
			out = append(out, Violation{key + ".allowed_roles", fmt.Sprintf("%s membership may not hold the role %q", article(m.Kind), g.Role)})
		}
		if maxEl, priv := p.Privileged(g.Role); priv && g.ExpiresAt.Sub(now) > maxEl+policySlack {
			out = append(out, Violation{"lifecycle.privileged_roles." + g.Role + ".max_elevation",
				fmt.Sprintf("%q may be held for at most %s at a time", g.Role, showDuration(maxEl))})
		}
	}
	if kr.RequiresTicket && strings.TrimSpace(ticket) == "" {
		out = append(out, Violation{key + ".requires_ticket", fmt.Sprintf("%s membership needs a ticket reference", article(m.Kind))})
	}
	return out
}

// article is the kind with its indefinite article: "an employee", "a partner".
func article(kind string) string {
	if kind != "" && strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + kind
	}
	return "a " + kind
}

// CheckChange is CheckMembership for a change to a membership that exists: the violations of
// after that before did not have. A request's grant is refused for what it breaks, not for
// what was broken before the policy tightened (a standing role that became privileged, say);
// reviews find those. before nil: every violation of after.
func (p *Policy) CheckChange(before, after *store.Membership, o *store.Org, ticket string, now time.Time) []Violation {
	vs := p.CheckMembership(after, o, ticket, now)
	if before == nil || before.Kind != after.Kind {
		return vs
	}
	had := map[string]bool{}
	for _, v := range p.CheckMembership(before, o, ticket, now) {
		had[v.Rule] = true
	}
	var out []Violation
	for _, v := range vs {
		if !had[v.Rule] {
			out = append(out, v)
		}
	}
	return out
}

// showDuration writes whole days as "30d" and anything from two days in days ("400d" within
// a minute of a whole day, else "365.4d"), anything shorter as Go does ("36h", "1h30m").
func showDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d%day == 0 && d > 0 || d >= 2*day {
		if whole := d.Round(day); (d - whole).Abs() < time.Minute {
			return fmt.Sprintf("%dd", whole/day)
		}
		return fmt.Sprintf("%.1fd", d.Hours()/24)
	}
	s := d.Round(time.Second).String() // "8h0m0s", "1h30m0s", "45m0s", "10s"
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// lifecycle checks the membership m of kind rule kr against the policy at decision time; ""
// when it meets it.
func (p *Policy) lifecycle(m *store.Membership, kr *KindRule) reason.Code {
	if kr.exceeds(m) {
		return reason.PolicyExceeded
	}
	return ""
}
