package proxy

import (
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
)

var stepUpBody = template.Must(template.New("stepup").Parse(`<h1>Confirm it is you</h1>
<p>The area <code>{{.Route}}</code>{{if .Org}} of the organisation <code>{{.Org}}</code>{{end}} needs a recent, stronger sign-in
{{- if .Methods}} ({{.Methods}}){{end}}, no older than {{.MaxAge}}. Your current sign-in is not enough.</p>
<p>Once confirmed, access is raised for this session{{if .Org}} and this organisation{{end}} for up to {{.Elevation}}.</p>
{{if .NotReplayed}}<p class="note">Your {{.Method}} request was not sent. After confirming, repeat the action.</p>{{end}}
{{if .Ticket}}<form id="portcullis-step-up" method="post" action="/.portcullis/step-up">
<input type="hidden" name="ticket" value="{{.Ticket}}">
<button type="submit">Confirm with a stronger sign-in</button>
</form>{{end}}
<p class="meta">Reason: <code>step_up_required</code>{{if .RequestID}} · Request ID: <code>{{.RequestID}}</code>{{end}}</p>`))

// stepUp enforces the route's step_up for the admitted session acting for the organisation
// the decision resolved ("" on a route that is not org-scoped). Only the session's
// server-side elevations count; the acr of the elevation used goes to the portal. Lacking one,
// the refusal is the challenge: an interstitial for browsers, an RFC 9470 401 for API clients.
func (ex *exchange) stepUp() error {
	su := ex.pol.stepUp
	if su == nil {
		return nil
	}
	s, sess, org := ex.s, ex.sess, ex.id.org
	if e, ok := authz.Elevated(sess.Elevations, org, su, ex.id.elevationsAfter, s.now()); ok {
		ex.id.acr = e.ACR
		return nil
	}
	c := session.NewChallenge(ex.route.Name, su, org, ex.returnPath())
	p := problem.New(reason.StepUpRequired)
	p.Challenge = &problem.Challenge{Route: c.Route, Org: org, ACRValues: strings.Join(c.ACR, " "), AMR: strings.Join(c.AMR, " "),
		MaxAge: int64(c.MaxAge / time.Second)}
	if problem.WantsHTML(ex.r) {
		p.Page = ex.interstitial(c)
	}
	return &denial{code: reason.StepUpRequired, p: p, msg: "step-up required", level: slog.LevelInfo, user: sess.UserKey, org: org, audit: true}
}

// interstitial is the step-up page for browsers: what the area needs, and a button that
// starts the step-up with a ticket bound to the session.
func (ex *exchange) interstitial(c session.Challenge) *page.Page {
	ticket := ""
	if t := ex.s.opts.StepUp; t != nil {
		ticket = t.StepUpTicket(ex.r, c)
	}
	nav := ex.r.Method == http.MethodGet || ex.r.Method == http.MethodHead
	body, err := page.Execute(stepUpBody, struct {
		Route, Org, Methods, MaxAge, Elevation, Ticket, Method, RequestID string
		NotReplayed                                                       bool
	}{c.Route, c.Org, strings.Join(c.AMR, ", "), c.MaxAge.String(), c.Elevation.String(), ticket, ex.r.Method,
		ex.requestID, !nav})
	if err != nil {
		ex.s.log.Error("step-up page", slog.Any("error", err))
	}
	// No form-action: the button posts here and is redirected on to the provider (and maybe
	// beyond), and browsers apply form-action to every hop, which would block the step-up.
	// The page runs no script, so there is nothing to inject a form with.
	return &page.Page{Title: "Confirm it is you", Body: body, FormAction: page.NoFormAction}
}
