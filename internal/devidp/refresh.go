package devidp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
)

// refreshTokenLifetime bounds a refresh token that is never used. Each use
// replaces the token (rotation), as Okta, Auth0 and Entra ID do for browser
// clients, and the one presented stops working.
const refreshTokenLifetime = 24 * time.Hour

// refreshToken is the record behind an opaque refresh token: the login it
// continues. It is issued by the code flow when the client asked for
// offline_access, and replaced at every use.
type refreshToken struct {
	id       string
	subject  string
	clientID string
	scopes   []string
	amr      []string
	authTime time.Time
	audience []string
	expires  time.Time
}

// refreshRequest is a refresh token's grant as the op library sees it: the
// login it continues, so the new ID token keeps its auth_time and amr.
type refreshRequest struct {
	token  *refreshToken
	scopes []string
}

var _ op.RefreshTokenRequest = (*refreshRequest)(nil)

func (r *refreshRequest) GetAMR() []string            { return r.token.amr }
func (r *refreshRequest) GetAudience() []string       { return r.token.audience }
func (r *refreshRequest) GetAuthTime() time.Time      { return r.token.authTime }
func (r *refreshRequest) GetClientID() string         { return r.token.clientID }
func (r *refreshRequest) GetScopes() []string         { return r.scopes }
func (r *refreshRequest) GetSubject() string          { return r.token.subject }
func (r *refreshRequest) SetCurrentScopes(s []string) { r.scopes = slices.Clone(s) }

// errUserDisabled refuses a disabled user's refresh: the op library answers
// invalid_grant, as a provider does for an account disabled in its directory.
var errUserDisabled = errors.New("user disabled")

// CreateAccessAndRefreshTokens issues an access token and a refresh token:
// for a code-flow login with offline_access, or in exchange for the refresh
// token currentRefreshToken, which is then spent.
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, r op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	rt := &refreshToken{
		id:       randomID(24),
		subject:  r.GetSubject(),
		scopes:   slices.Clone(r.GetScopes()),
		audience: slices.Clone(r.GetAudience()),
		expires:  s.now().Add(refreshTokenLifetime),
	}
	switch req := r.(type) {
	case *authRequest:
		rt.clientID, rt.amr, rt.authTime = req.clientID, slices.Clone(req.claims.AMR), req.claims.AuthTime
	case *refreshRequest:
		rt.clientID, rt.amr, rt.authTime = req.token.clientID, slices.Clone(req.token.amr), req.token.authTime
	default:
		return "", "", time.Time{}, fmt.Errorf("refresh tokens are not issued for a %T", r)
	}
	s.mu.Lock()
	if currentRefreshToken != "" {
		// Rotation: the token presented is spent, even if what follows fails.
		old, ok := s.refreshTokens[currentRefreshToken]
		delete(s.refreshTokens, currentRefreshToken)
		if !ok || old.subject != rt.subject || old.clientID != rt.clientID {
			s.mu.Unlock()
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
	}
	s.refreshTokens[rt.id] = rt
	seen := s.onRefresh
	s.mu.Unlock()
	if seen != nil {
		seen(rt.id)
	}
	access, exp, err := s.CreateAccessToken(ctx, r)
	if err != nil {
		return "", "", time.Time{}, err
	}
	// An access token of a refresh carries no auth request; it is the client's all the same.
	s.mu.Lock()
	if t := s.tokens[access]; t != nil {
		t.clientID = rt.clientID
	}
	s.mu.Unlock()
	return access, rt.id, exp, nil
}

// TokenRequestByRefreshToken finds the login a live refresh token continues.
// A disabled user's, an expired or an unknown token is refused (invalid_grant).
func (s *storage) TokenRequestByRefreshToken(_ context.Context, id string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("refresh token: %w", errNotFound)
	case s.now().After(t.expires):
		delete(s.refreshTokens, id)
		return nil, fmt.Errorf("refresh token expired: %w", errNotFound)
	}
	u := s.usersBySubject[t.subject]
	if u != nil {
		s.refreshUses[u.Username]++
	}
	if u == nil || s.disabled[u.Username] {
		return nil, errUserDisabled
	}
	cp := *t
	return &refreshRequest{token: &cp, scopes: slices.Clone(t.scopes)}, nil
}

// GetRefreshTokenInfo serves revocation of a refresh token by its client.
func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[token]
	if !ok || t.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.subject, t.id, nil
}

// DisableUser disables username, as a directory does for a leaver: their
// refresh tokens are refused from now on, userinfo answers no more, and the
// login form refuses them. Their current ID tokens stay as they are.
func (p *Provider) DisableUser(username string) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.disabled[username] = true
}

// SetEmail changes username's address (and whether it is verified) as their
// directory would: later tokens and userinfo carry the new one.
func (p *Provider) SetEmail(username, email string, verified bool) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	if u := p.st.users[username]; u != nil {
		u.Email, u.EmailVerified = email, verified
	}
}

// RefreshTokenUses returns how many refresh token grants username's tokens
// have had, successful or not: a test's witness that a relying party went
// back to the provider.
func (p *Provider) RefreshTokenUses(username string) int {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.refreshUses[username]
}

// OnRefreshToken calls f with every refresh token issued from now on, for a test that looks
// for them where they must not be.
func (p *Provider) OnRefreshToken(f func(string)) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.onRefresh = f
}
