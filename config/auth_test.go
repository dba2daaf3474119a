package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestOIDCDefaultsAndParsedValues(t *testing.T) {
	data, err := os.ReadFile("testdata/oidc_valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, string(data))
	o := cfg.OIDC
	if o.RedirectURI == nil || o.RedirectURI.String() != "https://portal.example.com/.portcullis/callback" {
		t.Errorf("redirect URI %v, want it derived from server.public_url", o.RedirectURI)
	}
	if o.IssuerURL == nil || o.IssuerURL.Path != "/realms/customers" {
		t.Errorf("issuer URL %v", o.IssuerURL)
	}
	if o.ClientSecret.Reveal() != "file-secret-0xC0FFEE" {
		t.Error("client_secret_file not read")
	}
	if diff := cmp.Diff([]string{"openid", "email", "profile"}, o.Scopes); diff != "" {
		t.Errorf("scopes: %s", diff)
	}
	if o.ClockSkew.D() != 30*time.Second || o.RequireVerifiedEmail == nil || !*o.RequireVerifiedEmail {
		t.Errorf("clock skew %v, require_verified_email %v", o.ClockSkew, o.RequireVerifiedEmail)
	}
	s := cfg.Session
	if s.IdleTimeout.D() != time.Hour || s.AbsoluteTimeout.D() != 12*time.Hour || s.TouchInterval.D() != time.Minute || s.LoginTimeout.D() != 10*time.Minute {
		t.Errorf("session defaults %+v", s)
	}
	b := cfg.Routes[0]
	if b.Org == nil || b.Org.From != OrgFromHost || b.Require == nil || b.Require.VerifiedEmailDomain == nil || !*b.Require.VerifiedEmailDomain {
		t.Errorf("route policy %+v %+v", b.Org, b.Require)
	}
	if cfg.Routes[1].Org != nil || cfg.Routes[1].Require != nil {
		t.Error("a route without org/require got a policy")
	}
}

func TestOIDCScopesAlwaysIncludeOpenID(t *testing.T) {
	cfg := mustParse(t, `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
oidc: {issuer: "http://127.0.0.1:9999", client_id: c, scopes: [email]}
routes: [{name: a, upstream: "http://10.0.0.5"}]
`)
	if diff := cmp.Diff([]string{"openid", "email"}, cfg.OIDC.Scopes); diff != "" {
		t.Errorf("scopes: %s", diff)
	}
}

func TestOIDCProviders(t *testing.T) {
	cfg := mustParse(t, `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
oidc:
  issuer: "https://login.portal.example"
  client_id: portal
  client_secret: portal-secret
  providers:
    - name: acme
      issuer: "https://idp.acme.example/"
      client_id: portcullis
      client_secret: "${PORTCULLIS_TEST_ACME_SECRET}"
      verified_domains_only: true
      acr_values: {phr: "http://schemas.openid.net/pape/policies/2007/06/multi-factor"}
    - name: beta
      display_name: Beta Corp
      issuer: "https://beta.okta.example"
      client_id: pc
      client_secret: beta-secret
      scopes: [email]
      shared: true
routes: [{name: a, upstream: "http://10.0.0.5"}]
`)
	o := cfg.OIDC
	if len(o.All) != 3 || o.All[0].Name != DefaultProvider || o.All[1].Name != "acme" || o.All[2].Name != "beta" {
		t.Fatalf("All = %+v", o.All)
	}
	def, acme, beta := o.All[0], o.All[1], o.All[2]
	if !def.Shared || def.DisplayName != "login.portal.example" || def.ClientID != "portal" || !*def.RequireVerifiedEmail {
		t.Errorf("default provider %+v", def)
	}
	if acme.Shared || !acme.VerifiedDomainsOnly || acme.ClientSecret.Reveal() != "acme-secret-0xBEEF" || acme.DisplayName != "idp.acme.example" ||
		acme.IssuerURL == nil || acme.ACRValues["phr"] == "" || !*acme.RequireVerifiedEmail {
		t.Errorf("acme %+v", acme)
	}
	if diff := cmp.Diff([]string{"openid", "email", "profile"}, acme.Scopes); diff != "" {
		t.Errorf("acme scopes: %s", diff)
	}
	if diff := cmp.Diff([]string{"openid", "email"}, beta.Scopes); diff != "" {
		t.Errorf("beta scopes: %s", diff)
	}
	if !beta.Shared || beta.DisplayName != "Beta Corp" || len(beta.SigningAlgs) != 2 {
		t.Errorf("beta %+v", beta)
	}
	if o.Provider("acme") == nil || o.Provider("nobody") != nil {
		t.Error("Provider lookup")
	}
	// Each provider has its own callback on the sign-in host; the default keeps oidc's.
	for name, want := range map[string]string{"default": "https://portal.example.com/.portcullis/callback",
		"acme": "https://portal.example.com/.portcullis/callback/acme", "beta": "https://portal.example.com/.portcullis/callback/beta"} {
		if p := o.Provider(name); p.RedirectURI == nil || p.RedirectURI.String() != want {
			t.Errorf("%s's callback %v, want %s", name, p.RedirectURI, want)
		}
	}

	// Providers alone, without a default one.
	only := mustParse(t, `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
oidc:
  providers: [{name: acme, issuer: "https://idp.acme.example", client_id: c}]
routes: [{name: a, upstream: "http://10.0.0.5"}]
`)
	if len(only.OIDC.All) != 1 || only.OIDC.RedirectURI == nil || only.Session.AbsoluteTimeout == 0 {
		t.Errorf("providers only: All %+v, redirect %v, session %+v", only.OIDC.All, only.OIDC.RedirectURI, only.Session)
	}
}

func TestOIDCProviderErrors(t *testing.T) {
	const head = `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
routes: [{name: a, upstream: "http://10.0.0.5"}]
`
	for _, tc := range []struct {
		name, oidc, key, msg string
		line                 int
	}{
		{"name required", "oidc:\n  providers:\n    - {issuer: \"https://a.example\", client_id: c}", "oidc.providers[0].name", "is required", 8},
		{"bad name", "oidc:\n  providers:\n    - {name: Acme Corp, issuer: \"https://a.example\", client_id: c}", "oidc.providers[0].name", "lower-case", 8},
		{"default taken", "oidc:\n  issuer: \"https://d.example\"\n  client_id: c\n  providers:\n    - {name: default, issuer: \"https://a.example\", client_id: c}", "oidc.providers[0].name", "already the name of oidc", 10},
		{"duplicate name", "oidc:\n  providers:\n    - {name: a, issuer: \"https://a.example\", client_id: c}\n    - {name: a, issuer: \"https://b.example\", client_id: c}", "oidc.providers[1].name", "already the name of oidc.providers[0]", 9},
		{"same issuer", "oidc:\n  issuer: \"https://d.example/\"\n  client_id: c\n  providers:\n    - {name: a, issuer: \"https://d.example\", client_id: c}", "oidc.providers[0].issuer", "already oidc.issuer's issuer", 10},
		{"issuer required", "oidc:\n  providers:\n    - {name: a, client_id: c}", "oidc.providers[0].issuer", "is required", 8},
		{"http issuer", "oidc:\n  providers:\n    - {name: a, issuer: \"http://a.example\", client_id: c}", "oidc.providers[0].issuer", "must use https", 8},
		{"client id", "oidc:\n  providers:\n    - {name: a, issuer: \"https://a.example\"}", "oidc.providers[0].client_id", "is required", 8},
		{"hmac", "oidc:\n  providers:\n    - {name: a, issuer: \"https://a.example\", client_id: c, signing_algs: [HS256]}", "oidc.providers[0].signing_algs[0]", "not an accepted", 8},
		{"extra param", "oidc:\n  providers:\n    - name: a\n      issuer: \"https://a.example\"\n      client_id: c\n      extra_params: {nonce: x}", "oidc.providers[0].extra_params.nonce", "cannot be overridden", 11},
		{"acr value", "oidc:\n  providers:\n    - name: a\n      issuer: \"https://a.example\"\n      client_id: c\n      acr_values: {phr: \"a b\"}", "oidc.providers[0].acr_values.phr", "one acr value", 11},
		{"revalidate too often", "oidc:\n  providers:\n    - name: a\n      issuer: \"https://a.example\"\n      client_id: c\n      revalidate: {interval: 100ms}", "oidc.providers[0].revalidate.interval", "at least 1s", 11},
		{"revalidate grace alone", "oidc:\n  providers:\n    - name: a\n      issuer: \"https://a.example\"\n      client_id: c\n      revalidate: {grace: 1m}", "oidc.providers[0].revalidate.grace", "interval is not", 11},
		{"revalidate short grace", "oidc:\n  providers:\n    - name: a\n      issuer: \"https://a.example\"\n      client_id: c\n      revalidate: {interval: 5m, grace: 0s}", "oidc.providers[0].revalidate.grace", "at least 30s", 11},
		{"revalidate without the default provider", "oidc:\n  revalidate: {interval: 5m}\n  providers:\n    - {name: a, issuer: \"https://a.example\", client_id: c}", "oidc.revalidate", "oidc.issuer is not", 7},
		{"revalidate long grace", "oidc:\n  providers:\n    - name: a\n      issuer: \"https://a.example\"\n      client_id: c\n      revalidate: {interval: 5m, grace: 2h}", "oidc.providers[0].revalidate.grace", "at most 1h", 11},
		{"revalidate past the session", "oidc:\n  providers:\n    - name: a\n      issuer: \"https://a.example\"\n      client_id: c\n      revalidate: {interval: 24h}", "oidc.providers[0].revalidate.interval", "shorter than session.absolute_timeout", 11},
		{"default revalidates past the session", "session: {absolute_timeout: 1h}\noidc:\n  issuer: \"https://d.example\"\n  client_id: c\n  revalidate: {interval: 1h}", "oidc.revalidate.interval", "shorter than session.absolute_timeout", 10},
		{"default key without issuer", "oidc:\n  client_id: c\n  providers:\n    - {name: a, issuer: \"https://a.example\", client_id: c}", "oidc.client_id", "oidc.issuer is not", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parse(t, head+tc.oidc+"\n")
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v", err)
			}
			for _, e := range errs {
				if e.Key == tc.key && strings.Contains(e.Message, tc.msg) {
					if e.Line != tc.line || e.File != "test.yaml" {
						t.Errorf("%s at %s:%d, want line %d", e.Key, e.File, e.Line, tc.line)
					}
					return
				}
			}
			t.Errorf("want %s: …%s…, got %v", tc.key, tc.msg, err)
		})
	}
}

