package session

import (
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Step-up (issue 5): the OIDC side. A route with step_up needs an elevation (authz.StepUp
// says what counts, authz.Elevated whether the session holds one). Lacking one, the proxy
// shows an interstitial whose form posts a Ticket (the route's demand, signed with the
// session's key) to /.portcullis/step-up, which starts an authorisation request with
// acr_values, max_age and login_hint. The callback has authz.Grant check the ID token itself
// (the request parameters may have been stripped on the way, SU-03), records the elevation,
// rotates the session id and returns to the page. On an organisation host, whose callback
// would arrive on the sign-in host, the same checks run there and the elevation is handed
// back (handoff_stepup.go).

// purposeStepUp marks a login record as a step-up of an existing session.
const purposeStepUp = "step-up"

// ticketLifetime bounds how long an interstitial's button works.
const ticketLifetime = 10 * time.Minute

// maxElevations bounds the elevations one session keeps (one per organisation and level).
const maxElevations = 16

// stepUpRefusedMsg is the log message of every refused step-up.
const stepUpRefusedMsg = "step-up refused"

// stepUpState is what a started step-up records server-side beside state, nonce and PKCE.
type stepUpState struct {
	// Session is the handle of the session the step-up belongs to (SU-05).
	Session string `json:"session"`
	Route   string `json:"route"`
	authz.Demand
}

// Challenge is a route's demand for a step-up, as the proxy states it for one request.
type Challenge struct {
	Route string `json:"route"`
	authz.Demand
	PromptLogin bool `json:"prompt_login,omitempty"`
	// ReturnTo is the same-origin path to come back to.
	ReturnTo string `json:"rd"`
	// Issued is set by StepUpTicket.
	Issued time.Time `json:"iat"`
}

// NewChallenge is the demand su of the route named route, for organisation org ("" for a
// route that is not organisation-scoped), returning to returnTo.
func NewChallenge(route string, su *authz.StepUp, org, returnTo string) Challenge {
	return Challenge{Route: route, Demand: su.Demand(org), PromptLogin: su.PromptLogin(), ReturnTo: returnTo}
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
	if c.Issued.After(now.Add(time.Minute)) || now.Sub(c.Issued) > ticketLifetime || !c.Valid() {
		return nil, false
	}
	return &c, true
}

// stepUpParams are the authorisation request's parameters for demand d: max_age and
// acr_values, a login_hint, and prompt=login when the route asks.
func stepUpParams(d authz.Demand, email string, promptLogin bool) []oauth2.AuthCodeOption {
	extra := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("max_age", strconv.FormatInt(int64(d.MaxAge/time.Second), 10))}
	if len(d.ACR) > 0 {
		extra = append(extra, oauth2.SetAuthURLParam("acr_values", strings.Join(d.ACR, " ")))
	}
	if email != "" {
		extra = append(extra, oauth2.SetAuthURLParam("login_hint", email))
	}
	if promptLogin {
		extra = append(extra, oauth2.SetAuthURLParam("prompt", "login"))
	}
	return extra
}

// serveStepUp starts a step-up for the session of r: POST from the interstitial, with its
// ticket. It records the purpose, the session, the organisation, the requirements and the start
// time with the state, and sends the browser to the provider.
func (m *Manager) serveStepUp(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, "POST")
	}
	if m.otherHost(r) && !m.handoffTarget(strings.ToLower(r.Host)) {
		// The step-up's callback arrives on the sign-in host, which hands the elevation over
		// only to hosts a route names (handoff_stepup.go).
		return warning(reason.StepUpHost, stepUpRefusedMsg, "", slog.String("host", r.Host))
	}
	if !m.sameOrigin(r) {
		return warning(reason.CSRFFailed, stepUpRefusedMsg, "cross-origin request")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	l, err := m.load(r.Context(), r, false)
	if err != nil {
		return m.loadError(r, err, false)
	}
	// The step-up is at the provider the person signed in with: another one's token would
	// name another person (and authz.Grant would refuse it).
	rp := m.current(m.providerOf(l.rec.Issuer))
	if rp == nil {
		return quietly(reason.IdPUnavailable)
	}
	if err := r.ParseForm(); err != nil {
		// A body that does not parse (or is too large) is malformed rather than forged: 400,
		// which also closes the connection.
		e := quietly(reason.StepUpTicket)
		e.Status = http.StatusBadRequest
		return e
	}
	c, ok := m.readTicket(l, r.PostForm.Get("ticket"))
	if !ok {
		return warning(reason.StepUpTicket, stepUpRefusedMsg, "", slog.String("session", logID(l.h)))
	}
	returnTo := "/"
	if v, ok := safeRedirect(c.ReturnTo); ok {
		returnTo = v
	}
	if m.otherHost(r) {
		return m.requestStepUpHandoff(w, r, l, c, returnTo)
	}
	lr := loginRecord{ReturnTo: returnTo, Started: m.now(), Purpose: purposeStepUp,
		StepUp: &stepUpState{Session: l.h, Route: c.Route, Demand: c.Demand}}
	m.log.Info("step-up started", slog.String("user", l.rec.User), slog.String("session", logID(l.h)),
		slog.String("route", c.Route), slog.String("org", c.Org))
	return m.beginAuth(w, r, rp, lr, stepUpParams(rp.p.demand(c.Demand), l.rec.Email, c.PromptLogin), http.StatusSeeOther)
}

