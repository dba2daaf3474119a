package session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Sign-in handoff to organisation hosts.
//
// The session cookie is host-only (__Host-, never a Domain cookie) and the provider sends every
// browser back to one callback on the sign-in host C (oidc.redirect_url). A browser on another
// host H that Portcullis serves ({org}.portal.example) therefore signs in on C and has a
// session of its own made on H from C's:
//
//  1. H, GET /.portcullis/login?rd=R: a handoff request {H, R, hash(N)} is stored under the hash
//     of a random token T for handoffRequestTTL; the random nonce N goes into the
//     __Host-portcullis-handoff cookie on H; the browser goes to C/.portcullis/handoff/start?t=T.
//  2. C, GET /.portcullis/handoff/start?t=T: without a session on C, T is spent, the request is
//     stored again under a fresh token T', and the ordinary sign-in runs with
//     /.portcullis/handoff/start?t=T' as its return path. With a live session on C, T is spent
//     and a one-time code K {C's session, H, R, hash(N)} is stored for handoffCodeTTL; the page
//     posts K to H in a form (submitted by its one hashed script, or by a button). K is never
//     in a URL.
//  3. H, POST /.portcullis/handoff: K is spent; it must be for this host, and this browser must
//     hold N (so a code minted in an attacker's browser cannot sign the victim's browser in:
//     login CSRF); C's session must still be live. A new session is made on H: a new id, the
//     person and authentication facts of C's, no elevation, no organisation choice, ending no
//     later than C's; indexed like a sign-in (offboarding, back-channel logout) and joined to
//     C's family, so signing out of either ends both (logout.go).
//
// Step-up on H goes through C the same way (handoff_stepup.go).

// HandoffCookieName is the cookie binding a handoff to the browser that asked for it. It is
// SameSite=None: it must be sent with the cross-site form post from the sign-in host.
const HandoffCookieName = "__Host-portcullis-handoff"

// Handoff lifetimes: a request covers a whole sign-in at the provider; a code only the
// automatic form post.
const (
	handoffRequestTTL = 10 * time.Minute
	handoffCodeTTL    = 60 * time.Second
	handoffStartPath  = "/.portcullis/handoff/start"
	handoffPath       = "/.portcullis/handoff"
)

// Audit event types of the handoff.
const (
	AuditHandoffGranted = audit.Handoff
	AuditHandoffRefused = audit.HandoffRefused
)

// handoffRequest is step 1's record, stored under the hash of T.
type handoffRequest struct {
	// Host is H as the browser named it (lower case, with its port if any).
	Host     string `json:"host"`
	ReturnTo string `json:"rd"`
	// Browser is the hash of the nonce cookie set on H.
	Browser string    `json:"browser"`
	Started time.Time `json:"started"`
	// StepUp, when set, makes the request a step-up of H's session StepUp.Session rather than
	// a sign-in (handoff_stepup.go); PromptLogin is the route's prompt_login.
	StepUp      *stepUpState `json:"step_up,omitempty"`
	PromptLogin bool         `json:"prompt_login,omitempty"`
}

// handoffCode is step 2's record, stored under the hash of K.
type handoffCode struct {
	// Session is the handle of the sign-in host's session the new one is made from; for a
	// step-up, the handle of H's session to elevate.
	Session  string    `json:"session"`
	Host     string    `json:"host"`
	ReturnTo string    `json:"rd"`
	Browser  string    `json:"browser"`
	Issued   time.Time `json:"issued"`
	// StepUp and Elevation, when set, make the code a step-up's: Elevation is what the sign-in
	// host verified, to be added to Session (handoff_stepup.go).
	StepUp    *stepUpState     `json:"step_up,omitempty"`
	Elevation *authz.Elevation `json:"elevation,omitempty"`
	// Finish marks the record an elevation waiting on H for its session cookie, not a code.
	Finish bool `json:"finish,omitempty"`
	// FamilyKey is the sign-in's family key (revalidate.go) sealed under a key derived from
	// the code, which only the browser holds; empty when the sign-in does not revalidate.
	FamilyKey []byte `json:"fk,omitempty"`
}

// hostName is the lower-case host name of a Host header, without its port.
func hostName(hostport string) string {
	return strings.ToLower((&url.URL{Host: hostport}).Hostname())
}

