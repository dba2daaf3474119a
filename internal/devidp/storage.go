package devidp

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Lifetimes of the short-lived artefacts.
const (
	codeLifetime        = time.Minute
	accessTokenLifetime = 5 * time.Minute
)

// errNotFound is wrapped by lookups of auth requests, codes and tokens that
// do not exist (or no longer do).
var errNotFound = errors.New("not found")

// storage is the op.Storage of the provider: everything in memory, under one
// mutex. It also holds the sessions and test seams the Provider methods use.
type storage struct {
	issuer string
	now    func() time.Time

	mu             sync.Mutex
	clients        map[string]*client
	users          map[string]*User // by username
	usersBySubject map[string]*User
	authRequests   map[string]*authRequest
	codes          map[string]codeEntry
	tokens         map[string]*accessToken
	sessions       map[string]*session // by sid
	keys           keyring
	authTimeOffset time.Duration
	forced         map[string]func(*Claims) // by username, one-shot
	refreshTokens  map[string]*refreshToken
	disabled       map[string]bool // by username (DisableUser)
	refreshUses    map[string]int  // by username (RefreshTokenUses)
	onRefresh      func(string)    // OnRefreshToken
}

type codeEntry struct {
	authRequestID string
	expires       time.Time
}

// accessToken is the record behind an opaque access token.
type accessToken struct {
	id       string
	subject  string
	clientID string
	scopes   []string
	expires  time.Time // wall clock, as the op library computes expires_in with it
}

func newStorage(issuer string, clients []Client, users []User, now func() time.Time) (*storage, error) {
	k, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	s := &storage{
		issuer:         issuer,
		now:            now,
		clients:        map[string]*client{},
		users:          map[string]*User{},
		usersBySubject: map[string]*User{},
		authRequests:   map[string]*authRequest{},
		codes:          map[string]codeEntry{},
		tokens:         map[string]*accessToken{},
		sessions:       map[string]*session{},
		keys:           keyring{current: k},
		forced:         map[string]func(*Claims){},
		refreshTokens:  map[string]*refreshToken{},
		disabled:       map[string]bool{},
		refreshUses:    map[string]int{},
	}
	for _, c := range clients {
		c.RedirectURIs = slices.Clone(c.RedirectURIs)
		c.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
		s.clients[c.ID] = &client{cfg: c, loginURL: issuer + pathLogin}
	}
	for _, u := range users {
		u := u
		s.users[u.Username] = &u
		s.usersBySubject[u.Subject] = &u
	}
	return s, nil
}

// CreateAuthRequest stores a validated authorization request. The op library
// has checked the client, redirect_uri, scopes and response type; here PKCE
// with S256 is made mandatory for every client, and prompt=none is refused
// because the provider keeps no login session to answer it from.
func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if slices.Contains(r.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired().WithDescription("the dev IdP keeps no login session; prompt=none cannot be satisfied")
	}
	if r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	req := &authRequest{
		id:           randomID(16),
		created:      s.now(),
		clientID:     r.ClientID,
		redirectURI:  r.RedirectURI,
		state:        r.State,
		nonce:        r.Nonce,
		scopes:       slices.Clone([]string(r.Scopes)),
		responseType: r.ResponseType,
		responseMode: r.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: r.CodeChallenge, Method: r.CodeChallengeMethod},
		loginHint:    r.LoginHint,
		acrValues:    slices.Clone([]string(r.ACRValues)),
		csrf:         randomID(32),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep()
	s.authRequests[req.id] = req
	return req.copy(), nil
}

// sweep forgets expired auth requests, codes and access tokens, so a
// long-running `portcullis dev` does not accumulate abandoned logins. Login
// sessions are kept until logout. Caller holds mu.
func (s *storage) sweep() {
	now, wall := s.now(), time.Now()
	for id, r := range s.authRequests {
		if now.After(r.created.Add(authRequestLifetime)) {
			delete(s.authRequests, id)
		}
	}
	for c, e := range s.codes {
		if now.After(e.expires) {
			delete(s.codes, c)
		}
	}
	for id, t := range s.tokens {
		if wall.After(t.expires) {
			delete(s.tokens, id)
		}
	}
	for id, t := range s.refreshTokens {
		if now.After(t.expires) {
			delete(s.refreshTokens, id)
		}
	}
}

