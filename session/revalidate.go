package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Session re-validation (oidc.revalidate, config.Revalidate): a sign-in's sessions check back
// with the provider every interval by redeeming the refresh token the sign-in earned, and end
// when the provider refuses it or says something else about the person than at sign-in.
//
// Where the refresh token lives. It belongs to the sign-in, not to one session: the sessions
// handed off from it to organisation hosts (handoff.go) are the same sign-in, and a provider
// that rotates refresh tokens (Okta, Auth0, Entra ID for browsers) accepts only the newest.
// So it sits once per family, in the family's revalidation record, sealed (AES-256-GCM) under a
// random family key. Each session of the family holds that key sealed under a key derived from
// its own cookie (HKDF), and a handoff code carries it sealed under one derived from the code.
// A copy of Redis therefore holds no usable refresh token: opening one takes a cookie.
//
// Who redeems it. Whichever request of the family finds it due takes the family's lease in
// Redis (one holder, however many replicas), redeems it, and writes the new token and the next
// due time; the others go on while the session is within its grace. A refusal by the provider
// (an OAuth error: invalid_grant for a disabled or deleted person) ends every session of the
// family at once; a provider that cannot be reached keeps them for the grace, then answers 503
// idp_unavailable. A warm request that is not due reads nothing: the due time is in the
// session record the session cache holds.

// Revalidations keeps the families' revalidation records (store.Store does).
type Revalidations interface {
	SaveRevalidation(ctx context.Context, family string, rec []byte, ttl time.Duration) error
	LoadRevalidation(ctx context.Context, family string) ([]byte, error)
	LeaseRevalidation(ctx context.Context, family, holder string, d time.Duration) (bool, error)
	FinishRevalidation(ctx context.Context, family, holder string, rec []byte, release bool) error
	EndRevalidation(ctx context.Context, family string) error
}

// revalidationLease bounds one revalidation: the provider calls (providerCallLimit each, two at
// most) and the writes. While a provider is unreachable it is also the retry interval, since a
// failed attempt keeps the lease.
const revalidationLease = 2*providerCallLimit + 5*time.Second

// revalidation is a family's record: the sealed refresh token and what the provider must keep
// saying about the person.
type revalidation struct {
	Provider string `json:"provider"`
	// Subject is the ID token's sub at sign-in (which userinfo answers with), whatever
	// subject_claim the person's key uses.
	Subject string `json:"sub"`
	// Email and EmailVerified are the address at sign-in.
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
	// Refresh is the refresh token, sealed under the family key with the family as
	// additional data.
	Refresh []byte `json:"refresh"`
	// Next is when the family is next due; Checked when the provider last answered; Failed
	// when an attempt last could not check it (zero: none since).
	Next    time.Time `json:"next"`
	Checked time.Time `json:"checked"`
	Failed  time.Time `json:"failed,omitzero"`
}

// Why a family ended by re-validation, in session.ended events.
const (
	endedRefreshRefused = "idp_refresh_refused"
	endedClaimsChanged  = "idp_claims_changed"
	endedRevalidation   = "revalidation_unreadable"
)

// keyFrom derives a 256-bit key for purpose from a secret a browser holds (a cookie, a code).
func keyFrom(secret, purpose string) []byte {
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "portcullis "+purpose, 32)
	if err != nil {
		panic(err) // only for lengths HKDF cannot make
	}
	return k
}

// seal encrypts plain under key (AES-256-GCM, random nonce first), bound to aad.
func seal(key, plain []byte, aad string) []byte {
	g := gcm(key)
	nonce := make([]byte, g.NonceSize(), g.NonceSize()+len(plain)+g.Overhead())
	_, _ = rand.Read(nonce)
	return g.Seal(nonce, nonce, plain, []byte(aad))
}

// unseal opens what seal made under key for aad.
func unseal(key, sealed []byte, aad string) ([]byte, error) {
	g := gcm(key)
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	return g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], []byte(aad))
}

func gcm(key []byte) cipher.AEAD {
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // keys are 32 bytes, from keyFrom or rand
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic(err)
	}
	return g
}

// sessionFamilyKey seals the family key for the session whose cookie is secret (handle h).
func sessionFamilyKey(secret, h string, key []byte) []byte {
	return seal(keyFrom(secret, "session family key"), key, h)
}

// openFamilyKey is the family key of l's session, opened with its cookie.
func (l *loaded) familyKey() ([]byte, error) {
	if l.secret == "" {
		return nil, errors.New("no cookie to open the family key with")
	}
	return unseal(keyFrom(l.secret, "session family key"), l.rec.FamilyKey, l.h)
}

