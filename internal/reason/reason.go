// Package reason is the one table of the codes Portcullis answers with when it does not
// forward a request: every code, the HTTP status it is answered with, what people are told,
// what they can do next, and whether an outsider may see it. The same code is the "error"
// of the JSON answer, the reason on the page, the "reason" of the log line, the label of the
// metrics and the reason of the audit event, so a code never changes once released: new
// situations get new codes.
//
// The table is data; package problem renders it. It imports nothing of the project, so the
// packages that decide (authz), sign people in (session) and answer (proxy) all name their
// codes here, and a code has exactly one definition.
package reason

//go:generate go test -count=1 -run TestReasonReference . -args -update

import (
	"net/http"
	"strconv"
	"strings"
)

// Code is a stable reason code: lower-case ASCII words joined by "_".
type Code string

// String returns the code.
func (c Code) String() string { return string(c) }

// Spec is how a code is answered.
type Spec struct {
	Code Code
	// Area groups the code in the documentation (README's reason code table).
	Area Area
	// Answer, when set, says how the code is answered when that is not always as a problem
	// with Status (for the documentation).
	Answer string
	// Status is the HTTP status of the answer.
	Status int
	// Message is what people are told. It may name facts of one refusal in braces, filled
	// by Text: {org} (quoted), {domain} (quoted), {roles}, {purposes}, {kinds} (listed) and
	// {detail} (as given).
	Message string
	// Fallback is said instead of Message when a fact Message names is unknown ("" for none).
	Fallback string
	// Hint tells people what to do next, when every instance of the code has the same answer.
	Hint string
	// Action is a same-origin path the page offers as the way forward, with ActionText as
	// its label; "" offers none.
	Action, ActionText string
	// Bearer, when set, is the RFC 6750 error code of the answer's WWW-Authenticate
	// challenge (invalid_token, invalid_request): the codes of bearer credentials.
	Bearer string
	// Hidden codes are never shown to someone without a membership in the organisation the
	// request named: they are told NotMember instead (Shown), so that nobody can learn which
	// organisation ids exist or what became of them. Logs, metrics and audit events keep the
	// precise code.
	Hidden bool
}

// Area is a group of codes.
type Area string

// Areas, in the order of the documentation.
const (
	AreaRequest  Area = "request"  // the request itself: host, path, method, framing
	AreaSession  Area = "session"  // sign-in, sign-out, the handoff to organisation hosts
	AreaAccess   Area = "access"   // the membership decision (authz.Decide)
	AreaStepUp   Area = "step-up"  // a recent, stronger authentication (authz step-up rules)
	AreaMachine  Area = "machine"  // machine identities: API keys and their sponsors (authz.DecideMachine)
	AreaRecovery Area = "recovery" // the account-recovery guard (authz.DecideRecovery)
	AreaAdmin    Area = "admin"    // the administration API: credentials, requests, the policy
	AreaService  Area = "service"  // Portcullis or what it depends on could not answer
)

