package session

import (
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/store"
)

// Step-up (issue 5). A route with step_up needs an elevation: a recent strong authentication
// recorded in the session, for the organisation the route acts for. Lacking one, the proxy
// shows an interstitial whose form posts a Ticket (the route's demand, signed with the
// session's key) to /.portcullis/step-up, which starts an authorisation request with
// acr_values, max_age and login_hint. The callback checks the ID token itself (the request
// parameters may have been stripped on the way, SU-03), records the elevation, rotates the
// session id and returns to the page. On an organisation host, whose callback would arrive on
// the sign-in host, the same checks run there and the elevation is handed back
// (handoff_stepup.go).

// Reason codes of step-up. Stable; they appear in pages, JSON, logs and audit events.
const (
	ReasonStepUpRequired  = "step_up_required"
	ReasonStepUpACR       = "step_up_acr_insufficient"
	ReasonStepUpAMR       = "step_up_amr_missing"
	ReasonStepUpStale     = "step_up_stale_auth"
	ReasonStepUpSession   = "step_up_session_mismatch"
	ReasonStepUpWrongUser = "step_up_wrong_user"
	ReasonStepUpTicket    = "step_up_invalid_request"
	ReasonStepUpHost      = "step_up_host_unsupported"
)

func init() {
	maps.Copy(messages, map[string]string{
		ReasonStepUpRequired:  "This page needs a recent, stronger sign-in.",
		ReasonStepUpACR:       "The identity provider did not confirm the stronger sign-in this page needs (for example a second factor). Access was not raised.",
		ReasonStepUpAMR:       "The identity provider did not confirm the sign-in methods this page needs. Access was not raised.",
		ReasonStepUpStale:     "The identity provider did not confirm a fresh sign-in: the authentication it reported is older than this request. Access was not raised.",
		ReasonStepUpSession:   "This confirmation belongs to another session. Start again from the page you wanted.",
		ReasonStepUpWrongUser: "You confirmed as a different person than the one signed in here. Access was not raised.",
		ReasonStepUpTicket:    "This confirmation request is not valid any more. Go back to the page and try again.",
		ReasonStepUpHost:      "A stronger sign-in cannot be done from this address yet. Ask your administrator for the address to use for this page.",
	})
}

// purposeStepUp marks a login record as a step-up of an existing session.
const purposeStepUp = "step-up"

// ticketLifetime bounds how long an interstitial's button works.
const ticketLifetime = 10 * time.Minute

// maxElevations bounds the elevations one session keeps (one per organisation and level).
const maxElevations = 16

// stepUpState is what a started step-up records server-side beside state, nonce and PKCE.
type stepUpState struct {
	// Session is the handle of the session the step-up belongs to (SU-05).
	Session   string        `json:"session"`
	Route     string        `json:"route"`
	Org       string        `json:"org"`
	ACR       []string      `json:"acr,omitempty"`
	AMR       []string      `json:"amr,omitempty"`
	MaxAge    time.Duration `json:"max_age"`
	Elevation time.Duration `json:"elevation"`
}

// Challenge is a route's demand for a step-up, as the proxy states it for one request.
type Challenge struct {
	Route       string        `json:"route"`
	Org         string        `json:"org"`
	ACR         []string      `json:"acr,omitempty"`
	AMR         []string      `json:"amr,omitempty"`
	MaxAge      time.Duration `json:"max_age"`
	Elevation   time.Duration `json:"elevation"`
	PromptLogin bool          `json:"prompt_login,omitempty"`
	// ReturnTo is the same-origin path to come back to.
	ReturnTo string `json:"rd"`
	// Issued is set by StepUpTicket.
	Issued time.Time `json:"iat"`
}

// NewChallenge is the demand of route (which must have step_up) for organisation org ("" for a
// route that is not organisation-scoped), returning to returnTo.
func NewChallenge(route *config.Route, org, returnTo string) Challenge {
	su := route.StepUp
	elev := su.Elevation.D()
	if elev <= 0 || elev > su.MaxAge.D() {
		elev = su.MaxAge.D()
	}
	return Challenge{Route: route.Name, Org: org, ACR: slices.Clone(su.ACR), AMR: slices.Clone(su.AMR),
		MaxAge: su.MaxAge.D(), Elevation: elev, PromptLogin: su.PromptLogin, ReturnTo: returnTo}
}

