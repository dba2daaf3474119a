package session

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

var logoutBody = template.Must(template.New("logout").Parse(`{{if .SignedIn}}<h1>Sign out?</h1>
<p>You are signed in{{if .Name}} as {{.Name}}{{end}}.</p>
<form id="portcullis-logout" method="post" action="/.portcullis/logout">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit">Sign out</button>
</form>{{else}}<h1>Signed out</h1>
<p>You are not signed in.</p><p><a href="/">Home</a></p>{{end}}`))

// serveLogout shows a confirmation page on GET (which changes nothing, so a cross-site link
// cannot sign anyone out, SESS-04 b) and signs out on POST with the page's CSRF token.
func (m *Manager) serveLogout(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return m.showLogout(w, r)
	case http.MethodPost:
		return m.doLogout(w, r)
	default:
		return methodNotAllowed(w, "GET, HEAD, POST")
	}
}

func (m *Manager) showLogout(w http.ResponseWriter, r *http.Request) error {
	data := struct {
		SignedIn   bool
		Name, CSRF string
	}{}
	l, err := m.load(r.Context(), r, false)
	switch {
	case err == nil:
		data.SignedIn, data.Name, data.CSRF = true, l.rec.Name, csrfToken(l.rec.CSRFKey, l.h)
	case errors.Is(err, errNoSession):
	default:
		return m.loadError(r, err, false)
	}
	body, err := page.Execute(logoutBody, data)
	if err != nil {
		m.log.Error("sign-out page", slog.Any("error", err))
	}
	title := "Sign out"
	if !data.SignedIn {
		title = "Signed out"
	}
	page.Render(w, r, page.Page{Title: title, Body: body, FormAction: m.logoutFormAction()})
	return nil
}

// logoutFormAction allows the form to post here, the browser to follow our redirect to the
// provider's end_session_endpoint, and the provider's redirect on to post_logout_redirect_uri,
// the sign-in host's home page (browsers apply form-action to every redirect after a
// submission). On an organisation host the sign-in host is another origin: without it,
// Chromium blocks the provider's sign-out form, reporting the provider's URL.
func (m *Manager) logoutFormAction() string {
	// Every provider's: the page does not know whose session will post the form.
	sources := []string{"'self'"}
	found := false
	for _, p := range m.providers() {
		if rp := p.rp.Load(); rp != nil && rp.endSession != "" {
			if u, err := url.Parse(rp.endSession); err == nil && u.Host != "" && !slices.Contains(sources, u.Scheme+"://"+u.Host) {
				sources = append(sources, u.Scheme+"://"+u.Host)
			}
			found = true
		}
	}
	if found {
		sources = append(sources, m.signInOrigin)
	}
	return strings.Join(sources, " ")
}

// sameOrigin checks the browser's own account of where a request came from, when it gives one.
func (m *Manager) sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" {
		want := m.origin
		if want == "" || m.otherHost(r) {
			// An organisation host's own forms post to it (handoff.go).
			want = "https://" + r.Host
		}
		if o != want {
			return false
		}
	}
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return false
	}
	return true
}

