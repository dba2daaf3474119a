package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/recoveryid"
)

// Config is a whole Portcullis configuration file, decoded and validated.
// A Config is never modified after Load returns it; a reload builds a new one.
type Config struct {
	// File is the path the configuration was read from (not a YAML key).
	File string `yaml:"-"`

	Server   Server   `yaml:"server"`
	TLS      TLS      `yaml:"tls"`
	Log      Log      `yaml:"log"`
	Redis    Redis    `yaml:"redis"`
	OIDC     OIDC     `yaml:"oidc"`
	Session  Session  `yaml:"session"`
	Identity Identity `yaml:"identity"`
	Authz    Authz    `yaml:"authz"`
	Audit    Audit    `yaml:"audit"`
	Pages    Pages    `yaml:"pages"`
	// Lifecycle is the access lifecycle policy: per kind of membership, how long it may last,
	// how often it is reviewed and who approves it.
	Lifecycle Lifecycle `yaml:"lifecycle"`
	// AdminAPI is the administration API's listener and who may call it as an operator.
	AdminAPI AdminAPI `yaml:"admin_api"`
	// Notifications are the webhooks governance events are sent to.
	Notifications Notifications `yaml:"notifications"`
	// ForwardAuth is the endpoint an ingress in front of the portal asks for decisions.
	ForwardAuth ForwardAuth `yaml:"forward_auth"`
	// Tracing exports OpenTelemetry traces.
	Tracing Tracing `yaml:"tracing"`
	// Console is the self-serve console of members and organisation administrators.
	Console Console `yaml:"console"`
	// ClientJWT trusts issuers of machine identities' client-credentials tokens.
	ClientJWT ClientJWT `yaml:"client_jwt"`
	// SCIM serves each organisation's SCIM 2.0 provisioning on the admin API listener.
	SCIM SCIM `yaml:"scim"`
	// SSF receives identity providers' security events (OpenID Shared Signals).
	SSF SSF `yaml:"ssf"`
	// Routes is the ordered route table: the first route that matches host, path and method
	// handles the request.
	Routes []Route `yaml:"routes"`
}

// OIDC configures sign-in with an OpenID Provider. An empty issuer means sign-in is not
// configured: routes that are not public then answer 401 (fail closed).
type OIDC struct {
	// Issuer is the provider's issuer URL, exactly as in its discovery document. https is
	// required, except for a loopback host (development).
	Issuer string `yaml:"issuer"`
	// ClientID identifies Portcullis at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates Portcullis at the provider. It may be given as
	// client_secret_file; empty means a public client (PKCE only).
	ClientSecret Secret `yaml:"client_secret"`
	// RedirectURL is the callback registered at the provider. Default: server.public_url +
	// "/.portcullis/callback". Its path must be /.portcullis/callback.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes are the scopes requested. Default [openid, email, profile]; openid is always
	// included.
	Scopes []string `yaml:"scopes"`
	// ExtraParams are query parameters added to every authorisation request (e.g. a tenant
	// hint). They cannot override the protocol's own parameters.
	ExtraParams map[string]string `yaml:"extra_params"`
	// ClockSkew is the tolerance on token times. Default 30s, at most 5m.
	ClockSkew Duration `yaml:"clock_skew"`
	// RequireVerifiedEmail refuses sign-in when the ID token does not say email_verified:
	// true. Default true.
	RequireVerifiedEmail *bool `yaml:"require_verified_email"`
	// EmailDomainClaim names an ID token claim that must equal the address's domain for the
	// address to count as verified, such as Google's hd (the Workspace domain): Google's
	// email_verified also covers addresses at domains Google does not host, made by anyone
	// who once read mail there. Default: none (email_verified alone).
	EmailDomainClaim string `yaml:"email_domain_claim"`
	// SigningAlgs are the accepted ID token algorithms. Default [RS256, ES256]. Never "none"
	// or an HMAC algorithm.
	SigningAlgs []string `yaml:"signing_algs"`
	// CARootFile is a PEM bundle trusted for the provider's HTTPS endpoints (a private CA).
	// Default: the system roots.
	CARootFile string `yaml:"ca_root_file"`

	// DisplayName is how the sign-in page names this provider when it offers a choice.
	// Default: the issuer's host name.
	DisplayName string `yaml:"display_name"`
	// SubjectClaim is the ID token claim that is the person's subject in their key
	// (issuer|subject). Default sub. Entra ID's sub is pairwise per application and no
	// directory can provision it; its oid (the object id) can be, over SCIM.
	SubjectClaim string `yaml:"subject_claim"`
	// ACRValues maps the acr values routes ask for (step_up.acr) to the ones this provider
	// knows, for providers that name the same assurance differently. A value not listed is
	// sent and accepted as the route writes it. Default: none.
	ACRValues map[string]string `yaml:"acr_values"`
	// Revalidate makes the provider's people's sessions check back with it while they last:
	// a person disabled there loses their session here within the interval. Default: off.
	Revalidate Revalidate `yaml:"revalidate"`
	// ManagedProviders lets operators add providers through the admin API, with their
	// secrets by reference. Default: off.
	ManagedProviders ManagedProviders `yaml:"managed_providers"`
	// Providers are further OpenID Providers: customers' own, each listed by the
	// organisations it may sign people in for (an organisation's providers). oidc's own keys
	// (issuer, client_id, …) describe the provider named "default", shared by every
	// organisation that lists none; either may be left out, not both.
	Providers []OIDCProvider `yaml:"providers"`

	// Parsed values, filled by Load.
	IssuerURL   *url.URL `yaml:"-"`
	RedirectURI *url.URL `yaml:"-"`
	// All is every provider people sign in with: the default one (oidc's own keys) first
	// when oidc.issuer is set, then providers in their order, each with its defaults.
	All []OIDCProvider `yaml:"-"`
}

