package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// CallbackPath is where the provider sends the browser back after sign-in.
const CallbackPath = "/.portcullis/callback"

// Membership kinds, as stored with each membership.
var MembershipKinds = []string{"employee", "partner", "reseller", "support", "service"}

// oidc checks sign-in; it needs Redis (sessions live there) and a redirect URL. oidc's own
// keys describe the default provider, oidc.providers the others; each is checked alike and
// collected, with its defaults, in o.All.
func (v *validator) oidc(c *Config) {
	o := &c.OIDC
	if !o.Configured() {
		v.firstGiven([]string{"client_id", "client_secret", "redirect_url", "ca_root_file", "acr_values", "display_name", "managed_providers"}, "is set but oidc.issuer is not")
		return
	}
	o.All = o.All[:0]
	if o.Issuer != "" {
		def := o.Default()
		v.provider("oidc.", &def)
		o.IssuerURL, o.Scopes, o.DisplayName = def.IssuerURL, def.Scopes, def.DisplayName
		o.All = append(o.All, def)
	} else {
		v.firstGiven([]string{"client_id", "client_secret", "ca_root_file", "acr_values", "display_name", "subject_claim", "scopes",
			"extra_params", "require_verified_email", "email_domain_claim", "signing_algs", "revalidate"}, "is set but oidc.issuer is not: each of oidc.providers has its own")
	}
	names, issuers := map[string]string{}, map[string]string{}
	if o.Issuer != "" {
		names[DefaultProvider], issuers[strings.TrimSuffix(o.Issuer, "/")] = "oidc", "oidc.issuer"
	}
	for i := range o.Providers {
		p := &o.Providers[i]
		pp := fmt.Sprintf("oidc.providers[%d].", i)
		switch {
		case p.Name == "":
			v.errorf(pp+"name", "is required")
		case !providerName.MatchString(p.Name):
			v.errorf(pp+"name", "%s must be lower-case letters, digits and \"-\" (at most 63)", v.show(pp+"name", p.Name))
		case names[p.Name] != "":
			v.errorf(pp+"name", "%s is already the name of %s", v.show(pp+"name", p.Name), names[p.Name])
		default:
			names[p.Name] = strings.TrimSuffix(pp, ".")
		}
		if p.Issuer == "" {
			v.errorf(pp+"issuer", "is required")
			continue
		}
		if prev, ok := issuers[strings.TrimSuffix(p.Issuer, "/")]; ok {
			// A person's key is issuer|subject: two providers on one issuer would be one.
			v.errorf(pp+"issuer", "is already %s's issuer", prev)
		}
		issuers[strings.TrimSuffix(p.Issuer, "/")] = pp + "issuer"
		v.provider(pp, p)
		o.All = append(o.All, *p)
	}
	if !c.Redis.Configured() {
		v.errorf("redis.address", "is required (or redis.sentinel_master) when oidc is configured: sessions are kept in Redis")
	}
	switch {
	case o.RedirectURL == "":
		v.errorf("oidc.redirect_url", "is required when server.public_url is not set")
	default:
		if u := v.endpointURL("oidc.redirect_url", o.RedirectURL); u != nil {
			if u.Path != CallbackPath || u.RawQuery != "" || u.Fragment != "" {
				v.errorf("oidc.redirect_url", "must end in %s with no query or fragment", CallbackPath)
			} else {
				o.RedirectURI = u
			}
		}
	}
	if o.ClockSkew.D() > 5*time.Minute {
		v.errorf("oidc.clock_skew", "must be at most 5m")
	}
	v.nonNegative("oidc.clock_skew", o.ClockSkew)
	// Each provider has a callback of its own (RFC 9700 §4.4.2), on the sign-in host.
	for i := range o.All {
		if o.RedirectURI == nil {
			break
		}
		u := *o.RedirectURI
		if !o.isDefault(i) {
			u.Path = CallbackPath + "/" + o.All[i].Name
		}
		o.All[i].RedirectURI = &u
	}
}