// Satisfies reports whether e meets su for organisation org at now: unexpired, for this
// organisation, an acceptable acr (when su lists any), every required amr, and an underlying
// authentication no older than su.MaxAge.
func (e *Elevation) Satisfies(org string, su *config.StepUp, now time.Time) bool {
	if su == nil {
		return true
	}
	if e.Org != org || !now.Before(e.Until) || e.AuthTime.IsZero() || now.Sub(e.AuthTime) > su.MaxAge.D() {
		return false
	}
	return acrOK(su.ACR, e.ACR) && amrOK(su.AMR, e.AMR)
}

// Elevated reports whether the session holds an elevation meeting su for org at now. Only the
// server-side record counts: nothing the client sends is consulted.
func (s *Session) Elevated(org string, su *config.StepUp, now time.Time) bool {
	for i := range s.Elevations {
		if s.Elevations[i].Satisfies(org, su, now) {
			return true
		}
	}
	return false
}

// liveElevations are those of els that hold at now.
func liveElevations(els []Elevation, now time.Time) []Elevation {
	var out []Elevation
	for _, e := range els {
		if now.Before(e.Until) {
			out = append(out, e)
		}
	}
	return out
}

func acrOK(want []string, got string) bool { return len(want) == 0 || slices.Contains(want, got) }

func amrOK(want, got []string) bool {
	for _, m := range want {
		if !slices.Contains(got, m) {
			return false
		}
	}
	return true
}

// StepUpTicket returns the value the interstitial's form posts to /.portcullis/step-up for c:
// the challenge signed with the key of r's session (admitted by Admit), so neither the
// requirements, the organisation nor the return path can be changed, and another session
// cannot use it. "" when r carries no session.
func (m *Manager) StepUpTicket(r *http.Request, c Challenge) string {
	l, ok := admitted(r)
	if !ok {
		return ""
	}
	c.Issued = m.now()
	b, err := json.Marshal(c)
	if err != nil {
		return ""
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + csrfFor(l, purposeStepUp+"\x00"+payload)
}

// readTicket checks a ticket against l's session and returns its challenge.
func (m *Manager) readTicket(l *loaded, t string) (*Challenge, bool) {
	payload, mac, ok := strings.Cut(t, ".")
	if !ok || len(t) > 8<<10 || !hmac.Equal([]byte(mac), []byte(csrfFor(l, purposeStepUp+"\x00"+payload))) {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, false
	}
	var c Challenge
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, false
	}
	now := m.now()
	if c.Issued.After(now.Add(time.Minute)) || now.Sub(c.Issued) > ticketLifetime ||
		c.MaxAge <= 0 || c.Elevation <= 0 || c.Elevation > c.MaxAge || (len(c.ACR) == 0 && len(c.AMR) == 0) {
		return nil, false
	}
	return &c, true
}