// Configured reports whether sign-in is configured: a default provider or any other.
func (o OIDC) Configured() bool { return o.Issuer != "" || len(o.Providers) > 0 }

// Default is the provider oidc's own keys describe, named DefaultProvider and shared.
func (o OIDC) Default() OIDCProvider {
	return OIDCProvider{Name: DefaultProvider, DisplayName: o.DisplayName, Issuer: o.Issuer, ClientID: o.ClientID,
		ClientSecret: o.ClientSecret, Scopes: o.Scopes, ExtraParams: o.ExtraParams, RequireVerifiedEmail: o.RequireVerifiedEmail,
		EmailDomainClaim: o.EmailDomainClaim, SigningAlgs: o.SigningAlgs, CARootFile: o.CARootFile, Shared: true, ACRValues: o.ACRValues,
		SubjectClaim: o.SubjectClaim, Revalidate: o.Revalidate, IssuerURL: o.IssuerURL}
}

// Provider returns the provider named name from All, or nil.
func (o OIDC) Provider(name string) *OIDCProvider {
	for i := range o.All {
		if o.All[i].Name == name {
			return &o.All[i]
		}
	}
	return nil
}

// signInClient names the provider ("oidc" or "oidc.providers[i]") whose issuer is issuer and
// whose client_id is audience: that provider's ID tokens carry the audience. "" when none is.
func (o OIDC) signInClient(issuer, audience string) string {
	for i, p := range o.All {
		if strings.TrimSuffix(p.Issuer, "/") == strings.TrimSuffix(issuer, "/") && p.ClientID == audience {
			if o.isDefault(i) {
				return "oidc"
			}
			return fmt.Sprintf("oidc.providers[%d]", i-len(o.All)+len(o.Providers))
		}
	}
	return ""
}

// isDefault reports whether All[i] is the default provider, which oidc's own keys describe:
// the first, when oidc.issuer is set.
func (o OIDC) isDefault(i int) bool { return i == 0 && o.Issuer != "" }

// DefaultProvider is the name of the provider that oidc's own keys (oidc.issuer, …) describe.
const DefaultProvider = "default"

// OIDCProvider is one OpenID Provider people sign in with (an entry of oidc.providers, or the
// default provider that oidc's own keys describe). Keys left out take the same defaults as
// oidc's own.
type OIDCProvider struct {
	// Name identifies the provider in organisations' provider lists and in its people's
	// sessions: lower-case letters, digits and "-", unique. Required.
	Name string `yaml:"name"`
	// DisplayName is how the sign-in page names the provider. Default: the issuer's host.
	DisplayName string `yaml:"display_name"`
	// Issuer is the provider's issuer URL, exactly as in its discovery document: a person's
	// key starts with it (store.UserKey). Unique among providers. Required.
	Issuer string `yaml:"issuer"`
	// ClientID identifies Portcullis at this provider. Required.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates Portcullis at this provider; may be given as
	// client_secret_file or ${ENV}. Empty means a public client (PKCE only).
	ClientSecret Secret `yaml:"client_secret"`
	// Scopes are the scopes requested. Default [openid, email, profile].
	Scopes []string `yaml:"scopes"`
	// ExtraParams are query parameters added to every authorisation request.
	ExtraParams map[string]string `yaml:"extra_params"`
	// RequireVerifiedEmail refuses sign-in without email_verified: true. Default true.
	RequireVerifiedEmail *bool `yaml:"require_verified_email"`
	// EmailDomainClaim names a claim that must equal the address's domain for the address
	// to count as verified (Google's hd). Default: none.
	EmailDomainClaim string `yaml:"email_domain_claim"`
	// SigningAlgs are the accepted ID token algorithms. Default [RS256, ES256].
	SigningAlgs []string `yaml:"signing_algs"`
	// CARootFile is a PEM bundle trusted for this provider's HTTPS endpoints.
	CARootFile string `yaml:"ca_root_file"`
	// Shared makes the provider sign people in for every organisation that lists no
	// providers of its own. Default false (true for the default provider).
	Shared bool `yaml:"shared"`
	// VerifiedDomainsOnly refuses a sign-in whose verified address is not at a domain
	// verified by an organisation that lists this provider: a customer's IdP speaks only for
	// its own domains. Default false.
	VerifiedDomainsOnly bool `yaml:"verified_domains_only"`
	// ACRValues maps the acr values routes ask for to this provider's. Default: none.
	ACRValues map[string]string `yaml:"acr_values"`
	// SubjectClaim is the ID token claim that is the person's subject: sub (default), or an
	// immutable id such as Entra ID's oid, which a directory can provision over SCIM.
	SubjectClaim string `yaml:"subject_claim"`
	// Revalidate makes this provider's people's sessions check back with it. Default: off.
	Revalidate Revalidate `yaml:"revalidate"`
	// Org, when set, binds the provider to one organisation: it signs people in for that
	// organisation only, and no other may list it. Default: none.
	Org string `yaml:"org"`

	// IssuerURL is Issuer parsed, filled by Load.
	IssuerURL *url.URL `yaml:"-"`
	// RedirectURI is the callback this provider sends browsers back to, filled by Load:
	// oidc.redirect_url for the default provider, oidc.redirect_url + "/" + name for the
	// others (each provider's own, RFC 9700 §4.4.2: a response brought to another
	// provider's callback is refused before its code is sent anywhere).
	RedirectURI *url.URL `yaml:"-"`
}

