package config

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Default documents one default value: Key is the key path ("routes[].path" for a key of
// every route), Value what an absent or zero key becomes.
type Default struct {
	Key   string
	Value string
}

// LetsEncryptProduction is Let's Encrypt's production ACME directory, the default tls.acme.ca.
const LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"

// defaultRule pairs the documentation of a default with the code that applies it, so the
// README table and the behaviour cannot drift apart.
type defaultRule struct {
	Default
	apply func(*Config)
}

// defaultRules is the one place where defaults live. Each apply sets its key only when it is
// zero: in this schema zero always means "not given".
var defaultRules = []defaultRule{
	{Default{"server.listen", `":8443" (":8080" when tls.mode is off)`}, func(c *Config) {
		if c.Server.Listen == "" {
			c.Server.Listen = ":8443"
			if c.TLS.Mode == TLSModeOff {
				c.Server.Listen = ":8080"
			}
		}
	}},
	{Default{"server.metrics_listen", `"127.0.0.1:9090"`}, func(c *Config) { setString(&c.Server.MetricsListen, "127.0.0.1:9090") }},
	{Default{"server.read_header_timeout", "10s"}, func(c *Config) { setDuration(&c.Server.ReadHeaderTimeout, 10*time.Second) }},
	{Default{"server.read_timeout", "60s"}, func(c *Config) { setDuration(&c.Server.ReadTimeout, 60*time.Second) }},
	{Default{"server.write_timeout", "0 (none)"}, func(*Config) {}},
	{Default{"server.idle_timeout", "120s"}, func(c *Config) { setDuration(&c.Server.IdleTimeout, 120*time.Second) }},
	{Default{"server.max_header_bytes", "32768"}, func(c *Config) { setInt(&c.Server.MaxHeaderBytes, 32768) }},
	{Default{"server.shutdown_timeout", "15s"}, func(c *Config) { setDuration(&c.Server.ShutdownTimeout, 15*time.Second) }},
	{Default{"server.path_params", `"reject"`}, func(c *Config) { setString(&c.Server.PathParams, "reject") }},
	{Default{"server.body_inspection_limit", "1048576"}, func(c *Config) { setInt(&c.Server.BodyInspectionLimit, 1<<20) }},
	{Default{"server.max_buffered_body", "1048576"}, func(c *Config) { setInt(&c.Server.MaxBufferedBody, 1<<20) }},
	{Default{"tls.min_version", `"1.2"`}, func(c *Config) { setString(&c.TLS.MinVersion, "1.2") }},
	{Default{"tls.acme.ca", `"` + LetsEncryptProduction + `"`}, func(c *Config) { setString(&c.TLS.ACME.CA, LetsEncryptProduction) }},
	{Default{"tls.acme.storage", `"./portcullis-acme"`}, func(c *Config) { setString(&c.TLS.ACME.Storage, "./portcullis-acme") }},
	{Default{"tls.acme.challenges", "[http-01, tls-alpn-01]"}, func(c *Config) {
		if len(c.TLS.ACME.Challenges) == 0 {
			c.TLS.ACME.Challenges = []string{"http-01", "tls-alpn-01"}
		}
	}},
	{Default{"log.level", `"info"`}, func(c *Config) { setString(&c.Log.Level, "info") }},
	{Default{"log.format", `"json"`}, func(c *Config) { setString(&c.Log.Format, "json") }},
	{Default{"log.access_log", "true"}, func(c *Config) {
		if c.Log.AccessLog == nil {
			t := true
			c.Log.AccessLog = &t
		}
	}},
	{Default{"redis.key_prefix", `"pc"`}, func(c *Config) { setString(&c.Redis.KeyPrefix, "pc") }},
	{Default{"redis.dial_timeout", "2s"}, func(c *Config) { setDuration(&c.Redis.DialTimeout, 2*time.Second) }},
	{Default{"redis.read_timeout", "1s"}, func(c *Config) { setDuration(&c.Redis.ReadTimeout, time.Second) }},
	{Default{"redis.write_timeout", "1s"}, func(c *Config) { setDuration(&c.Redis.WriteTimeout, time.Second) }},
	{Default{"oidc.redirect_url", `server.public_url + "/.portcullis/callback"`}, func(c *Config) {
		if c.OIDC.Configured() && c.OIDC.RedirectURL == "" && c.Server.PublicURL != "" {
			c.OIDC.RedirectURL = strings.TrimSuffix(c.Server.PublicURL, "/") + "/.portcullis/callback"
		}
	}},
	{Default{"oidc.display_name", "the issuer's host name"}, ifIssuer(func(c *Config) { setString(&c.OIDC.DisplayName, issuerHost(c.OIDC.Issuer)) })},
	{Default{"oidc.scopes", "[openid, email, profile]"}, ifIssuer(func(c *Config) {
		if len(c.OIDC.Scopes) == 0 {
			c.OIDC.Scopes = []string{"openid", "email", "profile"}
		}
	})},
	{Default{"oidc.clock_skew", "30s"}, ifOIDC(func(c *Config) { setDuration(&c.OIDC.ClockSkew, 30*time.Second) })},
	{Default{"oidc.require_verified_email", "true"}, ifIssuer(func(c *Config) { setBool(&c.OIDC.RequireVerifiedEmail, true) })},
	{Default{"oidc.signing_algs", "[RS256, ES256]"}, ifIssuer(func(c *Config) {
		if len(c.OIDC.SigningAlgs) == 0 {
			c.OIDC.SigningAlgs = []string{"RS256", "ES256"}
		}
	})},
	{Default{"oidc.revalidate.grace", "5m"}, ifIssuer(func(c *Config) { revalidateDefaults(&c.OIDC.Revalidate) })},
	{Default{"oidc.revalidate.userinfo", "true"}, ifIssuer(func(c *Config) { revalidateDefaults(&c.OIDC.Revalidate) })},
	{Default{"scim.subject_attribute", `"externalId"`}, ifSCIM(func(c *Config) { setString(&c.SCIM.SubjectAttribute, SCIMSubjectExternalID) })},
	{Default{"scim.kind", `"employee"`}, ifSCIM(func(c *Config) { setString(&c.SCIM.Kind, "employee") })},
	{Default{"scim.roles", "[user]"}, ifSCIM(func(c *Config) {
		if c.SCIM.Roles == nil {
			c.SCIM.Roles = []string{"user"}
		}
	})},
	{Default{"oidc.providers[].display_name", "the issuer's host name"}, forProviders(func(p *OIDCProvider) { setString(&p.DisplayName, issuerHost(p.Issuer)) })},
	{Default{"oidc.providers[].scopes", "[openid, email, profile]"}, forProviders(func(p *OIDCProvider) {
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"openid", "email", "profile"}
		}
	})},
	{Default{"oidc.providers[].require_verified_email", "true"}, forProviders(func(p *OIDCProvider) { setBool(&p.RequireVerifiedEmail, true) })},
	{Default{"oidc.providers[].signing_algs", "[RS256, ES256]"}, forProviders(func(p *OIDCProvider) {
		if len(p.SigningAlgs) == 0 {
			p.SigningAlgs = []string{"RS256", "ES256"}
		}
	})},
	{Default{"oidc.providers[].revalidate.grace", "5m"}, forProviders(func(p *OIDCProvider) { revalidateDefaults(&p.Revalidate) })},
	{Default{"oidc.providers[].revalidate.userinfo", "true"}, forProviders(func(p *OIDCProvider) { revalidateDefaults(&p.Revalidate) })},
	{Default{"session.idle_timeout", "1h"}, ifOIDC(func(c *Config) { setDuration(&c.Session.IdleTimeout, time.Hour) })},
	{Default{"session.absolute_timeout", "12h"}, ifOIDC(func(c *Config) { setDuration(&c.Session.AbsoluteTimeout, 12*time.Hour) })},
	{Default{"session.touch_interval", "1m"}, ifOIDC(func(c *Config) { setDuration(&c.Session.TouchInterval, time.Minute) })},
	{Default{"session.login_timeout", "10m"}, ifOIDC(func(c *Config) { setDuration(&c.Session.LoginTimeout, 10*time.Minute) })},
	{Default{"session.cache", "true"}, ifOIDC(func(c *Config) { setBool(&c.Session.Cache, true) })},
	{Default{"session.cache_ttl", "2s"}, ifOIDC(func(c *Config) { setDuration(&c.Session.CacheTTL, 2*time.Second) })},
	{Default{"identity.headers.user", `"X-Portcullis-User"`}, func(c *Config) { setString(&c.Identity.Headers.User, "X-Portcullis-User") }},
	{Default{"identity.headers.email", `"X-Portcullis-Email"`}, func(c *Config) { setString(&c.Identity.Headers.Email, "X-Portcullis-Email") }},
	{Default{"identity.headers.org", `"X-Portcullis-Org"`}, func(c *Config) { setString(&c.Identity.Headers.Org, "X-Portcullis-Org") }},
	{Default{"identity.headers.roles", `"X-Portcullis-Roles"`}, func(c *Config) { setString(&c.Identity.Headers.Roles, "X-Portcullis-Roles") }},
	{Default{"identity.headers.purpose", `"X-Portcullis-Purpose"`}, func(c *Config) { setString(&c.Identity.Headers.Purpose, "X-Portcullis-Purpose") }},
	{Default{"identity.headers.kind", `"X-Portcullis-Kind"`}, func(c *Config) { setString(&c.Identity.Headers.Kind, "X-Portcullis-Kind") }},
	{Default{"identity.headers.assertion", `"X-Portcullis-Assertion"`}, func(c *Config) { setString(&c.Identity.Headers.Assertion, "X-Portcullis-Assertion") }},
	{Default{"identity.headers.sponsor", `"X-Portcullis-Sponsor"`}, func(c *Config) { setString(&c.Identity.Headers.Sponsor, "X-Portcullis-Sponsor") }},
	{Default{"identity.assertion_lifetime", "60s"}, func(c *Config) { setDuration(&c.Identity.AssertionLifetime, 60*time.Second) }},
	{Default{"identity.assertion_alg", `"ES256"`}, func(c *Config) { setString(&c.Identity.AssertionAlg, "ES256") }},
	{Default{"identity.forward", `"full"`}, func(c *Config) { setString(&c.Identity.Forward, ForwardFull) }},
	{Default{"authz.cache", "true"}, func(c *Config) { setBool(&c.Authz.Cache, true) }},
	{Default{"authz.cache_ttl", "2s"}, func(c *Config) { setDuration(&c.Authz.CacheTTL, 2*time.Second) }},
	{Default{"audit.max_len", "100000"}, func(c *Config) { setInt(&c.Audit.MaxLen, 100000) }},
	{Default{"audit.retention", "24h"}, func(c *Config) { setDuration(&c.Audit.Retention, 24*time.Hour) }},
	{Default{"audit.refusals", `"counted"`}, func(c *Config) { setString(&c.Audit.Refusals, "counted") }},
	{Default{"audit.refusal_interval", "1m"}, func(c *Config) { setDuration(&c.Audit.RefusalInterval, time.Minute) }},
	{Default{"audit.spool_fsync", `"always"`}, func(c *Config) {
		if c.Audit.SpoolDir != "" {
			setString(&c.Audit.SpoolFsync, "always")
		}
	}},
	{Default{"audit.spool_max_mb", "1024"}, func(c *Config) {
		if c.Audit.SpoolDir != "" {
			setInt(&c.Audit.SpoolMaxMB, 1024)
		}
	}},
	{Default{"audit.sinks[].max_size_mb", "100"}, func(c *Config) {
		for i := range c.Audit.Sinks {
			if c.Audit.Sinks[i].Type == SinkFile {
				setInt(&c.Audit.Sinks[i].MaxSizeMB, 100)
			}
		}
	}},
	{Default{"audit.sinks[].max_files", "10"}, func(c *Config) {
		for i := range c.Audit.Sinks {
			if c.Audit.Sinks[i].Type == SinkFile {
				setInt(&c.Audit.Sinks[i].MaxFiles, 10)
			}
		}
	}},
	{Default{"audit.sinks[].fsync", `"batch"`}, func(c *Config) {
		for i := range c.Audit.Sinks {
			if c.Audit.Sinks[i].Type == SinkFile {
				setString(&c.Audit.Sinks[i].Fsync, "batch")
			}
		}
	}},
	{Default{"pages.product_name", `"Portcullis"`}, func(c *Config) { setString(&c.Pages.ProductName, "Portcullis") }},
	{Default{"lifecycle.admin_role", `"org-admin"`}, func(c *Config) { setString(&c.Lifecycle.AdminRole, "org-admin") }},
	{Default{"lifecycle.request_ttl", "72h"}, func(c *Config) { setDuration(&c.Lifecycle.RequestTTL, 72*time.Hour) }},
	{Default{"lifecycle.api_keys.max_lifetime", "90d"}, func(c *Config) { setDuration(&c.Lifecycle.APIKeys.MaxLifetime, 90*day) }},
	{Default{"lifecycle.api_keys.max_overlap", "7d"}, func(c *Config) { setDuration(&c.Lifecycle.APIKeys.MaxOverlap, 7*day) }},
	{Default{"lifecycle.api_keys.disable_unused_after", "30d"}, func(c *Config) {
		if c.Lifecycle.APIKeys.DisableUnusedAfter == nil {
			c.Lifecycle.APIKeys.DisableUnusedAfter = days(30)
		}
	}},
	{Default{"admin_api.listen", `"off"`}, func(c *Config) { setString(&c.AdminAPI.Listen, "off") }},
	{Default{"admin_api.operators.role_claim", `"roles"`}, func(c *Config) {
		if c.AdminAPI.Operators.Issuer != "" {
			setString(&c.AdminAPI.Operators.RoleClaim, "roles")
		}
	}},
	{Default{"admin_api.operators.role", `"portcullis-operator"`}, func(c *Config) {
		if c.AdminAPI.Operators.Issuer != "" {
			setString(&c.AdminAPI.Operators.Role, "portcullis-operator")
		}
	}},
	{Default{"notifications.webhooks[].events", "[request.*]"}, func(c *Config) {
		for i := range c.Notifications.Webhooks {
			if len(c.Notifications.Webhooks[i].Events) == 0 {
				c.Notifications.Webhooks[i].Events = []string{"request.*"}
			}
		}
	}},
	{Default{"notifications.webhooks[].max_attempts", "12"}, func(c *Config) {
		for i := range c.Notifications.Webhooks {
			setInt(&c.Notifications.Webhooks[i].MaxAttempts, 12)
		}
	}},
	{Default{"routes[].path", `"/"`}, forRoutes(func(r *Route) { setString(&r.Path, "/") })},
	{Default{"routes[].path_match", `"prefix"`}, forRoutes(func(r *Route) { setString(&r.PathMatch, PathPrefix) })},
	{Default{"routes[].method_override", `"refuse"`}, forRoutes(func(r *Route) { setString(&r.MethodOverride, MethodOverrideRefuse) })},
	{Default{"routes[].preserve_host", "true"}, forRoutes(func(r *Route) { setBool(&r.PreserveHost, true) })},
	{Default{"routes[].timeouts.dial", "5s"}, forRoutes(func(r *Route) { setDuration(&r.Timeouts.Dial, 5*time.Second) })},
	{Default{"routes[].timeouts.response_header", "60s"}, forRoutes(func(r *Route) { setDuration(&r.Timeouts.ResponseHeader, 60*time.Second) })},
	{Default{"routes[].timeouts.idle_conn", "90s"}, forRoutes(func(r *Route) { setDuration(&r.Timeouts.IdleConn, 90*time.Second) })},
	{Default{"client_jwt.issuers[].algorithms", "[RS256, ES256]"}, func(c *Config) {
		for i := range c.ClientJWT.Issuers {
			if c.ClientJWT.Issuers[i].Algorithms == nil {
				c.ClientJWT.Issuers[i].Algorithms = []string{"RS256", "ES256"}
			}
		}
	}},
	{Default{"client_jwt.issuers[].subject_claim", "sub"}, func(c *Config) {
		for i := range c.ClientJWT.Issuers {
			setString(&c.ClientJWT.Issuers[i].SubjectClaim, "sub")
		}
	}},
	{Default{"routes[].auth", "[session]"}, forRoutes(func(r *Route) {
		if r.Auth == nil && !r.Public {
			r.Auth = []string{AuthSession}
		}
	})},
	{Default{"routes[].org.from", `"session"`}, forRoutes(func(r *Route) {
		if r.Org != nil {
			setString(&r.Org.From, OrgFromSession)
		}
	})},
	{Default{"routes[].step_up.elevation", "step_up.max_age"}, forRoutes(func(r *Route) {
		if r.StepUp != nil && r.StepUp.Elevation == 0 {
			r.StepUp.Elevation = r.StepUp.MaxAge
		}
	})},
	{Default{"console.enabled", "true"}, func(c *Config) { setBool(&c.Console.Enabled, true) }},
	{Default{"console.step_up.elevation", "console.step_up.max_age"}, func(c *Config) {
		if su := c.Console.StepUp; su != nil && su.Elevation == 0 {
			su.Elevation = su.MaxAge
		}
	}},
	{Default{"routes[].require.verified_email_domain", "true"}, forRoutes(func(r *Route) {
		if r.Require != nil {
			setBool(&r.Require.VerifiedEmailDomain, true)
		}
	})},
	{Default{"routes[].recovery_guard.preset", "none"}, applyRecoveryPresets},
	{Default{"routes[].recovery_guard.flow", "the preset's (none without one)"}, func(*Config) {}},
	{Default{"routes[].recovery_guard.methods", "[POST]"}, forGuards(func(g *RecoveryGuard) {
		if len(g.Methods) == 0 {
			g.Methods = []string{"POST"}
		}
	})},
	{Default{"routes[].recovery_guard.kind", `"email"`}, forGuards(func(g *RecoveryGuard) { setString(&g.Kind, RecoveryKindEmail) })},
	{Default{"routes[].recovery_guard.body_limit", "65536"}, forGuards(func(g *RecoveryGuard) { setInt(&g.BodyLimit, DefaultRecoveryBodyLimit) })},
	{Default{"routes[].recovery_guard.rate_limit.per_identifier", "5"}, forGuards(func(g *RecoveryGuard) { setInt(&g.RateLimit.PerIdentifier, 5) })},
	{Default{"routes[].recovery_guard.rate_limit.per_client", "20"}, forGuards(func(g *RecoveryGuard) { setInt(&g.RateLimit.PerClient, 20) })},
	{Default{"routes[].recovery_guard.rate_limit.window", "1h"}, forGuards(func(g *RecoveryGuard) { setDuration(&g.RateLimit.Window, time.Hour) })},
	{Default{"routes[].recovery_guard.unknown_domains", `"block"`}, forGuards(func(g *RecoveryGuard) { setString(&g.UnknownDomains, RecoveryBlock) })},
	{Default{"routes[].recovery_guard.missing_identifier", `"block"`}, forGuards(func(g *RecoveryGuard) { setString(&g.MissingIdentifier, RecoveryBlock) })},
	{Default{"routes[].recovery_guard.blocked_response", `"generic"`}, forGuards(func(g *RecoveryGuard) { setString(&g.BlockedResponse, RecoveryGeneric) })},
	{Default{"routes[].recovery_guard.generic_body", strconv.Quote(DefaultRecoveryGenericBody) + " (none with a 3xx generic_status)"}, forGuards(func(g *RecoveryGuard) {
		if g.GenericStatus < 300 {
			setString(&g.GenericBody, DefaultRecoveryGenericBody)
		}
	})},
	{Default{"routes[].recovery_guard.generic_content_type", `"text/plain; charset=utf-8"`}, forGuards(func(g *RecoveryGuard) { setString(&g.GenericContentType, "text/plain; charset=utf-8") })},
	{Default{"routes[].recovery_guard.generic_status", "200"}, forGuards(func(g *RecoveryGuard) { setInt(&g.GenericStatus, 200) })},
	{Default{"routes[].recovery_guard.identifier_in_audit", `"hash"`}, forGuards(func(g *RecoveryGuard) { setString(&g.IdentifierInAudit, RecoveryAuditHash) })},
	{Default{"tracing.endpoint", `"http://127.0.0.1:4318"`}, func(c *Config) { setString(&c.Tracing.Endpoint, "http://127.0.0.1:4318") }},
	{Default{"tracing.service_name", `"portcullis"`}, func(c *Config) { setString(&c.Tracing.ServiceName, "portcullis") }},
	{Default{"tracing.sample_ratio", "1"}, func(*Config) {}},
}