// stepUpCallback finishes a step-up for l, the session stepUpOwner found it belongs to: the
// ID token must pass the sign-in checks and name the same person, and authz.Grant must find
// its acr, amr and auth_time meet the demand recorded when the step-up started. Then the
// elevation is added, the session id rotated, and the browser returned to the page. Refusals
// are pages with a reason, never a redirect back into the flow.
func (m *Manager) stepUpCallback(w http.ResponseWriter, r *http.Request, rp *relyingParty, lr *loginRecord, l *loaded) error {
	su, ctx := lr.StepUp, r.Context()
	// The session keeps the sign-in's ID token as its logout hint; this one is not stored.
	id, _, err := m.redeem(r, rp, lr)
	if err != nil {
		m.auditStepUp(ctx, w, audit.StepUpRefused, l.rec.User, su, codeOf(err), nil)
		return err
	}
	el, code, cause := rp.p.grant(su.Demand, lr.Started, l.rec.Issuer, l.rec.Subject, id.authentication(), m.now())
	if code != "" {
		return m.stepUpRefusedPage(ctx, w, l.rec.User, su, code, cause, id, lr.ReturnTo)
	}
	return m.grantElevation(ctx, w, r, l, su, el, lr.ReturnTo)
}

// stepUpOwner loads the session presenting a step-up callback and checks that the step-up
// belongs to it. It runs before the state is spent (serveCallback), so a callback replayed
// with another session's cookie leaves the person's step-up completable.
func (m *Manager) stepUpOwner(w http.ResponseWriter, r *http.Request, lr *loginRecord) (*loaded, error) {
	su := lr.StepUp
	if su == nil || !su.Valid() {
		return nil, problem.Outage(reason.InvalidState, "step-up state without requirements", "", nil)
	}
	ctx := r.Context()
	l, err := m.load(ctx, r, false)
	switch {
	case errors.Is(err, errAmbiguousCookie), errors.Is(err, errNoSession):
		return nil, m.stepUpRefused(ctx, w, "", su, reason.StepUpSession, "no session presented at the step-up callback")
	case err != nil:
		return nil, m.loadError(r, err, false)
	}
	if subtle.ConstantTimeCompare([]byte(l.h), []byte(su.Session)) != 1 {
		return nil, m.stepUpRefused(ctx, w, l.rec.User, su, reason.StepUpSession, "step-up state belongs to another session")
	}
	return l, nil
}

// codeOf is the reason code of a refusal returned by a handler or a step of one.
func codeOf(err error) reason.Code {
	var e *problem.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return reason.InternalError
}

