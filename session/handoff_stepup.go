package session

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/audit"
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
func (m *Manager) requestStepUpHandoff(w http.ResponseWriter, r *http.Request, l *loaded, c *Challenge, returnTo string) {
	req := &handoffRequest{Host: strings.ToLower(r.Host), ReturnTo: returnTo, PromptLogin: c.PromptLogin,
		StepUp: &stepUpState{Session: l.h, Route: c.Route, Org: c.Org, ACR: c.ACR, AMR: c.AMR,
			MaxAge: c.MaxAge, Elevation: c.Elevation}}
	m.log.Info("step-up started through the sign-in host", slog.String("user", l.rec.User), slog.String("session", logID(l.h)),
		slog.String("route", c.Route), slog.String("org", c.Org), slog.String("host", r.Host))
	m.sendHandoff(w, r, req, handoffStepUpPath, http.StatusSeeOther)
}

// serveHandoffStepUp is step 2, on the sign-in host.
func (m *Manager) serveHandoffStepUp(w http.ResponseWriter, r *http.Request) {
	t, ok := m.handoffToken(w, r, "step-up handoff")
	if !ok {
		return
	}
	rp := m.current()
	if rp == nil {
		refuse(w, r, http.StatusServiceUnavailable, ReasonIdPUnavailable)
		return
	}
	req, ok := m.takeRequest(w, r, t, true)
	if !ok {
		return
	}
	target, ok := m.handoffSession(w, r, req.StepUp)
	if !ok {
		return
	}
	su := req.StepUp
	extra := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", strconv.FormatInt(int64(su.MaxAge/time.Second), 10))}
	if len(su.ACR) > 0 {
		extra = append(extra, oauth2.SetAuthURLParam("acr_values", strings.Join(su.ACR, " ")))
	}
	if target.Email != "" {
		extra = append(extra, oauth2.SetAuthURLParam("login_hint", target.Email))
	}
	if req.PromptLogin {
		extra = append(extra, oauth2.SetAuthURLParam("prompt", "login"))
	}
	m.beginAuth(w, r, rp, loginRecord{ReturnTo: req.ReturnTo, Started: m.now(), Purpose: purposeHandoffStepUp,
		StepUp: su, Handoff: req}, extra, http.StatusFound)
}

