package devidp

import (
	"log/slog"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// authRequestLifetime bounds how long a user may take on the login form.
const authRequestLifetime = 10 * time.Minute

// maxLoginFailures ends an auth request after this many wrong passwords or
// codes, so the form cannot be used to guess them without limit.
const maxLoginFailures = 5

// authRequest is one authorization request from /authorize until the code is
// exchanged at /token. It implements op.AuthRequest.
//
// The stored value is only changed under storage.mu; the op library gets
// copies (see storage.AuthRequestByID), so its getters never race with the
// login form.
type authRequest struct {
	id           string
	created      time.Time
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge
	loginHint    string
	acrValues    []string

	// csrf is put in the login form and must come back with the POST: the
	// form can then only be submitted for this auth request by a page that
	// has seen it.
	csrf     string
	failures int

	// Set by a successful login.
	done    bool
	subject string
	claims  Claims
}

var _ op.AuthRequest = (*authRequest)(nil)

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return a.claims.ACR }
func (a *authRequest) GetAMR() []string                      { return a.claims.AMR }
func (a *authRequest) GetAuthTime() time.Time                { return a.claims.AuthTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// GetAudience is the client id, or what ForceClaims put in Claims.Audience.
func (a *authRequest) GetAudience() []string {
	if len(a.claims.Audience) > 0 {
		return a.claims.Audience
	}
	return []string{a.clientID}
}

// LogValue keeps state, nonce, the challenge and the CSRF token out of logs.
func (a *authRequest) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("id", a.id),
		slog.String("client_id", a.clientID),
		slog.String("redirect_uri", a.redirectURI),
		slog.Any("scopes", a.scopes),
		slog.Bool("done", a.done),
	)
}

// copy returns a snapshot safe to hand to the op library.
func (a *authRequest) copy() *authRequest {
	c := *a
	return &c
}
