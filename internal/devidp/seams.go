package devidp

import (
	"maps"
	"slices"
	"time"
)

// Claims are the facts one login produces, as they go into the ID token.
// ForceClaims lets a test change them.
type Claims struct {
	// ACR is the "acr" claim: ACRPassword or ACRMFA. Empty omits the claim.
	ACR string
	// AMR is the "amr" claim: ["pwd"] or ["pwd","otp","mfa"]. nil omits it.
	AMR []string
	// AuthTime is the "auth_time" claim: when the user authenticated in this
	// login, by the provider's clock plus any SetAuthTimeOffset. It is
	// truncated to whole seconds in the token. Zero omits the claim.
	AuthTime time.Time
	// SID is the "sid" claim, the id of this login session, which
	// SendBackchannelLogout accepts. Changing it only changes the token: the
	// session stays known under the original id. Empty omits the claim.
	SID string
	// Audience, when not empty, is the "aud" claim instead of the client id
	// alone. The op library always adds the client id to it and sets "azp"
	// to the client id, so a token for another audience only cannot be
	// made; a multi-audience one can.
	Audience []string
	// Extra claims are added to the ID token. They cannot replace a claim
	// set above (or iss, sub, aud, exp, iat, nonce...), but when the field
	// above is empty they can supply a malformed value instead, e.g.
	// ACR = "" with Extra["acr"] = []string{ACRMFA}, or AuthTime zero with
	// Extra["auth_time"] = "1700000000".
	Extra map[string]any
}

func (c Claims) clone() Claims {
	c.AMR = slices.Clone(c.AMR)
	c.Audience = slices.Clone(c.Audience)
	c.Extra = maps.Clone(c.Extra)
	return c
}

// session is one successful login: what back-channel logout and end_session
// act on.
type session struct {
	sid      string
	subject  string
	clientID string
	authTime time.Time
}

// SetAuthTimeOffset shifts the auth_time of every later login by d from the
// provider's clock; a negative d makes the authentication look older than it
// is (a stale login for step-up tests) without changing iat or exp. Zero
// restores the default.
func (p *Provider) SetAuthTimeOffset(d time.Duration) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.authTimeOffset = d
}

// ForceClaims changes the claims of the next successful login of username,
// once: f gets the claims the login earned and may weaken, remove or
// malform them, so a relying-party test can check that it refuses the
// result. A second call before that login replaces f. f runs without any
// provider lock held.
func (p *Provider) ForceClaims(username string, f func(*Claims)) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	p.st.forced[username] = f
}

// earnedClaims are the claims of a login that has just succeeded, before any
// forced change. Caller holds mu.
func (s *storage) earnedClaims(mfa bool) Claims {
	c := Claims{AuthTime: s.now().Add(s.authTimeOffset), SID: randomID(16)}
	if mfa {
		c.ACR, c.AMR = ACRMFA, []string{"pwd", "otp", "mfa"}
	} else {
		c.ACR, c.AMR = ACRPassword, []string{"pwd"}
	}
	return c
}

// completeLogin marks the auth request done for u with the claims earned,
// after applying a pending ForceClaims. The auth request must still be live
// and not done; a concurrent duplicate submission loses.
func (s *storage) completeLogin(id string, u *User, mfa bool) error {
	s.mu.Lock()
	c := s.earnedClaims(mfa)
	f := s.forced[u.Username]
	delete(s.forced, u.Username)
	s.mu.Unlock()

	sid := c.SID
	if f != nil {
		f(&c)
		c = c.clone()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	req, err := s.liveAuthRequest(id)
	if err != nil {
		return err
	}
	if req.done {
		return errAlreadyDone
	}
	req.done, req.subject, req.claims = true, u.Subject, c
	s.sessions[sid] = &session{sid: sid, subject: u.Subject, clientID: req.clientID, authTime: c.AuthTime}
	return nil
}