// Revalidate is how sessions check back with their provider. Every Interval, a request of
// the session redeems the refresh token the sign-in earned (kept sealed with a key only the
// session's cookies can open, never in clear in Redis), verifies the new ID token and asks
// userinfo: a refusal (the person was disabled or deleted there), another subject, a changed
// or no longer verified address ends the sign-in's sessions on every host. A provider that
// cannot be reached keeps sessions for Grace past their due time, then answers 503
// idp_unavailable until it answers again.
type Revalidate struct {
	// Interval is how often a session checks back: at least 1s, less than
	// session.absolute_timeout. 0 (the default) never does. The sign-in must then yield a
	// refresh token: ask for offline_access in scopes (Google: extra_params access_type:
	// offline).
	Interval Duration `yaml:"interval" json:"interval,omitzero"`
	// Grace is how long past its due time a session keeps working while the provider cannot
	// be reached (no answer, a 5xx, an OAuth error other than invalid_grant): never when the
	// provider refuses. At least 30s (one check's time, during which other requests are
	// served), at most 1h. Default 5m.
	Grace *Duration `yaml:"grace" json:"grace,omitempty"`
	// Userinfo also asks the userinfo endpoint with the new access token and checks its sub
	// and address, for providers whose refreshed ID tokens carry no address. Default true.
	Userinfo *bool `yaml:"userinfo" json:"userinfo,omitempty"`
}

// MinRevalidateGrace is the least Revalidate.Grace: how long one check may take, while the
// session's other requests are served.
const MinRevalidateGrace = 30 * time.Second

// GracePeriod is Grace, 0 when not set.
func (r Revalidate) GracePeriod() time.Duration {
	if r.Grace == nil {
		return 0
	}
	return r.Grace.D()
}

// Identity configures what a portal receives about the person behind an authorised request.
type Identity struct {
	// Headers are the names of the identity headers. Every client-sent header with one of
	// these names (in any case or _/- spelling) is removed before forwarding.
	Headers IdentityHeaders `yaml:"headers"`
	// AssertionAlg is the assertion's signature algorithm: "ES256" (ECDSA P-256), "EdDSA"
	// (Ed25519: a smaller key, faster to verify) or "HS256" (HMAC with assertion_secret,
	// which the portal holds too: nothing is published, and a portal that can verify an
	// assertion can also make one). Default "ES256".
	AssertionAlg string `yaml:"assertion_alg"`
	// AssertionKeyFile is a PEM private key signing the per-request JWT: EC P-256 for ES256,
	// Ed25519 for EdDSA. Empty: a key is generated and kept in Redis (development; every
	// replica shares it).
	AssertionKeyFile string `yaml:"assertion_key_file"`
	// AssertionSecret is the HS256 key shared with the portal (at least 32 bytes; may be
	// given as assertion_secret_file). Only with assertion_alg HS256, which requires it.
	AssertionSecret Secret `yaml:"assertion_secret"`
	// AssertionLifetime is how long an assertion is valid. Default 60s.
	AssertionLifetime Duration `yaml:"assertion_lifetime"`
	// Forward is what a portal is told about an admitted request on routes that do not say
	// (identity_forward): "full", every identity header and the signed assertion; "headers",
	// the headers without the assertion (a portal that trusts its network path and reads
	// headers, such as Django's RemoteUserMiddleware); "assertion", the assertion alone (a
	// portal that verifies it finds every claim there, once); "none", nothing (an upstream
	// that only needs the gate, such as static files). Client-sent identity headers are
	// removed whatever it says. Default "full".
	Forward string `yaml:"forward"`
}

// AssertionAlgs are the values of identity.assertion_alg, and MinAssertionSecret the shortest
// assertion_secret (package assertion's algorithms and MinSecret; a test keeps them equal).
var AssertionAlgs = []string{"ES256", "EdDSA", "HS256"}

// MinAssertionSecret is the shortest identity.assertion_secret, in bytes.
const MinAssertionSecret = 32

// The values of identity.forward and a route's identity_forward.
const (
	ForwardFull      = "full"
	ForwardHeaders   = "headers"
	ForwardAssertion = "assertion"
	ForwardNone      = "none"
)

// ForwardModes lists the values of identity.forward, in the order documented.
var ForwardModes = []string{ForwardFull, ForwardHeaders, ForwardAssertion, ForwardNone}

// IdentityHeaders names the headers set on forwarded requests. A route may override any of
// them; an empty name at route level keeps the global one. The global defaults are
// X-Portcullis-User, -Email, -Org, -Roles, -Purpose, -Kind and -Assertion (see Defaults).
type IdentityHeaders struct {
	// User names the header carrying the person's key, issuer|subject.
	User string `yaml:"user"`
	// Email names the header carrying the person's email address.
	Email string `yaml:"email"`
	// Org names the header carrying the organisation the request acts for.
	Org string `yaml:"org"`
	// Roles names the header carrying the membership's roles, comma-separated.
	Roles string `yaml:"roles"`
	// Purpose names the header carrying the purpose the request is granted for.
	Purpose string `yaml:"purpose"`
	// PurposeReason names a header carrying the reason (ticket) of the purpose grant, with
	// bytes outside printable ASCII and "%" percent-encoded. Default: none (the assertion
	// carries it as purpose_reason either way).
	PurposeReason string `yaml:"purpose_reason"`
	// PurposeExpires names a header carrying when the purpose grant ends (RFC 3339, UTC;
	// absent for a grant without an end). Default: none (the assertion carries it as
	// purpose_exp either way).
	PurposeExpires string `yaml:"purpose_expires"`
	// Kind names the header carrying the membership's kind.
	Kind string `yaml:"kind"`
	// Assertion names the header carrying the signed JWT that asserts all of the above.
	Assertion string `yaml:"assertion"`
	// Sponsor names the header carrying, for a machine identity (kind service, admitted by
	// an API key), the user key of the person who sponsors it. Absent for people.
	Sponsor string `yaml:"sponsor"`
}

