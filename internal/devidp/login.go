package devidp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// errAlreadyDone is returned when a login form is submitted for an auth
// request that has already been logged in to.
var errAlreadyDone = errors.New("auth request already completed")

// totpOpts are RFC 6238's defaults as authenticator apps use them, allowing
// one period of clock drift either way.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// maxFormBytes bounds the login POST body.
const maxFormBytes = 16 << 10

// loginUI serves the login form at pathLogin.
//
// There is no login session at the provider: every authorization request
// shows the form and needs the password again. prompt=login and any max_age
// are therefore always satisfied, and auth_time is always the time of this
// form's submission (plus SetAuthTimeOffset).
//
// The form is a single page: username (pre-filled from login_hint),
// password, and a one-time code field shown when the user is known to have
// TOTP. A TOTP user who leaves the code empty gets ACRPassword, unless the
// relying party asked for ACRMFA in acr_values: then the form comes back
// asking for the code. A user without TOTP always gets ACRPassword, even when
// ACRMFA was asked for; the relying party must check the acr it receives.
// A wrong code fails the login, it is never downgraded to password-only.
//
// CSRF: the form carries the auth request id and a random token stored with
// that auth request; a POST without both is refused. After maxLoginFailures
// wrong attempts the auth request is discarded.
type loginUI struct {
	st       *storage
	issuer   string
	log      *slog.Logger
	now      func() time.Time
	callback func(ctx context.Context, authRequestID string) string
}

// loginPage is what the template renders.
type loginPage struct {
	Action        string
	AuthRequestID string
	CSRF          string
	ClientID      string
	Username      string
	ShowOTP       bool
	MFARequested  bool
	Error         string
}

// loginTmpl is the form, shown in the layout of Portcullis's own pages (internal/page) under
// the provider's name, so a newcomer's first sign-in looks like the rest of the demo.
var loginTmpl = template.Must(template.New("login").Parse(`<h1>Sign in</h1>
<p>to <code>{{.ClientID}}</code>, at the Portcullis development identity provider. Every account of
the demo is listed in the terminal that started it.</p>
{{if .Error}}<p role="alert" class="note">{{.Error}}</p>{{end}}
<form id="devidp-login" method="post" action="{{.Action}}">
<input type="hidden" name="authRequestID" value="{{.AuthRequestID}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<p><label>Username<br><input name="username" autocomplete="username" value="{{.Username}}" required autofocus></label></p>
<p><label>Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
{{if .ShowOTP}}<p><label>One-time code{{if not .MFARequested}} (optional){{end}}<br><input name="otp" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}"{{if .MFARequested}} required{{end}}></label></p>{{end}}
<p><button type="submit">Sign in</button></p>
</form>
`))

// loginBrand names the provider on its page: it is not the portal.
var loginBrand = page.Brand{ProductName: "Portcullis dev identity provider"}