func (m *Manager) doLogout(w http.ResponseWriter, r *http.Request) error {
	if !m.sameOrigin(r) {
		return warning(reason.CSRFFailed, "sign-out refused", "cross-origin request")
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	l, err := m.load(r.Context(), r, false)
	switch {
	case errors.Is(err, errNoSession):
		// Nothing to end; still clear what the browser holds.
		expire(w, CookieName)
		expire(w, LoginCookieName)
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	case err != nil:
		return m.loadError(r, err, false)
	}
	got := r.PostFormValue("csrf")
	if got == "" || !hmac.Equal([]byte(got), []byte(csrfToken(l.rec.CSRFKey, l.h))) {
		return warning(reason.CSRFFailed, "sign-out refused", "missing or wrong token", slog.String("session", logID(l.h)))
	}
	// Every session of this sign-in in this browser ends: the sign-in host's and those handed
	// off from it to organisation hosts (handoff.go), whichever of them signs out.
	family, err := m.st.EndFamily(r.Context(), familyOf(l.rec, l.h), l.rec.User, l.rec.Issuer, l.rec.SID)
	if err != nil {
		return m.loadError(r, err, false)
	}
	if err := m.st.DeleteSession(r.Context(), l.h, l.rec.User, l.rec.Issuer, l.rec.SID); err != nil {
		return m.loadError(r, err, false)
	}
	m.log.Info("signed out", slog.String("user", l.rec.User), slog.String("session", logID(l.h)), slog.Int("family_sessions_ended", family))
	m.appendAudit(r.Context(), w, audit.Event{Type: audit.SignedOut, User: l.rec.User,
		Detail: map[string]string{"session": logID(l.h), "host": r.Host, "family_sessions_ended": strconv.Itoa(family)}})
	expire(w, CookieName)
	expire(w, LoginCookieName)
	http.SetCookie(w, handoffCookie("", -1))
	w.Header().Set("Cache-Control", "no-store")
	var rp *relyingParty
	if p := m.providerOf(l.rec.Issuer); p != nil {
		rp = p.rp.Load()
	}
	if rp == nil || rp.endSession == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	// RP-initiated logout at the provider. The ID token goes as id_token_hint in a form the
	// browser posts (OIDC RP-Initiated Logout 1.0 allows POST), never in a URL: URLs end up in
	// logs, history and Referer headers, and an ID token names the person.
	ru := m.oc.RedirectURI
	body, err := page.Execute(endSessionBody, struct {
		Action, ClientID, IDToken, Return string
	}{rp.endSession, rp.p.cfg.ClientID, l.rec.IDToken, ru.Scheme + "://" + ru.Host + "/"})
	if err != nil {
		m.log.Error("sign-out page", slog.Any("error", err))
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	page.Render(w, r, page.Page{Title: "Signing out", Body: body, FormAction: m.logoutFormAction(),
		AutoSubmit: "portcullis-end-session"})
	return nil
}

var endSessionBody = template.Must(template.New("end-session").Parse(`<h1>Signed out</h1>
<p>You are signed out here. Signing you out at your identity provider too…</p>
<form id="portcullis-end-session" method="post" action="{{.Action}}">
<input type="hidden" name="client_id" value="{{.ClientID}}">
{{if .IDToken}}<input type="hidden" name="id_token_hint" value="{{.IDToken}}">{{end}}
<input type="hidden" name="post_logout_redirect_uri" value="{{.Return}}">
<button type="submit">Continue</button>
</form>`))

// backchannelEvent is the member of "events" that makes a JWT a logout token.
const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// jtiMemory bounds how long logout token ids are remembered, beyond their own expiry.
const jtiMemory = 10 * time.Minute

// serveBackchannelLogout implements OIDC Back-Channel Logout 1.0 for the provider's server:
// 200 when the sessions named are ended, 400 with a JSON error otherwise.
func (m *Manager) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, "POST")
	}
	if !m.anyDiscovered() {
		return quietly(reason.IdPUnavailable)
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	raw := r.PostFormValue("logout_token")
	bad := func(cause string) error {
		return warning(reason.InvalidLogoutToken, "back-channel logout refused", cause)
	}
	if raw == "" {
		return bad("no logout_token")
	}
	// The token's own iss picks the provider whose keys must have signed it; its signature,
	// iss and aud are then checked by that provider's verifier, so a token naming one
	// provider and signed by another fails.
	ps := m.providers()
	p := ps[0]
	if len(ps) > 1 {
		if p = m.providerOf(unverifiedIssuer(raw)); p == nil {
			return bad("logout token of no configured provider")
		}
	}
	rp := m.current(p)
	if rp == nil {
		return quietly(reason.IdPUnavailable)
	}
	ctx, cancel := context.WithTimeout(rp.p.ctx(r.Context()), providerCallLimit)
	defer cancel()
	// go-oidc checks signature (allowed algorithms, provider keys), iss, aud, exp, the presence
	// of the event, the absence of nonce, jti, and sub or sid.
	lt, err := rp.verifier.VerifyLogout(ctx, raw)
	if err != nil {
		return bad(err.Error())
	}
	var c struct {
		IssuedAt *json.Number               `json:"iat"`
		Events   map[string]json.RawMessage `json:"events"`
		Nonce    json.RawMessage            `json:"nonce"`
	}
	if err := lt.Claims(&c); err != nil {
		return bad("unreadable claims")
	}
	if ev, ok := c.Events[backchannelEvent]; !ok || len(ev) == 0 || ev[0] != '{' {
		return bad("events claim has no back-channel logout event object")
	}
	if c.Nonce != nil {
		return bad("logout token has a nonce")
	}
	now := m.now()
	skew := m.oc.ClockSkew.D()
	if c.IssuedAt == nil || lt.IssuedAt.IsZero() || lt.IssuedAt.After(now.Add(skew)) {
		return bad("iat missing or in the future")
	}
	ttl := min(max(lt.Expiry.Sub(now)+skew, time.Minute), time.Hour) + jtiMemory
	fresh, err := m.logouts.MarkLogoutToken(r.Context(), lt.Issuer, lt.TokenID, ttl)
	if err != nil {
		return outage("mark logout token", err)
	}
	if !fresh {
		return bad("jti already used (replay)")
	}
	var n int
	if lt.SessionID != "" {
		n, err = m.st.RevokeSID(r.Context(), lt.Issuer, lt.SessionID)
	} else {
		n, err = m.st.RevokeUser(r.Context(), store.UserKey(lt.Issuer, lt.Subject))
	}
	if err != nil {
		return outage("back-channel logout", err)
	}
	m.log.Info("back-channel logout", slog.Bool("by_sid", lt.SessionID != ""), slog.Int("sessions_ended", n))
	ev := audit.Event{Type: audit.SessionEnded, Reason: "backchannel_logout",
		Detail: map[string]string{"issuer": lt.Issuer, "sessions_ended": strconv.Itoa(n)}}
	if lt.Subject != "" {
		ev.User = store.UserKey(lt.Issuer, lt.Subject)
	}
	if lt.SessionID != "" {
		ev.Detail["sid"] = lt.SessionID
	}
	m.appendAudit(r.Context(), w, ev)
	w.WriteHeader(http.StatusOK)
	return nil
}