// Authz configures the membership lookups behind every org-scoped decision.
type Authz struct {
	// Cache keeps looked-up memberships in memory, kept fresh by pub/sub invalidations.
	// Default true; false makes every org-scoped request read Redis (to measure the cold
	// cost, or to rule the cache out while debugging).
	Cache *bool `yaml:"cache"`
	// CacheTTL is how long a looked-up membership is reused without asking Redis. Changes
	// are pushed to every replica over pub/sub at once; the TTL bounds staleness when a
	// message is lost. Default 2s, at most 1m.
	CacheTTL Duration `yaml:"cache_ttl"`
}

// CacheLifetime is how long the membership cache keeps an entry: authz.cache_ttl, or 0 when
// authz.cache is false (no cache).
func (a Authz) CacheLifetime() time.Duration {
	if a.Cache != nil && !*a.Cache {
		return 0
	}
	return a.CacheTTL.D()
}

// Audit configures the audit stream.
type Audit struct {
	// MaxLen bounds the Redis stream (approximately) when no sinks are configured. Default
	// 100000 events. With sinks it is not used: the stream is trimmed only past what every
	// sink has delivered.
	MaxLen int `yaml:"max_len"`
	// Sinks receive every audit event, each through a consumer group of its own: at least
	// once, in stream order on first delivery, each event with its stable id for
	// de-duplication. An event leaves the stream only once every sink has it.
	Sinks []AuditSink `yaml:"sinks"`
	// Retention is how long, with sinks, delivered events stay in the stream (for admin
	// audit tail). Default 24h.
	Retention Duration `yaml:"retention"`
	// MaxSinkLag makes readyz fail (check audit_sinks) while a sink's oldest undelivered
	// event is older than this. Default 0: a lagging sink is reported by the metric
	// portcullis_audit_sink_oldest_undelivered_seconds only.
	MaxSinkLag Duration `yaml:"max_sink_lag"`
	// SpoolDir keeps the events of requests (denials, sign-ins, blocked recoveries) that
	// Redis did not take at once in a file there (one per process) until it does, instead of
	// in memory: they survive a crash or a restart, and a process started on the directory
	// stores what another left. Must exist and be private to Portcullis: check (and the
	// start) warns when its group or others have any access. Default: in memory
	// (up to 10000 events, lost with the process).
	SpoolDir string `yaml:"spool_dir"`
	// SpoolFsync is when a spooled event reaches the disk: always (before the request is
	// answered) or off (left to the kernel: a power cut can lose the newest). Default always.
	SpoolFsync string `yaml:"spool_fsync"`
	// SpoolMaxMB bounds each process's spool file; beyond it events are dropped and logged.
	// Default 1024.
	SpoolMaxMB int `yaml:"spool_max_mb"`
	// Refusals is how the refusals too frequent to record one by one (no_session,
	// store_unavailable) are audited: counted (one access.refusals_counted event per reason
	// and route every refusal_interval, with sample request ids) or off. Default counted.
	Refusals string `yaml:"refusals"`
	// RefusalInterval is the period of the counted refusals' events. Default 1m.
	RefusalInterval Duration `yaml:"refusal_interval"`
}

// Audit sink types (AuditSink.Type).
const (
	SinkFile    = "file"
	SinkStdout  = "stdout"
	SinkWebhook = "webhook"
)

// AuditSink is one destination of the whole audit trail.
type AuditSink struct {
	// Name identifies the sink in logs and metrics and keeps its place in the stream
	// (consumer group sink:NAME). Required, unique; a new name is sent every event still in
	// the stream.
	Name string `yaml:"name"`
	// Type is file (JSON lines, rotated), stdout (JSON lines, for a log shipper) or webhook
	// (a signed POST per event, as notifications.webhooks, retried without end).
	Type string `yaml:"type"`
	// Path is the file a file sink appends to; its directory must exist. Each process
	// sharing the Redis writes the events it delivered: collect every process's file for the
	// whole trail.
	Path string `yaml:"path"`
	// MaxSizeMB rotates a file sink's file when it would grow past this many MiB: it is
	// renamed PATH.TIMESTAMP and a new one started. Default 100.
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxFiles is how many rotated files a file sink keeps (the oldest are removed).
	// Default 10.
	MaxFiles int `yaml:"max_files"`
	// Fsync is when a file sink forces its writes to disk: batch (before the events are
	// acknowledged, so a crash loses none) or off (leave it to the kernel). Default batch.
	Fsync string `yaml:"fsync"`
	// URL receives a webhook sink's deliveries: https, or http for a loopback host.
	URL string `yaml:"url"`
	// Secret signs a webhook sink's deliveries (Standard Webhooks, as
	// notifications.webhooks[].secret). Give it as secret_file.
	Secret Secret `yaml:"secret"`
	// CARootFile is a PEM bundle trusted for a webhook sink's receiver. Default: the system
	// roots.
	CARootFile string `yaml:"ca_root_file"`
}

// SigningKey is a webhook sink's HMAC key, as Webhook.SigningKey.
func (s *AuditSink) SigningKey() []byte { w := Webhook{Secret: s.Secret}; return w.SigningKey() }

// Session configures the server-side sessions kept in Redis.
type Session struct {
	// IdleTimeout ends a session nobody used for this long. Default 1h.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// AbsoluteTimeout ends a session this long after sign-in, used or not. Default 12h.
	AbsoluteTimeout Duration `yaml:"absolute_timeout"`
	// TouchInterval is how stale the stored last-seen time may get before a request writes
	// it again; it coalesces writes (not one per request). Default 1m; below idle_timeout.
	TouchInterval Duration `yaml:"touch_interval"`
	// LoginTimeout is how long a started sign-in (state, nonce, PKCE verifier) stays valid.
	// Default 10m.
	LoginTimeout Duration `yaml:"login_timeout"`
	// Cache keeps session records read from Redis in memory; every change to a session is
	// announced over pub/sub so other replicas drop their copy. Default true; false reads
	// Redis on every request.
	Cache *bool `yaml:"cache"`
	// CacheTTL is how long a cached session record is reused without reading Redis: the
	// bound on a sign-out going unnoticed when an announcement is lost. Default 2s, at most 1m.
	CacheTTL Duration `yaml:"cache_ttl"`
}

