package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
)

// routePolicy is one route's compiled access rule, built once per configuration from what
// config.Load parsed: nothing here re-parses or re-validates.
type routePolicy struct {
	// recovery is the compiled recovery guard of a public route, with its policy; nil
	// without one.
	recovery       *config.RecoveryGuard
	recoveryPolicy authz.RecoveryPolicy
	orgScoped      bool
	require        authz.Requirement
	resolver       authz.OrgResolver
	stepUp         *authz.StepUp
	// names are the route's identity header names (identity.headers with its own
	// identity_headers) in canonical form, and forward what it tells its portal (identity.go).
	names   headerNames
	forward forwardMode
}

// compilePolicies prepares every route's policy and the CGI names of every identity header
// (all routes' names), which are stripped from every request on every route.
// A recovery guard config.Load did not compile (a hand-built configuration) is refused
// rather than served without its guard.
func compilePolicies(set Settings, lifecycle *authz.Policy, trust *authz.Trust) ([]routePolicy, []string, error) {
	pols := make([]routePolicy, len(set.Routes))
	seen := map[string]bool{}
	var cgi []string
	addCGI := func(h config.IdentityHeaders) {
		for _, n := range identityNames(h) {
			if c := cgiName(n); n != "" && !seen[c] {
				seen[c] = true
				cgi = append(cgi, c)
			}
		}
	}
	addCGI(set.Headers)
	for i := range set.Routes {
		r := &set.Routes[i]
		headers := mergeHeaders(set.Headers, r.IdentityHeaders)
		p := routePolicy{names: canonicalNames(headers), stepUp: authz.CompileStepUp(r.StepUp),
			forward: forwardModeOf(set.Forward, r.IdentityForward)}
		addCGI(headers)
		if g := r.RecoveryGuard; g != nil {
			if g.Spec == nil {
				return nil, nil, fmt.Errorf("route %s: recovery_guard was not compiled: the configuration must come from config.Load", r.Name)
			}
			p.recovery, p.recoveryPolicy = g, authz.RecoveryPolicyOf(g)
			p.recoveryPolicy.Lifecycle, p.recoveryPolicy.Trust = lifecycle, trust
		}
		if r.Org != nil || r.Require != nil {
			p.orgScoped = true
			p.require = authz.CompileRequire(r.Require)
			res, err := authz.NewOrgResolver(r.Org)
			if err != nil {
				return nil, nil, fmt.Errorf("route %s: %w", r.Name, err)
			}
			p.resolver = res
		}
		pols[i] = p
	}
	return pols, cgi, nil
}

// identityNames are the names of a set of identity headers ("" for one that is not sent).
func identityNames(h config.IdentityHeaders) [10]string {
	return [...]string{h.User, h.Email, h.Org, h.Roles, h.Purpose, h.PurposeReason, h.PurposeExpires, h.Kind, h.Assertion, h.Sponsor}
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
		{&h.Purpose, route.Purpose}, {&h.PurposeReason, route.PurposeReason}, {&h.PurposeExpires, route.PurposeExpires},
		{&h.Kind, route.Kind}, {&h.Assertion, route.Assertion}, {&h.Sponsor, route.Sponsor},
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
	// grantReason and grantEnd are the reason and end (zero: none) of the purpose grant the
	// request is admitted under, for the assertion and, if configured, headers.
	grantReason string
	grantEnd    time.Time
	// elevationsAfter: step-up elevations granted before it do not count (a role change).
	elevationsAfter time.Time
	// machine: admitted on an API key (admitMachine), whose sponsor is sponsor's user key.
	// The request's Authorization header, which carries the key, is not forwarded.
	machine bool
	sponsor string
}

