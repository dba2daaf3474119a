package store

import (
	"slices"
	"time"
)

// The records below are plain data: what Redis holds about organisations and memberships.
// They carry no policy; authz decides what they mean. Times are UTC; a zero time means "not
// set" (no expiry, no review date). JSON tags are the stored form.

// Org statuses.
const (
	OrgActive    = "active"
	OrgSuspended = "suspended"
	OrgEnded     = "ended"
)

// Domain statuses.
const (
	DomainVerified = "verified"
	DomainPending  = "pending"
	DomainLapsed   = "lapsed"
)

// Membership statuses.
const (
	MembershipActive    = "active"
	MembershipSuspended = "suspended"
	MembershipRevoked   = "revoked"
)

// Membership kinds.
const (
	KindEmployee = "employee"
	KindPartner  = "partner"
	KindReseller = "reseller"
	KindSupport  = "support"
	KindService  = "service"
)

// Org is a customer organisation.
type Org struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"` // OrgActive, OrgSuspended, OrgEnded
	// ContractEnd, when set, is when the business relationship ends; after it the org is
	// treated as ended whatever its status says.
	ContractEnd time.Time `json:"contract_end,omitzero"`
	// MergedInto, when set, names the org that absorbed this one; a merged org is inactive.
	MergedInto string   `json:"merged_into,omitempty"`
	Domains    []Domain `json:"domains,omitempty"`
	// Contact is whom members should ask for access (shown on denial pages).
	Contact string `json:"contact,omitempty"`
	// Providers, when set, are the only OpenID Providers (configured names, sorted) that may
	// sign people in for this organisation; empty: the shared providers (authz.Providers).
	Providers []string  `json:"providers,omitempty"`
	Updated   time.Time `json:"updated,omitzero"`
	// Policy tightens the platform's lifecycle policy for this organisation; nil: the
	// platform's as it is. It can only tighten (authz applies the stricter of both).
	Policy *OrgPolicy `json:"policy,omitempty"`
	// Delegations let other organisations' administrators administer this one (delegations.go),
	// ended ones included, for the record.
	Delegations []Delegation `json:"delegations,omitempty"`
}

// VerifiedDomain reports whether o holds domain (lower case) verified now: not pending, not
// lapsed.
func (o *Org) VerifiedDomain(domain string) bool {
	return o != nil && slices.ContainsFunc(o.Domains, func(d Domain) bool { return d.Name == domain && d.Status == DomainVerified })
}

// OrgPolicy is an organisation's own, stricter lifecycle limits, per membership kind.
type OrgPolicy struct {
	Kinds map[string]KindLimits `json:"kinds,omitempty"`
}

// KindLimits are an organisation's limits for one kind; zero values leave the platform's.
type KindLimits struct {
	// MaxDuration, when set, is a shorter longest membership than the platform's.
	MaxDuration time.Duration `json:"max_duration,omitempty"`
	// ReviewEvery, when set, is a shorter review period.
	ReviewEvery time.Duration `json:"review_every,omitempty"`
	// ApprovalsRequired, when more than the platform's, is the number of approvals needed.
	ApprovalsRequired int `json:"approvals_required,omitempty"`
	// RequiresTicket requires a ticket even where the platform does not.
	RequiresTicket bool `json:"requires_ticket,omitempty"`
	// Approvers, when set, are the only approver rules that apply here: some of the
	// platform's, never another.
	Approvers []string `json:"approvers,omitempty"`
	// AllowedRoles, when set, are the only roles a membership of the kind may hold here
	// (sorted): within the platform's list, where it has one.
	AllowedRoles []string `json:"allowed_roles,omitempty"`
}

// IsZero reports whether l leaves every platform rule as it is.
func (l KindLimits) IsZero() bool {
	return l.MaxDuration == 0 && l.ReviewEvery == 0 && l.ApprovalsRequired == 0 && !l.RequiresTicket &&
		len(l.Approvers) == 0 && len(l.AllowedRoles) == 0
}

// Domain is an email domain an organisation claims, with the state of its verification.
// Name is lower-case ASCII (A-labels for IDNs), without a trailing dot.
type Domain struct {
	Name   string    `json:"name"`
	Status string    `json:"status"` // DomainVerified, DomainPending, DomainLapsed
	Since  time.Time `json:"since,omitzero"`
}

// Membership is one person's relationship with one organisation. User is the person's
// stable key (issuer + subject, see UserKey), never an email address.
type Membership struct {
	Org    string   `json:"org"`
	User   string   `json:"user"`
	Kind   string   `json:"kind"` // KindEmployee, …
	Roles  []string `json:"roles,omitempty"`
	Grants []Grant  `json:"grants,omitempty"`
	Status string   `json:"status"` // MembershipActive, MembershipSuspended, MembershipRevoked
	// ExpiresAt, when set, ends the membership.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// ReviewBy, when set, is when the membership must have been re-approved; after it the
	// membership stops granting access until reviewed.
	ReviewBy   time.Time `json:"review_by,omitzero"`
	GrantedBy  string    `json:"granted_by,omitempty"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	Created    time.Time `json:"created,omitzero"`
	Updated    time.Time `json:"updated,omitzero"`
	// Email is the address an invitation was sent to, kept for audit; it is not an identity.
	Email string `json:"email,omitempty"`
	// RoleGrants are roles held for a limited time, each from an approved request (just in
	// time): the way privileged roles are held at all.
	RoleGrants []RoleGrant `json:"role_grants,omitempty"`
	// ElevationsAfter, when set, is when the person's role in the organisation last changed:
	// a step-up elevation granted before it no longer counts here (authz.Elevated), so a role
	// change ends elevations on every replica without touching a session.
	ElevationsAfter time.Time `json:"elevations_after,omitzero"`
	// Machine, set exactly when User is a machine identity's key (MachineUser), says what the
	// machine is, who sponsors it and which API keys it holds (machines.go).
	Machine *Machine `json:"machine,omitempty"`
}

// RoleGrant is a role held until ExpiresAt, granted by an approved request.
type RoleGrant struct {
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expires_at"`
	GrantedAt time.Time `json:"granted_at,omitzero"`
	// RequestID names the request that granted it; ApprovedBy are its approvers.
	RequestID  string   `json:"request_id,omitempty"`
	ApprovedBy []string `json:"approved_by,omitempty"`
}

// Grant is a purpose a membership may act for (an audit, a support case), each with its own
// justification and expiry.
type Grant struct {
	Purpose    string    `json:"purpose"`
	Reason     string    `json:"reason,omitempty"` // free text or ticket id
	GrantedBy  string    `json:"granted_by,omitempty"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	// RequestID names the request whose approval granted it; "" for a direct grant.
	RequestID string `json:"request_id,omitempty"`
}

// UserKey is the stable identity of a person: the issuer and subject of their ID token. It
// is the only thing anything is keyed by. The separator cannot occur in an issuer URL's
// scheme-and-host start, and both parts are escaped again when they become Redis keys.
func UserKey(issuer, subject string) string { return issuer + "|" + subject }
