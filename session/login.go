package session

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// loginRecord is a started sign-in, stored under the hash of its state for login_timeout.
type loginRecord struct {
	// Browser is the hash of the login cookie that started it: the callback must come from the
	// same browser (OIDC-01 c).
	Browser  string    `json:"browser"`
	Nonce    string    `json:"nonce"`
	Verifier string    `json:"verifier"`
	ReturnTo string    `json:"return_to"`
	Started  time.Time `json:"started"`
	// Provider names the provider the browser was sent to (config.OIDCProvider.Name): the
	// callback redeems the code there and nowhere else. "" in records from before several
	// providers: the default one.
	Provider string `json:"provider,omitempty"`
	// Issuer is that provider's issuer then: a provider of that name pointed elsewhere since
	// (managed providers) is another provider, and its callback redeems nothing of this one.
	Issuer string `json:"iss,omitempty"`
	// Purpose is "" for a sign-in and purposeStepUp for a step-up of an existing session, which
	// StepUp then describes.
	Purpose string       `json:"purpose,omitempty"`
	StepUp  *stepUpState `json:"step_up,omitempty"`
	// Handoff is, for purposeHandoffStepUp, the organisation host's request the step-up is for.
	Handoff *handoffRequest `json:"handoff,omitempty"`
}

// serveLogin starts a sign-in: state, nonce and PKCE verifier are kept server-side with the
// return path, the flow is bound to this browser by a cookie, and the browser goes to the
// provider.
func (m *Manager) serveLogin(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		// The sign-in page's address form (realm.go), from this origin only.
		if !m.sameOrigin(r) {
			return warning(reason.CSRFFailed, signInRefused, "cross-origin sign-in form")
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		if err := r.ParseForm(); err != nil {
			e := quietly(reason.BadRequest)
			e.Status = http.StatusBadRequest
			return e
		}
	default:
		return methodNotAllowed(w, "GET, HEAD, POST")
	}
	if !m.anyDiscovered() {
		return quietly(reason.IdPUnavailable)
	}
	returnTo := "/"
	if rd := r.FormValue("rd"); rd != "" {
		if v, ok := safeRedirect(rd); ok {
			returnTo = v
		}
	}
	if m.otherHost(r) {
		// The callback arrives on the sign-in host, which cannot read this host's cookies:
		// sign in there and hand the session over (handoff.go).
		return m.requestHandoff(w, r, returnTo)
	}
	return m.signIn(w, r, returnTo, "")
}

// beginAuth starts an authorisation request for lr (a sign-in or a step-up): state, nonce and
// PKCE verifier are stored server-side with lr, the flow is bound to this browser by the login
// cookie, and the browser goes to the provider with extra parameters after the configured ones
// (so a step-up's acr_values, max_age and prompt cannot be overridden by configuration).
func (m *Manager) beginAuth(w http.ResponseWriter, r *http.Request, rp *relyingParty, lr loginRecord, extra []oauth2.AuthCodeOption, status int) error {
	// One login cookie per browser, reused by concurrent sign-ins in several tabs.
	browser, err := sessionCookie(r, LoginCookieName)
	if err != nil || !validSecret(browser) {
		browser = newSecret()
	}
	state, nonce, verifier := newSecret(), newSecret(), oauth2.GenerateVerifier()
	lr.Browser, lr.Nonce, lr.Verifier, lr.Provider, lr.Issuer = handle(browser), nonce, verifier, rp.p.cfg.Name, rp.p.cfg.Issuer
	rec, err := json.Marshal(lr)
	if err != nil {
		return internal("encode sign-in state", err)
	}
	if err := m.logins.SaveLogin(r.Context(), handle(state), rec, m.sc.LoginTimeout.D()); err != nil {
		return outage("save sign-in state", err)
	}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	for k, v := range rp.p.cfg.ExtraParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	opts = append(opts, extra...)
	http.SetCookie(w, cookie(LoginCookieName, browser, int(m.sc.LoginTimeout.D()/time.Second)))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, rp.oauth.AuthCodeURL(state, opts...), status)
	return nil
}

