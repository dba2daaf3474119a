package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// Members looks up an organisation and a person's membership in it. store.Cache implements
// it; an error means storage could not answer, and the request fails closed.
type Members interface {
	Lookup(ctx context.Context, org, user string) (*store.Org, *store.Membership, error)
	OrgsOf(ctx context.Context, user string) ([]string, error)
}

// prefetcher is implemented by store.Cache: it marks a request's context so that loading its
// session also reads the membership the decision will look up, in the same Redis round trip
// (store.Cache.WithPrefetch). org is the organisation when the route knows it before sign-in,
// "" for the session's choice.
type prefetcher interface {
	WithPrefetch(ctx context.Context, org string) context.Context
}

// Reason codes of the access layer, beside authz's own.
const (
	reasonStoreUnavailable = "store_unavailable"
	reasonOrgNotChosen     = "no_org"
)

// routePolicy is one route's compiled access rule.
type routePolicy struct {
	// recovery is the compiled recovery guard of a public route; nil without one.
	recovery  *authz.RecoverySpec
	orgScoped bool
	require   authz.Requirement
	resolver  authz.OrgResolver
	headers   config.IdentityHeaders
}

// compilePolicies prepares every route's policy and the CGI names of every identity header
// (all routes' names), which are stripped from every request on every route.
func compilePolicies(cfg *config.Config) ([]routePolicy, []string, error) {
	pols := make([]routePolicy, len(cfg.Routes))
	seen := map[string]bool{}
	var cgi []string
	addCGI := func(h config.IdentityHeaders) {
		for _, n := range []string{h.User, h.Email, h.Org, h.Roles, h.Purpose, h.Kind, h.Assertion} {
			if c := cgiName(n); n != "" && !seen[c] {
				seen[c] = true
				cgi = append(cgi, c)
			}
		}
	}
	addCGI(cfg.Identity.Headers)
	for i, r := range cfg.Routes {
		p := routePolicy{headers: mergeHeaders(cfg.Identity.Headers, r.IdentityHeaders)}
		addCGI(p.headers)
		if r.RecoveryGuard != nil {
			// Config validation mirrors NewRecoverySpec; should they ever disagree, the
			// configuration is refused here rather than served without its guard.
			spec, err := compileRecovery(r.RecoveryGuard)
			if err != nil {
				return nil, nil, fmt.Errorf("route %s: recovery_guard: %w", r.Name, err)
			}
			p.recovery = spec
		}
		if r.Org != nil || r.Require != nil {
			p.orgScoped = true
			p.require = authz.CompileRequire(r.Require)
			src := r.Org
			if src == nil {
				src = &config.OrgSource{From: config.OrgFromSession}
			}
			res, err := authz.NewOrgResolver(src)
			if err != nil {
				return nil, nil, fmt.Errorf("route %s: %w", r.Name, err)
			}
			p.resolver = res
		}
		pols[i] = p
	}
	return pols, cgi, nil
}

func mergeHeaders(global config.IdentityHeaders, route *config.IdentityHeaders) config.IdentityHeaders {
	h := global
	if route == nil {
		return h
	}
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&h.User, route.User}, {&h.Email, route.Email}, {&h.Org, route.Org}, {&h.Roles, route.Roles},
		{&h.Purpose, route.Purpose}, {&h.Kind, route.Kind}, {&h.Assertion, route.Assertion},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	return h
}

// identity is what the portal is told about an admitted request.
type identity struct {
	user, email, org, purpose, kind, acr string
	roles                                []string
	assertion                            string
}

// admit runs sign-in and then, on org-scoped routes, the membership decision. It writes the
// refusal itself and reports whether the request may go on.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, st *state, idx int, host string, fi *forwardInfo) (*http.Request, bool) {
	route := &st.cfg.Routes[idx]
	if s.opts.Gate == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
		writeProblem(w, r, newProblem(http.StatusUnauthorized, reasonNoSession))
		return nil, false
	}
	pol := &st.policies[idx]
	if pol.orgScoped {
		r = s.withPrefetch(r, st, pol, host, fi)
	}
	r, ok := s.opts.Gate.Admit(w, r, route)
	if !ok {
		return nil, false
	}
	sess, ok := session.FromContext(r.Context())
	if !ok {
		// A gate that admits without a session is a wiring mistake; refuse rather than guess.
		s.log.Error("gate admitted a request without a session", slog.String("route", route.Name))
		writeProblem(w, r, newProblem(http.StatusInternalServerError, "internal_error"))
		return nil, false
	}
	// The identity lives in the request's forwardInfo (allocated once per request anyway),
	// where the forwarding Rewrite reads it: no extra context or request copy per request.
	fi.id = identity{user: sess.UserKey, email: sess.Email, acr: sess.ACR}
	id := &fi.id
	if pol.orgScoped {
		if !s.decide(w, r, st, route, pol, host, fi, sess, id) {
			return nil, false
		}
	}
	if !s.stepUp(w, r, route, sess, id, fi) {
		return nil, false
	}
	if s.opts.Signer != nil {
		tok, err := s.opts.Signer.Reused(assertion.Claims{
			Subject: id.user, Email: id.email, Org: id.org, Roles: id.roles, Purpose: id.purpose,
			Kind: id.kind, ACR: id.acr, Audience: route.Name, RequestID: fi.requestID,
		}, s.now())
		if err != nil {
			s.log.Error("sign assertion", slog.Any("error", err))
			writeProblem(w, r, newProblem(http.StatusInternalServerError, "internal_error"))
			return nil, false
		}
		id.assertion = tok
	}
	fi.admitted = true
	return r, true
}

