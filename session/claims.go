package session

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/store"
)

// identity is what a verified ID token says about the person.
type identity struct {
	user, issuer, subject string
	email, name, acr, sid string
	emailVerified         bool
	amr                   []string
	authTime              time.Time
	// sub is the ID token's sub (the subject unless subject_claim names another claim);
	// refresh the token response's refresh token, "" when none.
	sub, refresh string
}

// authentication is what id asserts about the sign-in, for authz.Grant.
func (id *identity) authentication() authz.Authentication {
	return authz.Authentication{Issuer: id.issuer, Subject: id.subject, ACR: id.acr, AMR: id.amr, AuthTime: id.authTime}
}

// errEmailUnverified: the token does not say email_verified: true and the configuration
// requires it.
var errEmailUnverified = errors.New("email not verified")

// maxAuthTime is the largest auth_time read as seconds: 10^11 s is the year 5138, so a larger
// value is a provider sending milliseconds, which would make any login look fresh for ever.
const maxAuthTime = 1e11

// verifyIDToken checks raw with go-oidc (signature with an allowed algorithm and a key from the
// provider's JWKS, iss, aud, exp with skew) and then what go-oidc leaves to the caller: the
// nonce, azp for several audiences, and the shape of the claims Portcullis keeps. A claim of the
// wrong type is an error, not a missing claim: step-up rules must not see a guess (SU-02).
func (m *Manager) verifyIDToken(ctx context.Context, rp *relyingParty, raw, nonce string) (*identity, error) {
	tok, err := rp.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("verify id token: %w", err)
	}
	if tok.Nonce == "" || subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(nonce)) != 1 {
		return nil, errors.New("id token nonce does not match this sign-in")
	}
	var c map[string]json.RawMessage
	if err := tok.Claims(&c); err != nil {
		return nil, fmt.Errorf("id token claims: %w", err)
	}
	var azp string
	if err := optString(c, "azp", &azp); err != nil {
		return nil, err
	}
	// OIDC Core 3.1.3.7 (4, 5): with several audiences, we must be the authorised party; and an
	// azp naming someone else is never ours (OIDC-05).
	clientID := rp.p.cfg.ClientID
	if (len(tok.Audience) > 1 && azp != clientID) || (azp != "" && azp != clientID) {
		return nil, fmt.Errorf("id token azp %q with audience %q is not for this client", azp, tok.Audience)
	}
	subject := tok.Subject
	if claim := rp.p.cfg.SubjectClaim; claim != "" && claim != "sub" {
		// The provider's immutable id other than sub (Entra ID's oid): what a directory
		// provisions, and what the person's key is made of.
		subject = ""
		if err := optString(c, claim, &subject); err != nil {
			return nil, err
		}
	}
	if subject == "" {
		return nil, fmt.Errorf("id token has no %s", cmp.Or(rp.p.cfg.SubjectClaim, "sub"))
	}
	id := &identity{issuer: tok.Issuer, subject: subject, user: store.UserKey(tok.Issuer, subject), sub: tok.Subject}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"email", &id.email}, {"name", &id.name}, {"acr", &id.acr}, {"sid", &id.sid}} {
		if err := optString(c, f.name, f.dst); err != nil {
			return nil, err
		}
	}
	if v, ok := c["amr"]; ok && !isNull(v) {
		if err := json.Unmarshal(v, &id.amr); err != nil {
			return nil, errors.New("id token amr is not an array of strings")
		}
	}
	if v, ok := c["email_verified"]; ok && !isNull(v) {
		var b bool
		var s string
		switch {
		case json.Unmarshal(v, &b) == nil:
			id.emailVerified = b
		case json.Unmarshal(v, &s) == nil && (s == "true" || s == "false"):
			id.emailVerified = s == "true" // some providers send a string
		default:
			return nil, errors.New("id token email_verified is not a boolean")
		}
	}
	if v, ok := c["auth_time"]; ok && !isNull(v) {
		t, err := m.authTime(v)
		if err != nil {
			return nil, err
		}
		id.authTime = t
	}
	if claim := rp.p.cfg.EmailDomainClaim; claim != "" && id.emailVerified {
		// The provider vouches for the address only at a domain it names as its own (Google's
		// hd): elsewhere email_verified says only that someone once read mail there.
		var d string
		if err := optString(c, claim, &d); err != nil {
			return nil, err
		}
		id.emailVerified = authz.AddressInDomain(id.email, d)
	}
	if rp.p.requireEV && !id.emailVerified {
		return nil, errEmailUnverified
	}
	return id, nil
}

// authTime reads auth_time: a JSON number of whole seconds, not in the future beyond the skew,
// not looking like milliseconds.
func (m *Manager) authTime(v json.RawMessage) (time.Time, error) {
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		return time.Time{}, errors.New("id token auth_time is not a number")
	}
	if f <= 0 || f >= maxAuthTime || f != math.Trunc(f) {
		return time.Time{}, fmt.Errorf("id token auth_time %v is not a plausible time in seconds", f)
	}
	t := time.Unix(int64(f), 0)
	if t.After(m.now().Add(m.oc.ClockSkew.D())) {
		return time.Time{}, errors.New("id token auth_time is in the future")
	}
	return t, nil
}

// optString reads claim name into dst when present; a non-string is an error.
func optString(c map[string]json.RawMessage, name string, dst *string) error {
	v, ok := c[name]
	if !ok || isNull(v) {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("id token %s is not a string", name)
	}
	return nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }
