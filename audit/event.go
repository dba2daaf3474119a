package audit

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Type names what happened. Values are stable: they are stored, filtered on and alerted on, so
// a type is never renamed, only added.
type Type string

// Organisation events.
const (
	OrgCreated       Type = "org.created"
	OrgStatusChanged Type = "org.status_changed"
	DomainAdded      Type = "domain.added"
	DomainVerified   Type = "domain.verified"
	DomainPending    Type = "domain.pending"
	DomainLapsed     Type = "domain.lapsed"
)

// Membership events.
const (
	MembershipGranted Type = "membership.granted"
	MembershipInvited Type = "membership.invited"
	MembershipChanged Type = "membership.changed"
	MembershipRevoked Type = "membership.revoked"
	// InvitationBound records an invitation turning into a membership at sign-in.
	InvitationBound Type = "invitation.bound"
	// InvitationExpired records an invitation dropped unused because its time ran out.
	InvitationExpired Type = "invitation.expired"
	// InvitationWithdrawn records an invitation taken back before anyone used it.
	InvitationWithdrawn Type = "invitation.withdrawn"
	// InvitationsImported is the parent event of a bulk import of invitations (its children
	// are membership.invited events carrying the same operation).
	InvitationsImported Type = "invitations.imported"
	PersonOffboarded    Type = "person.offboarded"
	// PersonEmailRecorded and PersonUsernameSet record an operator telling the recovery guard
	// whose address or portal username is whose (sign-in records addresses by itself).
	PersonEmailRecorded Type = "person.email_recorded"
	PersonUsernameSet   Type = "person.username_set"
)

// SCIM provisioning events: a record of an organisation's directory changed (package scim);
// the memberships the records decide have their own membership events, with the same actor.
const (
	SCIMUserCreated  Type = "scim.user_created"
	SCIMUserChanged  Type = "scim.user_changed"
	SCIMUserDeleted  Type = "scim.user_deleted"
	SCIMGroupCreated Type = "scim.group_created"
	SCIMGroupChanged Type = "scim.group_changed"
	SCIMGroupDeleted Type = "scim.group_deleted"
)

// Access request events (the just-in-time flow).
const (
	RequestCreated   Type = "request.created"
	RequestApproved  Type = "request.approved" // one approval, the request still pending
	RequestGranted   Type = "request.granted"  // the last approval: the grant was written
	RequestDenied    Type = "request.denied"
	RequestCancelled Type = "request.cancelled"
	RequestLapsed    Type = "request.lapsed"
)

// Business events: the parent event of one operation (store.Orgs.Apply); each change it
// made is a child event of its own type carrying the same Operation.
const (
	BusinessContractRenewed Type = "business.contract_renewed"
	BusinessContractEnded   Type = "business.contract_ended"
	BusinessMergedInto      Type = "business.merged_into"
	BusinessRoleChanged     Type = "business.role_changed"
	BusinessOffboarded      Type = "business.offboarded"
	BusinessDomainLapsed    Type = "business.domain_lapsed"
	BusinessSupportMoved    Type = "business.support_moved"
	// OrgContractChanged records a new contract end (a renewal); OrgMerged an organisation
	// absorbed into another.
	OrgContractChanged Type = "org.contract_changed"
	OrgMerged          Type = "org.merged"
	// OrgPolicyChanged records an organisation's own lifecycle limits, set or cleared.
	OrgPolicyChanged Type = "org.policy_changed"
	// OrgProvidersChanged records the OpenID Providers an organisation trusts, set or cleared.
	OrgProvidersChanged Type = "org.providers_changed"
	// ProviderSaved records an OpenID Provider added or changed through the admin API
	// (oidc.managed_providers); its secret is a reference, never a value.
	ProviderSaved Type = "provider.saved"
	// ProviderDeleted records a managed OpenID Provider removed.
	ProviderDeleted Type = "provider.deleted"
)

// Access reviews: a campaign started, and one reviewer's decision on one item (the
// membership's own event follows it).
const (
	ReviewStarted Type = "review.started"
	ReviewDecided Type = "review.decided"
)

// Delegated administration: an organisation letting another's administrators act for it.
const (
	DelegationGranted Type = "delegation.granted"
	DelegationEnded   Type = "delegation.ended"
)

// RefusalsCounted records how many requests one route refused for one reason over an
// interval, for the reasons too frequent to record one by one (no_session, store_unavailable):
// Reason, Route, Detail count, since, until and sample_request_ids.
const RefusalsCounted Type = "access.refusals_counted"

// Notifications: an event a webhook was never able to receive, given up after its attempts.
const WebhookFailed Type = "webhook.failed"

// Machine identities (memberships of kind service bound to a sponsor) and their API keys.
const (
	MachineCreated   Type = "machine.created"
	MachineSuspended Type = "machine.suspended" // its sponsor's membership ended
	APIKeyCreated    Type = "api_key.created"
	APIKeyRotated    Type = "api_key.rotated"
	APIKeyRevoked    Type = "api_key.revoked"
	// MachineClientBound and MachineClientUnbound: a federated client (issuer and subject of
	// client-credentials tokens) was bound to a machine identity, or no longer is.
	MachineClientBound   Type = "machine.client_bound"
	MachineClientUnbound Type = "machine.client_unbound"
	// MachineHandedOver: a machine identity got another sponsor; its keys were revoked.
	MachineHandedOver Type = "machine.handed_over"
)