// admit runs sign-in and then, on org-scoped routes, the membership decision, the step-up and
// the assertion. The organisation is resolved once: before sign-in when the route's source
// knows it (so that the session load can prefetch its membership), after it when it is the
// session's choice.
func (ex *exchange) admit() error {
	s, route, pol := ex.s, ex.route, ex.pol
	cred, err := ex.choosePrincipal()
	if err != nil {
		return err
	}
	switch cred {
	case credAPIKey, credClientJWT:
		admit := ex.admitMachine
		if cred == credClientJWT {
			admit = ex.admitClient
		}
		if err := admit(); err != nil {
			return err
		}
		ex.cred = cred
		return ex.finishAdmit()
	}
	if s.opts.Gate == nil {
		// No sign-in configured: fail closed, as an answer rather than a counted refusal.
		return &problem.Error{Problem: problem.New(reason.NoSession)}
	}
	r := ex.r
	if pol.orgScoped && pol.resolver.From() != config.OrgFromSession {
		ex.resolveOrg("")
		if ex.orgKnown && s.opts.Members != nil {
			r = r.WithContext(s.opts.Members.WithPrefetch(r.Context(), ex.org))
		}
	} else if pol.orgScoped && s.opts.Members != nil {
		r = r.WithContext(s.opts.Members.WithPrefetch(r.Context(), ""))
	}
	r, ok := s.opts.Gate.Admit(ex.w, r, route)
	if !ok {
		return errAnswered
	}
	ex.r = r
	sess, ok := session.Admitted(r.Context()) // read only: nothing here changes it
	if !ok {
		// A gate that admits without a session is a wiring mistake; refuse rather than guess.
		return internalError("gate admitted a request without a session", nil)
	}
	ex.sess = sess
	// The identity lives in the exchange (allocated once per request anyway), where the
	// forwarding Rewrite reads it: no extra context or request copy per request.
	ex.id = identity{user: sess.UserKey, email: sess.Email, acr: sess.ACR}
	if pol.orgScoped {
		if pol.resolver.From() == config.OrgFromSession {
			ex.resolveOrg(sess.ActiveOrg)
		}
		if err := ex.decide(); err != nil {
			return err
		}
	}
	if err := ex.stepUp(); err != nil {
		return err
	}
	return ex.finishAdmit()
}

// finishAdmit renders what the portal is told of an admitted request (a person's or a
// machine's): its identity headers and assertion, as its route's identity.forward says.
func (ex *exchange) finishAdmit() error {
	told, err := ex.st.rendered.render(ex.pol, &ex.id, ex.route.Name, ex.s.opts.Signer, ex.s.now())
	switch {
	case errors.Is(err, assertion.ErrNoKey):
		// The key lives in Redis, which has not answered since start: not ready.
		return problem.Outage(reason.StoreUnavailable, "assertion key not loaded yet; refusing (fail closed)", "", err)
	case err != nil:
		return internalError("sign assertion", err)
	}
	ex.told, ex.admitted = told, true
	return nil
}

// resolveOrg resolves the organisation the request acts for, with sessionOrg the session's
// choice (for a route whose source is the session).
func (ex *exchange) resolveOrg(sessionOrg string) {
	ex.org, ex.orgKnown = ex.pol.resolver.Resolve(ex.host, ex.path, ex.headerValues, ex.trusted, sessionOrg)
}

// decide looks up the membership in the organisation resolved and applies authz.Decide. A
// person without a choice of organisation on a session-chosen route gets their only one, or
// the org picker.
func (ex *exchange) decide() error {
	s, sess, pol := ex.s, ex.sess, ex.pol
	members := s.opts.Members
	autoPicked := false
	if !ex.orgKnown && pol.resolver.From() == config.OrgFromSession && members != nil {
		orgs, err := members.OrgsOf(ex.r.Context(), sess.UserKey)
		switch {
		case err != nil:
			return storeDown(sess.UserKey, err)
		case len(orgs) == 0:
			// No membership anywhere: nothing to pick, and a refusal that is recorded.
			return ex.deny(authz.Decision{Reason: reason.NotMember})
		case len(orgs) == 1:
			// One membership: no choice to make, so no picker (issue 4).
			ex.org, ex.orgKnown, autoPicked = orgs[0], true, true
		}
	}
	if !ex.orgKnown && pol.resolver.From() == config.OrgFromSession && problem.WantsHTML(ex.r) &&
		(ex.r.Method == http.MethodGet || ex.r.Method == http.MethodHead) {
		http.Redirect(ex.w, ex.r, "/.portcullis/orgs?rd="+url.QueryEscape(ex.returnPath()), http.StatusFound)
		return errAnswered
	}
	in := ex.decisionInput(ex.org)
	if ex.orgKnown {
		if members == nil {
			return storeDown(sess.UserKey, errors.New("no membership store configured"))
		}
		o, m, err := members.Lookup(ex.r.Context(), ex.org, sess.UserKey)
		if err != nil {
			return storeDown(sess.UserKey, err)
		}
		in.Org, in.Membership = o, m
	}
	d := authz.Decide(in, s.now())
	if !d.Allow {
		return ex.deny(d)
	}
	ex.id.org, ex.id.kind, ex.id.roles, ex.id.purpose = d.Org, d.Kind, d.Roles, d.Purpose
	if g := d.Grant; g != nil {
		ex.id.grantReason, ex.id.grantEnd = g.Reason, g.ExpiresAt
	}
	ex.id.elevationsAfter = d.ElevationsAfter
	if s.opts.Uses != nil {
		now := s.now()
		s.opts.Uses.Used(d.Org, sess.UserKey, now)
		if authz.FromOutside(d.Kind) {
			// Access from outside the organisation is what its administrators must see.
			s.opts.Uses.Reached(d.Org, sess.UserKey, ex.route.Name, d.Kind, d.Purpose, ex.id.grantReason, now)
		}
	}
	if autoPicked {
		ex.rememberOrg()
	}
	return nil
}

