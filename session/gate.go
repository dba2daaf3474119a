package session

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// How the session layer answers what it refuses: every endpoint returns its refusal as an
// error, and serve (or Admit) logs and writes it in one place. Codes, statuses and messages
// are package reason's.

// endpoint is one of the session layer's own endpoints: it writes its answer, or returns
// the refusal for serve to log and write.
type endpoint func(w http.ResponseWriter, r *http.Request) error

// serve adapts e to an http.Handler.
func (m *Manager) serve(e endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := e(w, r); err != nil {
			m.fail(w, r, err)
		}
	})
}

// fail is the one place a refusal of the session layer is logged and written: a redirect
// (to sign in) is sent, anything else is a problem.
func (m *Manager) fail(w http.ResponseWriter, r *http.Request, err error) {
	var to *redirect
	if errors.As(err, &to) {
		if t, ok := w.(problem.ReasonTagger); ok {
			t.TagReason(to.code)
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, to.url, http.StatusFound)
		return
	}
	problem.Fail(m.log, w, r, err)
}

// redirect is the answer to a browser that must go elsewhere first (sign in), returned like
// a refusal so that every way a request is turned back goes through fail.
type redirect struct {
	url  string
	code reason.Code // why: tagged on writers that carry it (forward-auth's X-Portcullis-Reason)
}

func (r *redirect) Error() string { return "redirect to " + r.url }

// refusal is code, logged at Info as msg with a fixed phrase for its cause.
func refusal(code reason.Code, msg, cause string, attrs ...slog.Attr) *problem.Error {
	return problem.Refuse(code, msg, cause, attrs...)
}

// warning is refusal logged at Warn: refusals that may be an attack, or a broken provider.
func warning(code reason.Code, msg, cause string, attrs ...slog.Attr) *problem.Error {
	return problem.Refuse(code, msg, cause, attrs...).At(slog.LevelWarn)
}

// quietly is code, not logged: refusals that say all there is to say (a wrong method).
func quietly(code reason.Code) *problem.Error {
	return &problem.Error{Problem: problem.New(code)}
}

// outage is store_unavailable for storage failing op: logged as an outage, and nobody is
// signed out by it.
func outage(op string, err error) *problem.Error {
	return problem.Outage(reason.StoreUnavailable, "session store unavailable", op, err)
}

// internal is internal_error for what cannot happen (an encoding failure).
func internal(what string, err error) *problem.Error {
	return problem.Outage(reason.InternalError, what, "", err)
}

// methodNotAllowed refuses a method other than those allow lists.
func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return quietly(reason.MethodNotAllowed)
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
	l, err := m.loadChecked(r.Context(), r)
	if err != nil {
		m.fail(w, r, m.loadError(r, err, true))
		return nil, false
	}
	// One context value for both (the view FromContext copies, the record the methods of
	// org.go use): every admitted request makes it.
	a := &admission{view: viewOf(l.rec), l: l}
	a.view.LogID = logID(l.h)
	return r.WithContext(context.WithValue(r.Context(), ctxKey{}, a)), true
}

// loadError is the answer to a request whose session could not be loaded. signIn sends
// browser navigations to sign in.
func (m *Manager) loadError(r *http.Request, err error, signIn bool) error {
	switch {
	case errors.Is(err, errAmbiguousCookie):
		return quietly(reason.AmbiguousCookie)
	case errors.Is(err, errNoSession):
		if !m.anyDiscovered() {
			return quietly(reason.IdPUnavailable)
		}
		if signIn && isNavigation(r) {
			rd, ok := safeRedirect(r.RequestURI)
			if !ok {
				rd = "/"
			}
			return &redirect{url: "/.portcullis/login?rd=" + url.QueryEscape(rd), code: reason.NoSession}
		}
		return quietly(reason.NoSession)
	}
	var pe *problem.Error
	if errors.As(err, &pe) {
		return pe // a refusal already (revalidate.go)
	}
	return outage("", err)
}

// isNavigation reports whether r is a browser navigating (GET/HEAD of a page), which can be
// redirected to sign in, as opposed to an API call, which gets a 401.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	return problem.WantsHTML(r)
}