// errorCode is what an OAuth error code may look like to be repeated on our page.
var errorCode = regexp.MustCompile(`^[a-z_]{1,64}$`)

// signInRefused is the log message of a refused sign-in.
const signInRefused = "sign-in refused"

// callbackOf is provider at's callback: serveCallback for the sign-ins that went to at.
func (m *Manager) callbackOf(at *idp) endpoint {
	return func(w http.ResponseWriter, r *http.Request) error { return m.serveCallback(w, r, at) }
}

// serveCallback finishes a sign-in that went to provider at. Every failure creates no session
// and says why only in general terms; the cause is logged.
func (m *Manager) serveCallback(w http.ResponseWriter, r *http.Request, at *idp) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(w, "GET, HEAD")
	}
	q := r.URL.Query()
	state := q.Get("state")
	if len(q["state"]) != 1 || !validSecret(state) {
		return refusal(reason.InvalidState, signInRefused, "missing or malformed state")
	}
	// Read, not spent, until the callback is known to come from the browser (and, for a
	// step-up, the session) that started it: a callback URL replayed from elsewhere is refused
	// without cancelling the person's own attempt. Then it is spent before anything else, so
	// a state is good for one attempt (OIDC-01 d).
	b, err := m.logins.PeekLogin(r.Context(), handle(state))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return refusal(reason.InvalidState, signInRefused, "unknown, used or expired state")
	case err != nil:
		return outage("read sign-in state", err)
	}
	var lr loginRecord
	if err := json.Unmarshal(b, &lr); err != nil {
		return problem.Outage(reason.InvalidState, "unreadable sign-in state", "", err)
	}
	if p := m.provider(cmp.Or(lr.Provider, config.DefaultProvider)); p != at || lr.Issuer != "" && lr.Issuer != at.cfg.Issuer {
		// The browser was sent to one provider and comes back through another's callback:
		// a mix-up (RFC 9700 §4.4), refused before the code goes anywhere.
		return warning(reason.ProviderMixUp, signInRefused, "authorisation response at another provider's callback",
			slog.String("callback", at.cfg.Name), slog.String("provider", lr.Provider))
	}
	rp := m.current(at)
	if rp == nil {
		return quietly(reason.IdPUnavailable)
	}
	err = m.finishCallback(w, r, rp, state, &lr)
	var refused *problem.Error
	// A sign-in that really started was refused: audited (an outage is not a refusal), once
	// per started sign-in: only refusals after the state is spent, never a callback from
	// another browser (which leaves the state unspent, so it could be replayed without end;
	// it is logged). Beyond a per-process budget, refusals are logged only: a script starting
	// sign-ins to fail them cannot push the changes out of the audit stream.
	if lr.Purpose == "" && errors.As(err, &refused) && refused.Level < slog.LevelError && refused.Reason != reason.LoginBrowserMismatch {
		if !m.refusalBudget.Allow() {
			m.log.Warn("sign-in refusal not audited: too many this minute", slog.String("reason", string(refused.Reason)), slog.String("host", r.Host))
			return err
		}
		detail := map[string]string{"host": r.Host}
		if refused.Cause != nil {
			detail["cause"] = truncate(refused.Cause.Error(), 200)
		}
		for _, a := range refused.Attrs {
			if a.Key == "idp_error" {
				detail["idp_error"] = a.Value.String()
			}
		}
		m.appendAudit(r.Context(), w, audit.Event{Type: audit.SignInRefused, Reason: string(refused.Reason), Detail: detail})
	}
	return err
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// finishCallback is serveCallback once the state is known to be one Portcullis issued.
func (m *Manager) finishCallback(w http.ResponseWriter, r *http.Request, rp *relyingParty, state string, lr *loginRecord) error {
	browser, err := sessionCookie(r, LoginCookieName)
	if err != nil || !validSecret(browser) || subtle.ConstantTimeCompare([]byte(handle(browser)), []byte(lr.Browser)) != 1 {
		return warning(reason.LoginBrowserMismatch, signInRefused, "login cookie missing or not the one that started this sign-in")
	}
	var owner *loaded
	if lr.Purpose == purposeStepUp {
		if owner, err = m.stepUpOwner(w, r, lr); err != nil {
			return err
		}
	}
	switch _, err := m.logins.TakeLogin(r.Context(), handle(state)); {
	case errors.Is(err, store.ErrNotFound):
		// A concurrent callback of the same browser spent it first.
		return refusal(reason.InvalidState, signInRefused, "used state")
	case err != nil:
		return outage("take sign-in state", err)
	}
	switch lr.Purpose {
	case purposeStepUp:
		return m.stepUpCallback(w, r, rp, lr, owner)
	case purposeHandoffStepUp:
		return m.handoffStepUpCallback(w, r, rp, lr)
	case "":
	default:
		return problem.Outage(reason.InvalidState, "sign-in state of an unknown purpose", "", nil, slog.String("purpose", lr.Purpose))
	}
	id, raw, err := m.redeem(r, rp, lr)
	if err != nil {
		return err
	}
	if err := m.checkDomain(r.Context(), rp, id); err != nil {
		return err
	}
	return m.startSession(w, r, rp.p, id, raw, lr.ReturnTo)
}