// The request itself (proxy): refused before any route is consulted, or by the route table.
const (
	NoRoute                Code = "no_route"
	MethodNotAllowed       Code = "method_not_allowed"
	BadHost                Code = "bad_host"
	BadRequest             Code = "bad_request"
	URITooLong             Code = "uri_too_long"
	DuplicateAuthorization Code = "duplicate_authorization"
	// MethodOverride: the request asks the portal to treat it as another method (a `_method`
	// field, or an override header on a route that allows overrides) where that would be
	// decided differently, and the route does not allow it, or the override is ambiguous,
	// not a method, or cannot be read the one way every framework would.
	MethodOverride Code = "method_override"
	// UpgradeRefused: the request asks to switch protocols (Upgrade) where the route does not
	// allow it: WebSocket only on routes with websocket: true, nothing else ever.
	UpgradeRefused Code = "upgrade_refused"
	// BadFraming: the request's length cannot be read one way only (RFC 9112 §6): an
	// HTTP/1.0 body without a Content-Length, or a malformed chunked body. The connection is
	// closed after the answer and nothing reaches the portal.
	BadFraming Code = "bad_framing"

	// Forward-auth (an ingress asks about a request it holds; proxy/forwardauth.go).
	// ForwardAuthUntrusted: the question does not come from one of server.trusted_proxies,
	// so the request it describes is not believed.
	ForwardAuthUntrusted Code = "forward_auth_untrusted"
	// ForwardAuthRequest: the question does not name the request one way only: the original
	// method or URI is missing, repeated, or the nginx and Traefik/Caddy headers disagree.
	ForwardAuthRequest Code = "forward_auth_request"
	// ForwardAuthPath: the original path is not in the one form Portcullis decides on (dot
	// segments, empty segments, ";params", escapes of unreserved characters). As a proxy it
	// would forward the normalised path; an ingress forwards the original, which the portal
	// could read as another path, so it is refused rather than guessed.
	ForwardAuthPath Code = "forward_auth_path"
	// ForwardAuthBody: deciding this request needs its whole body (a recovery guard, or a
	// POST that may carry a `_method` field on a route where the method matters), which the
	// ingress did not pass on (only Envoy can, with with_request_body), or a mirror recovery
	// guard, which rewrites the body. Send the body, or serve such routes with Portcullis as
	// the proxy.
	ForwardAuthBody Code = "forward_auth_body"

	// The path rules exist because the proxy must never have a split view of a path: the path
	// it matches against the route table must be exactly the path the upstream acts on. Every
	// construct that a legacy portal, an application server or a second decoding step could
	// read differently (docs/security-cases.md AUTHN-04, PATH-01..05) is either rewritten to one
	// canonical form or refused with one of these.

	// PathInvalid: the path does not start with "/", or contains a raw space, control byte or
	// byte >= 0x80 (clients must percent-encode them).
	PathInvalid Code = "path_invalid"
	// PathFragment: a raw "#"; it is not valid in a request-target and Go keeps it inside
	// URL.Path, where rules and upstreams disagree on whether it ends the path (AUTHN-04).
	PathFragment Code = "path_fragment"
	// PathBackslash: a raw "\"; IIS and some Java servers treat it as "/" (PATH-03).
	PathBackslash Code = "path_backslash"
	// PathBadEscape: "%" not followed by two hex digits, including IIS "%uXXXX".
	PathBadEscape Code = "path_bad_escape"
	// PathEncodedSlash: "%2F"; decoding it would merge segments that the upstream may keep
	// apart, and not decoding it would let "/admin%2Fusers" dodge an /admin rule (PATH-03).
	PathEncodedSlash Code = "path_encoded_slash"
	// PathEncodedBackslash: "%5C", for the same reason as a raw backslash.
	PathEncodedBackslash Code = "path_encoded_backslash"
	// PathEncodedControl: "%00".."%1F" or "%7F"; NUL truncates paths in C-based servers.
	PathEncodedControl Code = "path_encoded_control"
	// PathDoubleEncoding: "%25" followed by what a second decoding step would read as an
	// escape ("%252e", "%25u002e"); legacy portals decode twice (PATH-02).
	PathDoubleEncoding Code = "path_double_encoding"
	// PathBadUTF8: decoded bytes that are not valid, shortest-form UTF-8 ("%c0%ae" is an
	// overlong "." that some decoders accept, PATH-02).
	PathBadUTF8 Code = "path_bad_utf8"
	// PathSemicolon: a ";" (raw or "%3B") while server.path_params is "reject"; Tomcat and
	// friends strip ";params" per segment, so "/admin;x/users" is "/admin/users" to them.
	PathSemicolon Code = "path_semicolon"
	// PathTraversal: a ".." segment that would climb above the root. Clamping it to "/"
	// silently would forward something other than what the client asked for.
	PathTraversal Code = "path_traversal"
)

// Sessions (session): sign-in, sign-out, and the handoff of a sign-in to organisation hosts.
const (
	NoSession            Code = "no_session"
	IdPUnavailable       Code = "idp_unavailable"
	AmbiguousCookie      Code = "ambiguous_session_cookie"
	InvalidState         Code = "invalid_state"
	LoginBrowserMismatch Code = "login_browser_mismatch"
	IdPError             Code = "idp_error"
	SignInFailed         Code = "sign_in_failed"
	EmailNotVerified     Code = "email_not_verified"
	CSRFFailed           Code = "csrf_failed"
	InvalidLogoutToken   Code = "invalid_logout_token"
	HandoffInvalid       Code = "handoff_invalid"
	HandoffBrowser       Code = "handoff_browser_mismatch"
	HandoffHostUnknown   Code = "handoff_host_unknown"
	HandoffWrongHost     Code = "handoff_wrong_host"
	HandoffSessionEnded  Code = "handoff_session_ended"
	// ProviderMixUp: the authorisation response names another issuer than the provider the
	// sign-in went to (RFC 9207), or a provider that promises iss left it out.
	ProviderMixUp Code = "provider_mix_up"
	// ProviderUnknown: no provider may sign in the address given at home-realm discovery:
	// its domain is no organisation's verified one and no provider is shared, or the
	// provider chosen is not one of those that may.
	ProviderUnknown Code = "provider_unknown"
	// ProviderDomainRefused: the provider may sign in only addresses at domains verified by
	// the organisations that list it (verified_domains_only), and this address is not one.
	ProviderDomainRefused Code = "provider_domain_refused"
)