// firstGiven reports msg at the first of oidc's keys the file gives: keys of the default
// provider, given without it.
func (v *validator) firstGiven(keys []string, msg string) {
	for _, k := range keys {
		if _, ok := v.d.valPos["oidc."+k]; ok {
			v.errorf("oidc."+k, "%s", msg)
			return
		}
	}
}

// providerName is what an OpenID Provider may be called (oidc.providers[].name).
var providerName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// provider checks one provider whose keys are under prefix pp ("oidc." or
// "oidc.providers[i].") and fills its parsed issuer and its defaults.
func (v *validator) provider(pp string, p *OIDCProvider) {
	if p.Issuer == "" {
		return
	}
	p.IssuerURL = v.endpointURL(pp+"issuer", p.Issuer)
	switch {
	case p.IssuerURL != nil && (p.IssuerURL.RawQuery != "" || p.IssuerURL.Fragment != ""):
		v.errorf(pp+"issuer", "must not have a query or fragment")
	case strings.Contains(p.Issuer, "|"):
		// "|" separates issuer and subject in a person's key (store.UserKey).
		v.errorf(pp+"issuer", "must not contain \"|\"")
	}
	if p.ClientID == "" {
		v.errorf(pp+"client_id", "is required when %sissuer is set", pp)
	}
	if !slices.Contains(p.Scopes, "openid") {
		p.Scopes = append([]string{"openid"}, p.Scopes...)
	}
	for k := range p.ExtraParams {
		switch k {
		case "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
			"code_challenge_method", "response_mode", "request", "request_uri":
			v.keyErrorf(pp+"extra_params."+k, "cannot be overridden: Portcullis sets it")
		}
	}
	for i, alg := range p.SigningAlgs {
		ap := fmt.Sprintf("%ssigning_algs[%d]", pp, i)
		switch alg {
		case "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA":
		default:
			v.errorf(ap, "%s is not an accepted signing algorithm (asymmetric algorithms only; never none or HS*)", v.show(ap, alg))
		}
	}
	for k, val := range p.ACRValues {
		if k == "" || val == "" || strings.ContainsAny(k+val, " \t\r\n") {
			v.keyErrorf(pp+"acr_values."+k, "must map an acr value to one acr value (no spaces)")
		}
	}
	if p.CARootFile != "" {
		v.fileExists(pp+"ca_root_file", p.CARootFile)
	}
	v.revalidate(pp, p)
	if p.Org != "" && !syntax.OrgID(p.Org) {
		v.errorf(pp+"org", "%s is not an organisation id", v.show(pp+"org", p.Org))
	}
	if p.SubjectClaim != "" && !claimNamePattern.MatchString(p.SubjectClaim) {
		v.errorf(pp+"subject_claim", "must be a claim name such as sub or oid")
	}
	switch {
	case p.EmailDomainClaim != "" && !claimNamePattern.MatchString(p.EmailDomainClaim):
		v.errorf(pp+"email_domain_claim", "must be a claim name such as hd")
	case p.EmailDomainClaim == "" && p.IssuerURL != nil && p.IssuerURL.Host == "accounts.google.com":
		v.warnf(pp+"issuer", "Google calls an address verified at any domain, including ones it does not host: set %semail_domain_claim: hd, so that only Workspace addresses of their own domain count as verified", pp)
	}
}

