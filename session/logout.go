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
	"time"

	"github.com/portcullis-proxy/portcullis/internal/page"
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
func (m *Manager) serveLogout(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		m.showLogout(w, r)
	case http.MethodPost:
		m.doLogout(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		refuse(w, r, http.StatusMethodNotAllowed, ReasonMethod)
	}
}

func (m *Manager) showLogout(w http.ResponseWriter, r *http.Request) {
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
		m.refuseLoad(w, r, err, false)
		return
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
}

// logoutFormAction allows the form to post here, the browser to follow our redirect to the
// provider's end_session_endpoint, and the provider's redirect on to post_logout_redirect_uri,
// the sign-in host's home page (browsers apply form-action to every redirect after a
// submission). On an organisation host the sign-in host is another origin: without it,
// Chromium blocks the provider's sign-out form, reporting the provider's URL.
func (m *Manager) logoutFormAction() string {
	fa := "'self'"
	if rp := m.rp.Load(); rp != nil && rp.endSession != "" {
		if u, err := url.Parse(rp.endSession); err == nil && u.Host != "" {
			fa += " " + u.Scheme + "://" + u.Host
		}
		fa += " " + m.signInOrigin
	}
	return fa
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

func (m *Manager) doLogout(w http.ResponseWriter, r *http.Request) {
	if !m.sameOrigin(r) {
		m.log.Warn("sign-out refused", slog.String("reason", ReasonCSRF), slog.String("cause", "cross-origin request"))
		refuse(w, r, http.StatusForbidden, ReasonCSRF)
		return
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
		return
	case err != nil:
		m.refuseLoad(w, r, err, false)
		return
	}
	got := r.PostFormValue("csrf")
	if got == "" || !hmac.Equal([]byte(got), []byte(csrfToken(l.rec.CSRFKey, l.h))) {
		m.log.Warn("sign-out refused", slog.String("reason", ReasonCSRF), slog.String("cause", "missing or wrong token"), slog.String("session", logID(l.h)))
		refuse(w, r, http.StatusForbidden, ReasonCSRF)
		return
	}
	// Every session of this sign-in in this browser ends: the sign-in host's and those handed
	// off from it to organisation hosts (handoff.go), whichever of them signs out.
	family, err := m.st.EndFamily(r.Context(), familyOf(l.rec, l.h), l.rec.User, l.rec.Issuer, l.rec.SID)
	if err != nil {
		m.refuseLoad(w, r, err, false)
		return
	}
	if err := m.st.DeleteSession(r.Context(), l.h, l.rec.User, l.rec.Issuer, l.rec.SID); err != nil {
		m.refuseLoad(w, r, err, false)
		return
	}
	m.log.Info("signed out", slog.String("user", l.rec.User), slog.String("session", logID(l.h)), slog.Int("family_sessions_ended", family))
	expire(w, CookieName)
	expire(w, LoginCookieName)
	http.SetCookie(w, handoffCookie("", -1))
	w.Header().Set("Cache-Control", "no-store")
	rp := m.rp.Load()
	if rp == nil || rp.endSession == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	// RP-initiated logout at the provider. The ID token goes as id_token_hint in a form the
	// browser posts (OIDC RP-Initiated Logout 1.0 allows POST), never in a URL: URLs end up in
	// logs, history and Referer headers, and an ID token names the person.
	ru := m.oc.RedirectURI
	body, err := page.Execute(endSessionBody, struct {
		Action, ClientID, IDToken, Return string
	}{rp.endSession, m.oc.ClientID, l.rec.IDToken, ru.Scheme + "://" + ru.Host + "/"})
	if err != nil {
		m.log.Error("sign-out page", slog.Any("error", err))
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	page.Render(w, r, page.Page{Title: "Signing out", Body: body, FormAction: m.logoutFormAction(),
		AutoSubmit: "portcullis-end-session"})
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
func (m *Manager) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		refuse(w, r, http.StatusMethodNotAllowed, ReasonMethod)
		return
	}
	rp := m.current()
	if rp == nil {
		refuse(w, r, http.StatusServiceUnavailable, ReasonIdPUnavailable)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	raw := r.PostFormValue("logout_token")
	bad := func(cause string) {
		m.log.Warn("back-channel logout refused", slog.String("reason", ReasonBadLogoutToken), slog.String("cause", cause))
		refuse(w, r, http.StatusBadRequest, ReasonBadLogoutToken)
	}
	if raw == "" {
		bad("no logout_token")
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx(r.Context()), providerCallLimit)
	defer cancel()
	// go-oidc checks signature (allowed algorithms, provider keys), iss, aud, exp, the presence
	// of the event, the absence of nonce, jti, and sub or sid.
	lt, err := rp.verifier.VerifyLogout(ctx, raw)
	if err != nil {
		bad(err.Error())
		return
	}
	var c struct {
		IssuedAt *json.Number               `json:"iat"`
		Events   map[string]json.RawMessage `json:"events"`
		Nonce    json.RawMessage            `json:"nonce"`
	}
	if err := lt.Claims(&c); err != nil {
		bad("unreadable claims")
		return
	}
	if ev, ok := c.Events[backchannelEvent]; !ok || len(ev) == 0 || ev[0] != '{' {
		bad("events claim has no back-channel logout event object")
		return
	}
	if c.Nonce != nil {
		bad("logout token has a nonce")
		return
	}
	now := m.now()
	skew := m.oc.ClockSkew.D()
	if c.IssuedAt == nil || lt.IssuedAt.IsZero() || lt.IssuedAt.After(now.Add(skew)) {
		bad("iat missing or in the future")
		return
	}
	ttl := min(max(lt.Expiry.Sub(now)+skew, time.Minute), time.Hour) + jtiMemory
	fresh, err := m.st.MarkLogoutToken(r.Context(), lt.Issuer, lt.TokenID, ttl)
	if err != nil {
		m.log.Error("session store unavailable", slog.String("op", "mark logout token"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return
	}
	if !fresh {
		bad("jti already used (replay)")
		return
	}
	var n int
	if lt.SessionID != "" {
		n, err = m.st.RevokeSID(r.Context(), lt.Issuer, lt.SessionID)
	} else {
		n, err = m.st.RevokeUser(r.Context(), store.UserKey(lt.Issuer, lt.Subject))
	}
	if err != nil {
		m.log.Error("session store unavailable", slog.String("op", "back-channel logout"), slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
		return
	}
	m.log.Info("back-channel logout", slog.Bool("by_sid", lt.SessionID != ""), slog.Int("sessions_ended", n))
	w.WriteHeader(http.StatusOK)
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
	Elevations []Elevation `json:"elevations,omitempty"`
}

// serveWhoami answers with the current session's identity as JSON, or 401.
func (m *Manager) serveWhoami(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		refuse(w, r, http.StatusMethodNotAllowed, ReasonMethod)
		return
	}
	l, err := m.load(r.Context(), r, true)
	if err != nil {
		m.refuseLoad(w, r, err, false)
		return
	}
	rec := l.rec
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(whoami{
		UserKey: rec.User, Issuer: rec.Issuer, Subject: rec.Subject, Email: rec.Email, EmailVerified: rec.EmailVerified,
		Name: rec.Name, ACR: rec.ACR, AMR: rec.AMR, AuthTime: rec.AuthTime, Created: rec.Created, Expires: rec.Expires,
		ActiveOrg: rec.ActiveOrg, Elevations: liveElevations(rec.Elevations, m.now()),
	})
}