// Revalidation's defaults, and the warning for a provider asked for no refresh token.
func TestRevalidateConfig(t *testing.T) {
	const head = `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
routes: [{name: a, upstream: "http://10.0.0.5"}]
`
	cfg, warns, err := parse(t, head+"oidc:\n  issuer: \"https://d.example\"\n  client_id: c\n  revalidate: {interval: 10m}\n")
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.OIDC.All[0].Revalidate
	if r.Interval.D() != 10*time.Minute || r.GracePeriod() != 5*time.Minute || r.Userinfo == nil || !*r.Userinfo {
		t.Errorf("defaults: %+v", r)
	}
	if !strings.Contains(fmt.Sprint(warns), "offline_access") {
		t.Errorf("no warning about offline_access: %v", warns)
	}
	cfg, warns, err = parse(t, head+"oidc:\n  providers:\n    - name: g\n      issuer: \"https://g.example\"\n      client_id: c\n      extra_params: {access_type: offline}\n      revalidate: {interval: 10m, grace: 30s, userinfo: false}\n")
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.OIDC.All[0].Revalidate; r.GracePeriod() != 30*time.Second || *r.Userinfo {
		t.Errorf("explicit values: %+v", r)
	}
	if strings.Contains(fmt.Sprint(warns), "offline_access") {
		t.Errorf("warning despite access_type offline: %v", warns)
	}
	if cfg, _, _ := parse(t, head+"oidc:\n  issuer: \"https://d.example\"\n  client_id: c\n"); cfg.OIDC.All[0].Revalidate.Userinfo != nil {
		t.Error("revalidation defaults applied to a provider that does not revalidate")
	}
}