// codeFamilyKey seals the family key into a handoff code, bound to the session it comes from
// and the host it is for; openCodeFamilyKey opens it.
func codeFamilyKey(code string, hc *handoffCode, key []byte) []byte {
	return seal(keyFrom(code, "handoff family key"), key, "handoff\x00"+hc.Session+"\x00"+hc.Host)
}

func openCodeFamilyKey(code string, hc *handoffCode) ([]byte, error) {
	return unseal(keyFrom(code, "handoff family key"), hc.FamilyKey, "handoff\x00"+hc.Session+"\x00"+hc.Host)
}

// beginRevalidation makes the revalidation record of a new sign-in whose first session is
// secret (handle h) and returns the family key sealed for that session and when it is first
// due; nothing when p does not revalidate. A sign-in without a refresh token is refused.
func (m *Manager) beginRevalidation(ctx context.Context, p *idp, id *identity, secret, h string, now time.Time) ([]byte, time.Time, error) {
	if p == nil || p.cfg.Revalidate.Interval <= 0 {
		return nil, time.Time{}, nil
	}
	if id.refresh == "" {
		return nil, time.Time{}, warning(reason.SignInFailed, signInRefused,
			"the provider issued no refresh token, and its sessions revalidate (ask for offline_access)", slog.String("provider", p.cfg.Name))
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	next := now.Add(p.cfg.Revalidate.Interval.D())
	rv := revalidation{Provider: p.cfg.Name, Subject: id.sub, Email: id.email, EmailVerified: id.emailVerified,
		Refresh: seal(key, []byte(id.refresh), h), Next: next, Checked: now}
	b, err := json.Marshal(&rv)
	if err != nil {
		return nil, time.Time{}, internal("encode revalidation", err)
	}
	if err := m.revals.SaveRevalidation(ctx, h, b, m.sc.AbsoluteTimeout.D()); err != nil {
		return nil, time.Time{}, outage("save revalidation", err)
	}
	return sessionFamilyKey(secret, h, key), next, nil
}

// loadChecked is load (touching last-seen) for requests that act as the session, checked
// back with its provider first when due: the proxied requests (Admit), whoami, and handoffs,
// which make new sessions of the sign-in.
func (m *Manager) loadChecked(ctx context.Context, r *http.Request) (*loaded, error) {
	l, err := m.load(ctx, r, true)
	if err == nil && m.providerOf(l.rec.Issuer) == nil {
		// Its provider was removed (a managed provider deleted), or is not read yet: no session
		// speaks for anyone without its provider. The record stays, so a provider read late
		// (Redis down at start) finds its sessions again; a deleted one's expire.
		m.log.Debug("session of a provider not in force", slog.String("session", logID(l.h)), slog.String("issuer", l.rec.Issuer))
		return nil, errNoSession
	}
	if err == nil && revalidateDue(l, m.now()) {
		if err = m.revalidate(ctx, l); err != nil {
			return nil, err
		}
	}
	return l, err
}

// revalidateDue reports whether l's session must check back with its provider at now.
func revalidateDue(l *loaded, now time.Time) bool {
	return !l.rec.RevalidateAt.IsZero() && !now.Before(l.rec.RevalidateAt)
}

// revalidate checks l's sign-in back with its provider (it is due). nil: the session goes on;
// errNoSession: it was ended; otherwise the refusal to answer with.
func (m *Manager) revalidate(ctx context.Context, l *loaded) error {
	now := m.now()
	family := familyOf(l.rec, l.h)
	rv, err := m.loadRevalidation(ctx, l, family)
	if err != nil || rv == nil {
		return err
	}
	p := m.provider(rv.Provider)
	switch {
	case p == nil || strings.TrimSuffix(p.cfg.Issuer, "/") != strings.TrimSuffix(l.rec.Issuer, "/"):
		// Removed, or a provider of that name now points elsewhere: the refresh token is
		// the old provider's and goes to no other.
		return m.endByRevalidation(ctx, l, endedRevalidation, "its provider is no longer configured")
	case p.cfg.Revalidate.Interval <= 0:
		// The provider's sessions no longer revalidate: this one stops too.
		m.advance(ctx, l, time.Time{}, now)
		return nil
	}
	interval := p.cfg.Revalidate.Interval.D()
	// checked reports whether rv was checked meanwhile: a Next further away than an interval
	// (and the time a check takes: requests that began before it finished see it) was written
	// by a clock well ahead of ours, and is due now.
	checked := func(rv *revalidation) bool {
		return rv.Next.After(now) && !rv.Next.After(now.Add(interval+revalidationLease))
	}
	if checked(rv) {
		// Another session of the family, or another replica, checked it meanwhile.
		m.advance(ctx, l, rv.Next, now)
		return nil
	}
	rp := m.current(p)
	if rp == nil {
		return m.unreachable(l, now, p, rv, "provider not discovered")
	}
	holder := newSecret()
	switch ok, err := m.revals.LeaseRevalidation(ctx, family, holder, revalidationLease); {
	case err != nil:
		return outage("lease revalidation", err)
	case !ok:
		// Being checked by another request, or a failed attempt's lease still running.
		if withinGrace(p, rv, now) {
			return nil // within the grace: go on meanwhile
		}
		// Past it (the session comes back after a long idle time): wait for the check in
		// flight rather than refuse a healthy provider's session, unless an attempt failed.
		if !rv.Failed.Before(rv.Next) {
			return m.unreachable(l, now, p, rv, "an attempt since it was due failed")
		}
		if m.awaitCheck(ctx, l, family, checked) {
			m.advance(ctx, l, now.Add(interval), now)
			return nil
		}
		return m.unreachable(l, now, p, rv, "checked by another request, which did not finish")
	}
	// From here the work must finish even if the browser goes away: the provider may rotate
	// the refresh token, and a new one that is not stored would end the family at the next
	// check.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), revalidationLease-5*time.Second)
	defer cancel()
	// Read again under the lease: a check that finished between the first read and the lease
	// has spent the token read first.
	if again, err := m.loadRevalidation(bg, l, family); err != nil || again == nil {
		return err
	} else if rv = again; checked(rv) {
		if b, err := json.Marshal(rv); err == nil {
			_ = m.revals.FinishRevalidation(bg, family, holder, b, true)
		}
		m.advance(ctx, l, rv.Next, now)
		return nil
	}
	key, err := l.familyKey()
	if err != nil {
		return m.endByRevalidation(bg, l, endedRevalidation, "family key does not open: "+err.Error())
	}
	rt, err := unseal(key, rv.Refresh, family)
	if err != nil {
		return m.endByRevalidation(bg, l, endedRevalidation, "refresh token does not open")
	}
	cctx, ccancel := context.WithTimeout(p.ctx(bg), providerCallLimit)
	defer ccancel()
	tok, err := rp.oauth.TokenSource(cctx, &oauth2.Token{RefreshToken: string(rt)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			// RFC 6749 5.2: the grant is invalid, expired or revoked: the provider no longer
			// honours this sign-in (the person was disabled, deleted, or signed out there).
			return m.endByRevalidation(bg, l, endedRefreshRefused, "refresh refused: invalid_grant")
		}
		// Anything else (no answer, a 5xx, temporarily_unavailable, a client the provider no
		// longer accepts) is not a verdict on the person: the grace applies, and the lease is
		// kept to space the next attempt.
		attrs := []any{slog.String("provider", p.cfg.Name), slog.String("session", logID(l.h))}
		if re != nil {
			attrs = append(attrs, slog.Int("status", re.Response.StatusCode), slog.String("idp_error", truncate(re.ErrorCode, 64)))
		} else {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		m.log.Warn("could not revalidate a session: the provider did not answer the refresh", attrs...)
		rv.Failed = now
		if b, err := json.Marshal(rv); err == nil {
			_ = m.revals.FinishRevalidation(bg, family, holder, b, false)
		}
		return m.unreachable(l, now, p, rv, "token endpoint unreachable")
	}
	why, err := m.recheck(cctx, rp, l, rv, tok)
	switch {
	case err != nil:
		// The refresh token was spent: keep the new one, keep the lease to space the next
		// attempt, and do not call the sign-in checked.
		m.log.Warn("could not revalidate a session: its answer could not be checked", slog.String("provider", p.cfg.Name),
			slog.String("session", logID(l.h)), slog.String("error", err.Error()))
		rv.Failed = now
		m.storeRevalidation(bg, l, family, holder, rv, key, tok, false)
		return m.unreachable(l, now, p, rv, "answer could not be checked")
	case why != "":
		return m.endByRevalidation(bg, l, endedClaimsChanged, why)
	}
	rv.Next, rv.Checked, rv.Failed = now.Add(interval), now, time.Time{}
	if !m.storeRevalidation(bg, l, family, holder, rv, key, tok, true) {
		return outage("finish revalidation", store.ErrUnavailable)
	}
	m.log.Debug("session revalidated", slog.String("provider", p.cfg.Name), slog.String("session", logID(l.h)))
	m.advance(bg, l, rv.Next, now)
	return nil
}

// awaitCheck waits, at most as long as one check may take, for the check another request
// holds the lease for, reading the family's record; it reports whether it succeeded.
func (m *Manager) awaitCheck(ctx context.Context, l *loaded, family string, checked func(*revalidation) bool) bool {
	deadline := time.Now().Add(providerCallLimit + 2*time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
		b, err := m.revals.LoadRevalidation(ctx, family)
		if err != nil {
			return false
		}
		var rv revalidation
		if json.Unmarshal(b, &rv) != nil {
			return false
		}
		if checked(&rv) {
			return true
		}
		if !rv.Failed.IsZero() && !rv.Failed.Before(rv.Next) {
			return false // the holder's attempt failed
		}
	}
	return false
}

// loadRevalidation reads family's record. A record that is gone or unreadable ends the
// family (nil, errNoSession): it cannot check back any more.
func (m *Manager) loadRevalidation(ctx context.Context, l *loaded, family string) (*revalidation, error) {
	b, err := m.revals.LoadRevalidation(ctx, family)
	if errors.Is(err, store.ErrNotFound) {
		return nil, m.endByRevalidation(ctx, l, endedRevalidation, "the sign-in's revalidation record is gone")
	}
	if err != nil {
		return nil, outage("load revalidation", err)
	}
	rv := new(revalidation)
	if err := json.Unmarshal(b, rv); err != nil {
		return nil, m.endByRevalidation(ctx, l, endedRevalidation, "unreadable revalidation record")
	}
	return rv, nil
}

// storeRevalidation writes rv with tok's refresh token (or the one it had, when the provider
// did not rotate it), releasing the lease when release is set; it reports whether that was
// written.
func (m *Manager) storeRevalidation(ctx context.Context, l *loaded, family, holder string, rv *revalidation, key []byte, tok *oauth2.Token, release bool) bool {
	if tok.RefreshToken != "" {
		rv.Refresh = seal(key, []byte(tok.RefreshToken), family)
	}
	b, err := json.Marshal(rv)
	if err == nil {
		err = m.revals.FinishRevalidation(ctx, family, holder, b, release)
	}
	if err != nil {
		// The token redeemed is spent; the next check will be refused and end the family,
		// which fails closed.
		m.log.Error("could not store a revalidated refresh token", slog.String("session", logID(l.h)), slog.String("error", err.Error()))
		return false
	}
	return true
}

// advance moves l's own due time to next, so its later requests read nothing until then. The
// record is read again first, so a change made meanwhile (elevations dropped by a signal, an
// organisation switch) is kept. Best effort: a session that keeps the old time only reads the
// family's record again.
func (m *Manager) advance(ctx context.Context, l *loaded, next, now time.Time) {
	b, err := m.st.LoadSession(ctx, l.h)
	if err != nil {
		return // ended meanwhile, or storage unavailable: nothing to move
	}
	rec := new(record)
	if err := json.Unmarshal(b, rec); err != nil || rec.User != l.rec.User {
		return
	}
	rec.RevalidateAt = next
	if b, err = json.Marshal(rec); err == nil {
		err = m.st.UpdateSession(ctx, l.h, b, m.ttl(rec, now))
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		m.log.Warn("could not record a session's revalidation", slog.String("session", logID(l.h)), slog.String("error", err.Error()))
	}
}

// unreachable is the answer while l's sign-in could not be checked: the request goes on
// while the provider last vouched for it within the interval and grace, and is refused 503
// idp_unavailable past that.
func (m *Manager) unreachable(l *loaded, now time.Time, p *idp, rv *revalidation, cause string) error {
	if withinGrace(p, rv, now) {
		return nil
	}
	return warning(reason.IdPUnavailable, "session could not be revalidated within its grace", cause,
		slog.String("provider", p.cfg.Name), slog.String("session", logID(l.h)))
}

// withinGrace reports whether p last vouched for rv's sign-in within its interval and grace.
func withinGrace(p *idp, rv *revalidation, now time.Time) bool {
	r := p.cfg.Revalidate
	return now.Before(rv.Checked.Add(r.Interval.D() + r.GracePeriod()))
}

// recheck verifies what the refresh returned against what the sign-in said (OIDC Core 12.2):
// the new ID token, when there is one, and userinfo when configured. why is not empty when
// the provider now says something else about the person; err when the answer could not be
// checked (its keys or userinfo unreachable, a token that does not verify), which is no
// verdict on the person.
func (m *Manager) recheck(ctx context.Context, rp *relyingParty, l *loaded, rv *revalidation, tok *oauth2.Token) (why string, err error) {
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		// Signature, iss, aud and exp (go-oidc); no nonce on a refresh.
		idt, err := rp.verifier.Verify(ctx, raw)
		if err != nil {
			return "", fmt.Errorf("refreshed id token: %w", err)
		}
		var c map[string]json.RawMessage
		if err := idt.Claims(&c); err != nil {
			return "", fmt.Errorf("refreshed id token claims: %w", err)
		}
		if why := m.changedClaims(rp, l, rv, idt.Subject, c); why != "" {
			return "refreshed id token: " + why, nil
		}
	}
	if u := rp.p.cfg.Revalidate.Userinfo; u != nil && !*u {
		return "", nil
	}
	endpoint := rp.provider.UserInfoEndpoint()
	if endpoint == "" {
		return "", nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return "", err
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	resp, err := rp.p.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		// The access token the provider has just issued is refused: so is the person.
		return "userinfo refused the refreshed access token: " + strconv.Itoa(resp.StatusCode), nil
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("userinfo answered %d", resp.StatusCode)
	}
	var c map[string]json.RawMessage
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "application/jwt" {
		// A signed userinfo response: go-oidc asks again and verifies its signature.
		ui, err := rp.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			return "", err
		}
		if err := ui.Claims(&c); err != nil {
			return "", fmt.Errorf("userinfo claims: %w", err)
		}
	} else if err := json.Unmarshal(body, &c); err != nil {
		return "", errors.New("userinfo is not a JSON object")
	}
	var sub string
	if err := optString(c, "sub", &sub); err != nil {
		return "", err
	}
	return m.changedClaims(rp, nil, rv, sub, c), nil
}

