package session

import (
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
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

// Problem is the step_up_required refusal stating c: for API clients, the RFC 9470 challenge
// (WWW-Authenticate and the JSON fields); browsers are given StepUpPage as its page.
func (c Challenge) Problem() problem.Problem {
	p := problem.New(reason.StepUpRequired)
	p.Challenge = &problem.Challenge{Route: c.Route, Org: c.Org, ACRValues: strings.Join(c.ACR, " "), AMR: strings.Join(c.AMR, " "),
		MaxAge: int64(c.MaxAge / time.Second)}
	return p
}

// StepUpPage is the step-up interstitial for browsers: what the area of c needs, and a button
// posting ticket (StepUpTicket; "" shows no button) to start the step-up. method is the
// refused request's: for anything but a navigation the page says the request was not sent.
func StepUpPage(c Challenge, ticket, method, requestID string) (*page.Page, error) {
	nav := method == http.MethodGet || method == http.MethodHead
	body, err := page.Execute(stepUpBody, struct {
		Route, Org, Methods, MaxAge, Elevation, Ticket, Method, RequestID string
		NotReplayed                                                       bool
	}{c.Route, c.Org, strings.Join(c.AMR, ", "), c.MaxAge.String(), c.Elevation.String(), ticket, method, requestID, !nav})
	// No form-action: the button posts here and is redirected on to the provider (and maybe
	// beyond), and browsers apply form-action to every hop, which would block the step-up.
	// The page runs no script, so there is nothing to inject a form with.
	return &page.Page{Title: "Confirm it is you", Body: body, FormAction: page.NoFormAction}, err
}
