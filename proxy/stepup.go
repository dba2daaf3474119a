package proxy

import (
	"log/slog"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
)

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
	p := c.Problem()
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
	p, err := session.StepUpPage(c, ticket, ex.r.Method, ex.requestID)
	if err != nil {
		ex.s.log.Error("step-up page", slog.Any("error", err))
	}
	return p
}
