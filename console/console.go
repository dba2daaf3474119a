package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/coalesce"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/session"
)

// Prefix is the console's path space.
const Prefix = "/.portcullis/console/"

// RouteName names the console in step-up challenges, logs and audit events.
const RouteName = "_console"

// route stands for the console in the gate.
var route = config.Route{Name: RouteName}

// Sessions is what the console needs of the session side (*session.Manager): the person
// behind a request, a CSRF token bound to their session, the step-up ticket, and their
// sessions.
type Sessions interface {
	Admit(w http.ResponseWriter, r *http.Request, route *config.Route) (*http.Request, bool)
	CSRFToken(r *http.Request) string
	CheckCSRF(r *http.Request, token string) bool
	StepUpTicket(r *http.Request, c session.Challenge) string
	SessionsOf(r *http.Request) ([]session.Info, error)
	EndSessionOf(r *http.Request, id string) error
}

// API is the administration API, called as a person, or as an operator (*admin.Server).
type API interface {
	As(user, via string) http.Handler
	AsOperator(user, via string) http.Handler
}

// Options are the console's collaborators.
type Options struct {
	// Sessions admits the requests; API answers every read and change. Both required.
	Sessions Sessions
	API      API
	// StepUp is console.step_up: what the administration pages demand. nil: no
	// administration pages.
	StepUp *config.StepUp
	// Operators are console.operators: the people who act as operators here, after the
	// step-up (for no organisation: the platform's).
	Operators []string
	// Audit receives the console's refusals: a step-up demanded, a page or change the API
	// refused (another organisation's, another person's). nil records nothing.
	Audit audit.Sink
	// Current is the session Sessions.Admit put in a request's context; nil means
	// session.FromContext.
	Current func(ctx context.Context) (*session.Session, bool)
	// Logger receives what goes wrong; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Console serves the console's pages.
type Console struct {
	o   Options
	su  *authz.StepUp
	log *slog.Logger
	now func() time.Time
	mux *http.ServeMux
	// origin refuses cross-origin form posts (Sec-Fetch-Site and Origin), besides the
	// session-bound CSRF token every form carries.
	origin *http.CrossOriginProtection
	// refusals coalesces the refusal events (audit).
	refusals *coalesce.Set[refusalRef]
}

// New builds the console.
func New(o Options) (*Console, error) {
	if o.Sessions == nil || o.API == nil {
		return nil, errors.New("console: sessions and the administration API are required")
	}
	if len(o.Operators) > 0 && o.StepUp == nil {
		return nil, errors.New("console: operators need console.step_up")
	}
	c := &Console{o: o, su: authz.CompileStepUp(o.StepUp), log: o.Logger, now: o.Now, mux: http.NewServeMux(),
		origin: http.NewCrossOriginProtection(), refusals: coalesce.New[refusalRef](auditInterval)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.o.Current == nil {
		c.o.Current = session.FromContext
	}
	handle := func(pattern string, h func(*exchange) error) {
		c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			c.serve(w, r, h)
		})
	}
	handle("GET "+Prefix+"{$}", (*exchange).home)
	handle("POST "+Prefix+"sessions/end", (*exchange).endSession)
	handle("GET "+Prefix+"operator/{$}", (*exchange).operatorHome)
	handle("GET "+Prefix+"operator/events", (*exchange).eventForm)
	handle("POST "+Prefix+"operator/events", (*exchange).event)
	handle("GET "+Prefix+"request", (*exchange).requestForm)
	handle("POST "+Prefix+"request", (*exchange).createRequest)
	handle("GET "+Prefix+"orgs/{org}/requests/{id}", (*exchange).request)
	handle("POST "+Prefix+"orgs/{org}/requests/{id}/{action}", (*exchange).decide)
	handle("GET "+Prefix+"orgs/{org}/{$}", (*exchange).members)
	handle("GET "+Prefix+"orgs/{org}/access.csv", func(ex *exchange) error { return ex.export("csv") })
	handle("GET "+Prefix+"orgs/{org}/access.json", func(ex *exchange) error { return ex.export("json") })
	handle("GET "+Prefix+"orgs/{org}/requests", (*exchange).requests)
	handle("GET "+Prefix+"orgs/{org}/revoke", (*exchange).revokeForm)
	handle("POST "+Prefix+"orgs/{org}/revoke", (*exchange).revoke)
	handle("GET "+Prefix+"orgs/{org}/invite", (*exchange).inviteForm)
	handle("POST "+Prefix+"orgs/{org}/invite", (*exchange).invite)
	handle("GET "+Prefix+"orgs/{org}/change", (*exchange).changeForm)
	handle("POST "+Prefix+"orgs/{org}/change", (*exchange).change)
	handle("GET "+Prefix+"orgs/{org}/activity", (*exchange).activity)
	handle("GET "+Prefix+"orgs/{org}/activity.csv", func(ex *exchange) error { return ex.activityExport("csv") })
	handle("GET "+Prefix+"orgs/{org}/activity.json", func(ex *exchange) error { return ex.activityExport("json") })
	handle("GET "+Prefix+"orgs/{org}/machines", (*exchange).machines)
	handle("GET "+Prefix+"orgs/{org}/machines/{id}/revoke", (*exchange).machineRevokeForm)
	handle("POST "+Prefix+"orgs/{org}/machines/{id}/revoke", (*exchange).machineRevoke)
	handle("GET "+Prefix+"orgs/{org}/reviews", (*exchange).reviews)
	handle("POST "+Prefix+"orgs/{org}/reviews", (*exchange).startReview)
	handle("GET "+Prefix+"orgs/{org}/reviews/{id}", (*exchange).review)
	handle("POST "+Prefix+"orgs/{org}/reviews/{id}/decide", (*exchange).decideReview)
	handle("GET "+Prefix+"orgs/{org}/reviews/{id}/change", (*exchange).reviewChangeForm)
	handle("POST "+Prefix+"orgs/{org}/reviews/{id}/change", (*exchange).reviewChange)
	return c, nil
}