// withPrefetch lets the session load of an org-scoped request read its membership too, when
// the membership store can (a cold request then costs one Redis round trip, not two). The
// organisation is resolved here as decide will resolve it; the session's choice is left to
// the store to read from the record. Nothing is decided here: a prefetch only answers a
// lookup of exactly the organisation and user it read.
func (s *Server) withPrefetch(r *http.Request, st *state, pol *routePolicy, host string, fi *forwardInfo) *http.Request {
	pf, ok := s.opts.Members.(prefetcher)
	if !ok {
		return r
	}
	org := ""
	if pol.resolver.From() != config.OrgFromSession {
		if org, ok = pol.resolver.Resolve(host, fi.path, r.Header.Get, isTrustedPeer(r, st.trusted), ""); !ok {
			return r // no organisation: nothing will be looked up
		}
	}
	return r.WithContext(pf.WithPrefetch(r.Context(), org))
}

// decide resolves the organisation, looks up the membership and applies authz.Decide.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, st *state, route *config.Route, pol *routePolicy,
	host string, fi *forwardInfo, sess *session.Session, id *identity) bool {
	org, ok := pol.resolver.Resolve(host, fi.path, r.Header.Get, isTrustedPeer(r, st.trusted), sess.ActiveOrg)
	autoPicked := false
	if !ok && pol.resolver.From() == config.OrgFromSession && s.opts.Members != nil {
		orgs, err := s.opts.Members.OrgsOf(r.Context(), sess.UserKey)
		switch {
		case err != nil:
			s.storeDown(w, r, route, err)
			return false
		case len(orgs) == 0:
			// No membership anywhere: nothing to pick, and a refusal that is recorded.
			s.deny(w, r, route, fi, sess, authz.Decision{Reason: authz.ReasonNotMember})
			return false
		case len(orgs) == 1:
			// One membership: no choice to make, so no picker (issue 4).
			org, ok, autoPicked = orgs[0], true, true
		}
	}
	if !ok && pol.resolver.From() == config.OrgFromSession && problem.WantsHTML(r) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		http.Redirect(w, r, "/.portcullis/orgs?rd="+url.QueryEscape(returnPath(r)), http.StatusFound)
		return false
	}
	in := authz.Input{User: sess.UserKey, Email: sess.Email, EmailVerified: sess.EmailVerified, OrgID: org, Require: pol.require}
	if ok {
		if s.opts.Members == nil {
			s.storeDown(w, r, route, errors.New("no membership store configured"))
			return false
		}
		o, m, err := s.opts.Members.Lookup(r.Context(), org, sess.UserKey)
		if err != nil {
			s.storeDown(w, r, route, err)
			return false
		}
		in.Org, in.Membership = o, m
	}
	d := authz.Decide(in, s.now())
	if !d.Allow {
		s.deny(w, r, route, fi, sess, d)
		return false
	}
	id.org, id.kind, id.roles, id.purpose = d.Org, d.Kind, d.Roles, d.Purpose
	if autoPicked {
		s.rememberOrg(r, sess, org)
	}
	return true
}

// rememberOrg records an organisation picked because it was the person's only one as the
// session's choice, so later requests neither list the person's organisations again (a Redis
// round trip on every request) nor change organisation under them when they gain a second.
// Failing to record it changes nothing for this request, which was decided already.
func (s *Server) rememberOrg(r *http.Request, sess *session.Session, org string) {
	chooser, ok := s.opts.Gate.(OrgChooser)
	if !ok {
		return
	}
	if err := chooser.SetActiveOrg(r.Context(), r, org); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "could not record the only organisation as the session's choice",
			slog.String("user", sess.UserKey), slog.String("org", org), slog.Any("error", err))
		return
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "active organisation chosen (the only one)",
		slog.String("user", sess.UserKey), slog.String("org", org))
}

func (s *Server) storeDown(w http.ResponseWriter, r *http.Request, route *config.Route, err error) {
	s.log.LogAttrs(r.Context(), slog.LevelError, "membership store unavailable; refusing (fail closed)",
		slog.String("route", route.Name), slog.Any("error", err))
	s.metrics.denied.WithLabelValues(route.Name, reasonStoreUnavailable).Inc()
	writeProblem(w, r, problem.New(http.StatusServiceUnavailable, reasonStoreUnavailable,
		"Access cannot be checked right now, so it is refused. Try again in a moment."))
}

