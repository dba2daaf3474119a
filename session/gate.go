package session

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
)

// Reason codes of the session layer's refusals. Stable; they appear in pages, JSON, logs.
const (
	ReasonNoSession        = "no_session"
	ReasonStoreUnavailable = "store_unavailable"
	ReasonIdPUnavailable   = "idp_unavailable"
	ReasonAmbiguousCookie  = "ambiguous_session_cookie"
	ReasonBadState         = "invalid_state"
	ReasonLoginMismatch    = "login_browser_mismatch"
	ReasonIdPError         = "idp_error"
	ReasonSignInFailed     = "sign_in_failed"
	ReasonEmailUnverified  = "email_not_verified"
	ReasonCSRF             = "csrf_failed"
	ReasonBadLogoutToken   = "invalid_logout_token"
	ReasonMethod           = "method_not_allowed"
)

var messages = map[string]string{
	ReasonNoSession:        "You need to sign in to reach this page.",
	ReasonStoreUnavailable: "Sign-in is temporarily unavailable. Try again in a moment.",
	ReasonIdPUnavailable:   "The sign-in service is not reachable at the moment. Try again in a moment.",
	ReasonAmbiguousCookie:  "Your browser sent more than one session cookie. Clear this site's cookies and sign in again.",
	ReasonBadState:         "This sign-in link is not valid any more (used, expired or unknown). Start again.",
	ReasonLoginMismatch:    "This sign-in was started in another browser. Start again here.",
	ReasonIdPError:         "The identity provider did not sign you in.",
	ReasonSignInFailed:     "Sign-in could not be completed. Start again.",
	ReasonEmailUnverified:  "Your email address is not verified at the identity provider.",
	ReasonCSRF:             "This sign-out request did not come from this site's sign-out page.",
	ReasonBadLogoutToken:   "The logout token is not valid.",
	ReasonMethod:           "This address does not accept that kind of request.",
}

// newProblem is the refusal for reason, with a way forward where there is one.
func newProblem(status int, reason string) problem.Problem {
	p := problem.New(status, reason, messages[reason])
	switch reason {
	case ReasonBadState, ReasonLoginMismatch, ReasonSignInFailed, ReasonIdPError, ReasonNoSession:
		p.Action, p.ActionText = "/.portcullis/login", "Sign in"
	}
	return p
}

// refuse renders a refusal through the one renderer. Causes are logged by callers, never shown.
func refuse(w http.ResponseWriter, r *http.Request, status int, reason string) {
	problem.Write(w, r, newProblem(status, reason))
}

var _ interface {
	Admit(http.ResponseWriter, *http.Request, *config.Route) (*http.Request, bool)
} = (*Manager)(nil)

// Admit implements proxy.Gate: it admits a request carrying a valid session, with the session
// in its context (FromContext), and otherwise writes the refusal: a browser navigation is sent
// to sign in and comes back to where it was; an API client gets 401 no_session. If storage
// cannot answer the request is refused with 503 store_unavailable: never admitted on the
// cookie alone (REDIS-01).
func (m *Manager) Admit(w http.ResponseWriter, r *http.Request, route *config.Route) (*http.Request, bool) {
	l, err := m.load(r.Context(), r, true)
	if err == nil {
		s := viewOf(l.rec)
		ctx := context.WithValue(context.WithValue(r.Context(), ctxKey{}, &s), admittedKey{}, l)
		return r.WithContext(ctx), true
	}
	m.refuseLoad(w, r, err, true)
	return nil, false
}

// refuseLoad answers a request whose session could not be loaded. signIn sends browser
// navigations to sign in.
func (m *Manager) refuseLoad(w http.ResponseWriter, r *http.Request, err error, signIn bool) {
	switch {
	case errors.Is(err, errAmbiguousCookie):
		refuse(w, r, http.StatusBadRequest, ReasonAmbiguousCookie)
	case errors.Is(err, errNoSession):
		if m.rp.Load() == nil {
			refuse(w, r, http.StatusServiceUnavailable, ReasonIdPUnavailable)
			return
		}
		if signIn && isNavigation(r) {
			rd, ok := safeRedirect(r.RequestURI)
			if !ok {
				rd = "/"
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, "/.portcullis/login?rd="+url.QueryEscape(rd), http.StatusFound)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
		refuse(w, r, http.StatusUnauthorized, ReasonNoSession)
	default:
		// An outage, not a bad session: logged as such, and nobody is signed out by it.
		m.log.Error("session store unavailable", slog.String("error", err.Error()))
		refuse(w, r, http.StatusServiceUnavailable, ReasonStoreUnavailable)
	}
}

// isNavigation reports whether r is a browser navigating (GET/HEAD of a page), which can be
// redirected to sign in, as opposed to an API call, which gets a 401.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return problem.WantsHTML(r)
}