// Endpoints are the console's own endpoints (proxy.Options.Endpoints): everything under
// /.portcullis/console/, and /.portcullis/console itself, which leads there.
func (c *Console) Endpoints() map[string]http.Handler {
	return map[string]http.Handler{
		"console/": c,
		"console": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, Prefix, http.StatusSeeOther)
		}),
	}
}

// ServeHTTP serves one console request.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := c.mux.Handler(r); pattern == "" {
		// Nothing here (or not with this method): the same 404 as any unknown own path,
		// before any session is read.
		problem.Write(w, r, problem.New(reason.NoRoute))
		return
	}
	c.mux.ServeHTTP(w, r) // which sets the path's values; Handler does not
}

// exchange is one admitted console request.
type exchange struct {
	c    *Console
	w    http.ResponseWriter
	r    *http.Request
	sess *session.Session
	// listed: the person is one of console.operators; operator: and holds the step-up, so
	// the API is called as an operator (asOperator).
	listed, operator bool
	// quiet leaves a refused call unaudited: a probe whose refusal is not the person's
	// attempt (an operator's own request read as the person first).
	quiet bool
}

// serve admits r (signing the browser in when it has no session), checks a form's origin
// and CSRF token, and runs h; its error is the answer.
func (c *Console) serve(w http.ResponseWriter, r *http.Request, h func(*exchange) error) {
	r, ok := c.o.Sessions.Admit(w, r, &route)
	if !ok {
		return // the gate answered: a sign-in redirect, 401, 503
	}
	sess, ok := c.o.Current(r.Context())
	if !ok {
		problem.Fail(c.log, w, r, errors.New("console: admitted request without a session"))
		return
	}
	ex := &exchange{c: c, w: w, r: r, sess: sess, listed: slices.Contains(c.o.Operators, sess.UserKey)}
	var err error
	if r.Method == http.MethodPost {
		err = ex.checkForm()
	}
	if err == nil {
		err = h(ex)
	}
	if err != nil {
		ex.fail(err)
	}
}

// formLimit bounds a form's body: the largest is a request's reason.
const formLimit = 16 << 10