func init() { defaultRules = append(defaultRules, lifecycleDefaultRules()...) }

// Defaults returns every default value in the order of the file's sections, for
// documentation: a README table or "portcullis check" can print it, and it cannot disagree
// with ApplyDefaults because both come from the same table.
func Defaults() []Default {
	out := make([]Default, len(defaultRules))
	for i, r := range defaultRules {
		out[i] = r.Default
	}
	return out
}

// ApplyDefaults fills every key of c that is not set with its default (see Defaults). It is
// idempotent. Load calls it between decoding and validation.
func ApplyDefaults(c *Config) {
	for _, r := range defaultRules {
		r.apply(c)
	}
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setBool(p **bool, v bool) {
	if *p == nil {
		*p = &v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDuration(p *Duration, v time.Duration) {
	if *p == 0 {
		*p = Duration(v)
	}
}

// ifOIDC applies a sign-in or session default only when sign-in is configured, so a file
// without oidc decodes to zero values there.
func ifOIDC(f func(*Config)) func(*Config) {
	return func(c *Config) {
		if c.OIDC.Configured() {
			f(c)
		}
	}
}

// ifIssuer applies a default of the default provider (oidc's own keys) only when it is
// configured.
func ifIssuer(f func(*Config)) func(*Config) {
	return func(c *Config) {
		if c.OIDC.Issuer != "" {
			f(c)
		}
	}
}

// ifSCIM applies a SCIM default only when SCIM is enabled.
func ifSCIM(f func(*Config)) func(*Config) {
	return func(c *Config) {
		if c.SCIM.Enabled {
			f(c)
		}
	}
}

// forProviders applies f to every entry of oidc.providers.
func forProviders(f func(*OIDCProvider)) func(*Config) {
	return func(c *Config) {
		for i := range c.OIDC.Providers {
			f(&c.OIDC.Providers[i])
		}
	}
}

// revalidateDefaults fills a provider's revalidation defaults when it revalidates at all.
func revalidateDefaults(r *Revalidate) {
	if r.Interval == 0 {
		return
	}
	if r.Grace == nil {
		g := Duration(5 * time.Minute)
		r.Grace = &g
	}
	setBool(&r.Userinfo, true)
}

// issuerHost is the host name of an issuer URL, "" when it has none.
func issuerHost(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

func forRoutes(f func(*Route)) func(*Config) {
	return func(c *Config) {
		for i := range c.Routes {
			f(&c.Routes[i])
		}
	}
}

// forGuards applies f to every route's recovery guard, where there is one.
func forGuards(f func(*RecoveryGuard)) func(*Config) {
	return forRoutes(func(r *Route) {
		if r.RecoveryGuard != nil {
			f(r.RecoveryGuard)
		}
	})
}