func TestSCIMConfig(t *testing.T) {
	const head = `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
routes: [{name: a, upstream: "http://10.0.0.5"}]
`
	cfg := mustParse(t, head+"admin_api: {listen: \"127.0.0.1:9443\"}\nscim: {enabled: true, group_roles: {Admins: admin}}\n")
	if s := cfg.SCIM; s.SubjectAttribute != SCIMSubjectExternalID || s.Kind != "employee" || len(s.Roles) != 1 || s.Roles[0] != "user" {
		t.Errorf("defaults: %+v", s)
	}
	for _, tc := range []struct{ name, yaml, key, msg string }{
		{"no admin listener", "scim: {enabled: true}", "scim.enabled", "needs admin_api.listen"},
		{"subject attribute", "admin_api: {listen: \"127.0.0.1:9443\"}\nscim: {enabled: true, subject_attribute: email}", "scim.subject_attribute", "externalId or userName"},
		{"service kind", "admin_api: {listen: \"127.0.0.1:9443\"}\nscim: {enabled: true, kind: service}", "scim.kind", "one of employee"},
		{"privileged role", "admin_api: {listen: \"127.0.0.1:9443\"}\nlifecycle: {privileged_roles: {billing-admin: {max_duration: 8h}}}\nscim: {enabled: true, group_roles: {Billing: billing-admin}}",
			"scim", "never provisioned"},
		{"a group twice", "admin_api: {listen: \"127.0.0.1:9443\"}\nscim: {enabled: true, group_roles: {Admins: admin, admins: user}}", "scim.group_roles", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, head+tc.yaml+"\n", tc.key, tc.msg) })
	}
}