// changedClaims compares what the provider says now (sub and the claims c) with the sign-in: the
// same subject, for this client (azp, in an ID token: l is set), the person's subject claim
// unchanged, and the address, when it says one, the same and still verified. "" when nothing
// changed.
func (m *Manager) changedClaims(rp *relyingParty, l *loaded, rv *revalidation, sub string, c map[string]json.RawMessage) string {
	if sub != rv.Subject {
		return "another subject"
	}
	if l != nil {
		var azp string
		if optString(c, "azp", &azp) != nil || (azp != "" && azp != rp.p.cfg.ClientID) {
			return "issued to another client (azp)"
		}
		if claim := rp.p.cfg.SubjectClaim; claim != "" && claim != "sub" {
			var subject string
			if optString(c, claim, &subject) != nil || (subject != "" && subject != l.rec.Subject) {
				return "another " + claim
			}
		}
	}
	var email string
	if v, ok := c["email"]; ok && !isNull(v) {
		if json.Unmarshal(v, &email) != nil || !strings.EqualFold(email, rv.Email) {
			return "another address"
		}
	}
	if v, ok := c["email_verified"]; ok && !isNull(v) && rv.EmailVerified {
		var b bool
		var s string
		switch {
		case json.Unmarshal(v, &b) == nil && !b, json.Unmarshal(v, &s) == nil && s == "false":
			return "address no longer verified"
		}
	}
	return ""
}