// revalidate checks a provider's revalidate section.
func (v *validator) revalidate(pp string, p *OIDCProvider) {
	r := p.Revalidate
	rp := pp + "revalidate."
	v.nonNegative(rp+"interval", r.Interval)
	v.nonNegative(rp+"grace", Duration(r.GracePeriod()))
	if r.Interval == 0 {
		for _, k := range []string{"grace", "userinfo"} {
			if _, ok := v.d.valPos[rp+k]; ok {
				v.errorf(rp+k, "is set but %sinterval is not", rp)
				return
			}
		}
		return
	}
	if r.Interval > 0 && r.Interval.D() < time.Second {
		v.errorf(rp+"interval", "must be at least 1s")
	}
	switch g := r.GracePeriod(); {
	case g > time.Hour:
		v.errorf(rp+"grace", "must be at most 1h: past it a person disabled at the provider keeps their session while it is down")
	case g < MinRevalidateGrace:
		v.errorf(rp+"grace", "must be at least %s: requests that arrive while another one checks back are served meanwhile", MinRevalidateGrace)
	}
	// Providers issue refresh tokens only when asked: offline_access (OIDC Core 11), or
	// Google's access_type=offline.
	if !slices.Contains(p.Scopes, "offline_access") && p.ExtraParams["access_type"] != "offline" {
		v.warnf(rp+"interval", "most providers issue refresh tokens only for offline_access: add it to %sscopes (Google: %sextra_params access_type: offline); a sign-in that yields none is refused", pp, pp)
	}
}