// otherHost reports whether r arrived on a host other than the sign-in host, whose cookies the
// callback cannot see.
func (m *Manager) otherHost(r *http.Request) bool {
	return m.signInHost != "" && hostName(r.Host) != m.signInHost
}

// handoffTarget reports whether host may receive a handoff: served (Options.HostAllowed) and
// not the sign-in host itself.
func (m *Manager) handoffTarget(host string) bool {
	return m.hostAllowed != nil && hostName(host) != m.signInHost && m.hostAllowed(host)
}

func handoffCookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: HandoffCookieName, Value: value, Path: "/", MaxAge: maxAge, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteNoneMode}
}

// handoffRefused is the refusal code of a handoff, logged with its cause; refusals that may
// be an attack on someone else's browser are audited too.
func (m *Manager) handoffRefused(w http.ResponseWriter, r *http.Request, code reason.Code, cause, user string) error {
	if code == reason.HandoffBrowser || code == reason.HandoffWrongHost {
		m.auditHandoff(r.Context(), w, AuditHandoffRefused, user, code, map[string]string{"host": r.Host})
	}
	return warning(code, "handoff refused", cause, slog.String("host", r.Host), slog.String("user", user))
}

func (m *Manager) auditHandoff(ctx context.Context, w http.ResponseWriter, typ audit.Type, user string, code reason.Code, detail map[string]string) {
	m.appendAudit(ctx, w, audit.Event{Type: typ, User: user, Reason: string(code), Detail: detail})
}

// requestHandoff is step 1, on H: serveLogin calls it for a host other than the sign-in host.
func (m *Manager) requestHandoff(w http.ResponseWriter, r *http.Request, returnTo string) error {
	host := strings.ToLower(r.Host)
	if !m.handoffTarget(host) {
		return m.handoffRefused(w, r, reason.HandoffHostUnknown, "host is not one a route names", "")
	}
	return m.sendHandoff(w, r, &handoffRequest{Host: host, ReturnTo: returnTo}, handoffStartPath, http.StatusFound)
}

// sendHandoff stores req, bound to this browser's nonce cookie (set or reused), under a fresh
// token and sends the browser to the sign-in host's path with it.
func (m *Manager) sendHandoff(w http.ResponseWriter, r *http.Request, req *handoffRequest, path string, status int) error {
	// One nonce per browser, reused by sign-ins started in several tabs at once.
	nonce, err := sessionCookie(r, HandoffCookieName)
	if err != nil || !validSecret(nonce) {
		nonce = newSecret()
	}
	token := newSecret()
	req.Browser, req.Started = handle(nonce), m.now()
	rec, err := json.Marshal(req)
	if err != nil {
		return internal("encode handoff request", err)
	}
	if err := m.handoffs.SaveHandoff(r.Context(), handle(token), rec, handoffRequestTTL); err != nil {
		return outage("save handoff request", err)
	}
	http.SetCookie(w, handoffCookie(nonce, int(handoffRequestTTL/time.Second)))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, m.signInOrigin+path+"?t="+token, status)
	return nil
}

// handoffToken checks what both step-2 endpoints on the sign-in host require (a GET, on the
// sign-in host, with exactly one well-formed token) and returns the token. what names the
// endpoint in the log.
func (m *Manager) handoffToken(w http.ResponseWriter, r *http.Request, what string) (string, error) {
	if r.Method != http.MethodGet {
		return "", methodNotAllowed(w, "GET")
	}
	if m.otherHost(r) {
		return "", m.handoffRefused(w, r, reason.HandoffInvalid, what+" on a host other than the sign-in host", "")
	}
	q := r.URL.Query()
	t := q.Get("t")
	if len(q["t"]) != 1 || !validSecret(t) {
		return "", m.handoffRefused(w, r, reason.HandoffInvalid, "missing or malformed token", "")
	}
	return t, nil
}

