package authz

import (
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/store"
)

// Input is everything Decide looks at: the facts of one request on an org-scoped route,
// already gathered by the caller. Decide only reads it; the pointed-to records are not
// modified and may be shared with a cache.
type Input struct {
	// User is the person's stable key (store.UserKey of the session's issuer and subject).
	// Empty matches no membership.
	User string
	// Email is the person's email address from the session, as the provider gave it.
	Email string
	// EmailVerified is the provider's email_verified claim.
	EmailVerified bool

	// OrgID is the organisation the request acts for, from OrgResolver.Resolve; empty when
	// none could be determined.
	OrgID string
	// Require is the route's compiled requirement. The zero value requires a live membership
	// and a verified email domain.
	Require Requirement

	// Org is the organisation record for OrgID; nil when the store has none.
	Org *store.Org
	// Membership is the person's membership record in OrgID; nil when the store has none.
	Membership *store.Membership

	// Policy is the lifecycle policy (CompilePolicy); nil applies none.
	Policy *Policy
	// Providers is the trust rule (CompileProviders): the membership's person must be signed
	// in through a provider the organisation trusts. nil trusts every provider.
	Providers *Providers
}

// Decision is the outcome of Decide. Its slices and strings refer to the Input's records and
// the route's Requirement, so producing it allocates nothing; callers must not modify them.
type Decision struct {
	// Allow is true only with Reason reason.Allowed.
	Allow bool
	// Reason is why: one of Reasons(), in package reason's table.
	Reason reason.Code
	// Member reports that a membership record for this person and organisation exists, in
	// whatever state. When false, a page shown to the person should say no more than
	// not_member: org_unknown and org_inactive would otherwise tell an outsider which org ids
	// exist and what became of them. Logs and audit events keep the precise Reason.
	Member bool

	// Org is the organisation id the request was decided for ("" for reason.NoOrg).
	Org string
	// Kind, Roles and Purpose are set only on allow, for the identity headers and assertion:
	// the membership's kind and roles, and the purpose whose grant satisfied the route (""
	// when the route requires no purpose).
	Kind    string
	Roles   []string
	Purpose string
	// Grant, on allow for a route that requires a purpose, is the live grant of Purpose
	// that satisfied it (the one that lasts longest), for the assertion to say why and until
	// when; it points into the Input's membership record.
	Grant *store.Grant
	// ElevationsAfter, on allow, is the membership's: step-up elevations granted before it
	// do not count for this organisation (Elevated).
	ElevationsAfter time.Time
	// Sponsor, on allow by DecideMachine, is the user key of the machine's sponsor.
	Sponsor string

	// Missing says, on deny, what was missing, for the page and the audit event.
	Missing Missing
}

// Missing details a denial enough for a page to say what is needed and whom to ask. Only the
// fields that concern the Reason are set.
type Missing struct {
	// Roles: any one of these is needed (reason.RoleMissing).
	Roles []string
	// Purposes: an unexpired grant for any one of these is needed (reason.PurposeMissing,
	// reason.PurposeExpired).
	Purposes []string
	// Kinds: the membership kinds the route admits (reason.KindNotAllowed; nil when the
	// membership's kind is simply unknown).
	Kinds []string
	// EmailDomain is the domain part of the person's email as written, which is not a
	// verified domain of the organisation (reason.EmailDomainNotVerified).
	EmailDomain string
	// EmailUnverified: the email address itself is not verified by the provider
	// (reason.EmailDomainNotVerified).
	EmailUnverified bool
	// Ended is when access ended: the contract end (reason.OrgInactive), the membership's
	// expiry (reason.MembershipExpired), its review date (reason.ReviewOverdue), or the last
	// expiry of the required purpose's grants (reason.PurposeExpired). Zero otherwise.
	Ended time.Time
	// MergedInto names the organisation that absorbed this one (reason.OrgInactive).
	MergedInto string
	// Contact is whom the organisation says to ask for access (from the org record), set
	// on every denial for which the org record is known.
	Contact string
}