// Pages brands the pages Portcullis shows people itself: sign-in problems, the organisation
// picker, access denied, step-up, blocked recovery, upstream errors.
type Pages struct {
	// ProductName is shown in page titles and headings instead of "Portcullis", typically the
	// portal's own name.
	ProductName string `yaml:"product_name"`
	// LogoURL is an image shown at the top of every page: an https URL or a same-origin path
	// ("/static/logo.svg"). Empty shows no logo.
	LogoURL string `yaml:"logo_url"`
	// SupportEmail is offered on refusals as the address to write to.
	SupportEmail string `yaml:"support_email"`
	// SupportURL is offered on refusals as the page where to get help (https, or a path).
	SupportURL string `yaml:"support_url"`
}

// Server configures the listeners and HTTP server hardening.
type Server struct {
	// Listen is the address of the main listener. Default ":8443" (":8080" when tls.mode is off).
	Listen string `yaml:"listen"`
	// PublicURL is the externally visible base URL (scheme https, host, optional port).
	// Used for redirects and OIDC callbacks. Empty: redirects use the request's own host.
	PublicURL string `yaml:"public_url"`
	// RedirectListen is the address of a plain-HTTP listener that redirects every request to
	// HTTPS and answers ACME HTTP-01 challenges. Empty: no such listener.
	RedirectListen string `yaml:"redirect_listen"`
	// MetricsListen is the address of the Prometheus /metrics listener. Default "127.0.0.1:9090".
	// "off" disables it.
	MetricsListen string `yaml:"metrics_listen"`
	// Pprof serves Go's profiles (/debug/pprof/) on the metrics listener, for measuring CPU
	// and allocations in production. Default false; it needs a loopback metrics_listen, since
	// profiles show request data in memory.
	Pprof bool `yaml:"pprof"`
	// TrustedProxies lists the CIDRs whose X-Forwarded-For is believed. Default: none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ClientIPHeader, when set, is a header the portal receives with the client's address
	// (the peer, or the first untrusted hop of X-Forwarded-For from trusted_proxies), such as
	// "X-Real-IP" or "True-Client-IP". Whatever the client sent in it, and in every other
	// client-address header, is removed either way. Default: none (X-Forwarded-For only).
	ClientIPHeader string `yaml:"client_ip_header"`
	// ReadHeaderTimeout bounds reading request headers. Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request including body. Default 60s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds writing a response. Default 0 (none), so long downloads and WebSockets work.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes idle keep-alive connections. Default 120s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds the request line plus headers. Default 32768 (net/http allows
	// about 4 KiB more); a portal rarely needs more, and a 64 KiB cookie is an attack.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM. Default 15s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// PathParams says what to do with ";" parameters in path segments: "reject" (400, default)
	// or "strip" (remove them from every segment before matching and forwarding).
	PathParams string `yaml:"path_params"`
	// BodyInspectionLimit is the most body bytes read to look for a method-override field
	// (`_method`) in a POST form or JSON body on a route where the method matters (see
	// routes[].method_override). Default 1048576; a larger such body is refused with 413.
	BodyInspectionLimit int `yaml:"body_inspection_limit"`
	// MaxBufferedBody is the most bytes of a chunked request body read whole, and its
	// framing checked, before the upstream is contacted; such a body is forwarded with its
	// Content-Length, and a malformed one is refused (400 bad_framing) without a byte
	// reaching the portal. A longer chunked body is streamed, and if its framing breaks, the
	// upstream connection is closed. Default 1048576.
	MaxBufferedBody int `yaml:"max_buffered_body"`
	// HSTS configures the Strict-Transport-Security header added to every HTTPS response
	// when max_age is positive.
	HSTS HSTS `yaml:"hsts"`

	// Parsed values, filled by Load.
	TrustedPrefixes []netip.Prefix `yaml:"-"`
	PublicBase      *url.URL       `yaml:"-"`
}

// HSTS configures the Strict-Transport-Security header. Zero MaxAge: no header.
type HSTS struct {
	// MaxAge is how long browsers keep to HTTPS for this host (max-age). Zero: no header.
	MaxAge Duration `yaml:"max_age"`
	// IncludeSubdomains extends the policy to every subdomain (includeSubDomains).
	IncludeSubdomains bool `yaml:"include_subdomains"`
	// Preload asks for inclusion in the browsers' preload lists (preload); hard to undo.
	Preload bool `yaml:"preload"`
}

// TLS modes.
const (
	TLSModeACME       = "acme"
	TLSModeFiles      = "files"
	TLSModeSelfSigned = "self_signed"
	TLSModeOff        = "off"
)