// deny answers a refused decision: logged, counted, audited, and a page that says what is
// missing and whom to ask. Outsiders learn no more than not_member.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, route *config.Route, fi *forwardInfo, sess *session.Session, d authz.Decision) {
	reason := string(d.Reason)
	s.recordDenied(r, route, fi, sess.UserKey, d.Org, reason, "access denied")
	shown := reason
	if !d.Member && d.Reason != authz.ReasonNoOrg {
		shown = string(authz.ReasonNotMember)
	}
	p := problem.New(http.StatusForbidden, shown, denyMessage(shown, d))
	if d.Missing.Contact != "" && d.Member {
		p.Hint = "To get access, ask " + d.Missing.Contact + "."
	} else if d.Reason == authz.ReasonNoOrg {
		p.Action, p.ActionText = "/.portcullis/orgs?rd="+url.QueryEscape(returnPath(r)), "Choose an organisation"
	}
	writeProblem(w, r, p)
}

// recordDenied counts, logs (as msg) and audits a refusal of an admitted person: every
// access.denied has all three.
func (s *Server) recordDenied(r *http.Request, route *config.Route, fi *forwardInfo, user, org, reason, msg string) {
	s.metrics.denied.WithLabelValues(route.Name, reason).Inc()
	s.log.LogAttrs(r.Context(), slog.LevelInfo, msg,
		slog.String("route", route.Name), slog.String("reason", reason), slog.String("org", org),
		slog.String("user", user), slog.String("request_id", fi.requestID))
	s.appendAudit(r, audit.Event{Type: audit.AccessDenied, Org: org, User: user, Reason: reason,
		Route: route.Name, RequestID: fi.requestID})
}

// appendAudit records ev; a failure is logged (the answer is decided already).
func (s *Server) appendAudit(r *http.Request, ev audit.Event) {
	if s.opts.Audit == nil {
		return
	}
	if err := s.opts.Audit.Append(r.Context(), ev); err != nil {
		s.log.Error("audit append failed", slog.Any("error", err), slog.String("request_id", ev.RequestID))
	}
}

func denyMessage(reason string, d authz.Decision) string {
	org := d.Org
	switch authz.Reason(reason) {
	case authz.ReasonNoOrg:
		return "Choose the organisation you are acting for."
	case authz.ReasonNotMember:
		if org == "" {
			return "You are not a member of any organisation that can use this page."
		}
		return fmt.Sprintf("You are not a member of the organisation %q.", org)
	case authz.ReasonMembershipRevoked:
		return fmt.Sprintf("Your membership of %q has been revoked.", org)
	case authz.ReasonMembershipSuspended:
		return fmt.Sprintf("Your membership of %q is suspended.", org)
	case authz.ReasonMembershipExpired:
		return fmt.Sprintf("Your membership of %q has expired.", org)
	case authz.ReasonReviewOverdue:
		return fmt.Sprintf("Your membership of %q is overdue for review and must be re-approved.", org)
	case authz.ReasonOrgInactive:
		return fmt.Sprintf("The organisation %q is no longer active.", org)
	case authz.ReasonEmailDomainNotVerified:
		if d.Missing.EmailUnverified {
			return "Your email address is not verified."
		}
		return fmt.Sprintf("Your email domain %q is not a verified domain of %q.", d.Missing.EmailDomain, org)
	case authz.ReasonKindNotAllowed:
		return fmt.Sprintf("This area is for %s memberships.", strings.Join(d.Missing.Kinds, ", "))
	case authz.ReasonRoleMissing:
		return fmt.Sprintf("This area needs one of these roles in %q: %s.", org, strings.Join(d.Missing.Roles, ", "))
	case authz.ReasonPurposeMissing:
		return fmt.Sprintf("This area needs an approved purpose: %s.", strings.Join(d.Missing.Purposes, ", "))
	case authz.ReasonPurposeExpired:
		return fmt.Sprintf("Your grant for %s has expired.", strings.Join(d.Missing.Purposes, ", "))
	}
	return "You do not have access to this page."
}

// returnPath is the same-origin path and query to come back to after a detour.
func returnPath(r *http.Request) string { return session.SafeReturn(r.RequestURI) }

// setIdentity writes the identity headers of an admitted request on the outbound request.
func setIdentity(h http.Header, names config.IdentityHeaders, id *identity) {
	// One backing array for every value: this runs on every admitted request.
	var vals []string
	set := func(name, v string) {
		if name != "" && v != "" {
			if vals == nil {
				vals = make([]string, 0, 7)
			}
			vals = append(vals, v)
			h[http.CanonicalHeaderKey(name)] = vals[len(vals)-1 : len(vals) : len(vals)]
		}
	}
	set(names.User, id.user)
	set(names.Email, id.email)
	set(names.Org, id.org)
	set(names.Roles, strings.Join(id.roles, ","))
	set(names.Purpose, id.purpose)
	set(names.Kind, id.kind)
	set(names.Assertion, id.assertion)
}