// serveStepUp starts a step-up for the session of r: POST from the interstitial, with its
// ticket. It records the purpose, the session, the organisation, the requirements and the start
// time with the state, and sends the browser to the provider.
func (m *Manager) serveStepUp(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		refuse(w, r, http.StatusMethodNotAllowed, ReasonMethod)
		return
	}
	if m.otherHost(r) && !m.handoffTarget(strings.ToLower(r.Host)) {
		// The step-up's callback arrives on the sign-in host, which hands the elevation over
		// only to hosts a route names (handoff_stepup.go).
		m.log.Warn("step-up refused", slog.String("reason", ReasonStepUpHost), slog.String("host", r.Host))
		refuse(w, r, http.StatusBadRequest, ReasonStepUpHost)
		return
	}
	if !m.sameOrigin(r) {
		m.log.Warn("step-up refused", slog.String("reason", ReasonCSRF), slog.String("cause", "cross-origin request"))
		refuse(w, r, http.StatusForbidden, ReasonCSRF)
		return
	}
	rp := m.current()
	if rp == nil {
		refuse(w, r, http.StatusServiceUnavailable, ReasonIdPUnavailable)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	l, err := m.load(r.Context(), r, false)
	if err != nil {
		m.refuseLoad(w, r, err, false)
		return
	}
	if err := r.ParseForm(); err != nil {
		refuse(w, r, http.StatusBadRequest, ReasonStepUpTicket)
		return
	}
	c, ok := m.readTicket(l, r.PostForm.Get("ticket"))
	if !ok {
		m.log.Warn("step-up refused", slog.String("reason", ReasonStepUpTicket), slog.String("session", logID(l.h)))
		refuse(w, r, http.StatusForbidden, ReasonStepUpTicket)
		return
	}
	returnTo := "/"
	if v, ok := safeRedirect(c.ReturnTo); ok {
		returnTo = v
	}
	if m.otherHost(r) {
		m.requestStepUpHandoff(w, r, l, c, returnTo)
		return
	}
	lr := loginRecord{ReturnTo: returnTo, Started: m.now(), Purpose: purposeStepUp, StepUp: &stepUpState{
		Session: l.h, Route: c.Route, Org: c.Org, ACR: c.ACR, AMR: c.AMR, MaxAge: c.MaxAge, Elevation: c.Elevation,
	}}
	extra := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", strconv.FormatInt(int64(c.MaxAge/time.Second), 10))}
	if len(c.ACR) > 0 {
		extra = append(extra, oauth2.SetAuthURLParam("acr_values", strings.Join(c.ACR, " ")))
	}
	if l.rec.Email != "" {
		extra = append(extra, oauth2.SetAuthURLParam("login_hint", l.rec.Email))
	}
	if c.PromptLogin {
		extra = append(extra, oauth2.SetAuthURLParam("prompt", "login"))
	}
	m.log.Info("step-up started", slog.String("user", l.rec.User), slog.String("session", logID(l.h)),
		slog.String("route", c.Route), slog.String("org", c.Org))
	m.beginAuth(w, r, rp, lr, extra, http.StatusSeeOther)
}

// stepUpCallback finishes a step-up: the state must belong to the session presenting it, the
// ID token must pass the sign-in checks and name the same person, and its acr, amr and
// auth_time must meet the requirements recorded when the step-up started. Then the elevation is
// added, the session id rotated, and the browser returned to the page. Refusals are pages with
// a reason, never a redirect back into the flow.
func (m *Manager) stepUpCallback(w http.ResponseWriter, r *http.Request, rp *relyingParty, lr *loginRecord) {
	su := lr.StepUp
	if su == nil || su.MaxAge <= 0 {
		m.log.Error("step-up state without requirements")
		refuse(w, r, http.StatusBadRequest, ReasonBadState)
		return
	}
	ctx := r.Context()
	l, err := m.load(ctx, r, false)
	switch {
	case errors.Is(err, errAmbiguousCookie), errors.Is(err, errNoSession):
		m.stepUpRefused(ctx, w, r, "", su, ReasonStepUpSession, "no session presented at the step-up callback")
		return
	case err != nil:
		m.refuseLoad(w, r, err, false)
		return
	}
	if subtle.ConstantTimeCompare([]byte(l.h), []byte(su.Session)) != 1 {
		m.stepUpRefused(ctx, w, r, l.rec.User, su, ReasonStepUpSession, "step-up state belongs to another session")
		return
	}
	// The session keeps the sign-in's ID token as its logout hint; this one is not stored.
	id, _, reason := m.redeem(w, r, rp, lr)
	if reason != "" {
		m.auditStepUp(ctx, w, audit.StepUpRefused, l.rec.User, su, reason, nil)
		return
	}
	now := m.now()
	el, reason, cause := checkStepUp(su, lr.Started, id, l.rec, now)
	if reason != "" {
		m.stepUpRefusedPage(ctx, w, r, l.rec.User, su, reason, cause, id, lr.ReturnTo)
		return
	}
	m.grantElevation(ctx, w, r, l, su, el, lr.ReturnTo)
}