// checkForm refuses a post that is cross-origin or lacks the session's CSRF token.
func (ex *exchange) checkForm() error {
	if err := ex.c.origin.Check(ex.r); err != nil {
		return ex.refusedForm("cross-origin form post") // before the body is read
	}
	ex.r.Body = http.MaxBytesReader(ex.w, ex.r.Body, formLimit)
	if err := ex.r.ParseForm(); err != nil {
		e := problem.Refuse(reason.InvalidInput, "console form refused", err.Error())
		e.Status = http.StatusBadRequest
		return e
	}
	if !ex.c.o.Sessions.CheckCSRF(ex.r, ex.r.PostForm.Get("csrf")) {
		return ex.refusedForm("missing or wrong CSRF token")
	}
	return nil
}

func (ex *exchange) refusedForm(cause string) error {
	ex.audit(reason.CSRFFailed, "", map[string]string{"path": ex.r.URL.Path})
	return problem.Refuse(reason.CSRFFailed, "console form refused", cause, slog.String("user", ex.sess.UserKey))
}

// fail answers err: a refusal as it is (the API logged its own), anything else logged here
// as an internal error.
func (ex *exchange) fail(err error) {
	var apiErr *apiError
	if errors.As(err, &apiErr) {
		problem.Write(ex.w, ex.r, apiErr.p)
		return
	}
	problem.Fail(ex.c.log, ex.w, ex.r, err)
}

// auditInterval bounds the console's refusal events: one per person, organisation, reason and
// path per interval, so that a page reloaded, or a link that makes a browser ask again and
// again, cannot flood an organisation's activity (the log still has each one).
const auditInterval = time.Minute

// refusalRef is what one coalesced refusal event stands for.
type refusalRef struct{ user, org, code, path string }

// audit records a refusal of the console for the person, at org, at most once per
// auditInterval for the same refusal.
func (ex *exchange) audit(code reason.Code, org string, detail map[string]string) {
	if ex.c.o.Audit == nil {
		return
	}
	now := ex.c.now()
	ex.c.refusals.Sweep(now) // no worker here: the set forgets as it goes
	if !ex.c.refusals.Admit(refusalRef{ex.sess.UserKey, org, string(code), ex.r.URL.Path}, now) {
		return
	}
	ev := audit.Event{Time: now, Type: audit.AccessDenied, User: ex.sess.UserKey, Org: org, Reason: string(code),
		Route: RouteName, RequestID: ex.w.Header().Get("X-Request-Id"), Detail: detail}
	if err := ex.c.o.Audit.Append(context.WithoutCancel(ex.r.Context()), ev); err != nil {
		ex.c.log.Error("audit append failed", slog.String("type", string(ev.Type)), slog.Any("error", err))
	}
}

// apiError is the API's refusal of a call, as it told the console.
type apiError struct {
	p problem.Problem
}

func (e *apiError) Error() string { return string(e.p.Reason) + ": " + e.p.Message }

// call makes one API call as the person: method on path (under /api/v1), with in as the JSON
// body (nil for none), decoding the answer into out (nil to drop it). A refusal comes back as
// an *apiError carrying what the API said; an answer that is neither is an internal error.
func (ex *exchange) call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ex.r.Context(), method, "/api/v1"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	rec := &recorder{h: http.Header{}}
	api := ex.c.o.API.As
	if ex.operator {
		api = ex.c.o.API.AsOperator
	}
	api(ex.sess.UserKey, "console session "+ex.sess.LogID).ServeHTTP(rec, req)
	if rec.status >= 400 {
		var p problem.Problem
		if err := json.Unmarshal(rec.body.Bytes(), &p); err != nil || p.Reason == "" {
			return fmt.Errorf("console: %s %s: answer %d without a problem", method, path, rec.status)
		}
		p.Status, p.RequestID = rec.status, ""
		s := reason.Of(p.Reason)
		p.Action, p.ActionText, p.Bearer = s.Action, s.ActionText, ""
		switch p.Reason {
		case reason.NotPermitted, reason.NotFound, reason.Unauthenticated:
			if ex.quiet {
				break
			}
			// Another organisation's page, another person's request, an id edited in a
			// URL or a form: refused by the API, and recorded here as the person's attempt.
			ex.audit(p.Reason, ex.r.PathValue("org"), map[string]string{"path": ex.r.URL.Path, "api": method + " " + path})
		}
		return &apiError{p: p}
	}
	if out == nil {
		return nil
	}
	if rec.status/100 != 2 {
		return fmt.Errorf("console: %s %s: answer %d", method, path, rec.status)
	}
	if raw, ok := out.(*rawBody); ok {
		*raw = rec.body.Bytes()
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("console: %s %s: %w", method, path, err)
	}
	return nil
}