// endByRevalidation ends every session of l's sign-in (its family) and its revalidation
// record, audits it as why, and returns errNoSession: the request is treated as having none.
func (m *Manager) endByRevalidation(ctx context.Context, l *loaded, why, cause string) error {
	family := familyOf(l.rec, l.h)
	n, err := m.st.EndFamily(ctx, family, l.rec.User, l.rec.Issuer, l.rec.SID)
	if err != nil {
		return outage("end session family", err)
	}
	ended, err := m.st.EndSession(ctx, l.h, l.rec.User, l.rec.Issuer, l.rec.SID)
	if err != nil {
		return outage("end session", err)
	}
	if ended {
		n++ // a family set names the first session only once a handoff joined it
	}
	if err := m.revals.EndRevalidation(ctx, family); err != nil {
		m.log.Warn("could not delete a revalidation record", slog.String("session", logID(l.h)), slog.String("error", err.Error()))
	}
	m.log.Info("session ended by its provider", slog.String("user", l.rec.User), slog.String("session", logID(l.h)),
		slog.String("why", why), slog.String("cause", cause), slog.Int("sessions_ended", n))
	m.recordEvent(ctx, audit.Event{Type: audit.SessionEnded, User: l.rec.User, Reason: why,
		Detail: map[string]string{"session": logID(l.h), "sessions_ended": strconv.Itoa(n), "cause": cause}})
	return errNoSession
}