// Decide decides whether a person may use an org-scoped route for an organisation, now. It
// is a pure function: no I/O, no clock of its own, the same answer for the same input, and
// no allocation (but for the roles of an allowed membership that holds role grants, or roles
// the policy does not count). Default deny: a state, kind or record it does not recognise is
// a denial.
//
// Checks run in this order, and the first that fails gives the Reason:
//
//  1. no_org: OrgID is empty or not a valid org id.
//  2. org_unknown: no org record, or one whose ID is not OrgID.
//  3. org_inactive: status not active (suspended, ended, unknown), merged into another org,
//     or contract end reached.
//  4. not_member: no membership record, or one whose Org or User differs from the request
//     (defence against a cache or key mix-up), or an empty User; then provider_not_trusted
//     (with Providers): the record's person is of a provider the organisation does not trust.
//  5. membership_revoked, then membership_suspended (also for an unknown status).
//  6. membership_expired, then review_overdue.
//  7. email_domain_not_verified (unless the route lifts it).
//  8. kind_not_allowed (also for an unknown kind, whatever the route says).
//  9. policy_exceeded (with a Policy): the membership lasts longer than its kind allows.
//  10. role_missing, or role_requires_request when a required role is held only as a
//     standing role but is privileged. With a Policy, a role the kind does not allow does not
//     count, nor does a privileged standing role; an unexpired role grant does.
//  11. purpose_missing, or purpose_expired when every grant for a required purpose expired.
//
// Why this order: the organisation is the root of every membership, so when the contract is
// over that is the cause to report, not the membership it took down with it. Record
// identity (not_member) precedes every property of the record, since the properties of a
// record for someone else mean nothing. An explicit administrative act (revoked,
// suspended) is reported before the lapse of time (expired, review overdue), because it is
// the decision a person must go and contest. The email domain is part of the relationship's
// liveness, not an entitlement: a lapsed domain means the person may have left, so it comes
// before kind, role and purpose. Entitlements go from coarse to fine.
//
// Times: a zero time is unset (no expiry, no review date, no contract end); at the instant
// of a deadline access has ended (expired when !now.Before(deadline)).
func Decide(in Input, now time.Time) Decision {
	if !syntax.OrgID(in.OrgID) {
		return deny(reason.NoOrg, Decision{})
	}
	d := Decision{Org: in.OrgID}
	m := in.Membership
	d.Member = m != nil && in.User != "" && m.Org == in.OrgID && m.User == in.User

	o := in.Org
	if o == nil || o.ID != in.OrgID {
		return deny(reason.OrgUnknown, d)
	}
	d.Missing.Contact = o.Contact
	switch {
	case o.Status != store.OrgActive:
		return deny(reason.OrgInactive, d)
	case o.MergedInto != "":
		d.Missing.MergedInto = o.MergedInto
		return deny(reason.OrgInactive, d)
	case passed(o.ContractEnd, now):
		d.Missing.Ended = o.ContractEnd
		return deny(reason.OrgInactive, d)
	}

	if !d.Member {
		return deny(reason.NotMember, d)
	}
	if !in.Providers.TrustsUser(o, m.User) {
		return deny(reason.ProviderNotTrusted, d)
	}
	switch m.Status {
	case store.MembershipActive:
	case store.MembershipRevoked:
		return deny(reason.MembershipRevoked, d)
	default: // suspended, or a status this version does not know
		return deny(reason.MembershipSuspended, d)
	}
	if passed(m.ExpiresAt, now) {
		d.Missing.Ended = m.ExpiresAt
		return deny(reason.MembershipExpired, d)
	}
	if passed(m.ReviewBy, now) {
		d.Missing.Ended = m.ReviewBy
		return deny(reason.ReviewOverdue, d)
	}

	q := &in.Require
	if !q.skipEmailDomain {
		domain := emailDomain(in.Email)
		switch {
		case !in.EmailVerified:
			d.Missing.EmailUnverified = true
			return deny(reason.EmailDomainNotVerified, d)
		case !verifiedDomain(o.Domains, domain):
			d.Missing.EmailDomain = domain
			return deny(reason.EmailDomainNotVerified, d)
		}
	}

	if !knownKind(m.Kind) || (len(q.kinds) > 0 && !has(q.kinds, m.Kind)) {
		d.Missing.Kinds = q.kinds
		return deny(reason.KindNotAllowed, d)
	}
	p := in.Policy
	var kr KindRule
	if p != nil {
		kr, _ = p.Kind(m.Kind, o)
		if code := p.lifecycle(m, &kr); code != "" {
			d.Missing.Ended = m.ExpiresAt
			return deny(code, d)
		}
	}
	if len(q.roles) > 0 {
		held, privilegedOnly := holdsRole(m.Roles, q.roles), false
		if p != nil {
			held, privilegedOnly = p.holdsRequiredRole(m, &kr, q.roles, now)
		}
		if !held {
			d.Missing.Roles = q.roles
			if privilegedOnly {
				return deny(reason.RoleRequiresRequest, d)
			}
			return deny(reason.RoleMissing, d)
		}
	}
	var grant *store.Grant
	if len(q.purposes) > 0 {
		var lastExpiry time.Time
		grant, lastExpiry = livePurpose(m.Grants, q.purposes, now)
		if grant == nil {
			d.Missing.Purposes = q.purposes
			if lastExpiry.IsZero() {
				return deny(reason.PurposeMissing, d)
			}
			d.Missing.Ended = lastExpiry
			return deny(reason.PurposeExpired, d)
		}
	}

	roles := m.Roles
	if p != nil {
		roles = p.effectiveRoles(m, &kr, now)
	}
	var purpose string
	if grant != nil {
		purpose = grant.Purpose
	}
	return Decision{
		Allow:   true,
		Reason:  reason.Allowed,
		Member:  true,
		Org:     in.OrgID,
		Kind:    m.Kind,
		Roles:   roles,
		Purpose: purpose,
		Grant:   grant,

		ElevationsAfter: m.ElevationsAfter,
	}
}

