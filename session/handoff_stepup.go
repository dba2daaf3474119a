package session

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Step-up on organisation hosts, through the sign-in host.
//
// The provider's callback arrives on the sign-in host C only, and H's session cookie is
// host-only, so a step-up on an organisation host H runs at C and its result is handed back to
// H like a sign-in (handoff.go):
//
//  1. H, POST /.portcullis/step-up (the interstitial's form with its ticket, read against H's
//     session as anywhere): a step-up handoff request {H, H's session handle, the challenge,
//     the return path, hash(N)} is stored under the hash of a random token T; the nonce N is
//     set or reused in the __Host-portcullis-handoff cookie; the browser goes to
//     C/.portcullis/handoff/step-up?t=T. H's session handle is never in a URL.
//  2. C, GET /.portcullis/handoff/step-up?t=T: T is spent; H's session must be live; the
//     authorisation request starts with acr_values, max_age, login_hint (and prompt=login
//     when the route asks), bound to this browser by the login cookie on C.
//  3. C, the callback: the ID token is checked as any step-up's (signature, iss, aud, nonce;
//     acr any of, amr all of, auth_time after the step-up began and within max_age) against
//     H's session, reloaded by its handle and still live: the same person (iss and sub). A
//     one-time code K {H's session, H, the return path, hash(N), the elevation} is posted to
//     H in the sign-in handoff's form.
//  4. H, POST /.portcullis/handoff: K is spent; it must be for this host and this browser
//     (N). H's session cookie is SameSite=Lax, so a browser does not send it with this post
//     when C is another site; the elevation therefore waits server-side (handoffCodeTTL)
//     under the hash of a fresh secret set in the __Host-portcullis-elevate cookie, and the
//     browser goes to GET /.portcullis/handoff/finish, a top-level navigation that carries
//     the session cookie.
//  5. H, GET /.portcullis/handoff/finish: the waiting elevation is spent; the browser's
//     session must be the one K named (constant-time); the elevation is added and the
//     session id rotated exactly as a step-up on C (grantElevation), audited, and the
//     browser returns to the page.

// ElevateCookieName carries, for one redirect, the secret under which an elevation handed to
// an organisation host waits for the browser's session cookie.
const ElevateCookieName = "__Host-portcullis-elevate"

const (
	handoffStepUpPath = "/.portcullis/handoff/step-up"
	handoffFinishPath = "/.portcullis/handoff/finish"
	// purposeHandoffStepUp marks a login record on C as a step-up of a session on H.
	purposeHandoffStepUp = "handoff-step-up"
)

// requestStepUpHandoff is step 1, on H: serveStepUp calls it with H's session l and the
// ticket's challenge c once both are checked.
func (m *Manager) requestStepUpHandoff(w http.ResponseWriter, r *http.Request, l *loaded, c *Challenge, returnTo string) error {
	req := &handoffRequest{Host: strings.ToLower(r.Host), ReturnTo: returnTo, PromptLogin: c.PromptLogin,
		StepUp: &stepUpState{Session: l.h, Route: c.Route, Demand: c.Demand}}
	m.log.Info("step-up started through the sign-in host", slog.String("user", l.rec.User), slog.String("session", logID(l.h)),
		slog.String("route", c.Route), slog.String("org", c.Org), slog.String("host", r.Host))
	return m.sendHandoff(w, r, req, handoffStepUpPath, http.StatusSeeOther)
}

// serveHandoffStepUp is step 2, on the sign-in host.
func (m *Manager) serveHandoffStepUp(w http.ResponseWriter, r *http.Request) error {
	t, err := m.handoffToken(w, r, "step-up handoff")
	if err != nil {
		return err
	}
	req, err := m.takeRequest(w, r, t, true)
	if err != nil {
		return err
	}
	target, err := m.handoffSession(w, r, req.StepUp)
	if err != nil {
		return err
	}
	// The step-up is at the provider the session's person signed in with.
	rp := m.current(m.providerOf(target.Issuer))
	if rp == nil {
		return quietly(reason.IdPUnavailable)
	}
	su := req.StepUp
	return m.beginAuth(w, r, rp, loginRecord{ReturnTo: req.ReturnTo, Started: m.now(), Purpose: purposeHandoffStepUp,
		StepUp: su, Handoff: req}, stepUpParams(rp.p.demand(su.Demand), target.Email, req.PromptLogin), http.StatusFound)
}

// handoffSession loads the organisation host's session that su elevates; it must be live.
func (m *Manager) handoffSession(w http.ResponseWriter, r *http.Request, su *stepUpState) (*record, error) {
	b, err := m.st.LoadSession(r.Context(), su.Session)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, m.handoffRefused(w, r, reason.HandoffSessionEnded, "organisation host's session ended before its step-up", "")
	case err != nil:
		return nil, outage("load step-up handoff session", err)
	}
	rec := new(record)
	if err := json.Unmarshal(b, rec); err != nil || !m.live(rec, m.now()) {
		return nil, m.handoffRefused(w, r, reason.HandoffSessionEnded, "organisation host's session unreadable or expired", rec.User)
	}
	return rec, nil
}

