package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// How an exchange ends without being forwarded. Every step returns its refusal as an error,
// and exchange.fail is the one place refusals are recorded (metric, log line, audit event)
// and answered. Codes, statuses and messages are package reason's; package problem renders.

// rejection refuses a request before, or instead of, any route's decision (a bad host, a path
// that does not normalise, no route): counted in portcullis_rejected_requests_total; the
// access log has the rest.
type rejection struct{ code reason.Code }

func (e rejection) Error() string { return string(e.code) }

// reject is the rejection for code.
func reject(code reason.Code) error { return rejection{code} }

// denial refuses an admitted person, or fails closed on their behalf: counted in
// portcullis_access_denied_total, logged as msg, and (audit) written to the audit stream as
// access.denied. p is what they are shown, which for an outsider says less than code.
type denial struct {
	code  reason.Code
	p     problem.Problem
	msg   string
	level slog.Level
	cause error
	// user and org are whom and what the refusal concerns.
	user, org string
	audit     bool
	// route names the route in the metric, log and audit when it is not the exchange's (the
	// org picker, which is an own endpoint).
	route string
}

func (e *denial) Error() string { return string(e.code) + ": " + e.msg }

// errAnswered: the step answered the client itself (the gate's sign-in redirect, the org
// picker redirect); nothing is left to record or write.
var errAnswered = errors.New("answered")

// fail records and answers err, the refusal a step of ex returned.
func (ex *exchange) fail(err error) {
	s := ex.s
	var (
		rej rejection
		den *denial
		rec *recoveryRefusal
	)
	switch {
	case errors.Is(err, errAnswered):
	case errors.As(err, &rej):
		s.metrics.rejected.WithLabelValues(string(rej.code)).Inc()
		p := problem.New(rej.code)
		p.RequestID = ex.requestID
		problem.Write(ex.w, ex.r, p)
	case errors.As(err, &den):
		route := den.route
		if route == "" {
			route = ex.routeLabel
		}
		s.metrics.denied.WithLabelValues(route, string(den.code)).Inc()
		attrs := []slog.Attr{slog.String("route", route), slog.String("reason", string(den.code)),
			slog.String("org", den.org), slog.String("user", den.user), slog.String("request_id", ex.requestID)}
		if den.cause != nil {
			attrs = append(attrs, slog.Any("error", den.cause))
		}
		if ex.sess != nil && ex.sess.Email != "" {
			attrs = append(attrs, slog.String("email", ex.sess.Email))
		}
		s.log.LogAttrs(ex.r.Context(), den.level, den.msg, attrs...)
		if den.audit && !countedReasons[den.code] {
			// A counted reason is recorded in its interval's count instead (refusals.go).
			ev := audit.Event{Type: audit.AccessDenied, Org: den.org, User: den.user, Reason: string(den.code),
				Route: route, RequestID: ex.requestID}
			if ex.sess != nil && ex.sess.Email != "" {
				// Next to the opaque key, so an operator can tell who it is without asking.
				ev.Detail = map[string]string{"email": ex.sess.Email}
			}
			s.appendAudit(ex.r, ev)
		}
		den.p.RequestID = ex.requestID
		problem.Write(ex.w, ex.r, den.p)
	case errors.As(err, &rec):
		ex.audited = true // a blocked recovery is its own event (or deliberately quiet)
		rec.give(ex)
	default:
		var e *problem.Error
		if !errors.As(err, &e) {
			e = problem.Outage(reason.InternalError, "internal error", "", err)
		}
		e.RequestID = ex.requestID
		if e.Msg != "" {
			e.Attrs = append(e.Attrs, slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID))
		}
		problem.Fail(s.log, ex.w, ex.r, e)
	}
}

// storeDown fails closed because the membership store could not answer.
func storeDown(user string, err error) *denial {
	return &denial{code: reason.StoreUnavailable, p: problem.New(reason.StoreUnavailable),
		msg: "membership store unavailable; refusing (fail closed)", level: slog.LevelError, cause: err, user: user}
}

// internalError is what cannot happen: a wiring mistake, a signing failure.
func internalError(what string, err error) error {
	return problem.Outage(reason.InternalError, what, "", err)
}

// appendAudit records ev; a failure is logged (the answer is decided already). The append
// outlives a client that went away: the refusal happened, and must be on record.
func (s *Server) appendAudit(r *http.Request, ev audit.Event) {
	if s.opts.Audit == nil {
		return
	}
	if err := s.opts.Audit.Append(context.WithoutCancel(r.Context()), ev); err != nil {
		s.log.Error("audit append failed", slog.Any("error", err), slog.String("request_id", ev.RequestID))
	}
}