// serveHandoffStart is step 2, on the sign-in host.
func (m *Manager) serveHandoffStart(w http.ResponseWriter, r *http.Request) error {
	t, err := m.handoffToken(w, r, "handoff start")
	if err != nil {
		return err
	}
	l, err := m.loadChecked(r.Context(), r)
	switch {
	case errors.Is(err, errNoSession):
		if !m.anyDiscovered() {
			return quietly(reason.IdPUnavailable)
		}
		req, err := m.takeRequest(w, r, t, false)
		if err != nil {
			return err
		}
		// The token in this URL is spent now; the sign-in returns with a fresh one that only
		// the callback's redirect carries, so a token seen in this URL (history, a shared
		// screen) can no longer be turned into a code for this browser's nonce.
		next := newSecret()
		rec, _ := json.Marshal(req)
		left := handoffRequestTTL - m.now().Sub(req.Started)
		if err := m.handoffs.SaveHandoff(r.Context(), handle(next), rec, max(left, time.Second)); err != nil {
			return outage("save handoff request", err)
		}
		// An organisation host signs in at its organisation's provider (realm.go).
		org := ""
		if m.hostOrg != nil {
			org = m.hostOrg(req.Host)
		}
		return m.signIn(w, r, handoffStartPath+"?t="+next, org)
	case err != nil:
		return m.loadError(r, err, false)
	}
	req, err := m.takeRequest(w, r, t, false)
	if err != nil {
		return err
	}
	return m.issueCode(w, r, l, req)
}

// takeRequest spends the handoff request of token t and checks it, a step-up's when stepUp, a
// sign-in's otherwise.
func (m *Manager) takeRequest(w http.ResponseWriter, r *http.Request, t string, stepUp bool) (*handoffRequest, error) {
	b, err := m.handoffs.TakeHandoff(r.Context(), handle(t))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, m.handoffRefused(w, r, reason.HandoffInvalid, "unknown, used or expired handoff request", "")
	case err != nil:
		return nil, outage("take handoff request", err)
	}
	var req handoffRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, m.handoffRefused(w, r, reason.HandoffInvalid, "unreadable handoff request", "")
	}
	now := m.now()
	rd, rdOK := safeRedirect(req.ReturnTo)
	switch {
	case now.Sub(req.Started) > handoffRequestTTL || req.Started.After(now.Add(time.Minute)):
		return nil, m.handoffRefused(w, r, reason.HandoffInvalid, "handoff request expired", "")
	case !validSecret(req.Browser) || !rdOK:
		return nil, m.handoffRefused(w, r, reason.HandoffInvalid, "malformed handoff request", "")
	case (req.StepUp != nil) != stepUp || stepUp && (!validSecret(req.StepUp.Session) || req.StepUp.MaxAge <= 0):
		return nil, m.handoffRefused(w, r, reason.HandoffInvalid, "handoff request of another kind", "")
	case !m.handoffTarget(req.Host):
		// Checked again: the configuration may have changed, and a code is only ever posted
		// to a host a route names.
		return nil, m.handoffRefused(w, r, reason.HandoffHostUnknown, "handoff request for a host no route names", "")
	}
	req.ReturnTo = rd
	return &req, nil
}

var handoffBody = template.Must(template.New("handoff").Parse(`<h1>Signing you in</h1>
<p>Continuing to {{.Host}}…</p>
<form id="portcullis-handoff" method="post" action="{{.Action}}">
<input type="hidden" name="code" value="{{.Code}}">
<button type="submit">Continue</button>
</form>`))

// issueCode mints the one-time code for req from l's session and answers with the page that
// posts it to req.Host.
func (m *Manager) issueCode(w http.ResponseWriter, r *http.Request, l *loaded, req *handoffRequest) error {
	ctx := r.Context()
	now := m.now()
	if l.rec.Family == "" {
		// A session from before handoffs existed: name its family now, so signing out of it
		// finds the sessions handed off from it.
		cp := *l.rec
		cp.Family = l.h
		b, err := json.Marshal(&cp)
		if err == nil {
			err = m.st.UpdateSession(ctx, l.h, b, m.ttl(&cp, now))
		}
		if err != nil {
			return m.loadError(r, err, false)
		}
	}
	var key []byte
	if l.rec.FamilyKey != nil {
		var err error
		if key, err = l.familyKey(); err != nil {
			return m.handoffRefused(w, r, reason.HandoffSessionEnded, "the session's family key does not open", l.rec.User)
		}
	}
	return m.postCode(w, r, &handoffCode{Session: l.h, Host: req.Host, ReturnTo: req.ReturnTo, Browser: req.Browser, Issued: now}, l.rec.User, key)
}