// TLS configures how the main listener gets its certificates.
type TLS struct {
	// Mode is how the certificates are obtained: acme, files, self_signed or off. Required.
	Mode string `yaml:"mode"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ACME configures certificate issuance in mode acme.
	ACME ACME `yaml:"acme"`
	// CertFile is the PEM certificate chain for mode files; it is reloaded when it changes.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key for mode files; it is reloaded when it changes.
	KeyFile string `yaml:"key_file"`
	// SelfSignedHosts are the names put in the development certificate. Default: localhost,
	// 127.0.0.1, ::1 and every exact route host.
	SelfSignedHosts []string `yaml:"self_signed_hosts"`
}

// ACME configures certificate issuance with certmagic.
type ACME struct {
	// Domains are the names to obtain certificates for. Required in mode acme.
	Domains []string `yaml:"domains"`
	// Email is the ACME account contact.
	Email string `yaml:"email"`
	// CA is the directory URL. Default Let's Encrypt production.
	CA string `yaml:"ca"`
	// CARootFile is a PEM bundle trusted for the CA's own HTTPS endpoint (private ACME servers).
	CARootFile string `yaml:"ca_root_file"`
	// Storage is the directory for accounts and certificates. Default "./portcullis-acme".
	Storage string `yaml:"storage"`
	// Challenges lists the enabled challenge types: "http-01", "tls-alpn-01". Default both.
	Challenges []string `yaml:"challenges"`
	// AlternateHTTPPort is the port the HTTP-01 solver listens on when it is not 80 (tests,
	// port forwarding). Zero: port 80.
	AlternateHTTPPort int `yaml:"alt_http_port"`
	// AlternateTLSALPNPort is the port the TLS-ALPN-01 solver listens on when it is not 443
	// (tests, port forwarding). Zero: port 443.
	AlternateTLSALPNPort int `yaml:"alt_tls_alpn_port"`
}

// Log configures structured logging.
type Log struct {
	// Level is the least severity logged: debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is the encoding of log lines: json (default) or text.
	Format string `yaml:"format"`
	// AccessLog writes one line per request. Default true.
	AccessLog *bool `yaml:"access_log"`

	SlogLevel slog.Level `yaml:"-"`
}

// Redis configures the connection to the Redis server holding sessions and memberships.
// An empty address means Redis is not configured (only public routes can work).
type Redis struct {
	// Address is the server's host:port, or unix:/path for a socket. Empty (and no
	// sentinel_master): Redis is not configured.
	Address string `yaml:"address"`
	// SentinelMaster is the name Redis Sentinel monitors the primary under. When set,
	// Portcullis asks the sentinels in addresses for the current primary and follows its
	// failovers; address must then be empty.
	SentinelMaster string `yaml:"sentinel_master"`
	// Addresses are the sentinels' host:port addresses (at least one; list them all so any
	// one can answer). Used only with sentinel_master: Redis Cluster is not supported.
	Addresses []string `yaml:"addresses"`
	// SentinelUsername is the ACL user for the sentinels; empty uses none.
	SentinelUsername string `yaml:"sentinel_username"`
	// SentinelPassword authenticates to the sentinels (sentinel requirepass), inline or as
	// sentinel_password_file. The primary's own password is password.
	SentinelPassword Secret `yaml:"sentinel_password"`
	// ReplicaAcks is how many replicas must confirm a change (WAIT) before it is reported
	// done. Behind Sentinel, replication is asynchronous: a revocation the primary
	// acknowledged but no replica received is lost by a failover, and the access it removed
	// returns. With replica_acks 1 a change reports an error naming this when no replica
	// confirmed it within half of read_timeout. Default 0: do not wait.
	ReplicaAcks int `yaml:"replica_acks"`
	// Username is the ACL user; empty authenticates with the password alone (or not at all).
	Username string `yaml:"username"`
	// Password is the Redis password, given inline (${ENV} allowed) or as password_file.
	Password Secret `yaml:"password"`
	// DB is the database number selected after connecting. Default 0.
	DB int `yaml:"db"`
	// TLS enables TLS to Redis.
	TLS bool `yaml:"tls"`
	// KeyPrefix starts every key Portcullis writes. Default "pc".
	KeyPrefix string `yaml:"key_prefix"`
	// DialTimeout bounds connecting to Redis. Default 2s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds waiting for a reply from Redis. Default 1s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds sending a command to Redis. Default 1s.
	WriteTimeout Duration `yaml:"write_timeout"`
}

// Configured reports whether Redis is configured at all: a server address or a Sentinel set-up.
func (r Redis) Configured() bool { return r.Address != "" || r.SentinelMaster != "" }

// Method override settings (Route.MethodOverride).
const (
	MethodOverrideRefuse = "refuse"
	MethodOverrideAllow  = "allow"
)

// Path match kinds.
const (
	PathPrefix = "prefix"
	PathExact  = "exact"
)

// Route is one entry in the ordered route table. The first route that matches host, path
// and method handles the request.
type Route struct {
	// Name identifies the route in logs, metrics and audit events. Required, unique.
	Name string `yaml:"name"`
	// Hosts are the host names the route answers for: exact names or "*.example.com"
	// (exactly one extra label). Empty: any host.
	Hosts []string `yaml:"hosts"`
	// Path is the path pattern, starting with "/". Default "/".
	Path string `yaml:"path"`
	// PathMatch is how the path is compared: prefix (default; segment-aligned: /admin
	// matches /admin and /admin/x, not /administrator) or exact.
	PathMatch string `yaml:"path_match"`
	// CaseInsensitive matches the path ignoring ASCII case; use it for portals that ignore case
	// (IIS), so /ADMIN cannot dodge an /admin rule.
	CaseInsensitive bool `yaml:"case_insensitive"`
	// Methods are the HTTP methods the route accepts; empty means any method.
	Methods []string `yaml:"methods"`
	// MethodOverride says what happens to a request that asks the portal to treat it as
	// another method (the X-HTTP-Method-Override, X-Method-Override and X-HTTP-Method headers,
	// or a `_method` field in the query or a POST body, as Rails, Laravel, Symfony, Spring and
	// Express honour): "refuse" (default: the headers are removed; a field on a route where
	// the method matters is refused) or "allow" (forwarded, and the request is decided as the
	// method it asks for, which must reach a route that allows overrides too).
	MethodOverride string `yaml:"method_override"`
	// Upstream is the portal's base URL (http or https). Required.
	Upstream string `yaml:"upstream"`
	// Public lets requests through without a session. Default false (a session is required
	// once sign-in exists).
	Public bool `yaml:"public"`
	// PreserveHost forwards the Host the client asked for (the public name) instead of the
	// upstream's host and port. Default true: a portal builds its absolute links (a reset
	// mail's link, a redirect) and checks CSRF origins with the Host it receives, and with the
	// upstream's it would send people to an internal address. Routes to one upstream must
	// agree: a portal sees one host. false only for an upstream that serves by its own name
	// (a virtual host behind a shared address); it then gets the public host in
	// X-Forwarded-Host.
	PreserveHost *bool `yaml:"preserve_host"`
	// WebSocket lets requests upgrade to WebSocket on this route, after its authorisation; on
	// an org-scoped route the tunnel is closed as soon as the membership stops granting.
	// Default false: an Upgrade is refused (h2c upgrades are never forwarded: the header is
	// removed).
	WebSocket bool `yaml:"websocket"`
	// Timeouts are the bounds on the upstream exchange.
	Timeouts UpstreamTimeouts `yaml:"timeouts"`
	// UpstreamTLS configures TLS to an https upstream.
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls"`
	// RequestHeaders are headers set (or, with an empty value, removed) on the forwarded
	// request.
	RequestHeaders map[string]string `yaml:"request_headers"`
	// ResponseHeaders are headers set (or, with an empty value, removed) on the response.
	ResponseHeaders map[string]string `yaml:"response_headers"`
	// Org says where the organisation a request acts for comes from. Setting it, or require,
	// makes the route org-scoped; otherwise a non-public route needs a session only.
	Org *OrgSource `yaml:"org"`
	// Require lists what the membership in that organisation must hold. Setting it, or org,
	// makes the route org-scoped.
	Require *Require `yaml:"require"`
	// IdentityHeaders overrides identity.headers names for this route; a name left empty
	// keeps the global one.
	IdentityHeaders *IdentityHeaders `yaml:"identity_headers"`
	// IdentityForward overrides identity.forward for this route: what its portal is told of
	// an admitted request (full, headers, assertion or none). Empty: identity.forward.
	IdentityForward string `yaml:"identity_forward"`
	// StepUp demands a recent strong authentication (and grants a time-boxed elevation).
	StepUp *StepUp `yaml:"step_up"`
	// Auth lists how requests may authenticate: session (a person's browser session),
	// api_key (a machine identity's key, from "Authorization: Bearer pc_…" only, never a
	// query string or a cookie) and client_jwt (a machine identity's client-credentials token
	// from an issuer in client_jwt.issuers, from "Authorization: Bearer" only). Default
	// [session]. api_key and client_jwt need an org-scoped route and no step_up (a machine
	// cannot step up).
	Auth []string `yaml:"auth"`
	// RecoveryGuard inspects account-recovery requests (password reset by email) on a public
	// route and stops those that would hand an account to a stale mailbox.
	RecoveryGuard *RecoveryGuard `yaml:"recovery_guard"`

	// Parsed values, filled by Load.
	UpstreamURL *url.URL `yaml:"-"`
	// Line and Column locate the route in the file, for messages.
	Line, Column int `yaml:"-"`
}