// The membership decision (authz.Decide), in the order Decide checks (the first failing check
// wins). Allowed is the one outcome that is not a refusal.
const (
	// NoOrg: the route is org-scoped but no valid organisation id could be determined for the
	// request (no host label, path segment, trusted header or session choice).
	NoOrg Code = "no_org"
	// OrgUnknown: no organisation record exists for the id (or the record loaded is for
	// another id).
	OrgUnknown Code = "org_unknown"
	// OrgInactive: the organisation is suspended, ended, past its contract end, merged into
	// another, or has a status Portcullis does not know.
	OrgInactive Code = "org_inactive"
	// NotMember: the person holds no membership in the organisation (or the record loaded is
	// for another person or organisation).
	NotMember Code = "not_member"
	// ProviderNotTrusted: the membership is of a person signed in through an identity
	// provider the organisation does not list (or, when it lists none, one that is not
	// shared): a provider speaks only for the organisations that trust it.
	ProviderNotTrusted Code = "provider_not_trusted"
	// MembershipRevoked: the membership was revoked.
	MembershipRevoked Code = "membership_revoked"
	// MembershipSuspended: the membership is suspended, or has a status Portcullis does not
	// know.
	MembershipSuspended Code = "membership_suspended"
	// MembershipExpired: the membership's expiry has passed.
	MembershipExpired Code = "membership_expired"
	// ReviewOverdue: the membership was due for re-approval and was not reviewed.
	ReviewOverdue Code = "review_overdue"
	// EmailDomainNotVerified: the person's email address is not verified, or its domain is
	// not a verified domain of the organisation (pending, lapsed or not listed).
	EmailDomainNotVerified Code = "email_domain_not_verified"
	// KindNotAllowed: the membership's kind is not one the route admits, or is a kind
	// Portcullis does not know.
	KindNotAllowed Code = "kind_not_allowed"
	// PolicyExceeded: the membership lasts longer than the lifecycle policy of its kind
	// allows (no end where one is required, or an end too far from when it was granted).
	PolicyExceeded Code = "policy_exceeded"
	// RoleMissing: the membership holds none of the roles the route requires.
	RoleMissing Code = "role_missing"
	// RoleRequiresRequest: the membership holds a required role only as a standing role, but
	// the role is privileged: it counts only when granted for a limited time by a request.
	RoleRequiresRequest Code = "role_requires_request"
	// PurposeMissing: the membership holds no grant for any purpose the route requires.
	PurposeMissing Code = "purpose_missing"
	// PurposeExpired: the membership holds grants for a required purpose, but every one of
	// them has expired.
	PurposeExpired Code = "purpose_expired"
	// Allowed: every check passed (also the outcome of an allowed recovery request).
	Allowed Code = "allowed"
)

// Step-up: a recent, stronger authentication for the route and organisation.
const (
	// StepUpRequired: the session holds no elevation meeting the route's step_up.
	StepUpRequired Code = "step_up_required"
	// StepUpACR: the provider's acr is not one the route accepts.
	StepUpACR Code = "step_up_acr_insufficient"
	// StepUpAMR: the provider's amr lacks a method the route requires.
	StepUpAMR Code = "step_up_amr_missing"
	// StepUpStale: the authentication the provider reported is older than the step-up, or
	// than max_age.
	StepUpStale Code = "step_up_stale_auth"
	// StepUpSession: the step-up's callback belongs to another session (SU-05).
	StepUpSession Code = "step_up_session_mismatch"
	// StepUpWrongUser: the provider authenticated another person than the session's.
	StepUpWrongUser Code = "step_up_wrong_user"
	// StepUpTicket: the interstitial's ticket is forged, expired or for another session.
	StepUpTicket Code = "step_up_invalid_request"
	// StepUpHost: a step-up asked from a host the sign-in host does not hand elevations to.
	StepUpHost Code = "step_up_host_unsupported"
)

// Machine identities (authz.DecideMachine): the credential first, then the membership checks
// of Decide, then the sponsor.
const (
	// CredentialInvalid: the bearer credential is not a key Portcullis issued: malformed,
	// unknown, or its secret is wrong. Nothing more is said, whatever was wrong.
	CredentialInvalid Code = "credential_invalid"
	// CredentialExpired: the API key's end has passed (a rotated-out key once its overlap
	// window is over, too).
	CredentialExpired Code = "credential_expired"
	// CredentialRevoked: the API key was revoked (by hand, or with its machine identity or
	// sponsor).
	CredentialRevoked Code = "credential_revoked"
	// CredentialMissing: the route accepts API keys only, and the request carries none.
	CredentialMissing Code = "credential_missing"
	// CredentialNotAccepted: the request carries an API key where the route accepts none
	// (its auth does not list api_key).
	CredentialNotAccepted Code = "credential_not_accepted"
	// CredentialMixed: the request carries both a bearer credential and a session cookie,
	// or more than one credential: it is decided as one principal or not at all.
	CredentialMixed Code = "credential_mixed"
	// SponsorInactive: the person who sponsors the machine identity holds no live
	// membership of its organisation (revoked, suspended, expired, overdue for review).
	SponsorInactive Code = "sponsor_inactive"
)