// whoami is the identity part of a session, as serveWhoami shows it: no tokens, no id.
type whoami struct {
	UserKey       string    `json:"user_key"`
	Issuer        string    `json:"iss"`
	Subject       string    `json:"sub"`
	Email         string    `json:"email,omitempty"`
	EmailVerified bool      `json:"email_verified"`
	Name          string    `json:"name,omitempty"`
	ACR           string    `json:"acr,omitempty"`
	AMR           []string  `json:"amr,omitempty"`
	AuthTime      time.Time `json:"auth_time,omitzero"`
	Created       time.Time `json:"created"`
	Expires       time.Time `json:"expires"`
	ActiveOrg     string    `json:"active_org,omitempty"`
	// Elevations are the unexpired step-ups of the session.
	Elevations []authz.Elevation `json:"elevations,omitempty"`
}

// serveWhoami answers with the current session's identity as JSON, or 401.
func (m *Manager) serveWhoami(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return methodNotAllowed(w, "GET, HEAD")
	}
	l, err := m.loadChecked(r.Context(), r)
	if err != nil {
		return m.loadError(r, err, false)
	}
	rec := l.rec
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return nil
	}
	// An error here is the client gone: nothing is left to tell it.
	_ = json.NewEncoder(w).Encode(whoami{
		UserKey: rec.User, Issuer: rec.Issuer, Subject: rec.Subject, Email: rec.Email, EmailVerified: rec.EmailVerified,
		Name: rec.Name, ACR: rec.ACR, AMR: rec.AMR, AuthTime: rec.AuthTime, Created: rec.Created, Expires: rec.Expires,
		ActiveOrg: rec.ActiveOrg, Elevations: authz.Live(rec.Elevations, m.now()),
	})
	return nil
}

// unverifiedIssuer is the iss claim of the compact JWT raw, read without checking anything:
// only to choose the verifier that then checks everything. "" when unreadable.
func unverifiedIssuer(raw string) string {
	tok, err := jwt.ParseSigned(raw, asymmetricAlgs)
	if err != nil {
		return ""
	}
	var c jwt.Claims
	if tok.UnsafeClaimsWithoutVerification(&c) != nil {
		return ""
	}
	return c.Issuer
}

// asymmetricAlgs are the algorithms a provider's or a transmitter's token may be parsed with
// (logout tokens, SETs): asymmetric ones only, as config's signing_algs; the verifier then
// applies the provider's own.
var asymmetricAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}