// deny finishes a denial. Kind, Roles and Purpose stay empty: they describe what is
// forwarded, and nothing is.
func deny(r reason.Code, d Decision) Decision {
	d.Allow = false
	d.Reason = r
	return d
}

// passed reports whether a deadline is set and reached: at the deadline itself access has
// ended.
func passed(deadline, now time.Time) bool {
	return !deadline.IsZero() && !now.Before(deadline)
}

// emailDomain returns what follows the last "@" ("" when there is none). The last, because a
// quoted local part may itself hold "@".
func emailDomain(email string) string {
	i := strings.LastIndexByte(email, '@')
	if i < 0 {
		return ""
	}
	return email[i+1:]
}

// verifiedDomain reports whether domain, compared case-insensitively in ASCII only, is a
// verified domain of the organisation. Exact names only: a subdomain (mail.acme.com) is not
// covered by its parent unless the organisation lists it too.
func verifiedDomain(domains []store.Domain, domain string) bool {
	if domain == "" {
		return false
	}
	for i := range domains {
		if domains[i].Status == store.DomainVerified && asciiEqualFold(domains[i].Name, domain) {
			return true
		}
	}
	return false
}

// AddressInDomain reports whether email's domain (what follows its last "@") is domain,
// compared as verified domains are: ASCII case only, exact names. Neither may be empty.
func AddressInDomain(email, domain string) bool {
	d := emailDomain(email)
	return d != "" && domain != "" && asciiEqualFold(d, domain)
}

// asciiEqualFold compares after lower-casing ASCII letters only. strings.EqualFold would
// also apply Unicode folding, under which "\u212a" (KELVIN SIGN) equals "k": an address at
// such a look-alike domain must not match a verified one. Stored names are lower-case ASCII
// (A-labels), so any non-ASCII byte simply fails to match; both sides are folded, for names
// that are not stored (a provider's claim).
func asciiEqualFold(stored, given string) bool {
	if len(stored) != len(given) {
		return false
	}
	for i := 0; i < len(stored); i++ {
		a, b := stored[i], given[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// FromOutside reports whether kind is a membership of someone from outside the organisation:
// a partner, a reseller, the portal owner's support staff. Their use of it is what the
// organisation's administrators must be able to see (audit.AccessReached).
func FromOutside(kind string) bool {
	return kind == store.KindPartner || kind == store.KindReseller || kind == store.KindSupport
}

// knownKind reports whether k is a membership kind this version understands.
func knownKind(k string) bool {
	switch k {
	case store.KindEmployee, store.KindPartner, store.KindReseller, store.KindSupport, store.KindService:
		return true
	}
	return false
}

// holdsRole reports whether any of the membership's roles is in the sorted required list.
func holdsRole(held, required []string) bool {
	for _, r := range held {
		if has(required, r) {
			return true
		}
	}
	return false
}

// livePurpose returns the live grant of the first required purpose (in the requirement's
// sorted order) that has one, and of that purpose's live grants the one that lasts longest
// (one without an end first, then the first stored among equals), so the answer does not
// depend on how grants are stored. When there is none, it returns nil and the latest
// expiry among the grants for required purposes, zero when there were no such grants
// (missing rather than expired).
func livePurpose(grants []store.Grant, required []string, now time.Time) (*store.Grant, time.Time) {
	var lastExpiry time.Time
	for _, p := range required {
		var best *store.Grant
		for i := range grants {
			g := &grants[i]
			if g.Purpose != p {
				continue
			}
			if !passed(g.ExpiresAt, now) {
				if best == nil || lastsLonger(g.ExpiresAt, best.ExpiresAt) {
					best = g
				}
				continue
			}
			if g.ExpiresAt.After(lastExpiry) {
				lastExpiry = g.ExpiresAt
			}
		}
		if best != nil {
			return best, time.Time{}
		}
	}
	return nil, lastExpiry
}

// lastsLonger reports whether an end of a is later than an end of b, zero being none.
func lastsLonger(a, b time.Time) bool {
	switch {
	case b.IsZero():
		return false
	case a.IsZero():
		return true
	}
	return a.After(b)
}
