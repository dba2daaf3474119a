package config

import (
	"os"
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
