package proxy

import (
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/session"
)

// StepUpper is what the step-up interstitial needs from the session side: a ticket for the
// route's demand, bound to the session, that the interstitial's button posts to
// /.portcullis/step-up. A gate without it gets the interstitial without a button.
type StepUpper interface {
	StepUpTicket(r *http.Request, c session.Challenge) string
}

// reasonStepUpRequired is the reason code of a request lacking the elevation its route needs.
const reasonStepUpRequired = session.ReasonStepUpRequired

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

// stepUp enforces route's step_up for the admitted session sess acting for id.org (the
// organisation the route's decision resolved; "" on a route that is not org-scoped). Only the
// session's server-side elevations count; the acr of the elevation used goes to the portal in
// id. Lacking one, it writes the challenge itself: an interstitial for browsers, an RFC 9470
// 401 for API clients, and reports false.
func (s *Server) stepUp(w http.ResponseWriter, r *http.Request, route *config.Route, sess *session.Session, id *identity, fi *forwardInfo) bool {
	su := route.StepUp
	if su == nil {
		return true
	}
	org, now := id.org, s.now()
	for i := range sess.Elevations {
		if e := &sess.Elevations[i]; e.Satisfies(org, su, now) {
			id.acr = e.ACR
			return true
		}
	}
	s.recordDenied(r, route, fi, sess.UserKey, org, reasonStepUpRequired, "step-up required")
	c := session.NewChallenge(route, org, returnPath(r))
	h := w.Header()
	h.Set("WWW-Authenticate", stepUpChallenge(c))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if !problem.WantsHTML(r) {
		writeJSON(w, r, http.StatusUnauthorized, struct {
			Error     string `json:"error"`
			Message   string `json:"message"`
			Route     string `json:"route"`
			Org       string `json:"org,omitempty"`
			ACRValues string `json:"acr_values,omitempty"`
			AMR       string `json:"amr,omitempty"`
			MaxAge    int64  `json:"max_age"`
			RequestID string `json:"request_id,omitempty"`
		}{reasonStepUpRequired, "This resource needs a recent, stronger sign-in; complete it in a browser and retry.",
			route.Name, org, strings.Join(c.ACR, " "), strings.Join(c.AMR, " "), seconds(c.MaxAge.Seconds()), fi.requestID})
		return false
	}
	ticket := ""
	if g, ok := s.opts.Gate.(StepUpper); ok {
		ticket = g.StepUpTicket(r, c)
	}
	nav := r.Method == http.MethodGet || r.Method == http.MethodHead
	body, err := page.Execute(stepUpBody, struct {
		Route, Org, Methods, MaxAge, Elevation, Ticket, Method, RequestID string
		NotReplayed                                                       bool
	}{route.Name, org, strings.Join(c.AMR, ", "), c.MaxAge.String(), c.Elevation.String(), ticket, r.Method,
		fi.requestID, !nav})
	if err != nil {
		s.log.Error("step-up page", slog.Any("error", err))
	}
	// No form-action: the button posts here and is redirected on to the provider (and maybe
	// beyond), and browsers apply form-action to every hop, which would block the step-up.
	// The page runs no script, so there is nothing to inject a form with.
	page.Render(w, r, page.Page{Status: http.StatusUnauthorized, Title: "Confirm it is you", Body: body,
		FormAction: page.NoFormAction})
	return false
}

// stepUpChallenge is the RFC 9470 challenge for c.
func stepUpChallenge(c session.Challenge) string {
	v := `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required"`
	if len(c.ACR) > 0 {
		// Config validation keeps quotes and spaces out of acr values.
		v += fmt.Sprintf(`, acr_values="%s"`, strings.Join(c.ACR, " "))
	}
	return v + ", max_age=" + strconv.FormatInt(seconds(c.MaxAge.Seconds()), 10)
}

func seconds(f float64) int64 { return int64(f) }