func (l *loginUI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The page's headers are internal/page's (no caching, no framing, a CSP allowing only its
	// stylesheet); without form-action, which browsers apply to the redirect chain after the
	// POST, ending at the relying party's redirect_uri.
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		l.show(w, r)
	case http.MethodPost:
		l.submit(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// show renders the empty form for the auth request named in the query.
func (l *loginUI) show(w http.ResponseWriter, r *http.Request) {
	page, err := l.page(r.URL.Query().Get("authRequestID"), "")
	if err != nil {
		http.Error(w, "unknown or expired login request", http.StatusBadRequest)
		return
	}
	l.render(w, r, http.StatusOK, page)
}

// page builds the form for an auth request; username pre-fills it (the
// login_hint when empty).
func (l *loginUI) page(id, username string) (loginPage, error) {
	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	req, err := l.st.liveAuthRequest(id)
	if err != nil {
		return loginPage{}, err
	}
	if req.done {
		return loginPage{}, errAlreadyDone
	}
	if username == "" {
		username = req.loginHint
	}
	u := l.st.users[username]
	if u == nil {
		// Relying parties send the email as login_hint (Portcullis does at step-up); find
		// the person by address so the form asks for the right second factor.
		for _, c := range l.st.users {
			if c.Email != "" && strings.EqualFold(c.Email, username) {
				u, username = c, c.Username
				break
			}
		}
	}
	return loginPage{
		Action:        l.issuer + pathLogin,
		AuthRequestID: req.id,
		CSRF:          req.csrf,
		ClientID:      req.clientID,
		Username:      username,
		ShowOTP:       u != nil && u.TOTPSecret != "",
		MFARequested:  mfaRequested(req.acrValues),
	}, nil
}

func (l *loginUI) render(w http.ResponseWriter, r *http.Request, status int, p loginPage) {
	var body bytes.Buffer
	if err := loginTmpl.Execute(&body, p); err != nil {
		l.log.Error("devidp: render login form", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	page.Render(w, r, page.Page{Status: status, Title: "Sign in", Body: template.HTML(body.String()), //nolint:gosec // html/template output
		FormAction: page.NoFormAction, Brand: &loginBrand})
}

// submit checks the posted credentials and, on success, sends the browser to
// the op library's callback, which issues the code.
func (l *loginUI) submit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id := r.PostForm.Get("authRequestID")
	username := r.PostForm.Get("username")
	password := r.PostForm.Get("password")
	code := strings.TrimSpace(r.PostForm.Get("otp"))

	l.st.mu.Lock()
	req, err := l.st.liveAuthRequest(id)
	if err == nil && req.done {
		err = errAlreadyDone
	}
	var csrfOK, mfaWanted bool
	if err == nil {
		csrfOK = subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(req.csrf)) == 1
		mfaWanted = mfaRequested(req.acrValues)
	}
	var user *User
	if u, ok := l.st.users[username]; ok && !l.st.disabled[username] {
		cp := *u
		user = &cp
	}
	l.st.mu.Unlock()
	if err != nil {
		http.Error(w, "unknown, expired or completed login request", http.StatusBadRequest)
		return
	}
	if !csrfOK {
		http.Error(w, "login form token mismatch", http.StatusForbidden)
		return
	}

	// Compare the password even for an unknown user, so both take as long.
	want := "\x00no-such-user"
	if user != nil {
		want = user.Password
	}
	pwOK := subtle.ConstantTimeCompare([]byte(password), []byte(want)) == 1 && user != nil
	if !pwOK {
		l.fail(w, r, id, username, "Wrong username or password.")
		return
	}

	mfa := false
	if user.TOTPSecret != "" {
		switch {
		case code != "":
			ok, err := totp.ValidateCustom(code, user.TOTPSecret, l.now(), totpOpts)
			if err != nil || !ok {
				l.fail(w, r, id, username, "Wrong one-time code.")
				return
			}
			mfa = true
		case mfaWanted:
			// Not a failure: the relying party asked for a second factor
			// the user has not entered yet.
			page, err := l.page(id, username)
			if err != nil {
				http.Error(w, "unknown or expired login request", http.StatusBadRequest)
				return
			}
			page.Error = "This application requires your one-time code."
			l.render(w, r, http.StatusOK, page)
			return
		}
	}

	if err := l.st.completeLogin(id, user, mfa); err != nil {
		http.Error(w, "unknown, expired or completed login request", http.StatusBadRequest)
		return
	}
	l.log.Info("devidp: login", "sub", user.Subject, "mfa", mfa)
	http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
}

// fail counts a failed attempt and shows the form again, or ends the auth
// request after too many.
func (l *loginUI) fail(w http.ResponseWriter, r *http.Request, id, username, msg string) {
	l.st.mu.Lock()
	ended := false
	if req, err := l.st.liveAuthRequest(id); err == nil {
		req.failures++
		if req.failures >= maxLoginFailures {
			delete(l.st.authRequests, id)
			ended = true
		}
	}
	l.st.mu.Unlock()
	l.log.Info("devidp: login failed", "username", username, "reason", msg)
	if ended {
		http.Error(w, "too many failed attempts; start again from the application", http.StatusForbidden)
		return
	}
	page, err := l.page(id, username)
	if err != nil {
		http.Error(w, "unknown or expired login request", http.StatusBadRequest)
		return
	}
	page.Error = msg
	l.render(w, r, http.StatusUnauthorized, page)
}

// decodeTOTPSecret decodes a base32 secret the way pquerna/otp does
// (padding optional, case-insensitive), so New can reject a bad one early.
func decodeTOTPSecret(s string) ([]byte, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if n := len(s) % 8; n != 0 {
		s += strings.Repeat("=", 8-n)
	}
	return base32.StdEncoding.DecodeString(s)
}