// The account-recovery guard: first what makes a request unreadable (ExtractIdentifier's
// problems, in the order it checks them), then the decision about the account.
const (
	// MethodNotGuarded: the method is not one the rule inspects (forwarded, never shown).
	MethodNotGuarded Code = "method_not_guarded"
	// BodyTooLarge: the body exceeds a limit: a recovery guard's body_limit, server.body_inspection_limit,
	// or what an own endpoint (64 KiB) or the admin API (64 KiB) takes. Answered before the body is
	// read, and the connection is closed after the rest is drained for a while (linger).
	BodyTooLarge Code = "body_too_large"
	// ContentTypeNotAllowed: a body whose media type (or charset, or Content-Type syntax) the
	// rule's locations do not declare. A portal may still parse it (frameworks sniff, or read
	// JSON sent as text/plain), so it is never forwarded unread.
	ContentTypeNotAllowed Code = "content_type_not_allowed"
	// MalformedQuery: the URL query cannot be read unambiguously (bad escape, a ";"
	// separator, a control character in a name).
	MalformedQuery Code = "malformed_query"
	// MalformedBody: the body cannot be read unambiguously in its declared type.
	MalformedBody Code = "malformed_body"
	// IdentifierAmbiguous: the identifier appears more than once, or under a name, shape or
	// place a portal might read differently.
	IdentifierAmbiguous Code = "identifier_ambiguous"
	// AddressUnknown: the identifier is a username whose person has no email address the
	// guard knows (they never signed in, and no operator recorded one): nothing vouches for
	// the mailbox the portal would send the reset to.
	AddressUnknown Code = "address_unknown"
	// IdentifierMissing: the identifier appears nowhere.
	IdentifierMissing Code = "identifier_missing"
	// IdentifierInvalid: the identifier was found once but is not a canonical-able email
	// address or an acceptable username.
	IdentifierInvalid Code = "identifier_invalid"
	// BodyReadError: the body could not be read (the client broke off, a framing error).
	BodyReadError Code = "body_read_error"

	// RateLimited: the identifier or the client made too many recovery requests this window.
	RateLimited Code = "rate_limited"
	// UnknownDomain: no organisation ever held the address's domain (or a parent of it).
	UnknownDomain Code = "unknown_domain"
	// StaleDomain: the domain's holder no longer verifies it, or is not active.
	StaleDomain Code = "stale_domain"
	// NoActiveMembership: the address or username belongs to nobody with a live membership.
	NoActiveMembership Code = "no_active_membership"
	// GuardMisconfigured: the guard met a state its rule cannot produce; refused, not guessed.
	GuardMisconfigured Code = "guard_misconfigured"
)

// The administration API (package admin): who is calling, and the governance rules.
const (
	// Unauthenticated: no credential, or one that is malformed, unknown, expired or revoked.
	Unauthenticated Code = "unauthenticated"
	// NotPermitted: the credential is valid, but its holder may not do this (another
	// organisation, a read-only token, not an administrator).
	NotPermitted Code = "not_permitted"
	// NotFound: no such organisation, membership, request or token (or not one the caller may
	// see).
	NotFound Code = "not_found"
	// Conflict: the record exists already, or changed concurrently too often.
	Conflict Code = "conflict"
	// InvalidInput: the body or a parameter is not what the endpoint takes.
	InvalidInput Code = "invalid_input"
	// PolicyViolation: the change breaks the lifecycle policy; the message names the rule.
	PolicyViolation Code = "policy_violation"
	// RequestNotPending: the request was decided already (approved, denied, cancelled).
	RequestNotPending Code = "request_not_pending"
	// RequestLapsed: the request waited longer than lifecycle.request_ttl.
	RequestLapsed Code = "request_lapsed"
	// SelfApproval: nobody approves a request they made or one for themselves.
	SelfApproval Code = "self_approval"
	// ApprovalDuplicate: the approver has approved this request already.
	ApprovalDuplicate Code = "approval_duplicate"
	// NotAnApprover: the caller meets none of the approver rules of the request's kind.
	NotAnApprover Code = "not_an_approver"
	// NotReplicated: the change is stored on the Redis primary, but fewer replicas than
	// redis.replica_acks confirmed it in time, so a failover could still undo it.
	NotReplicated Code = "not_replicated"
)

// Portcullis, or something it depends on, could not answer.
const (
	// StoreUnavailable: Redis did not answer; the request fails closed.
	StoreUnavailable    Code = "store_unavailable"
	UpstreamUnavailable Code = "upstream_unavailable"
	UpstreamTimeout     Code = "upstream_timeout"
	NotReady            Code = "not_ready"
	InternalError       Code = "internal_error"
)

const (
	signIn       = "/.portcullis/login"
	chooseOrg    = "/.portcullis/orgs"
	signOut      = "/.portcullis/logout"
	pathRejected = "The address contains characters or sequences that are not allowed."
	recoveryBad  = "The account-recovery request could not be understood: it must carry exactly one well-formed identifier."
)

