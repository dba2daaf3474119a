package config

import (
	"net"
	"net/netip"
	"strings"
)

// AdminAPI configures the administration API: JSON over HTTPS under /api/v1/ on a listener of
// its own, served with the main listener's TLS. Every call is made by an authenticated actor:
// an operator (an API token, or a bearer JWT of the operator identity provider below) or an
// organisation's administrator with a token of their own.
type AdminAPI struct {
	// Listen is the address of the API's listener, such as "127.0.0.1:9443" (keep it on
	// loopback or a management network). Default "off": no API.
	Listen string `yaml:"listen"`
	// Operators accepts bearer JWTs from the platform's own identity provider, besides the
	// API's tokens.
	Operators OperatorTokens `yaml:"operators"`
}

// Enabled reports whether the API has a listener.
func (a AdminAPI) Enabled() bool { return a.Listen != "" && a.Listen != "off" }

// OperatorTokens configures the operators' bearer JWTs: access tokens of the platform staff's
// identity provider (not the customers'), verified against its published keys.
type OperatorTokens struct {
	// Issuer is the provider's issuer URL, as in its discovery document. Empty: operators use
	// API tokens only.
	Issuer string `yaml:"issuer"`
	// Audience is the audience ("aud") the tokens must be issued for. Required with issuer.
	Audience string `yaml:"audience"`
	// RoleClaim is the claim listing the bearer's roles (a string or an array). Default "roles".
	RoleClaim string `yaml:"role_claim"`
	// Role is the role that makes the bearer an operator. Default "portcullis-operator".
	Role string `yaml:"role"`
	// CARootFile is a PEM bundle trusted for the provider's HTTPS endpoints. Default: the
	// system roots.
	CARootFile string `yaml:"ca_root_file"`
}

// adminAPI checks the admin_api section.
func (v *validator) adminAPI(c *Config) {
	a := &c.AdminAPI
	if !a.Enabled() {
		return
	}
	v.listener("admin_api.listen", a.Listen)
	if c.TLS.Mode == TLSModeOff && !loopback(a.Listen) {
		// Bearer credentials in clear text: only where nothing else can listen in.
		v.errorf("admin_api.listen", "with tls.mode off the admin API serves plain HTTP, so it must listen on loopback (127.0.0.1 or [::1])")
	}
	if !c.Redis.Configured() {
		v.errorf("admin_api.listen", "the admin API keeps its records in Redis: set redis.address (or redis.sentinel_master)")
	}
	o := &a.Operators
	if o.Issuer == "" {
		for k, set := range map[string]bool{"audience": o.Audience != "", "ca_root_file": o.CARootFile != ""} {
			if set {
				v.errorf("admin_api.operators."+k, "is set but admin_api.operators.issuer is not")
			}
		}
		return
	}
	v.endpointURL("admin_api.operators.issuer", o.Issuer)
	switch {
	case o.Audience == "":
		v.errorf("admin_api.operators.audience", "is required with an issuer: a token for another audience must not make anyone an operator")
	case c.OIDC.signInClient(o.Issuer, o.Audience) != "":
		// The ID tokens of people signing in to the portal carry that audience.
		v.errorf("admin_api.operators.audience", "is %s.client_id of the same issuer: the ID token of anyone signing in would be accepted; register an audience of its own for the admin API", c.OIDC.signInClient(o.Issuer, o.Audience))
	}
	if o.CARootFile != "" {
		v.fileExists("admin_api.operators.ca_root_file", o.CARootFile)
	}
}

// loopback reports whether addr is a host:port on a loopback address ("localhost" included).
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