// AuthRequestByID returns a copy of a live auth request.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req, err := s.liveAuthRequest(id)
	if err != nil {
		return nil, err
	}
	return req.copy(), nil
}

// liveAuthRequest finds an auth request that has not expired. Caller holds mu.
func (s *storage) liveAuthRequest(id string) (*authRequest, error) {
	req, ok := s.authRequests[id]
	if !ok {
		return nil, fmt.Errorf("auth request: %w", errNotFound)
	}
	if s.now().After(req.created.Add(authRequestLifetime)) {
		delete(s.authRequests, id)
		return nil, fmt.Errorf("auth request expired: %w", errNotFound)
	}
	return req, nil
}

// AuthRequestByCode redeems a code. The code is removed on first use, before
// PKCE and client authentication are checked, so a code that was presented
// with a wrong verifier or secret cannot be tried again (RFC 6749 §4.1.2:
// single use).
func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.codes[code]
	if !ok {
		return nil, fmt.Errorf("code: %w", errNotFound)
	}
	delete(s.codes, code)
	if s.now().After(e.expires) {
		return nil, fmt.Errorf("code expired: %w", errNotFound)
	}
	req, ok := s.authRequests[e.authRequestID]
	if !ok || !req.done {
		return nil, fmt.Errorf("auth request for code: %w", errNotFound)
	}
	return req.copy(), nil
}

// SaveAuthCode binds a newly issued code to its auth request.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = codeEntry{authRequestID: id, expires: s.now().Add(codeLifetime)}
	return nil
}

// DeleteAuthRequest is called once the tokens were issued.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, e := range s.codes {
		if e.authRequestID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// CreateAccessToken records an opaque access token.
func (s *storage) CreateAccessToken(_ context.Context, r op.TokenRequest) (string, time.Time, error) {
	var clientID string
	if ar, ok := r.(*authRequest); ok {
		clientID = ar.clientID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	life := accessTokenLifetime
	if cc, ok := r.(*ccRequest); ok {
		if c := s.clients[cc.subject]; c != nil && c.cfg.AccessTokenLifetime > 0 {
			life = c.cfg.AccessTokenLifetime
		}
	}
	t := &accessToken{
		id:       randomID(16),
		subject:  r.GetSubject(),
		clientID: clientID,
		scopes:   slices.Clone(r.GetScopes()),
		expires:  time.Now().Add(life),
	}
	s.tokens[t.id] = t
	return t.id, t.expires, nil
}

// TerminateSession is called by the end_session endpoint: the user's login
// sessions with that client and their access tokens end. No back-channel
// logout is sent for RP-initiated logout; see SendBackchannelLogout.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sid, sess := range s.sessions {
		if sess.subject == userID && sess.clientID == clientID {
			delete(s.sessions, sid)
		}
	}
	for id, t := range s.tokens {
		if t.subject == userID && t.clientID == clientID {
			delete(s.tokens, id)
		}
	}
	return nil
}

// RevokeToken revokes an access token of the calling client.
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.tokens, tokenOrID)
	}
	return nil
}

// SigningKey returns the current key; ID tokens are signed with it.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys.current, nil
}

// SignatureAlgorithms is RS256 only.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet is what the JWKS endpoint publishes.
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys.publicKeys(), nil
}

// GetClientByClientID returns a registered client.
func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("client %q: %w", id, errNotFound)
	}
	return c, nil
}

// AuthorizeClientIDSecret checks client credentials in constant time. The op
// library calls it for both client_secret_basic and client_secret_post.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	s.mu.Lock()
	c, ok := s.clients[id]
	s.mu.Unlock()
	if !ok || c.cfg.Secret == "" ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(c.cfg.Secret)) != 1 {
		return errors.New("invalid client credentials")
	}
	return nil
}