// TestIdentityForward: identity.forward and a route's identity_forward take one of the modes,
// the route's wins, and a public route (no one signed in) may not name one; the assertion's
// algorithm is one of three, and HS256 comes with its secret, of a sound length.
func TestIdentityForward(t *testing.T) {
	const head = `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
`
	c := mustParse(t, head+`identity: {forward: headers}
routes:
  - {name: a, upstream: "http://10.0.0.5"}
  - {name: b, path: /b, upstream: "http://10.0.0.5", identity_forward: assertion}
`)
	if c.Identity.Forward != ForwardHeaders || c.Routes[0].IdentityForward != "" || c.Routes[1].IdentityForward != ForwardAssertion {
		t.Errorf("forward %q, routes %q %q", c.Identity.Forward, c.Routes[0].IdentityForward, c.Routes[1].IdentityForward)
	}
	if d := mustParse(t, head+`routes: [{name: a, upstream: "http://10.0.0.5"}]`); d.Identity.Forward != ForwardFull {
		t.Errorf("default forward %q", d.Identity.Forward)
	}
	for _, tc := range []struct{ name, yaml, key, msg string }{
		{"unknown mode", "identity: {forward: minimal}\nroutes: [{name: a, upstream: \"http://10.0.0.5\"}]", "identity.forward", "must be one of full, headers, assertion, none"},
		{"unknown route mode", "routes: [{name: a, upstream: \"http://10.0.0.5\", identity_forward: all}]", "routes[0].identity_forward", "must be one of"},
		{"public route", "routes: [{name: a, upstream: \"http://10.0.0.5\", public: true, identity_forward: none}]", "routes[0].identity_forward", "a public route forwards no identity"},
		{"unknown alg", "identity: {assertion_alg: RS256}\nroutes: [{name: a, upstream: \"http://10.0.0.5\"}]", "identity.assertion_alg", "must be one of ES256, EdDSA, HS256"},
		{"HS256 without a secret", "identity: {assertion_alg: HS256}\nroutes: [{name: a, upstream: \"http://10.0.0.5\"}]", "identity.assertion_alg", "needs identity.assertion_secret"},
		{"short secret", "identity: {assertion_alg: HS256, assertion_secret: too-short}\nroutes: [{name: a, upstream: \"http://10.0.0.5\"}]", "identity.assertion_secret", "at least 32 bytes"},
		{"secret without HS256", "identity: {assertion_secret: 0123456789abcdef0123456789abcdef}\nroutes: [{name: a, upstream: \"http://10.0.0.5\"}]", "identity.assertion_secret", "HS256 only"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, head+tc.yaml+"\n", tc.key, tc.msg) })
	}
}

// wantError parses yaml and checks that it fails with an error on key, at a line, whose
// message contains msg.
func wantError(t *testing.T, yaml, key, msg string) {
	t.Helper()
	_, _, err := parse(t, yaml)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v", err)
	}
	for _, e := range errs {
		if e.Key == key && strings.Contains(e.Message, msg) && e.Line > 0 {
			return
		}
	}
	t.Errorf("no %s error %q in %v", key, msg, errs)
}
