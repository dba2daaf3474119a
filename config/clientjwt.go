package config

import (
	"fmt"

	"slices"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
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
	// Orgs are the organisations whose machine identities this issuer's clients may be: a
	// customer's own IdP speaks for that customer only. Required.
	Orgs []string `yaml:"orgs"`
	// RequiredClaims are claims every token must carry with exactly these values, to tell
	// an application's token from a person's where the issuer marks it (gty:
	// client-credentials at Auth0, idtyp: app at Entra ID). With subject_claim client_id or
	// azp and no required claims, a token's sub must equal that claim (a person's token
	// through the same client has the person as sub).
	RequiredClaims map[string]string `yaml:"required_claims"`
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
		if len(is.Orgs) == 0 {
			v.errorf(p+".orgs", "is required: the organisations whose machines this issuer's clients may be (a customer's IdP speaks for that customer only)")
		}
		for j, o := range is.Orgs {
			if !syntax.OrgID(o) {
				v.errorf(fmt.Sprintf("%s.orgs[%d]", p, j), "must be an organisation id ([a-z0-9-]{1,63})")
			}
		}
		if c.OIDC.signInClient(is.Issuer, is.Audience) != "" {
			v.errorf(p+".audience", "is the sign-in client's own (oidc.client_id) at the sign-in issuer: every person's ID token would be a client token; give the API an audience of its own")
		}
	}
	for i := range c.Routes {
		if r := &c.Routes[i]; r.AcceptsClientJWT() && len(c.ClientJWT.Issuers) == 0 {
			v.errorf(fmt.Sprintf("routes[%d].auth", i), "client_jwt needs client_jwt.issuers: the issuers whose tokens are trusted")
		}
	}
}