// decisionInput is what authz.Decide is asked about the session's membership of org, before
// the organisation and membership records are filled in: the request's decision and a
// WebSocket tunnel's re-decisions ask the same question.
func (ex *exchange) decisionInput(org string) authz.Input {
	sess := ex.sess
	return authz.Input{User: sess.UserKey, Email: sess.Email, EmailVerified: sess.EmailVerified, OrgID: org,
		Require: ex.pol.require, Policy: ex.st.lifecycle, Providers: ex.st.trust.Load()}
}

// rememberOrg records an organisation picked because it was the person's only one as the
// session's choice, so later requests neither list the person's organisations again (a Redis
// round trip on every request) nor change organisation under them when they gain a second.
// Failing to record it changes nothing for this request, which was decided already.
func (ex *exchange) rememberOrg() {
	s, sess, ctx := ex.s, ex.sess, ex.r.Context()
	if s.opts.Orgs == nil {
		return
	}
	if err := s.opts.Orgs.SetActiveOrg(ctx, ex.r, ex.org); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "could not record the only organisation as the session's choice",
			slog.String("user", sess.UserKey), slog.String("org", ex.org), slog.Any("error", err))
		return
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "active organisation chosen (the only one)",
		slog.String("user", sess.UserKey), slog.String("org", ex.org))
}

// deny is the refusal of decision d: logged, counted, audited, and a page that says what is
// missing and whom to ask. Outsiders learn no more than not_member.
func (ex *exchange) deny(d authz.Decision) error {
	shown := reason.Shown(d.Reason, d.Member || d.Reason == reason.NoOrg)
	p := problem.For(shown, reason.Facts{Org: d.Org, Domain: d.Missing.EmailDomain, Roles: d.Missing.Roles,
		Purposes: d.Missing.Purposes, Kinds: d.Missing.Kinds})
	switch {
	case d.Missing.Contact != "" && d.Member:
		p.Hint = "To get access, ask " + d.Missing.Contact + "."
	case d.Reason == reason.NoOrg:
		p.Return = ex.returnPath()
	}
	if d.Member && ex.s.opts.Endpoints[consoleEndpoint] != nil {
		switch shown {
		case reason.RoleMissing, reason.PurposeMissing, reason.PurposeExpired:
			// A member lacking a role or a purpose may ask for it (outsiders are told no
			// more than not_member, and get no form for an organisation).
			p.Action, p.ActionText = requestAccessLink(d, ex.returnPath()), "Request access"
		}
	}
	return &denial{code: d.Reason, p: p, msg: "access denied", level: slog.LevelInfo, user: ex.sess.UserKey, org: d.Org, audit: true}
}

// grantExpiry is the purpose grant's end as a NumericDate, 0 for none.
func (id *identity) grantExpiry() int64 {
	if id.grantEnd.IsZero() {
		return 0
	}
	return id.grantEnd.Unix()
}

// headerText makes free text (a grant's reason) safe as a header value: bytes outside
// printable ASCII, and "%", are percent-encoded (UTF-8), so a portal decodes it with any
// URL-decoding function and no reason can split or smuggle a header.
func headerText(v string) string {
	clean := true
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '%' {
			clean = false
			break
		}
	}
	if clean {
		return v
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c >= 0x7f || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// headerValues is the values of the header name, or none when a header of another spelling
// (X_Org beside X-Org) is there too: a CGI, PHP or WSGI portal folds both into one variable,
// and may read the other's value.
func (ex *exchange) headerValues(name string) []string {
	var vs []string
	spellings := 0
	for k, v := range ex.r.Header {
		if cgiSame(k, name) {
			spellings++
			vs = v
		}
	}
	if spellings != 1 {
		return nil
	}
	return vs
}

// consoleEndpoint is the key of the console in Options.Endpoints.
const consoleEndpoint = "console/"

// requestAccessLink is the console's request form for what d found missing, returning to rd.
func requestAccessLink(d authz.Decision, rd string) string {
	q := url.Values{"org": {d.Org}, "rd": {rd}}
	for _, r := range d.Missing.Roles {
		q.Add("role", r)
	}
	for _, p := range d.Missing.Purposes {
		q.Add("purpose", p)
	}
	return ownPrefix + "console/request?" + q.Encode()
}