// Ways a request authenticates (Route.Auth).
const (
	AuthSession   = "session"
	AuthAPIKey    = "api_key"
	AuthClientJWT = "client_jwt"
)

// AcceptsClientJWT reports whether the route admits machine identities by a client-credentials
// token of a trusted issuer (client_jwt).
func (r *Route) AcceptsClientJWT() bool { return slices.Contains(r.Auth, AuthClientJWT) }

// AcceptsMachine reports whether the route admits machine identities at all.
func (r *Route) AcceptsMachine() bool { return r.AcceptsAPIKey() || r.AcceptsClientJWT() }

// AcceptsAPIKey reports whether the route admits machine identities by API key.
func (r *Route) AcceptsAPIKey() bool { return slices.Contains(r.Auth, AuthAPIKey) }

// AcceptsSession reports whether the route admits people by their session.
func (r *Route) AcceptsSession() bool { return slices.Contains(r.Auth, AuthSession) }

// Organisation sources.
const (
	OrgFromHost    = "host"
	OrgFromPath    = "path"
	OrgFromHeader  = "header"
	OrgFromSession = "session"
)

// OrgSource locates the active organisation of a request.
type OrgSource struct {
	// From is where the organisation is read: host, path, header or session (default: the
	// session's choice from the org picker).
	From string `yaml:"from"`
	// Host is a pattern with one {org} label, such as "{org}.portal.example.com" (from: host).
	Host string `yaml:"host"`
	// PathSegment is the 1-based index of the path segment naming the org (from: path):
	// 2 in /orgs/{org}/invoices.
	PathSegment int `yaml:"path_segment"`
	// Header names the header carrying the org id (from: header). It is believed only from
	// server.trusted_proxies, and only when sent once; otherwise the request is refused
	// (no_org). Behind forward-auth the ingress passes the client's header on, so the org is
	// the client's choice: use it only where the membership check is what protects the org.
	Header string `yaml:"header"`
}

// Require is what a membership must hold for an org-scoped route. Empty lists require nothing
// of that kind.
type Require struct {
	// Roles: the membership must hold at least one of these roles.
	Roles []string `yaml:"roles"`
	// Purposes: the membership must hold an unexpired grant for at least one of these.
	Purposes []string `yaml:"purposes"`
	// Kinds: the membership's kind must be one of these (employee, partner, reseller,
	// support, service).
	Kinds []string `yaml:"kinds"`
	// VerifiedEmailDomain requires the person's email domain to be currently verified for the
	// organisation. Default true.
	VerifiedEmailDomain *bool `yaml:"verified_email_domain"`
}

