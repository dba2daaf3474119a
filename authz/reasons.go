package authz

// Reason is the stable code of a decision. It is the same string in the log line, the metric
// label, the audit event and the page the person sees, so it never changes once released;
// new situations get new codes.
type Reason string

// The reasons Decide gives, in the order Decide checks them (the first failing check wins).
// ReasonAllowed is the only one with Allow true.
const (
	// ReasonNoOrg: the route is org-scoped but no valid organisation id could be determined
	// for the request (no host label, path segment, trusted header or session choice).
	ReasonNoOrg Reason = "no_org"
	// ReasonOrgUnknown: no organisation record exists for the id (or the record loaded is
	// for another id).
	ReasonOrgUnknown Reason = "org_unknown"
	// ReasonOrgInactive: the organisation is suspended, ended, past its contract end, merged
	// into another, or has a status Portcullis does not know.
	ReasonOrgInactive Reason = "org_inactive"
	// ReasonNotMember: the person holds no membership in the organisation (or the record
	// loaded is for another person or organisation).
	ReasonNotMember Reason = "not_member"
	// ReasonMembershipRevoked: the membership was revoked.
	ReasonMembershipRevoked Reason = "membership_revoked"
	// ReasonMembershipSuspended: the membership is suspended, or has a status Portcullis does
	// not know.
	ReasonMembershipSuspended Reason = "membership_suspended"
	// ReasonMembershipExpired: the membership's expiry has passed.
	ReasonMembershipExpired Reason = "membership_expired"
	// ReasonReviewOverdue: the membership was due for re-approval and was not reviewed.
	ReasonReviewOverdue Reason = "review_overdue"
	// ReasonEmailDomainNotVerified: the person's email address is not verified, or its
	// domain is not a verified domain of the organisation (pending, lapsed or not listed).
	ReasonEmailDomainNotVerified Reason = "email_domain_not_verified"
	// ReasonKindNotAllowed: the membership's kind is not one the route admits, or is a kind
	// Portcullis does not know.
	ReasonKindNotAllowed Reason = "kind_not_allowed"
	// ReasonRoleMissing: the membership holds none of the roles the route requires.
	ReasonRoleMissing Reason = "role_missing"
	// ReasonPurposeMissing: the membership holds no grant for any purpose the route requires.
	ReasonPurposeMissing Reason = "purpose_missing"
	// ReasonPurposeExpired: the membership holds grants for a required purpose, but every
	// one of them has expired.
	ReasonPurposeExpired Reason = "purpose_expired"
	// ReasonAllowed: every check passed.
	ReasonAllowed Reason = "allowed"
)

// Reasons returns every reason Decide can give, in check order, ending with ReasonAllowed:
// for pre-registering metric labels and for exhaustive tests. The slice is new on each call.
func Reasons() []Reason {
	return []Reason{
		ReasonNoOrg,
		ReasonOrgUnknown,
		ReasonOrgInactive,
		ReasonNotMember,
		ReasonMembershipRevoked,
		ReasonMembershipSuspended,
		ReasonMembershipExpired,
		ReasonReviewOverdue,
		ReasonEmailDomainNotVerified,
		ReasonKindNotAllowed,
		ReasonRoleMissing,
		ReasonPurposeMissing,
		ReasonPurposeExpired,
		ReasonAllowed,
	}
}

// String returns the code.
func (r Reason) String() string { return string(r) }