// claimNamePattern is a JWT claim name Portcullis reads: letters, digits, "_", "-", ".", ":".
var claimNamePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]{0,63}$`)

// identity checks the identity header names and the assertion key.
func (v *validator) identity(c *Config) {
	v.identityHeaders("identity.headers", &c.Identity.Headers)
	if c.Identity.AssertionKeyFile != "" {
		v.fileExists("identity.assertion_key_file", c.Identity.AssertionKeyFile)
	}
	id := &c.Identity
	if v.oneOf("identity.assertion_alg", id.AssertionAlg, AssertionAlgs...) {
		switch {
		case id.AssertionAlg == "HS256" && id.AssertionSecret == "":
			v.errorf("identity.assertion_alg", "HS256 needs identity.assertion_secret (or assertion_secret_file), the key the portal verifies with")
		case id.AssertionAlg == "HS256" && len(id.AssertionSecret.Reveal()) < MinAssertionSecret:
			v.errorf("identity.assertion_secret", "must be at least %d bytes", MinAssertionSecret)
		case id.AssertionAlg == "HS256" && id.AssertionKeyFile != "":
			v.errorf("identity.assertion_key_file", "is for ES256 and EdDSA; HS256 signs with identity.assertion_secret")
		case id.AssertionAlg != "HS256" && id.AssertionSecret != "":
			v.errorf("identity.assertion_secret", "is for assertion_alg HS256 only; %s signs with a private key", id.AssertionAlg)
		}
	}
	v.oneOf("identity.forward", c.Identity.Forward, ForwardModes...)
	v.nonNegative("identity.assertion_lifetime", c.Identity.AssertionLifetime)
	if c.Identity.AssertionLifetime.D() > 10*time.Minute {
		v.errorf("identity.assertion_lifetime", "must be at most 10m: an assertion is for one request")
	}
	if c.Authz.CacheTTL.D() > time.Minute {
		v.errorf("authz.cache_ttl", "must be at most 1m: it bounds how long a revocation can go unnoticed")
	}
	v.nonNegative("authz.cache_ttl", c.Authz.CacheTTL)
	if c.Audit.MaxLen < 1000 {
		v.errorf("audit.max_len", "must be at least 1000")
	}
}

func (v *validator) identityHeaders(p string, h *IdentityHeaders) {
	for _, f := range []struct{ key, name string }{{"user", h.User}, {"email", h.Email}, {"org", h.Org},
		{"roles", h.Roles}, {"purpose", h.Purpose}, {"purpose_reason", h.PurposeReason}, {"purpose_expires", h.PurposeExpires},
		{"kind", h.Kind}, {"assertion", h.Assertion}, {"sponsor", h.Sponsor}} {
		if f.name == "" {
			continue
		}
		fp := p + "." + f.key
		if !syntax.Token(f.name) {
			v.errorf(fp, "must be a valid header name")
		} else if hopByHop[strings.ToLower(f.name)] || strings.EqualFold(f.name, "host") {
			v.errorf(fp, "must not be a hop-by-hop header or Host")
		}
	}
}

// endpointURL accepts an https URL, or http for a loopback host (a development provider).
func (v *validator) endpointURL(p, raw string) *url.URL {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "" || u.Host == "":
		v.errorf(p, "must be an absolute URL such as \"https://idp.example.com\"")
	case u.User != nil:
		v.errorf(p, "must not contain user information")
	case u.Scheme == "https":
		return u
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return u
	default:
		v.errorf(p, "must use https (http is accepted for a loopback host only)")
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (v *validator) session(c *Config) {
	if !c.OIDC.Configured() {
		return
	}
	s := &c.Session
	for _, k := range []struct {
		p string
		d Duration
	}{{"session.idle_timeout", s.IdleTimeout}, {"session.absolute_timeout", s.AbsoluteTimeout},
		{"session.touch_interval", s.TouchInterval}, {"session.login_timeout", s.LoginTimeout},
		{"session.cache_ttl", s.CacheTTL}} {
		v.nonNegative(k.p, k.d)
	}
	if s.CacheTTL.D() > time.Minute {
		v.errorf("session.cache_ttl", "must be at most 1m: it bounds how long a sign-out can go unnoticed")
	}
	if s.IdleTimeout > s.AbsoluteTimeout {
		v.errorf("session.idle_timeout", "must not exceed session.absolute_timeout")
	}
	if s.TouchInterval >= s.IdleTimeout {
		v.errorf("session.touch_interval", "must be shorter than session.idle_timeout")
	}
	long := func(at string, r Revalidate) {
		if r.Interval > 0 && r.Interval >= s.AbsoluteTimeout {
			v.errorf(at, "must be shorter than session.absolute_timeout: a session would never check back")
		}
	}
	if c.OIDC.Issuer != "" {
		long("oidc.revalidate.interval", c.OIDC.Revalidate)
	}
	for i, p := range c.OIDC.Providers {
		long(fmt.Sprintf("oidc.providers[%d].revalidate.interval", i), p.Revalidate)
	}
}

// policy checks a route's organisation source and requirements.
func (v *validator) policy(p string, r *Route) {
	if r.Public && (r.Org != nil || r.Require != nil) {
		v.errorf(p+".public", "a public route cannot have org or require: it has no signed-in user")
	}
	if o := r.Org; o != nil {
		op := p + ".org"
		if v.oneOf(op+".from", o.From, OrgFromHost, OrgFromPath, OrgFromHeader, OrgFromSession) {
			switch o.From {
			case OrgFromHost:
				if msg := orgHostProblem(o.Host); msg != "" {
					v.errorf(op+".host", "%s", msg)
				}
			case OrgFromPath:
				if o.PathSegment < 1 {
					v.errorf(op+".path_segment", "must be 1 or more (the segment of the path naming the org)")
				}
			case OrgFromHeader:
				if !syntax.Token(o.Header) {
					v.errorf(op+".header", "must be a valid header name")
				}
			}
		}
	}
	if su := r.StepUp; su != nil {
		if r.Public {
			v.errorf(p+".step_up", "a public route cannot demand step-up: it has no signed-in user")
		}
		v.stepUp(p+".step_up", su)
	}
	v.auth(p, r)
	v.recoveryGuard(p, r)
	if r.IdentityHeaders != nil {
		v.identityHeaders(p+".identity_headers", r.IdentityHeaders)
	}
	if r.IdentityForward != "" && v.oneOf(p+".identity_forward", r.IdentityForward, ForwardModes...) && r.Public {
		v.errorf(p+".identity_forward", "a public route forwards no identity: it has no signed-in user")
	}
	if q := r.Require; q != nil {
		qp := p + ".require"
		v.names(qp+".roles", q.Roles)
		v.names(qp+".purposes", q.Purposes)
		for i, k := range q.Kinds {
			kp := fmt.Sprintf("%s.kinds[%d]", qp, i)
			if !slices.Contains(MembershipKinds, k) {
				v.errorf(kp, "must be one of %s", strings.Join(MembershipKinds, ", "))
			}
		}
	}
}

func (v *validator) names(p string, list []string) {
	for i, n := range list {
		np := fmt.Sprintf("%s[%d]", p, i)
		if !routeNamePattern.MatchString(n) {
			v.errorf(np, "must be lower-case letters, digits, \"_\" and \"-\"")
		}
	}
}

// orgHostProblem checks a host pattern with exactly one whole leftmost {org} label.
func orgHostProblem(h string) string {
	if _, ok := OrgHostSuffix(h); !ok {
		return `must be "{org}." followed by a lower-case DNS name, such as "{org}.portal.example.com"`
	}
	return ""
}

// OrgHostSuffix returns what follows "{org}" in an org host pattern (".portal.example.com"
// for "{org}.portal.example.com"), and whether the pattern is one: "{org}." followed by a
// lower-case DNS name. It is the one rule for these patterns: the validator reports it and
// authz.NewOrgResolver compiles with it.
func OrgHostSuffix(pattern string) (string, bool) {
	rest, ok := strings.CutPrefix(pattern, "{org}.")
	if !ok || strings.Contains(rest, "{") || !validDNSName(rest) {
		return "", false
	}
	return pattern[len("{org}"):], true
}

// auth checks how a route's requests may authenticate.
func (v *validator) auth(p string, r *Route) {
	ap := p + ".auth"
	switch {
	case r.Public && r.Auth != nil:
		v.errorf(ap, "a public route takes no credential: remove auth, or public")
		return
	case r.Public:
		return
	case len(r.Auth) == 0:
		v.errorf(ap, "must list at least one of session, api_key, client_jwt")
		return
	}
	for i, a := range r.Auth {
		ip := fmt.Sprintf("%s[%d]", ap, i)
		switch {
		case a != AuthSession && a != AuthAPIKey && a != AuthClientJWT:
			v.errorf(ip, "must be session, api_key or client_jwt")
		case slices.Index(r.Auth, a) < i:
			v.errorf(ip, "%s is listed twice", a)
		}
	}
	if r.AcceptsMachine() {
		if r.Org == nil && r.Require == nil {
			v.errorf(ap, "api_key and client_jwt need an org-scoped route (org or require): a machine identity acts for its organisation")
		}
		if r.StepUp != nil {
			v.errorf(ap, "api_key and client_jwt cannot be combined with step_up: a machine cannot step up")
		}
	}
}

// stepUp checks a step-up demand at sp (a route's step_up, console.step_up).
func (v *validator) stepUp(sp string, su *StepUp) {
	if len(su.ACR) == 0 && len(su.AMR) == 0 {
		v.errorf(sp, "needs acr or amr: what counts as a strong authentication")
	}
	if su.MaxAge <= 0 {
		v.errorf(sp+".max_age", "is required and must be positive")
	}
	v.nonNegative(sp+".elevation", su.Elevation)
	if su.MaxAge > 0 && su.Elevation > su.MaxAge {
		v.errorf(sp+".elevation", "must not exceed max_age")
	}
	for i, m := range su.AMR {
		if !routeNamePattern.MatchString(m) {
			v.errorf(fmt.Sprintf("%s.amr[%d]", sp, i), "must be a method name such as mfa, otp or hwk")
		}
	}
	for i, a := range su.ACR {
		if a == "" || strings.ContainsAny(a, " \t\r\n\"") {
			v.errorf(fmt.Sprintf("%s.acr[%d]", sp, i), "must be a non-empty value without spaces or quotes")
		}
	}
}