// postCode stores hc under a fresh one-time code, with familyKey sealed under the code when
// there is one, and answers with the page that posts the code to hc.Host.
func (m *Manager) postCode(w http.ResponseWriter, r *http.Request, hc *handoffCode, user string, familyKey []byte) error {
	ctx := r.Context()
	code := newSecret()
	if familyKey != nil {
		hc.FamilyKey = codeFamilyKey(code, hc, familyKey)
	}
	rec, err := json.Marshal(hc)
	if err != nil {
		return internal("encode handoff code", err)
	}
	if err := m.handoffs.SaveHandoffCode(ctx, handle(code), rec, handoffCodeTTL); err != nil {
		return outage("save handoff code", err)
	}
	origin := "https://" + hc.Host
	body, err := page.Execute(handoffBody, struct{ Host, Action, Code string }{hc.Host, origin + handoffPath, code})
	if err != nil {
		return internal("handoff page", err)
	}
	m.log.Info("handoff code issued", slog.String("user", user), slog.String("session", logID(hc.Session)), slog.String("host", hc.Host),
		slog.Bool("step_up", hc.StepUp != nil))
	page.Render(w, r, page.Page{Title: "Signing you in", Body: body, FormAction: origin, AutoSubmit: "portcullis-handoff"})
	return nil
}

// serveHandoff is step 3, on H: the code posted from the sign-in host becomes a session here.
func (m *Manager) serveHandoff(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, "POST")
	}
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		return m.handoffRefused(w, r, reason.HandoffInvalid, "unreadable form", "")
	}
	code := r.PostForm.Get("code")
	if len(r.PostForm["code"]) != 1 || !validSecret(code) {
		return m.handoffRefused(w, r, reason.HandoffInvalid, "missing or malformed code", "")
	}
	// Spent first, whatever follows: a code is good for one attempt.
	hc, err := m.takeCode(w, r, code, "code")
	if err != nil {
		return err
	}
	if err := m.codeFor(w, r, hc, "code"); err != nil {
		return err
	}
	now := m.now()
	nonce, err := sessionCookie(r, HandoffCookieName)
	if err != nil || !validSecret(nonce) || subtle.ConstantTimeCompare([]byte(handle(nonce)), []byte(hc.Browser)) != 1 {
		return m.handoffRefused(w, r, reason.HandoffBrowser, "handoff cookie missing or not the one that asked for this code", "")
	}
	switch {
	case hc.Finish || (hc.StepUp == nil) != (hc.Elevation == nil):
		return m.handoffRefused(w, r, reason.HandoffInvalid, "not a handoff code", "")
	case hc.StepUp != nil:
		return m.awaitSession(w, r, hc)
	}
	pb, err := m.st.LoadSession(ctx, hc.Session)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return m.handoffRefused(w, r, reason.HandoffSessionEnded, "sign-in host's session ended", "")
	case err != nil:
		return outage("load handoff session", err)
	}
	parent := new(record)
	if err := json.Unmarshal(pb, parent); err != nil || !m.live(parent, now) {
		return m.handoffRefused(w, r, reason.HandoffSessionEnded, "sign-in host's session unreadable or expired", parent.User)
	}
	var key []byte
	if parent.FamilyKey != nil {
		// The sign-in revalidates: its new session must be able to open the family's refresh
		// token too. A code without the key is refused rather than make a session that
		// could not check back.
		if key, err = openCodeFamilyKey(code, hc); err != nil {
			return m.handoffRefused(w, r, reason.HandoffInvalid, "the code does not carry its sign-in's family key", parent.User)
		}
	}
	return m.createHandedOff(w, r, parent, hc, key, now)
}

// takeCode spends the code record stored under the hash of secret (a handoff code, or a
// waiting elevation: what, for the log) and decodes it.
func (m *Manager) takeCode(w http.ResponseWriter, r *http.Request, secret, what string) (*handoffCode, error) {
	b, err := m.handoffs.TakeHandoffCode(r.Context(), handle(secret))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, m.handoffRefused(w, r, reason.HandoffInvalid, "unknown, used or expired "+what, "")
	case err != nil:
		return nil, outage("take "+what, err)
	}
	var hc handoffCode
	if err := json.Unmarshal(b, &hc); err != nil {
		return nil, m.handoffRefused(w, r, reason.HandoffInvalid, "unreadable "+what, "")
	}
	return &hc, nil
}

