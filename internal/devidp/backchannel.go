package devidp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// backchannelLogoutEvent is the member of the "events" claim that makes a JWT
// a logout token (OIDC Back-Channel Logout 1.0 §2.4).
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutTokenLifetime is exp - iat of logout tokens; the spec recommends a
// short one (§2.4: at most two minutes).
const logoutTokenLifetime = 2 * time.Minute

// Errors of SendBackchannelLogout.
var (
	// ErrUnknownLogoutTarget: the argument is neither a live sid nor a
	// configured user's subject.
	ErrUnknownLogoutTarget = errors.New("devidp: no session or user with that id")
	// ErrNoBackchannelClient: no client concerned has a BackchannelLogoutURI.
	ErrNoBackchannelClient = errors.New("devidp: no client to notify has a backchannel logout URI")
)

// logoutToken is the claim set of a logout token. It has no nonce: §2.4
// forbids one, so that a logout token cannot pass for an ID token.
type logoutToken struct {
	Issuer   string         `json:"iss"`
	Audience []string       `json:"aud"`
	IssuedAt int64          `json:"iat"`
	Expiry   int64          `json:"exp"`
	JWTID    string         `json:"jti"`
	Events   map[string]any `json:"events"`
	Subject  string         `json:"sub,omitempty"`
	SID      string         `json:"sid,omitempty"`
}

// logoutDelivery is one logout token to one client.
type logoutDelivery struct {
	clientID string
	uri      string
	subject  string
	sid      string
}

// SendBackchannelLogout ends login sessions and tells the relying parties by
// POSTing a signed logout token (form field logout_token) to their
// BackchannelLogoutURI, as OIDC Back-Channel Logout 1.0 describes.
//
// target is looked up first as a sid (the "sid" of an ID token): that
// session ends and its client receives a token with sid and sub. Otherwise it
// is taken as a user's subject: all that user's sessions end and every client
// with a BackchannelLogoutURI receives a token with sub only, meaning "all
// sessions of this user".
//
// It returns the highest HTTP status the clients answered (so any failure
// shows; the spec asks for 200), and an error if a request could not be
// sent, or wrapping ErrUnknownLogoutTarget or ErrNoBackchannelClient. The
// sessions end even if delivery fails.
func (p *Provider) SendBackchannelLogout(ctx context.Context, target string) (int, error) {
	deliveries, err := p.st.endSessions(target)
	if err != nil {
		return 0, err
	}
	status := 0
	var errs []error
	for _, d := range deliveries {
		code, err := p.deliverLogout(ctx, d)
		if err != nil {
			errs = append(errs, fmt.Errorf("devidp: backchannel logout to %s: %w", d.clientID, err))
			continue
		}
		status = max(status, code)
	}
	return status, errors.Join(errs...)
}

// endSessions removes the sessions target names and lists who to tell.
func (s *storage) endSessions(target string) ([]logoutDelivery, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []logoutDelivery
	if sess, ok := s.sessions[target]; ok {
		delete(s.sessions, target)
		if c := s.clients[sess.clientID]; c != nil && c.cfg.BackchannelLogoutURI != "" {
			out = append(out, logoutDelivery{clientID: c.cfg.ID, uri: c.cfg.BackchannelLogoutURI, subject: sess.subject, sid: sess.sid})
		}
	} else if _, ok := s.usersBySubject[target]; ok {
		for sid, sess := range s.sessions {
			if sess.subject == target {
				delete(s.sessions, sid)
			}
		}
		for _, c := range s.clients {
			if c.cfg.BackchannelLogoutURI != "" {
				out = append(out, logoutDelivery{clientID: c.cfg.ID, uri: c.cfg.BackchannelLogoutURI, subject: target})
			}
		}
	} else {
		return nil, ErrUnknownLogoutTarget
	}
	if len(out) == 0 {
		return nil, ErrNoBackchannelClient
	}
	return out, nil
}

// deliverLogout signs a logout token for d and POSTs it.
func (p *Provider) deliverLogout(ctx context.Context, d logoutDelivery) (int, error) {
	tok, err := p.signLogoutToken(d)
	if err != nil {
		return 0, err
	}
	form := url.Values{"logout_token": {tok}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.uri, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.bcc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	p.log.Info("devidp: backchannel logout sent", "client_id", d.clientID, "sid", d.sid != "", "status", resp.StatusCode)
	return resp.StatusCode, nil
}

// signLogoutToken signs with the current key and the explicit type
// "logout+jwt" (§2.4), so it cannot be confused with an ID token.
func (p *Provider) signLogoutToken(d logoutDelivery) (string, error) {
	p.st.mu.Lock()
	key := p.st.keys.current
	p.st.mu.Unlock()
	now := p.now()
	claims := logoutToken{
		Issuer:   p.issuer,
		Audience: []string{d.clientID},
		IssuedAt: now.Unix(),
		Expiry:   now.Add(logoutTokenLifetime).Unix(),
		JWTID:    randomID(16),
		Events:   map[string]any{backchannelLogoutEvent: struct{}{}},
		Subject:  d.subject,
		SID:      d.sid,
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("marshal logout token: %w", err)
	}
	signer, err := key.signer("logout+jwt")
	if err != nil {
		return "", fmt.Errorf("logout token signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign logout token: %w", err)
	}
	return jws.CompactSerialize()
}