// specs is the table, in documentation order.
var specs = []Spec{
	{Code: NoRoute, Area: AreaRequest, Status: http.StatusNotFound, Message: "There is nothing at this address."},
	{Code: MethodNotAllowed, Area: AreaRequest, Status: http.StatusMethodNotAllowed, Message: "This address does not accept that kind of request."},
	{Code: BadHost, Area: AreaRequest, Status: http.StatusBadRequest, Message: "The requested host name is not valid."},
	{Code: BadRequest, Area: AreaRequest, Status: http.StatusBadRequest, Message: "The request could not be understood."},
	{Code: URITooLong, Area: AreaRequest, Status: http.StatusRequestURITooLong, Message: "The address is too long."},
	{Code: DuplicateAuthorization, Area: AreaRequest, Status: http.StatusBadRequest, Message: "The request carries more than one Authorization header."},
	{Code: UpgradeRefused, Area: AreaRequest, Status: http.StatusBadRequest, Message: "This address does not accept a switch to another protocol."},
	{Code: BodyTooLarge, Area: AreaRequest, Status: http.StatusRequestEntityTooLarge, Message: "The request body is too large."},
	{Code: BadFraming, Area: AreaRequest, Status: http.StatusBadRequest, Message: "The length of this request could not be read reliably."},
	{Code: ForwardAuthUntrusted, Area: AreaRequest, Status: http.StatusForbidden, Message: "This address answers only the proxies in front of the portal."},
	{Code: ForwardAuthRequest, Area: AreaRequest, Status: http.StatusBadRequest, Message: "The proxy in front of the portal did not say which request to decide, one way only."},
	{Code: ForwardAuthPath, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: ForwardAuthBody, Area: AreaRequest, Status: http.StatusForbidden, Message: "This request can only be decided with its body, which the proxy in front of the portal does not pass on.",
		Hint: "Ask the portal's operator to serve this address through Portcullis as a proxy."},
	{Code: MethodOverride, Area: AreaRequest, Status: http.StatusBadRequest, Message: "This request asks to be treated as another kind of request, which this address does not allow."},
	{Code: PathInvalid, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathFragment, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathBackslash, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathBadEscape, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathEncodedSlash, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathEncodedBackslash, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathEncodedControl, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathDoubleEncoding, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathBadUTF8, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathSemicolon, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},
	{Code: PathTraversal, Area: AreaRequest, Status: http.StatusBadRequest, Message: pathRejected},

	{Code: NoSession, Area: AreaSession, Status: http.StatusUnauthorized, Message: "You need to sign in to reach this page.", Action: signIn, ActionText: "Sign in"},
	{Code: IdPUnavailable, Area: AreaSession, Status: http.StatusServiceUnavailable, Message: "The sign-in service is not reachable at the moment. Try again in a moment."},
	{Code: AmbiguousCookie, Area: AreaSession, Status: http.StatusBadRequest, Message: "Your browser sent more than one session cookie. Clear this site's cookies and sign in again."},
	{Code: InvalidState, Area: AreaSession, Status: http.StatusBadRequest, Message: "This sign-in link is not valid any more (used, expired or unknown). Start again.", Action: signIn, ActionText: "Sign in"},
	{Code: LoginBrowserMismatch, Area: AreaSession, Status: http.StatusBadRequest, Message: "This sign-in was started in another browser. Start again here.", Action: signIn, ActionText: "Sign in"},
	{Code: IdPError, Area: AreaSession, Status: http.StatusBadRequest, Message: "The identity provider did not sign you in. ({detail})",
		Fallback: "The identity provider did not sign you in.", Action: signIn, ActionText: "Sign in"},
	{Code: SignInFailed, Area: AreaSession, Status: http.StatusBadRequest, Message: "Sign-in could not be completed. Start again.", Action: signIn, ActionText: "Sign in"},
	{Code: EmailNotVerified, Area: AreaSession, Status: http.StatusForbidden, Message: "Your email address is not verified at the identity provider."},
	{Code: ProviderMixUp, Area: AreaSession, Status: http.StatusBadRequest, Message: "The sign-in answer came from another identity provider than the one you were sent to. Start again.", Action: signIn, ActionText: "Sign in"},
	{Code: ProviderUnknown, Area: AreaSession, Status: http.StatusForbidden, Message: "No sign-in is set up for this address. Use your work address, or ask your organisation's administrator.", Action: signIn, ActionText: "Try another address"},
	{Code: ProviderDomainRefused, Area: AreaSession, Status: http.StatusForbidden, Message: "This identity provider may not sign in addresses at your email domain. Sign in with your own organisation's provider.", Action: signIn, ActionText: "Sign in"},
	{Code: CSRFFailed, Area: AreaSession, Status: http.StatusForbidden, Message: "The form expired or came from another site. Go back and try again."},
	{Code: InvalidLogoutToken, Area: AreaSession, Status: http.StatusBadRequest, Message: "The logout token is not valid."},
	{Code: HandoffInvalid, Area: AreaSession, Status: http.StatusBadRequest, Message: "This sign-in link is not valid any more (used, expired or unknown). Start again.", Action: signIn, ActionText: "Sign in"},
	{Code: HandoffBrowser, Area: AreaSession, Status: http.StatusBadRequest, Message: "This sign-in was started in another browser. Start again here.", Action: signIn, ActionText: "Sign in"},
	{Code: HandoffHostUnknown, Area: AreaSession, Status: http.StatusBadRequest, Message: "Signing in is not offered at this address."},
	{Code: HandoffWrongHost, Area: AreaSession, Status: http.StatusBadRequest, Message: "This sign-in was meant for another address. Start again from the page you wanted.", Action: signIn, ActionText: "Sign in"},
	{Code: HandoffSessionEnded, Area: AreaSession, Status: http.StatusUnauthorized, Message: "Your sign-in ended before it could be carried over to this address. Sign in again.", Action: signIn, ActionText: "Sign in"},

	{Code: NoOrg, Area: AreaAccess, Status: http.StatusForbidden, Message: "Choose the organisation you are acting for.", Action: chooseOrg, ActionText: "Choose an organisation"},
	{Code: OrgUnknown, Area: AreaAccess, Status: http.StatusForbidden, Message: "The organisation {org} is not known.", Hidden: true},
	{Code: OrgInactive, Area: AreaAccess, Status: http.StatusForbidden, Message: "The organisation {org} is no longer active.", Hidden: true},
	{Code: NotMember, Area: AreaAccess, Status: http.StatusForbidden, Message: "You are not a member of the organisation {org}.",
		Fallback: "You are not a member of any organisation that can use this page."},
	{Code: ProviderNotTrusted, Area: AreaAccess, Status: http.StatusForbidden, Message: "{org} does not accept sign-ins through the identity provider you used. Sign out and sign in with your organisation's own.",
		Action: signOut, ActionText: "Sign out"},
	{Code: MembershipRevoked, Area: AreaAccess, Status: http.StatusForbidden, Message: "Your membership of {org} has been revoked."},
	{Code: MembershipSuspended, Area: AreaAccess, Status: http.StatusForbidden, Message: "Your membership of {org} is suspended."},
	{Code: MembershipExpired, Area: AreaAccess, Status: http.StatusForbidden, Message: "Your membership of {org} has expired."},
	{Code: ReviewOverdue, Area: AreaAccess, Status: http.StatusForbidden, Message: "Your membership of {org} is overdue for review and must be re-approved."},
	{Code: EmailDomainNotVerified, Area: AreaAccess, Status: http.StatusForbidden, Message: "Your email domain {domain} is not a verified domain of {org}.",
		Fallback: "Your email address is not verified."},
	{Code: KindNotAllowed, Area: AreaAccess, Status: http.StatusForbidden, Message: "This area is for {kinds} memberships.",
		Fallback: "Your kind of membership cannot use this area."},
	{Code: PolicyExceeded, Area: AreaAccess, Status: http.StatusForbidden, Message: "Your membership of {org} lasts longer than its kind allows and must be renewed."},
	{Code: RoleMissing, Area: AreaAccess, Status: http.StatusForbidden, Message: "This area needs one of these roles in {org}: {roles}."},
	{Code: RoleRequiresRequest, Area: AreaAccess, Status: http.StatusForbidden, Message: "This area needs one of these roles in {org}: {roles}. They are privileged: they are granted on request, for a limited time."},
	{Code: PurposeMissing, Area: AreaAccess, Status: http.StatusForbidden, Message: "This area needs an approved purpose: {purposes}."},
	{Code: PurposeExpired, Area: AreaAccess, Status: http.StatusForbidden, Message: "Your grant for {purposes} has expired."},
	{Code: Allowed, Area: AreaAccess, Answer: "forwarded", Status: http.StatusOK, Message: "Allowed."},

	{Code: CredentialMissing, Area: AreaMachine, Status: http.StatusUnauthorized, Message: "This address needs an API key, sent as \"Authorization: Bearer pc_…\"."},
	{Code: CredentialInvalid, Area: AreaMachine, Status: http.StatusUnauthorized, Bearer: "invalid_token", Message: "The API key or client token is not valid."},
	{Code: CredentialExpired, Area: AreaMachine, Status: http.StatusUnauthorized, Bearer: "invalid_token", Message: "The API key or client token has expired.",
		Hint: "Ask the machine identity's sponsor for a new key, or, if the sponsor has left, an administrator of the organisation to hand the machine over."},
	{Code: CredentialRevoked, Area: AreaMachine, Status: http.StatusUnauthorized, Bearer: "invalid_token", Message: "The API key has been revoked.",
		Hint: "Ask the machine identity's sponsor for a new key, or, if the sponsor has left, an administrator of the organisation to hand the machine over."},
	{Code: CredentialNotAccepted, Area: AreaMachine, Status: http.StatusUnauthorized, Bearer: "invalid_request", Message: "This address does not accept API keys or client tokens.",
		Action: signIn, ActionText: "Sign in"},
	{Code: CredentialMixed, Area: AreaMachine, Status: http.StatusBadRequest, Bearer: "invalid_request", Message: "The request carries more than one credential (an API key and a session cookie, say); send one."},
	{Code: SponsorInactive, Area: AreaMachine, Status: http.StatusForbidden, Message: "The person who sponsors this machine identity no longer holds a live membership of {org}.",
		Hint: "An administrator of the organisation can hand the machine identity over to another sponsor."},

	{Code: StepUpRequired, Area: AreaStepUp, Status: http.StatusUnauthorized, Message: "This resource needs a recent, stronger sign-in; complete it in a browser and retry."},
	{Code: StepUpACR, Area: AreaStepUp, Status: http.StatusForbidden, Message: "The identity provider did not confirm the stronger sign-in this page needs (for example a second factor). Access was not raised.",
		Hint: stepUpHint},
	{Code: StepUpAMR, Area: AreaStepUp, Status: http.StatusForbidden, Message: "The identity provider did not confirm the sign-in methods this page needs. Access was not raised.",
		Hint: stepUpHint},
	{Code: StepUpStale, Area: AreaStepUp, Status: http.StatusForbidden, Message: "The identity provider did not confirm a fresh sign-in: the authentication it reported is older than this request. Access was not raised.",
		Hint: stepUpHint},
	{Code: StepUpSession, Area: AreaStepUp, Status: http.StatusBadRequest, Message: "This confirmation belongs to another session. Start again from the page you wanted."},
	{Code: StepUpWrongUser, Area: AreaStepUp, Status: http.StatusForbidden, Message: "You confirmed as a different person than the one signed in here. Access was not raised.",
		Hint: stepUpHint},
	{Code: StepUpTicket, Area: AreaStepUp, Status: http.StatusForbidden, Message: "This confirmation request is not valid any more. Go back to the page and try again."},
	{Code: StepUpHost, Area: AreaStepUp, Status: http.StatusBadRequest, Message: "A stronger sign-in cannot be done from this address yet. Ask your administrator for the address to use for this page."},

	{Code: MethodNotGuarded, Area: AreaRecovery, Answer: "forwarded, never answered", Status: http.StatusOK, Message: "The method is not inspected; the request is forwarded."},
	{Code: ContentTypeNotAllowed, Area: AreaRecovery, Status: http.StatusUnsupportedMediaType, Message: recoveryBad},
	{Code: MalformedQuery, Area: AreaRecovery, Status: http.StatusBadRequest, Message: recoveryBad},
	{Code: MalformedBody, Area: AreaRecovery, Status: http.StatusBadRequest, Message: recoveryBad},
	{Code: IdentifierAmbiguous, Area: AreaRecovery, Status: http.StatusBadRequest, Message: recoveryBad},
	{Code: IdentifierMissing, Area: AreaRecovery, Answer: "refused unless `missing_identifier: forward`", Status: http.StatusBadRequest, Message: recoveryBad},
	{Code: IdentifierInvalid, Area: AreaRecovery, Status: http.StatusBadRequest, Message: recoveryBad},
	{Code: BodyReadError, Area: AreaRecovery, Status: http.StatusBadRequest, Message: "The request body could not be read."},
	{Code: RateLimited, Area: AreaRecovery, Status: http.StatusTooManyRequests, Message: "Too many account-recovery requests. Try again later."},
	{Code: UnknownDomain, Area: AreaRecovery, Answer: "the generic answer (200); the portal's own with `blocked_response: mirror`; 403 with `forbidden`", Status: http.StatusForbidden, Message: "Account recovery is not available for this address: its email domain is not known."},
	{Code: StaleDomain, Area: AreaRecovery, Answer: "the generic answer (200); the portal's own with `blocked_response: mirror`; 403 with `forbidden`", Status: http.StatusForbidden, Message: "Account recovery is not available for this address: its email domain is no longer verified for an active organisation."},
	{Code: AddressUnknown, Area: AreaRecovery, Answer: "the generic answer (200); the portal's own with `blocked_response: mirror`; 403 with `forbidden`", Status: http.StatusForbidden, Message: "Account recovery is not available for this username: no current address of it is known."},
	{Code: NoActiveMembership, Area: AreaRecovery, Answer: "the generic answer (200); the portal's own with `blocked_response: mirror`; 403 with `forbidden`", Status: http.StatusForbidden, Message: "Account recovery is not available for this address: it belongs to no active membership."},
	{Code: GuardMisconfigured, Area: AreaRecovery, Status: http.StatusInternalServerError, Message: "Account recovery is not available right now."},

	{Code: Unauthenticated, Area: AreaAdmin, Status: http.StatusUnauthorized, Message: "This needs a valid credential: an admin API token or an operator token."},
	{Code: NotPermitted, Area: AreaAdmin, Status: http.StatusForbidden, Message: "This credential may not do that."},
	{Code: NotFound, Area: AreaAdmin, Status: http.StatusNotFound, Message: "There is no such record, or not one this credential may see."},
	{Code: Conflict, Area: AreaAdmin, Status: http.StatusConflict, Message: "The record exists already, or is being changed by someone else. Read it again and retry."},
	{Code: InvalidInput, Area: AreaAdmin, Status: http.StatusBadRequest, Message: "The request is not valid: {detail}.", Fallback: "The request is not valid."},
	{Code: PolicyViolation, Area: AreaAdmin, Status: http.StatusUnprocessableEntity, Message: "The change breaks the lifecycle policy: {detail}.", Fallback: "The change breaks the lifecycle policy."},
	{Code: RequestNotPending, Area: AreaAdmin, Status: http.StatusConflict, Message: "The request was decided already."},
	{Code: RequestLapsed, Area: AreaAdmin, Status: http.StatusConflict, Message: "The request waited too long for its approvals and lapsed; ask again."},
	{Code: SelfApproval, Area: AreaAdmin, Status: http.StatusForbidden, Message: "Nobody approves a request they made or one for themselves."},
	{Code: ApprovalDuplicate, Area: AreaAdmin, Status: http.StatusConflict, Message: "You approved this request already; it needs another approver."},
	{Code: NotAnApprover, Area: AreaAdmin, Status: http.StatusForbidden, Message: "You are not one of the approvers this request needs."},
	{Code: NotReplicated, Area: AreaAdmin, Status: http.StatusServiceUnavailable, Message: "The change is stored on the Redis primary, but no replica confirmed it in time, so a failover could still undo it. Check the replicas, then repeat the change."},

	{Code: StoreUnavailable, Area: AreaService, Status: http.StatusServiceUnavailable, Message: "This cannot be checked right now, so it is refused. Try again in a moment."},
	{Code: UpstreamUnavailable, Area: AreaService, Status: http.StatusBadGateway, Message: "The application behind this address is not answering. Try again in a moment."},
	{Code: UpstreamTimeout, Area: AreaService, Status: http.StatusGatewayTimeout, Message: "The application behind this address took too long to answer. Try again in a moment."},
	{Code: NotReady, Area: AreaService, Status: http.StatusServiceUnavailable, Message: "The service is starting or a dependency is unavailable."},
	{Code: InternalError, Area: AreaService, Status: http.StatusInternalServerError, Message: "Something went wrong on our side. Try again in a moment."},
}