// StepUp is a route's demand for a fresh, strong authentication. The elevation it grants
// belongs to one session and one organisation.
type StepUp struct {
	// ACR lists acceptable acr values (any one). Sent to the provider as acr_values.
	ACR []string `yaml:"acr"`
	// AMR lists authentication methods that must all appear in the ID token's amr.
	AMR []string `yaml:"amr"`
	// MaxAge is how recent the strong authentication must be. Required. Sent as max_age.
	MaxAge Duration `yaml:"max_age"`
	// Elevation is how long a granted step-up lasts. Default and maximum: max_age.
	Elevation Duration `yaml:"elevation"`
	// PromptLogin adds prompt=login, forcing the provider to authenticate again.
	PromptLogin bool `yaml:"prompt_login"`
}

// RecoveryGuard is a public route's account-recovery guard (config/recovery.go has the
// parts and the checks; package proxy applies it). Defaults: see config.Defaults.
type RecoveryGuard struct {
	// Preset fills identifier and flow for a framework's stock reset views, from this
	// route's path: django (.../password_reset/: form email), devise (.../users/password:
	// user[email], form or JSON) or laravel (.../forgot-password: email, form or JSON). What
	// the file sets itself is kept. Default: none.
	Preset string `yaml:"preset"`
	// Flow are example paths of the reset's later steps that people reach without signing
	// in (the "check your mail" page, the link in the mail, its form), such as
	// "/accounts/reset/MQ/set-password/". A path that a route requiring sign-in, or no route,
	// would serve is warned about. Default: the preset's; none without one.
	Flow []string `yaml:"flow"`
	// Methods are the HTTP methods the guard inspects. Default [POST]. A method the route
	// accepts but the guard does not list is forwarded uninspected.
	Methods []string `yaml:"methods"`
	// Identifier lists where the identifier may be; at least one. A request must carry it in
	// exactly one of them, exactly once.
	Identifier []RecoveryIdentifier `yaml:"identifier"`
	// Kind is what the identifier is where identifier[].kind does not say: email (default)
	// or username (a portal username, resolved to a person through the username index).
	Kind string `yaml:"kind"`
	// BodyLimit is the most body bytes read and accepted. Default 65536, at most 1048576.
	BodyLimit int `yaml:"body_limit"`
	// RateLimit bounds recovery requests per identifier and per client address.
	RateLimit RecoveryRateLimit `yaml:"rate_limit"`
	// UnknownDomains is what to do with an address whose domain no organisation has ever
	// verified: block (default) or allow.
	UnknownDomains string `yaml:"unknown_domains"`
	// MissingIdentifier is what to do with a request that carries no identifier: block
	// (default: a guard fails closed, so a reset by a field it does not know, such as
	// login= or phone=, never reaches the portal uninspected) or forward (for a route that
	// also serves requests that are not resets).
	MissingIdentifier string `yaml:"missing_identifier"`
	// BlockedResponse is the answer to a blocked request: generic (default: generic_body,
	// 200), forbidden (a 403 page with the reason code), or mirror: the request is forwarded
	// with the identifier replaced by a decoy that cannot receive mail (an address at
	// portcullis.invalid, or a username nobody holds), so the client gets the portal's own
	// answer for an unknown address; uniform as long as the portal neither echoes the
	// address back nor checks it before answering.
	BlockedResponse string `yaml:"blocked_response"`
	// GenericBody is the body of the generic answer. Default: "If an account exists for
	// that address, a reset link is on its way."
	GenericBody string `yaml:"generic_body"`
	// GenericContentType is the media type of generic_body. Default "text/plain;
	// charset=utf-8".
	GenericContentType string `yaml:"generic_content_type"`
	// GenericStatus is the status of the generic answer, 200 to 399. Default 200; a portal
	// that redirects to a "check your mail" page takes 302 with a Location in generic_headers.
	GenericStatus int `yaml:"generic_status"`
	// GenericHeaders are further headers of the generic answer, such as Location.
	GenericHeaders map[string]string `yaml:"generic_headers"`
	// IdentifierInAudit is how the identifier appears in audit events and logs: hash
	// (default) or mask.
	IdentifierInAudit string `yaml:"identifier_in_audit"`

	// Spec is the guard compiled, filled by Load: the identifier locations parsed, for the
	// proxy to apply to every request.
	Spec *recoveryid.Spec `yaml:"-"`
}

// UpstreamTimeouts bound the upstream exchange. Zero values take the defaults.
type UpstreamTimeouts struct {
	// Dial bounds connecting to the upstream. Default 5s.
	Dial Duration `yaml:"dial"`
	// ResponseHeader bounds waiting for the upstream's response headers. Default 60s.
	ResponseHeader Duration `yaml:"response_header"`
	// IdleConn closes pooled idle upstream connections. Default 90s.
	IdleConn Duration `yaml:"idle_conn"`
}

// UpstreamTLS configures TLS towards an https upstream.
type UpstreamTLS struct {
	// CAFile is a PEM bundle of roots trusted for the upstream. Default: system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName overrides the name verified in the upstream certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate verification. It MUST NOT be used in
	// production; it is logged as a warning at start.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Duration is a time.Duration written in YAML as a Go duration string ("10s", "1h30m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes d as Go writes durations ("15m0s"), for JSON records and answers.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText writes, or a duration as the configuration does.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Secret holds a credential. It never prints its value: String, GoString and LogValue redact.
// In YAML a Secret key "x" may also be given as "x_file", naming a file whose contents
// (without a trailing newline) are the value.
type Secret string

// Reveal returns the secret's value, for the one place that must use it.
func (s Secret) Reveal() string { return string(s) }

// String redacts.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts.
func (s Secret) GoString() string { return s.String() }

// LogValue redacts.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText redacts, so a Secret encoded to JSON or YAML never leaks.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