// codeFor checks that hc is still young and was issued for the host r arrived on.
func (m *Manager) codeFor(w http.ResponseWriter, r *http.Request, hc *handoffCode, what string) error {
	now := m.now()
	switch {
	case now.Sub(hc.Issued) > handoffCodeTTL || hc.Issued.After(now.Add(time.Minute)):
		return m.handoffRefused(w, r, reason.HandoffInvalid, what+" expired", "")
	case strings.ToLower(r.Host) != hc.Host:
		return m.handoffRefused(w, r, reason.HandoffWrongHost, what+" for another host than this one", "")
	}
	return nil
}

// createHandedOff makes the session on this host from parent, sets its cookie and returns the
// browser to where it was going.
func (m *Manager) createHandedOff(w http.ResponseWriter, r *http.Request, parent *record, hc *handoffCode, familyKey []byte, now time.Time) error {
	ctx := r.Context()
	secret := newSecret()
	h := handle(secret)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	family := familyOf(parent, hc.Session)
	// The person and their sign-in, nothing earned since: no elevation, no organisation
	// choice. It ends no later than the session it comes from.
	rec := &record{
		User: parent.User, Issuer: parent.Issuer, Subject: parent.Subject, Email: parent.Email,
		EmailVerified: parent.EmailVerified, Name: parent.Name, ACR: parent.ACR, AMR: slices.Clone(parent.AMR),
		AuthTime: parent.AuthTime, SID: parent.SID, IDToken: parent.IDToken, OIDCSub: parent.OIDCSub,
		Created: now, LastSeen: now, Expires: minTime(parent.Expires, now.Add(m.sc.AbsoluteTimeout.D())),
		CSRFKey: key, Family: family, HandedOff: true, Agent: agentOf(r), Host: hostName(r.Host),
		RevalidateAt: parent.RevalidateAt,
	}
	if familyKey != nil {
		rec.FamilyKey = sessionFamilyKey(secret, h, familyKey)
	}
	ttl := m.ttl(rec, now)
	if ttl <= 0 {
		return m.handoffRefused(w, r, reason.HandoffSessionEnded, "nothing left of the sign-in host's session", rec.User)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return internal("encode session", err)
	}
	// Whatever session this browser held here before ends (SESS-02, SESS-04 d).
	for _, c := range r.CookiesNamed(CookieName) {
		if validSecret(c.Value) {
			m.endPresented(ctx, handle(c.Value))
		}
	}
	life := rec.Expires.Sub(now)
	// The family first: a session that exists outside it would survive signing out elsewhere.
	if err := m.st.JoinFamily(ctx, family, life, hc.Session, h); err != nil {
		return outage("join session family", err)
	}
	if err := m.createSession(ctx, h, rec, b, ttl, life); err != nil {
		return outage("create session", err)
	}
	// Signed out on the sign-in host meanwhile (after the family was read)? Then this one
	// goes too rather than outlive it.
	if _, err := m.st.LoadSession(ctx, hc.Session); err != nil {
		_ = m.st.DeleteSession(ctx, h, rec.User, rec.Issuer, rec.SID)
		if errors.Is(err, store.ErrNotFound) {
			return m.handoffRefused(w, r, reason.HandoffSessionEnded, "sign-in host's session ended during the handoff", rec.User)
		}
		return outage("check handoff session", err)
	}
	m.log.Info("signed in by handoff", slog.String("user", rec.User), slog.String("session", logID(h)),
		slog.String("from_session", logID(hc.Session)), slog.String("host", hc.Host))
	m.auditHandoff(ctx, w, AuditHandoffGranted, rec.User, "", map[string]string{"host": hc.Host})
	http.SetCookie(w, cookie(CookieName, secret, int(life/time.Second)))
	http.SetCookie(w, handoffCookie("", -1))
	w.Header().Set("Cache-Control", "no-store")
	rd, ok := safeRedirect(hc.ReturnTo)
	if !ok {
		rd = "/"
	}
	http.Redirect(w, r, rd, http.StatusSeeOther)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
