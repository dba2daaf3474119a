package devidp

import (
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// idTokenLifetime is the exp - iat of ID tokens.
const idTokenLifetime = time.Hour

// client is a configured relying party as the op library sees it: the
// authorization code flow, with refresh tokens when it asks for
// offline_access, and client credentials when configured.
type client struct {
	cfg      Client
	loginURL string // issuer + pathLogin
}

var _ op.Client = (*client)(nil)

func (c *client) GetID() string                    { return c.cfg.ID }
func (c *client) RedirectURIs() []string           { return c.cfg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.cfg.PostLogoutRedirectURIs }

// ApplicationType is web for every client: redirect URIs are matched exactly
// (the native type would also accept any port on a loopback URI).
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }

// AuthMethod is client_secret_basic for confidential clients; the provider
// also accepts client_secret_post (op.Config.AuthMethodPost). A public client
// has no secret and must use PKCE.
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.cfg.Secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	if c.cfg.ClientCredentials {
		return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials}
	}
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

// LoginURL is absolute so that it is right whatever path the issuer has.
func (c *client) LoginURL(authRequestID string) string {
	return c.loginURL + "?authRequestID=" + authRequestID
}

func (c *client) AccessTokenType() op.AccessTokenType {
	if c.cfg.JWTAccessTokens {
		return op.AccessTokenTypeJWT
	}
	return op.AccessTokenTypeBearer
}
func (c *client) IDTokenLifetime() time.Duration { return idTokenLifetime }

// DevMode allows http:// redirect URIs (test servers), still matched exactly.
func (c *client) DevMode() bool { return true }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed refuses custom scopes; openid, profile, email, phone,
// address and offline_access are handled by the op library.
func (c *client) IsScopeAllowed(string) bool { return false }

// IDTokenUserinfoClaimsAssertion puts email and name into the ID token even
// though an access token is also issued, because the relying party reads
// them from the verified ID token, not from userinfo.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }

func (c *client) ClockSkew() time.Duration { return 0 }
