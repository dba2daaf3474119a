// Package devidp is a small but real OpenID Provider for tests and for
// `portcullis dev`.
//
// It exists so that the relying-party code in Portcullis (package session and
// the step-up rules in authz) is exercised against the protocol as a real
// provider speaks it, not against hand-made JWTs: discovery, the authorization
// code flow with PKCE, client authentication at the token endpoint, a JWKS
// that rotates, refresh tokens (rotated at every use), RP-initiated logout and
// back-channel logout. The protocol work
// is done by github.com/zitadel/oidc/v3/pkg/op; this package supplies the
// in-memory storage that library needs, a plain HTML login form, and the test
// seams that let a relying-party test produce the tokens it must refuse
// (an old auth_time, a weaker acr, a missing amr, a rotated-away key).
//
// Everything is held in memory and lost when the process ends. Passwords and
// TOTP secrets are configured in clear text. It must not be used as an
// identity provider for anything real.
//
// What a login yields: password only gives acr ACRPassword and amr ["pwd"];
// password and a valid TOTP code give ACRMFA and ["pwd","otp","mfa"]. There
// is no single sign-on session: every authorization request shows the login
// form (see loginUI), so prompt=login and max_age always hold.
//
// In a test, serve Handler at the issuer URL, for example:
//
//	srv := httptest.NewUnstartedServer(nil)
//	srv.StartTLS()
//	idp, err := devidp.New(devidp.Config{Issuer: srv.URL, Clients: ..., Users: ...})
//	srv.Config.Handler = idp.Handler()
//
// or use package devidptest, which does that and drives the login form.
//
// Files:
//
//	provider.go     Config, validation, New, Handler: wiring the op library
//	storage.go      op.Storage: auth requests, codes, access tokens, userinfo
//	authrequest.go  the op.AuthRequest kept between /authorize and /token
//	client.go       op.Client for a configured relying party
//	login.go        the login form (password, optional one-time code)
//	keys.go         RS256 signing keys and their rotation
//	seams.go        test seams: auth_time offset, one-shot forced claims
//	refresh.go      refresh tokens; DisableUser and SetEmail, as a directory changes people
//	backchannel.go  OIDC Back-Channel Logout 1.0 logout tokens
package devidp