// redeem finishes the authorisation response of r for lr: the provider's error, the code
// exchange (with the PKCE verifier) and the ID token checks. It returns the verified
// identity and the raw ID token, or the refusal.
func (m *Manager) redeem(r *http.Request, rp *relyingParty, lr *loginRecord) (*identity, string, error) {
	q := r.URL.Query()
	// RFC 9207: the response names who sent it. With several providers, a response made by
	// another one than this sign-in went to (a mix-up) is refused before its code is sent
	// anywhere; a provider that announces iss must send it.
	if iss, ok := q["iss"]; ok || rp.issParam {
		if len(iss) != 1 || iss[0] != rp.p.cfg.Issuer {
			return nil, "", warning(reason.ProviderMixUp, signInRefused, "authorisation response from another issuer than this sign-in's provider",
				slog.String("provider", rp.p.cfg.Name))
		}
	}
	if e := q.Get("error"); e != "" {
		code := "unknown"
		if errorCode.MatchString(e) {
			code = e
		}
		// The code was checked against a strict pattern, and the renderer escapes it anyway
		// (OIDC-01 f). The description is the provider's free text: not repeated.
		err := refusal(reason.IdPError, "sign-in refused by the identity provider", "", slog.String("idp_error", code))
		err.Problem = problem.For(reason.IdPError, reason.Facts{Detail: code})
		return nil, "", err
	}
	code := q.Get("code")
	if code == "" || len(q["code"]) != 1 {
		return nil, "", refusal(reason.SignInFailed, signInRefused, "no code")
	}
	ctx, cancel := context.WithTimeout(rp.p.ctx(r.Context()), providerCallLimit)
	defer cancel()
	tok, err := rp.oauth.Exchange(ctx, code, oauth2.VerifierOption(lr.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, "", warning(reason.SignInFailed, signInRefused, "token endpoint refused the code",
				slog.Int("status", re.Response.StatusCode), slog.String("idp_error", re.ErrorCode))
		}
		return nil, "", problem.Outage(reason.IdPUnavailable, "identity provider unavailable", "token exchange", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "", warning(reason.SignInFailed, signInRefused, "no id_token in the token response")
	}
	id, err := m.verifyIDToken(ctx, rp, raw, lr.Nonce)
	if err != nil {
		code := reason.SignInFailed
		if errors.Is(err, errEmailUnverified) {
			code = reason.EmailNotVerified
		}
		return nil, "", warning(code, signInRefused, err.Error())
	}
	id.refresh = tok.RefreshToken
	return id, raw, nil
}

// startSession creates the session with a new id and ends any session the browser presented
// before (SESS-02: a cookie planted before sign-in never becomes an authenticated one).
func (m *Manager) startSession(w http.ResponseWriter, r *http.Request, p *idp, id *identity, rawIDToken, returnTo string) error {
	ctx := r.Context()
	for _, c := range r.CookiesNamed(CookieName) {
		if !validSecret(c.Value) {
			continue
		}
		m.endPresented(ctx, handle(c.Value))
	}
	now := m.now()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret := newSecret()
	h := handle(secret)
	familyKey, revalidateAt, err := m.beginRevalidation(ctx, p, id, secret, h, now)
	if err != nil {
		return err
	}
	rec := &record{
		User: id.user, Issuer: id.issuer, Subject: id.subject, Email: id.email, EmailVerified: id.emailVerified,
		Name: id.name, ACR: id.acr, AMR: id.amr, AuthTime: id.authTime, SID: id.sid, OIDCSub: subIfOther(id),
		Created: now, LastSeen: now, Expires: now.Add(m.sc.AbsoluteTimeout.D()),
		IDToken: rawIDToken, CSRFKey: key, Agent: agentOf(r), Host: hostName(r.Host),
		// The sign-in's family is named after its first session; sessions handed off from
		// it (handoff.go) join it.
		Family:    h,
		FamilyKey: familyKey, RevalidateAt: revalidateAt,
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return internal("encode session", err)
	}
	if m.onSignIn != nil {
		if err := m.onSignIn(ctx, viewOf(rec)); err != nil {
			return problem.Outage(reason.StoreUnavailable, "sign-in hook failed; refusing the sign-in", "", err, slog.String("user", rec.User))
		}
	}
	if err := m.createSession(ctx, h, rec, b, m.ttl(rec, now), m.sc.AbsoluteTimeout.D()); err != nil {
		return outage("create session", err)
	}
	m.log.Info("signed in", slog.String("user", rec.User), slog.String("email", rec.Email), slog.Bool("email_verified", rec.EmailVerified),
		slog.String("session", logID(h)), slog.String("acr", rec.ACR))
	detail := map[string]string{"session": logID(h), "email": rec.Email, "host": r.Host,
		"expires": rec.Expires.UTC().Format(time.RFC3339)}
	if rec.ACR != "" {
		detail["acr"] = rec.ACR
	}
	if len(rec.AMR) > 0 {
		detail["amr"] = strings.Join(rec.AMR, " ")
	}
	if !rec.AuthTime.IsZero() {
		detail["auth_time"] = rec.AuthTime.UTC().Format(time.RFC3339)
	}
	m.appendAudit(ctx, w, audit.Event{Type: audit.SignedIn, User: rec.User, Detail: detail})
	http.SetCookie(w, cookie(CookieName, secret, int(m.sc.AbsoluteTimeout.D()/time.Second)))
	expire(w, LoginCookieName)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, returnTo, http.StatusFound)
	return nil
}

// endPresented deletes the session stored under h, if any. Failures are logged: the new
// session does not depend on it, and an old session still expires by itself.
func (m *Manager) endPresented(ctx context.Context, h string) {
	b, err := m.st.LoadSession(ctx, h)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			m.log.Warn("could not end the session presented at sign-in", slog.String("session", logID(h)), slog.String("error", err.Error()))
		}
		return
	}
	var old record
	_ = json.Unmarshal(b, &old)
	if err := m.st.DeleteSession(ctx, h, old.User, old.Issuer, old.SID); err != nil {
		m.log.Warn("could not end the session presented at sign-in", slog.String("session", logID(h)), slog.String("error", err.Error()))
		return
	}
	m.log.Info("previous session ended at sign-in", slog.String("session", logID(h)))
}

// subIfOther is id's sub when the person's key is made of another claim, else "".
func subIfOther(id *identity) string {
	if id.sub != id.subject {
		return id.sub
	}
	return ""
}