// SetUserinfoFromScopes fills the profile and email claims of the ID token.
func (s *storage) SetUserinfoFromScopes(_ context.Context, ui *oidc.UserInfo, userID, _ string, scopes []string) error {
	return s.setUserinfo(ui, userID, scopes)
}

// SetUserinfoFromRequest adds what belongs to this login rather than to the
// user: sid, and the Extra claims of a ForceClaims call. It implements
// op.CanSetUserinfoFromRequest and is only used for ID tokens.
func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, r op.IDTokenRequest, _ []string) error {
	ar, ok := r.(*authRequest)
	if !ok {
		return nil
	}
	if ar.claims.SID != "" {
		ui.AppendClaims("sid", ar.claims.SID)
	}
	for k, v := range ar.claims.Extra {
		ui.AppendClaims(k, v)
	}
	return nil
}

var _ op.CanSetUserinfoFromRequest = (*storage)(nil)

// SetUserinfoFromToken serves the userinfo endpoint. It never carries acr,
// amr or auth_time: those are only in the signed ID token.
func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.tokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject {
		return fmt.Errorf("access token: %w", errNotFound)
	}
	if time.Now().After(t.expires) {
		return errors.New("access token expired")
	}
	return s.setUserinfo(ui, t.subject, t.scopes)
}

func (s *storage) setUserinfo(ui *oidc.UserInfo, subject string, scopes []string) error {
	s.mu.Lock()
	var u User
	p, ok := s.usersBySubject[subject]
	if ok {
		u = *p // a copy: SetEmail may change the user meanwhile
		ok = !s.disabled[u.Username]
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("user %q: %w", subject, errNotFound)
	}
	for _, sc := range scopes {
		switch sc {
		case oidc.ScopeOpenID:
			ui.Subject = u.Subject
		case oidc.ScopeEmail:
			ui.Email = u.Email
			ui.EmailVerified = oidc.Bool(u.EmailVerified)
			if !u.EmailVerified {
				// oidc.UserInfo omits a false email_verified; a relying
				// party should see the explicit false.
				ui.AppendClaims("email_verified", false)
			}
		case oidc.ScopeProfile:
			ui.Name = u.Name
			ui.PreferredUsername = u.Username
		}
	}
	return nil
}

// SetIntrospectionFromToken: introspection is not offered to clients (it
// needs the caller to be an authenticated resource server), so this only
// reports the token as inactive.
func (s *storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return errors.New("introspection is not supported")
}

// GetPrivateClaimsFromScopes gives a client-credentials token (whose subject is the client
// itself) the client's configured Claims; there are no custom scopes.
func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, userID, clientID string, _ []string) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[clientID]; ok && userID == clientID && c.cfg.ClientCredentials {
		return maps.Clone(c.cfg.Claims), nil
	}
	return nil, nil
}

// ClientCredentials authenticates a client for the client_credentials grant.
func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[id]
	if !c.cfg.ClientCredentials {
		return nil, errors.New("client may not use client_credentials")
	}
	return c, nil
}

// ClientCredentialsTokenRequest is the token request of a client signing in as itself.
func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("client %q: %w", id, errNotFound)
	}
	aud := slices.Clone(c.cfg.Audience)
	if len(aud) == 0 {
		aud = []string{id}
	}
	return &ccRequest{subject: id, audience: aud, scopes: slices.Clone(scopes)}, nil
}

// ccRequest is a client-credentials token request.
type ccRequest struct {
	subject  string
	audience []string
	scopes   []string
}

func (r *ccRequest) GetSubject() string    { return r.subject }
func (r *ccRequest) GetAudience() []string { return r.audience }
func (r *ccRequest) GetScopes() []string   { return r.scopes }

// GetKeyByIDAndClientID: private_key_jwt and the JWT profile grant are not
// supported.
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("client keys are not supported")
}

// ValidateJWTProfileScopes: the JWT profile grant is not supported.
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("the JWT profile grant is not supported")
}

// Health reports the storage as always healthy: it is memory.
func (s *storage) Health(context.Context) error { return nil }