// handoffStepUpCallback is step 3, on the sign-in host: serveCallback calls it for a login
// record of purposeHandoffStepUp, after checking the login cookie.
func (m *Manager) handoffStepUpCallback(w http.ResponseWriter, r *http.Request, rp *relyingParty, lr *loginRecord) error {
	su, req := lr.StepUp, lr.Handoff
	if su == nil || !su.Valid() || req == nil || !validSecret(su.Session) {
		return problem.Outage(reason.InvalidState, "step-up handoff state without requirements", "", nil)
	}
	ctx := r.Context()
	id, _, err := m.redeem(r, rp, lr)
	if err != nil {
		m.auditStepUp(ctx, w, audit.StepUpRefused, "", su, codeOf(err), map[string]string{"host": req.Host})
		return err
	}
	target, err := m.handoffSession(w, r, su)
	if err != nil {
		m.auditStepUp(ctx, w, audit.StepUpRefused, "", su, reason.HandoffSessionEnded, map[string]string{"host": req.Host})
		return err
	}
	now := m.now()
	el, code, cause := rp.p.grant(su.Demand, lr.Started, target.Issuer, target.Subject, id.authentication(), now)
	if code != "" {
		// The way back is the page on the organisation host.
		return m.stepUpRefusedPage(ctx, w, target.User, su, code, cause+" (host "+req.Host+")", id, "https://"+req.Host+lr.ReturnTo)
	}
	expire(w, LoginCookieName)
	return m.postCode(w, r, &handoffCode{Session: su.Session, Host: req.Host, ReturnTo: req.ReturnTo, Browser: req.Browser,
		Issued: now, StepUp: su, Elevation: &el}, target.User, nil)
}

// awaitSession is step 4, on H: serveHandoff calls it for a step-up's code, spent and checked
// for this host and this browser.
func (m *Manager) awaitSession(w http.ResponseWriter, r *http.Request, hc *handoffCode) error {
	secret := newSecret()
	cp := *hc
	cp.Finish, cp.Issued = true, m.now()
	b, err := json.Marshal(&cp)
	if err == nil {
		err = m.handoffs.SaveHandoffCode(r.Context(), handle(secret), b, handoffCodeTTL)
	}
	if err != nil {
		return outage("save waiting elevation", err)
	}
	http.SetCookie(w, &http.Cookie{Name: ElevateCookieName, Value: secret, Path: "/", MaxAge: int(handoffCodeTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.SetCookie(w, handoffCookie("", -1))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, handoffFinishPath, http.StatusSeeOther)
	return nil
}

// serveHandoffFinish is step 5, on H.
func (m *Manager) serveHandoffFinish(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, "GET")
	}
	ctx := r.Context()
	secret, err := sessionCookie(r, ElevateCookieName)
	http.SetCookie(w, &http.Cookie{Name: ElevateCookieName, Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	if err != nil || !validSecret(secret) {
		return m.handoffRefused(w, r, reason.HandoffInvalid, "no waiting elevation cookie", "")
	}
	hc, err := m.takeCode(w, r, secret, "waiting elevation")
	if err != nil {
		return err
	}
	if !hc.Finish || hc.StepUp == nil || hc.Elevation == nil {
		return m.handoffRefused(w, r, reason.HandoffInvalid, "not a waiting elevation", "")
	}
	if err := m.codeFor(w, r, hc, "waiting elevation"); err != nil {
		return err
	}
	now := m.now()
	su := hc.StepUp
	l, err := m.load(ctx, r, false)
	switch {
	case errors.Is(err, errAmbiguousCookie), errors.Is(err, errNoSession):
		return m.stepUpRefused(ctx, w, "", su, reason.StepUpSession, "no session presented to take the handed-over elevation")
	case err != nil:
		return m.loadError(r, err, false)
	}
	if subtle.ConstantTimeCompare([]byte(l.h), []byte(hc.Session)) != 1 {
		return m.stepUpRefused(ctx, w, l.rec.User, su, reason.StepUpSession, "handed-over elevation belongs to another session")
	}
	if !now.Before(hc.Elevation.Until) {
		return m.stepUpRefused(ctx, w, l.rec.User, su, reason.StepUpStale, "handed-over elevation is already over")
	}
	rd, ok := safeRedirect(hc.ReturnTo)
	if !ok {
		rd = "/"
	}
	return m.grantElevation(ctx, w, r, l, su, *hc.Elevation, rd)
}