const stepUpHint = "Ask your administrator if you cannot complete the stronger sign-in."

var byCode = func() map[Code]*Spec {
	m := make(map[Code]*Spec, len(specs))
	for i := range specs {
		if _, dup := m[specs[i].Code]; dup {
			panic("reason: code listed twice: " + string(specs[i].Code))
		}
		m[specs[i].Code] = &specs[i]
	}
	return m
}()

// unknown is the spec of a code missing from the table: a programming error, answered as an
// internal error rather than with an empty page.
var unknown = Spec{Area: AreaService, Status: http.StatusInternalServerError, Message: "Something went wrong on our side. Try again in a moment."}

// Of returns the spec of c. A code missing from the table (a programming error, which
// TestEveryCodeUsedIsListed guards against) gets an internal error's spec with its own code.
func Of(c Code) Spec {
	if s, ok := byCode[c]; ok {
		return *s
	}
	s := unknown
	s.Code = c
	return s
}

// Known reports whether c is in the table.
func Known(c Code) bool {
	_, ok := byCode[c]
	return ok
}

// All returns the table, in documentation order: for metric labels, tests and the
// generated documentation. The slice is new on each call.
func All() []Spec { return append([]Spec(nil), specs...) }

// InArea returns the codes of one area, in table order. The slice is new on each call.
func InArea(a Area) []Code {
	var out []Code
	for i := range specs {
		if specs[i].Area == a {
			out = append(out, specs[i].Code)
		}
	}
	return out
}

