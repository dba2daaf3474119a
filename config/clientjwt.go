package config

import (
	"fmt"
	"slices"
	"strings"
)

// ClientJWT lists the issuers whose client-credentials access tokens (signed JWTs, RFC 9068
// style) machine identities may present on routes whose auth lists client_jwt: a customer's
// own IdP issues its integrations' tokens, and each token's issuer and subject are bound to
// one machine identity (portcullis admin machine bind).
type ClientJWT struct {
	// Issuers are the trusted token issuers.
	Issuers []ClientIssuer `yaml:"issuers"`
}

// ClientIssuer is one issuer of client-credentials tokens, verified with go-oidc against the
// keys its discovery document publishes.
type ClientIssuer struct {
	// Issuer is the issuer URL (https; http for a loopback host), exactly as the tokens' iss.
	Issuer string `yaml:"issuer"`
	// Audience is what the tokens' aud must contain: the name this portal's API has at the
	// issuer. Required.
	Audience string `yaml:"audience"`
	// Algorithms are the signing algorithms accepted. Default [RS256, ES256]; none and the
	// HMAC algorithms are never accepted (a public key is not a shared secret).
	Algorithms []string `yaml:"algorithms"`
	// SubjectClaim names the claim that identifies the client: sub (default), client_id or
	// azp.
	SubjectClaim string `yaml:"subject_claim"`
	// CARootFile is a PEM bundle trusted for the issuer's HTTPS endpoints. Default: the
	// system's.
	CARootFile string `yaml:"ca_root_file"`
}

// ClientJWTAlgorithms are the signing algorithms an issuer may list.
var ClientJWTAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Issuer returns the configured issuer iss, or nil.
func (c *ClientJWT) Issuer(iss string) *ClientIssuer {
	for i := range c.Issuers {
		if c.Issuers[i].Issuer == iss {
			return &c.Issuers[i]
		}
	}
	return nil
}

func (v *validator) clientJWT(c *Config) {
	seen := map[string]bool{}
	for i := range c.ClientJWT.Issuers {
		is := &c.ClientJWT.Issuers[i]
		p := fmt.Sprintf("client_jwt.issuers[%d]", i)
		if is.Issuer == "" {
			v.errorf(p+".issuer", "is required")
		} else if u := v.endpointURL(p+".issuer", is.Issuer); u != nil && seen[is.Issuer] {
			v.errorf(p+".issuer", "%s is listed twice", is.Issuer)
		}
		seen[is.Issuer] = true
		if strings.TrimSpace(is.Audience) == "" {
			v.errorf(p+".audience", "is required: the aud this portal's API has at the issuer (a token for another audience is refused)")
		}
		for j, a := range is.Algorithms {
			ap := fmt.Sprintf("%s.algorithms[%d]", p, j)
			switch {
			case strings.EqualFold(a, "none") || strings.HasPrefix(strings.ToUpper(a), "HS"):
				v.errorf(ap, "%s is never accepted: it would let anyone who knows the issuer's public key, or nobody at all, sign tokens", a)
			case !slices.Contains(ClientJWTAlgorithms, a):
				v.errorf(ap, "must be one of %s", strings.Join(ClientJWTAlgorithms, ", "))
			}
		}
		switch is.SubjectClaim {
		case "sub", "client_id", "azp":
		default:
			v.errorf(p+".subject_claim", "must be sub, client_id or azp")
		}
		if is.CARootFile != "" {
			v.fileExists(p+".ca_root_file", is.CARootFile)
		}
	}
	for i := range c.Routes {
		if r := &c.Routes[i]; r.AcceptsClientJWT() && len(c.ClientJWT.Issuers) == 0 {
			v.errorf(fmt.Sprintf("routes[%d].auth", i), "client_jwt needs client_jwt.issuers: the issuers whose tokens are trusted")
		}
	}
}