// rawBody, as call's out, takes the answer as it is (a CSV export).
type rawBody []byte

// recorder keeps an in-process answer of the API.
type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// orgParam is the {org} of the path, checked.
func (ex *exchange) orgParam() (string, error) {
	org := ex.r.PathValue("org")
	if !syntax.OrgID(org) {
		return "", problem.Refuse(reason.NoRoute, "console: malformed org id", "")
	}
	return org, nil
}

// stepUp demands the console's step-up for org before an administration page or change:
// nil when the session holds an elevation for org that meets console.step_up, else the
// interstitial (RFC 9470 for a client that is not a browser), returning to returnTo.
// Without console.step_up there are no administration pages.
func (ex *exchange) stepUp(org, returnTo string) error {
	su := ex.c.su
	if su == nil {
		return problem.Refuse(reason.NoRoute, "console: administration pages need console.step_up", "")
	}
	if ex.operator {
		return nil // an operator holds the platform's step-up (asOperator)
	}
	if _, ok := authz.Elevated(ex.sess.Elevations, org, su, time.Time{}, ex.c.now()); ok {
		return nil
	}
	ch := session.NewChallenge(RouteName, su, org, returnTo)
	p := ch.Problem()
	if problem.WantsHTML(ex.r) {
		pg, err := session.StepUpPage(ch, ex.c.o.Sessions.StepUpTicket(ex.r, ch), ex.r.Method, ex.w.Header().Get("X-Request-Id"))
		if err != nil {
			return err
		}
		p.Page = pg
	}
	ex.audit(reason.StepUpRequired, org, map[string]string{"path": ex.r.URL.Path})
	ex.c.log.LogAttrs(ex.r.Context(), slog.LevelInfo, "step-up required", slog.String("route", RouteName),
		slog.String("user", ex.sess.UserKey), slog.String("org", org))
	return &apiError{p: p}
}

// asOperator makes the rest of the exchange an operator's, for a person console.operators
// names: after the step-up for no organisation (the platform's), which is demanded otherwise.
// Nothing is called as an operator before it.
func (ex *exchange) asOperator(returnTo string) error {
	if !ex.listed {
		ex.audit(reason.NotPermitted, "", map[string]string{"path": ex.r.URL.Path})
		return problem.Refuse(reason.NotPermitted, "console: operators only", "", slog.String("user", ex.sess.UserKey))
	}
	if err := ex.stepUp("", returnTo); err != nil {
		return err
	}
	ex.operator = true
	return nil
}

// render writes a console page.
func (ex *exchange) render(title, name string, data any) error {
	return ex.renderStatus(http.StatusOK, title, name, data)
}

// renderStatus writes a console page with status (a form shown again with what was wrong).
func (ex *exchange) renderStatus(status int, title, name string, data any) error {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		return fmt.Errorf("console: page %s: %w", name, err)
	}
	page.Render(ex.w, ex.r, page.Page{Status: status, Title: title, Body: template.HTML(buf.String())}) //nolint:gosec // html/template output
	return nil
}

// statusOf is the status of a page shown with refusal: 200 for none, else the refusal's (a
// form shown again with what was wrong).
func statusOf(refusal *problem.Problem) int {
	if refusal == nil {
		return http.StatusOK
	}
	return refusal.Status
}

// seeOther ends a form post: POST-redirect-GET to a console path.
func (ex *exchange) seeOther(path string, q url.Values) error {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	http.Redirect(ex.w, ex.r, path, http.StatusSeeOther)
	return nil
}