// checkStepUp checks the ID token id of a step-up started at started, for the session rec,
// against the requirements su: the same person, an acceptable acr, every required amr, and an
// authentication after the step-up began and within max_age. It returns the elevation to
// grant, or the reason code and the cause of the refusal.
func checkStepUp(su *stepUpState, started time.Time, id *identity, rec *record, now time.Time) (Elevation, string, string) {
	switch {
	case id.issuer != rec.Issuer || id.subject != rec.Subject:
		return Elevation{}, ReasonStepUpWrongUser, "id token names another person than the session"
	case !acrOK(su.ACR, id.acr):
		return Elevation{}, ReasonStepUpACR, "acr " + strconv.Quote(id.acr) + " is not acceptable"
	case !amrOK(su.AMR, id.amr):
		return Elevation{}, ReasonStepUpAMR, "amr " + strconv.Quote(strings.Join(id.amr, " ")) + " lacks a required method"
	case id.authTime.IsZero():
		return Elevation{}, ReasonStepUpStale, "no auth_time"
	// auth_time has whole seconds: the second in which the step-up began is the earliest it
	// can say "after"; no allowance for skew beyond that.
	case id.authTime.Before(started.Truncate(time.Second)):
		return Elevation{}, ReasonStepUpStale, "auth_time is before the step-up began"
	case now.Sub(id.authTime) > su.MaxAge:
		return Elevation{}, ReasonStepUpStale, "auth_time is older than max_age"
	}
	until := min(id.authTime.Add(su.MaxAge).UnixNano(), now.Add(su.Elevation).UnixNano())
	el := Elevation{ACR: id.acr, AMR: slices.Clone(id.amr), Org: su.Org, AuthTime: id.authTime, GrantedAt: now,
		Until: time.Unix(0, until).UTC()}
	if !now.Before(el.Until) {
		return Elevation{}, ReasonStepUpStale, "elevation would already be over"
	}
	return el, "", ""
}

// grantElevation adds el to the session l, rotates its id, audits the grant and returns the
// browser to returnTo. It writes the refusal itself.
func (m *Manager) grantElevation(ctx context.Context, w http.ResponseWriter, r *http.Request, l *loaded, su *stepUpState, el Elevation, returnTo string) {
	now := m.now()
	// The record as it is now, so a change made meanwhile (an organisation switch in another
	// tab, which drops elevations) is kept rather than undone.
	// A copy: l.rec may be the session cache's, shared with concurrent requests.
	cp := *l.rec
	rec := &cp
	if b, err := m.st.LoadSession(ctx, l.h); err == nil {
		fresh := new(record)
		if json.Unmarshal(b, fresh) == nil && fresh.User == rec.User {
			rec = fresh
		}
	}
	l = &loaded{h: l.h, rec: rec}
	kept := append(liveElevations(rec.Elevations, now), el)
	if len(kept) > maxElevations {
		kept = kept[len(kept)-maxElevations:]
	}
	rec.Elevations, rec.LastSeen = kept, now
	secret, ok := m.rotate(ctx, w, r, l)
	if !ok {
		return
	}
	m.log.Info("step-up granted", slog.String("user", rec.User), slog.String("session", logID(handle(secret))),
		slog.String("route", su.Route), slog.String("org", su.Org), slog.String("acr", el.ACR),
		slog.Time("until", el.Until), slog.String("host", r.Host), slog.String("metric", "stepup_granted_total"))
	m.auditStepUp(ctx, w, audit.StepUpGranted, rec.User, su, "", map[string]string{
		"acr": el.ACR, "amr": strings.Join(el.AMR, " "), "until": el.Until.Format(time.RFC3339), "host": r.Host,
	})
	http.SetCookie(w, cookie(CookieName, secret, int(m.sc.AbsoluteTimeout.D()/time.Second)))
	expire(w, LoginCookieName)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, returnTo, http.StatusFound)
}