// Shown is the code a person is shown for c: NotMember instead of a Hidden code when they
// hold no membership in the organisation concerned (member false).
func Shown(c Code, member bool) Code {
	if !member && Of(c).Hidden {
		return NotMember
	}
	return c
}

// Facts are what one refusal's message may name.
type Facts struct {
	// Org is the organisation concerned, Domain the person's email domain.
	Org, Domain string
	// Roles, Purposes and Kinds are what the route requires and the membership lacks.
	Roles, Purposes, Kinds []string
	// Detail is a short code from the other side (the provider's OAuth error code), already
	// checked against a strict pattern.
	Detail string
}

// Text is s's message for facts f: Message with its placeholders filled, or Fallback when a
// fact Message names is empty.
func (s Spec) Text(f Facts) string {
	msg := s.Message
	if !strings.Contains(msg, "{") {
		return msg
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '{')
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		j := strings.IndexByte(msg[i:], '}')
		if j < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i])
		var v string
		switch msg[i+1 : i+j] {
		case "org":
			v = quoted(f.Org)
		case "domain":
			v = quoted(f.Domain)
		case "roles":
			v = strings.Join(f.Roles, ", ")
		case "purposes":
			v = strings.Join(f.Purposes, ", ")
		case "kinds":
			v = strings.Join(f.Kinds, ", ")
		case "detail":
			v = f.Detail
		}
		if v == "" {
			if s.Fallback != "" {
				return s.Fallback
			}
			v = "?"
		}
		b.WriteString(v)
		msg = msg[i+j+1:]
	}
}

func quoted(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}