// grantElevation adds el to the session l, rotates its id, audits the grant and returns the
// browser to returnTo.
func (m *Manager) grantElevation(ctx context.Context, w http.ResponseWriter, r *http.Request, l *loaded, su *stepUpState, el authz.Elevation, returnTo string) error {
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
	l = &loaded{h: l.h, secret: l.secret, rec: rec}
	kept := append(authz.Live(rec.Elevations, now), el)
	if len(kept) > maxElevations {
		kept = kept[len(kept)-maxElevations:]
	}
	rec.Elevations, rec.LastSeen = kept, now
	secret, err := m.rotate(ctx, l)
	if err != nil {
		return err
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
	return nil
}

// rotate stores l.rec under a new id and deletes the old record (invariant 5: the id changes at
// step-up), and returns the new secret. A session revoked while this ran stays revoked: the new
// record is made first, then the old one must still exist, else the new one is deleted too.
func (m *Manager) rotate(ctx context.Context, l *loaded) (string, error) {
	rec, now := l.rec, m.now()
	secret := newSecret()
	nh := handle(secret)
	ttl := m.ttl(rec, now)
	if ttl <= 0 {
		return "", quietly(reason.NoSession)
	}
	// The new id stays in the sign-in's family, so signing out on another host still ends it.
	if rec.Family == "" {
		rec.Family = l.h
	}
	if rec.FamilyKey != nil {
		// The family key was sealed for the old cookie: seal it for the new one, or the
		// session could no longer check back with its provider (revalidate.go).
		key, err := l.familyKey()
		if err != nil {
			return "", internal("open the session's family key", err)
		}
		rec.FamilyKey = sessionFamilyKey(secret, nh, key)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return "", internal("encode session", err)
	}
	if err := m.st.JoinFamily(ctx, rec.Family, rec.Expires.Sub(now), nh); err != nil {
		return "", outage("rotate session", err)
	}
	if err := m.createSession(ctx, nh, rec, b, ttl, rec.Expires.Sub(now)); err != nil {
		return "", outage("rotate session", err)
	}
	drop := func() { _ = m.st.DeleteSession(ctx, nh, rec.User, rec.Issuer, rec.SID) }
	if _, err := m.st.LoadSession(ctx, l.h); err != nil {
		drop()
		if errors.Is(err, store.ErrNotFound) {
			return "", refusal(reason.NoSession, "session ended during step-up; not reviving it", "", slog.String("session", logID(l.h)))
		}
		return "", outage("rotate session", err)
	}
	if err := m.st.DeleteSession(ctx, l.h, rec.User, rec.Issuer, rec.SID); err != nil {
		drop()
		return "", outage("rotate session", err)
	}
	return secret, nil
}

// stepUpRefused is the answer to a step-up callback that cannot belong to the session
// presenting it (SU-05), audited.
func (m *Manager) stepUpRefused(ctx context.Context, w http.ResponseWriter, user string, su *stepUpState, code reason.Code, cause string) error {
	m.auditStepUp(ctx, w, audit.StepUpRefused, user, su, code, nil)
	return warning(code, stepUpRefusedMsg, cause, slog.String("user", user), slog.String("route", su.Route),
		slog.String("metric", "stepup_refused_total"))
}

// stepUpRefusedPage is the answer to a step-up whose authentication does not meet the route:
// a page saying why, with a link back to the page (which shows the interstitial again, by
// the user's choice: no loop).
func (m *Manager) stepUpRefusedPage(ctx context.Context, w http.ResponseWriter, user string, su *stepUpState,
	code reason.Code, cause string, id *identity, returnTo string) error {
	m.auditStepUp(ctx, w, audit.StepUpRefused, user, su, code, map[string]string{
		"acr": id.acr, "amr": strings.Join(id.amr, " "),
	})
	expire(w, LoginCookieName)
	err := warning(code, stepUpRefusedMsg, cause, slog.String("user", user), slog.String("route", su.Route),
		slog.String("org", su.Org), slog.String("metric", "stepup_refused_total"))
	err.Action, err.ActionText = returnTo, "Back to the page"
	return err
}

func (m *Manager) auditStepUp(ctx context.Context, w http.ResponseWriter, typ audit.Type, user string, su *stepUpState, code reason.Code, detail map[string]string) {
	m.appendAudit(ctx, w, audit.Event{Type: typ, Org: su.Org, User: user, Reason: string(code), Route: su.Route, Detail: detail})
}

// appendAudit records ev with the response's request id. The append outlives a client that
// went away (the event happened), and a failure is logged: the answer is already decided.
func (m *Manager) appendAudit(ctx context.Context, w http.ResponseWriter, ev audit.Event) {
	ev.RequestID = w.Header().Get("X-Request-Id")
	m.recordEvent(ctx, ev)
}

// recordEvent records ev as it is (appendAudit adds the request id).
func (m *Manager) recordEvent(ctx context.Context, ev audit.Event) {
	if m.audit == nil {
		return
	}
	if err := m.audit.Append(context.WithoutCancel(ctx), ev); err != nil {
		m.log.Error("audit append failed", slog.String("type", string(ev.Type)), slog.String("error", err.Error()))
	}
}