// Admin API credentials.
const (
	TokenCreated Type = "token.created"
	TokenRevoked Type = "token.revoked"
)

// Session events: who signed in as whom, when, from where, and how it ended. A session that
// simply runs out in storage (idle or absolute timeout) without another request is not
// observed; its sign-in event says when it would end at the latest (Detail "expires").
const (
	// SignedIn: a session was created (Detail: session (a log id, never the secret), email,
	// acr, amr, auth_time, expires, host).
	SignedIn Type = "session.signed_in"
	// SignInRefused: a sign-in that had really started (its state was one Portcullis
	// issued) was refused at the callback: the provider's error, a code the token endpoint
	// refused, an ID token that failed verification, an unverified email, another browser.
	// Callbacks with a state Portcullis never issued are only logged and counted.
	SignInRefused Type = "session.signin_refused"
	// SignedOut: the person signed out (Detail: session, family_sessions_ended).
	SignedOut Type = "session.signed_out"
	// SessionEnded: sessions ended without the person signing out (Reason: why:
	// backchannel_logout, idle_timeout, absolute_timeout; Detail: sessions_ended).
	SessionEnded Type = "session.ended"
	// SecurityEventApplied: a Shared Signals transmitter's event was verified and acted on
	// (Reason: the event type; Detail: transmitter, jti, done). SecurityEventRefused: one
	// was refused (Reason: RFC 8935's error code; Detail: transmitter, cause).
	SecurityEventApplied Type = "ssf.event_applied"
	SecurityEventRefused Type = "ssf.event_refused"
	// Handoff and HandoffRefused: a session carried to an organisation host, or refused.
	Handoff        Type = "session.handoff"
	HandoffRefused Type = "session.handoff_refused"
)

// Request-time events.
const (
	AccessDenied    Type = "access.denied"
	RecoveryBlocked Type = "recovery.blocked"
	// RecoveryByInvitation: a recovery request was allowed for an address nobody has signed in
	// with, on the strength of an open invitation from the organisation holding its domain.
	RecoveryByInvitation Type = "recovery.by_invitation"
	// RecoveryLimitReset: an operator cleared an identifier's recovery rate limit.
	RecoveryLimitReset Type = "recovery.limit_reset"
	// AccessReached: a partner, a reseller or a support engineer used an organisation's route
	// (the first allowed request per person, organisation and route in a quarter hour, per
	// process; Detail: kind, purpose, ticket: the purpose grant's reason).
	AccessReached Type = "access.reached"
	StepUpGranted Type = "stepup.granted"
	StepUpRefused Type = "stepup.refused"
)

// Event is one audit record. The zero value of every field but Type means "not applicable".
//
// Never put a secret in an event (see the package comment).
type Event struct {
	// ID is the event's position in the stream, assigned by the Sink when it is stored; it is
	// ignored by Append and filled in when events are read back.
	ID string `json:"id,omitempty"`
	// Time is when it happened, UTC. Append fills in the current time when it is zero.
	Time time.Time `json:"time"`
	Type Type      `json:"type"`
	// Actor is who made the change: an administrator's user key or name, or the user themself
	// (sign-in binding an invitation). Empty for request-time events, whose subject is User.
	Actor string `json:"actor,omitempty"`
	// Via is how the actor was authenticated, or the delegation they acted through: an API
	// token's id, an operator token's issuer. Empty for the CLI's break-glass mode and for
	// sign-in.
	Via  string `json:"via,omitempty"`
	Org  string `json:"org,omitempty"`
	User string `json:"user,omitempty"`
	// Reason is why: the administrator's justification or ticket for a change, the reason code
	// (e.g. "role_missing") for a deny.
	Reason    string `json:"reason,omitempty"`
	Route     string `json:"route,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// Before and After are the record as stored before and after a change, as JSON; Before is
	// empty for a creation.
	Before json.RawMessage `json:"before,omitempty"`
	After  json.RawMessage `json:"after,omitempty"`
	// Detail holds further facts (an invited email, the domain concerned).
	Detail map[string]string `json:"detail,omitempty"`
	// Operation is the id of the business event a change belongs to (contract ended, merged,
	// offboarded…): its parent event (a "business." type) and every child change carry it.
	Operation string `json:"operation,omitempty"`
}

// Sink stores events. Implementations are safe for concurrent use; Append returns only after
// the event is durable as far as the implementation goes, and a non-nil error means the event
// may not have been recorded.
type Sink interface {
	Append(ctx context.Context, e Event) error
}

// ErrInvalid is returned for an event that cannot be recorded (no type, invalid Before/After).
var ErrInvalid = errors.New("invalid audit event")

// MarshalJSON encodes the event in its stable form: fields in declaration order, Time in UTC
// with nanoseconds, Detail keys sorted, empty fields left out. Stored events and the
// `admin audit tail` output use it, so consumers can rely on the shape.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event // no MarshalJSON method, so no recursion
	p := plain(e)
	p.Time = p.Time.UTC()
	return json.Marshal(p)
}

// Check reports whether the event can be recorded: it has a Type and its Before and After, when
// set, are valid JSON.
func (e Event) Check() error {
	switch {
	case e.Type == "":
		return errors.Join(ErrInvalid, errors.New("no type"))
	case len(e.Before) > 0 && !json.Valid(e.Before):
		return errors.Join(ErrInvalid, errors.New("before is not JSON"))
	case len(e.After) > 0 && !json.Valid(e.After):
		return errors.Join(ErrInvalid, errors.New("after is not JSON"))
	}
	return nil
}