// rotate stores l.rec under a new id and deletes the old record (invariant 5: the id changes at
// step-up). A session revoked while this ran stays revoked: the new record is made first, then
// the old one must still exist, else the new one is deleted too. It writes the refusal itself.
func (m *Manager) rotate(ctx context.Context, w http.ResponseWriter, r *http.Request, l *loaded) (string, bool) {
	rec, now := l.rec, m.now()
	b, err := json.Marshal(rec)
	if err != nil {
		m.log.Error("encode session", slog.String("error", err.Error()))
		refuse(w, r, http.StatusInternalServerError, ReasonSignInFailed)
		return "", false
	}
	secret := newSecret()
	nh := handle(secret)
	ttl := m.ttl(rec, now)
	if ttl <= 0 {
		refuse(w, r, http.StatusUnauthorized, ReasonNoSession)
		return "", false
	}
	// The new id stays in the sign-in's family, so signing out on another host still ends it.
	if rec.Family == "" {
		rec.Family = l.h
		if b, err = json.Marshal(rec); err != nil {
			m.log.Error("encode session", slog.String("error", err.Error()))
			refuse(w, r, http.StatusInternalServerError, ReasonSignInFailed)
			return "", false
		}
	}
	if err := m.st.JoinFamily(ctx, rec.Family, rec.Expires.Sub(now), nh); err != nil {
		m.log.Error("session store unavailable", slog.String("op", "rotate session"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return "", false
	}
	if err := m.st.CreateSession(ctx, nh, rec.User, rec.Issuer, rec.SID, b, ttl, rec.Expires.Sub(now)); err != nil {
		m.log.Error("session store unavailable", slog.String("op", "rotate session"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return "", false
	}
	drop := func() { _ = m.st.DeleteSession(ctx, nh, rec.User, rec.Issuer, rec.SID) }
	if _, err := m.st.LoadSession(ctx, l.h); err != nil {
		drop()
		if errors.Is(err, store.ErrNoSession) {
			m.log.Info("session ended during step-up; not reviving it", slog.String("session", logID(l.h)))
			refuse(w, r, http.StatusUnauthorized, ReasonNoSession)
			return "", false
		}
		m.log.Error("session store unavailable", slog.String("op", "rotate session"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return "", false
	}
	if err := m.st.DeleteSession(ctx, l.h, rec.User, rec.Issuer, rec.SID); err != nil {
		drop()
		m.log.Error("session store unavailable", slog.String("op", "rotate session"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return "", false
	}
	return secret, true
}

// stepUpRefused answers a step-up callback that cannot belong to the session presenting it
// (400, SU-05), audited.
func (m *Manager) stepUpRefused(ctx context.Context, w http.ResponseWriter, r *http.Request, user string, su *stepUpState, reason, cause string) {
	m.log.Warn("step-up refused", slog.String("reason", reason), slog.String("cause", cause), slog.String("user", user),
		slog.String("route", su.Route), slog.String("metric", "stepup_refused_total"))
	m.auditStepUp(ctx, w, audit.StepUpRefused, user, su, reason, nil)
	refuse(w, r, http.StatusBadRequest, reason)
}

// stepUpRefusedPage answers a step-up whose authentication does not meet the route: a 403 page
// saying why, with a link back to the page (which shows the interstitial again, by the user's
// choice: no loop).
func (m *Manager) stepUpRefusedPage(ctx context.Context, w http.ResponseWriter, r *http.Request, user string, su *stepUpState,
	reason, cause string, id *identity, returnTo string) {
	m.log.Warn("step-up refused", slog.String("reason", reason), slog.String("cause", cause), slog.String("user", user),
		slog.String("route", su.Route), slog.String("org", su.Org), slog.String("metric", "stepup_refused_total"))
	m.auditStepUp(ctx, w, audit.StepUpRefused, user, su, reason, map[string]string{
		"acr": id.acr, "amr": strings.Join(id.amr, " "),
	})
	p := newProblem(http.StatusForbidden, reason)
	p.Hint = "Ask your administrator if you cannot complete the stronger sign-in."
	p.Action, p.ActionText = returnTo, "Back to the page"
	expire(w, LoginCookieName)
	problem.Write(w, r, p)
}

func (m *Manager) auditStepUp(ctx context.Context, w http.ResponseWriter, typ audit.Type, user string, su *stepUpState, reason string, detail map[string]string) {
	m.appendAudit(ctx, w, audit.Event{Type: typ, Org: su.Org, User: user, Reason: reason, Route: su.Route, Detail: detail})
}

// appendAudit records ev with the response's request id. The append outlives a client that
// went away (the event happened), and a failure is logged: the answer is already decided.
func (m *Manager) appendAudit(ctx context.Context, w http.ResponseWriter, ev audit.Event) {
	if m.audit == nil {
		return
	}
	ev.RequestID = w.Header().Get("X-Request-Id")
	if err := m.audit.Append(context.WithoutCancel(ctx), ev); err != nil {
		m.log.Error("audit append failed", slog.String("type", string(ev.Type)), slog.String("error", err.Error()))
	}
}