// handoffSession loads the organisation host's session that su elevates; it must be live. It
// writes the refusal.
func (m *Manager) handoffSession(w http.ResponseWriter, r *http.Request, su *stepUpState) (*record, bool) {
	b, err := m.st.LoadSession(r.Context(), su.Session)
	switch {
	case errors.Is(err, store.ErrNoSession):
		m.refuseHandoff(w, r, http.StatusUnauthorized, ReasonHandoffEnded, "organisation host's session ended before its step-up", "")
		return nil, false
	case err != nil:
		m.log.Error("session store unavailable", slog.String("op", "load step-up handoff session"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return nil, false
	}
	rec := new(record)
	if err := json.Unmarshal(b, rec); err != nil || !m.live(rec, m.now()) {
		m.refuseHandoff(w, r, http.StatusUnauthorized, ReasonHandoffEnded, "organisation host's session unreadable or expired", rec.User)
		return nil, false
	}
	return rec, true
}

// handoffStepUpCallback is step 3, on the sign-in host: serveCallback calls it for a login
// record of purposeHandoffStepUp, after checking the login cookie.
func (m *Manager) handoffStepUpCallback(w http.ResponseWriter, r *http.Request, rp *relyingParty, lr *loginRecord) {
	su, req := lr.StepUp, lr.Handoff
	if su == nil || su.MaxAge <= 0 || req == nil || !validSecret(su.Session) {
		m.log.Error("step-up handoff state without requirements")
		refuse(w, r, http.StatusBadRequest, ReasonBadState)
		return
	}
	ctx := r.Context()
	id, _, reason := m.redeem(w, r, rp, lr)
	if reason != "" {
		m.auditStepUp(ctx, w, audit.StepUpRefused, "", su, reason, map[string]string{"host": req.Host})
		return
	}
	target, ok := m.handoffSession(w, r, su)
	if !ok {
		m.auditStepUp(ctx, w, audit.StepUpRefused, "", su, ReasonHandoffEnded, map[string]string{"host": req.Host})
		return
	}
	now := m.now()
	el, reason, cause := checkStepUp(su, lr.Started, id, target, now)
	if reason != "" {
		// The way back is the page on the organisation host.
		m.stepUpRefusedPage(ctx, w, r, target.User, su, reason, cause+" (host "+req.Host+")", id, "https://"+req.Host+lr.ReturnTo)
		return
	}
	expire(w, LoginCookieName)
	m.postCode(w, r, &handoffCode{Session: su.Session, Host: req.Host, ReturnTo: req.ReturnTo, Browser: req.Browser,
		Issued: now, StepUp: su, Elevation: &el}, target.User)
}

// awaitSession is step 4, on H: serveHandoff calls it for a step-up's code, spent and checked
// for this host and this browser.
func (m *Manager) awaitSession(w http.ResponseWriter, r *http.Request, hc *handoffCode) {
	secret := newSecret()
	cp := *hc
	cp.Finish, cp.Issued = true, m.now()
	b, err := json.Marshal(&cp)
	if err == nil {
		err = m.st.SaveHandoffCode(r.Context(), handle(secret), b, handoffCodeTTL)
	}
	if err != nil {
		m.log.Error("session store unavailable", slog.String("op", "save waiting elevation"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: ElevateCookieName, Value: secret, Path: "/", MaxAge: int(handoffCodeTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.SetCookie(w, handoffCookie("", -1))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, handoffFinishPath, http.StatusSeeOther)
}

// serveHandoffFinish is step 5, on H.
func (m *Manager) serveHandoffFinish(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		refuse(w, r, http.StatusMethodNotAllowed, ReasonMethod)
		return
	}
	ctx := r.Context()
	secret, err := sessionCookie(r, ElevateCookieName)
	http.SetCookie(w, &http.Cookie{Name: ElevateCookieName, Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode})
	w.Header().Set("Cache-Control", "no-store")
	if err != nil || !validSecret(secret) {
		m.refuseHandoff(w, r, http.StatusBadRequest, ReasonHandoffInvalid, "no waiting elevation cookie", "")
		return
	}
	hc, ok := m.takeCode(w, r, secret, "waiting elevation")
	if !ok {
		return
	}
	if !hc.Finish || hc.StepUp == nil || hc.Elevation == nil {
		m.refuseHandoff(w, r, http.StatusBadRequest, ReasonHandoffInvalid, "not a waiting elevation", "")
		return
	}
	if !m.codeFor(w, r, hc, "waiting elevation") {
		return
	}
	now := m.now()
	su := hc.StepUp
	l, err := m.load(ctx, r, false)
	switch {
	case errors.Is(err, errAmbiguousCookie), errors.Is(err, errNoSession):
		m.stepUpRefused(ctx, w, r, "", su, ReasonStepUpSession, "no session presented to take the handed-over elevation")
		return
	case err != nil:
		m.refuseLoad(w, r, err, false)
		return
	}
	if subtle.ConstantTimeCompare([]byte(l.h), []byte(hc.Session)) != 1 {
		m.stepUpRefused(ctx, w, r, l.rec.User, su, ReasonStepUpSession, "handed-over elevation belongs to another session")
		return
	}
	if !now.Before(hc.Elevation.Until) {
		m.stepUpRefused(ctx, w, r, l.rec.User, su, ReasonStepUpStale, "handed-over elevation is already over")
		return
	}
	rd, ok := safeRedirect(hc.ReturnTo)
	if !ok {
		rd = "/"
	}
	m.grantElevation(ctx, w, r, l, su, *hc.Elevation, rd)
}
