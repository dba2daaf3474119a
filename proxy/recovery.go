package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/store"
)

// The recovery guard: a public route's `recovery_guard` inspects account-recovery requests
// (password reset by email or username) on their way to the unmodified portal and stops the
// ones that would hand an account to whoever now reads a stale mailbox (issue 6).
//
// Order of the checks, each with its reason code (metric, log line, audit event):
//
//  1. Method: one the guard does not list is forwarded uninspected (not counted).
//  2. Body: more than one Content-Type is malformed_body (400). A declared Content-Length
//     over body_limit is answered 413 body_too_large before a byte is read, so no
//     "100 Continue" is ever sent for it; a chunked body is read up to body_limit+1 bytes
//     and refused the same way. A 413 closes the connection, so unread bytes are never
//     parsed as another request.
//  3. authz.ExtractIdentifier: anything ambiguous, malformed or invalid is 400 (415 for an
//     undeclared body type), with the problem code as reason: a malformed request, not a
//     fact about an account, so it is answered as such in every mode. A missing identifier
//     is forwarded (missing_identifier: forward, the default: nothing to protect; the portal
//     answers its own validation error) or refused 400 identifier_missing (block).
//  4. Rate limits (Redis, fixed windows): rate_limited, 429 with Retry-After in every mode
//     (the counters run for every identifier, known or not, so a 429 says nothing about
//     accounts).
//  5. kind email: the domain, or its nearest parent domain, held by no organisation ever is
//     unknown_domain (blocked unless unknown_domains: allow); held but not verified any more
//     (lapsed, pending), or held by an organisation that is not active, merged, or past its
//     contract end is stale_domain.
//  6. The person: the address must be one a person signed in with (store.RecordPerson, at
//     sign-in; the local part compared in lower case, +tags kept, so "a+x@" is not "a@"),
//     or the username one an operator mapped (store.SetUsername); and that person must hold
//     a live membership somewhere: authz.Decide allows it for at least one of OrgsOf with
//     no requirement but the email-domain check lifted (the address's domain was checked in
//     5). Otherwise no_active_membership. Invitations are not consulted: an invitation
//     never accepted does not make an address live. With unknown_domains: allow, an
//     address of an unknown domain whose person is unknown is allowed; a known person must
//     still be live.
//
// Redis not answering at any step is store_unavailable, 503, and nothing is forwarded
// (fail closed). A blocked request (steps 5 and 6) is answered, with blocked_response:
// generic (the default), by the route's generic page: 200 with generic_body, the same
// whether the address exists, is stale or is fine, which is the simplest honest way to
// reveal nothing; the portal gets nothing, so it sends no mail. Because the portal's own
// answer is not replayed, configure generic_body to match it. With blocked_response:
// forbidden, a 403 problem page names the reason.
//
// Allowed requests are forwarded byte for byte: the body read is put back (with its exact
// length as Content-Length; a chunked body goes on with a definite length).
//
// Audit events (recovery.blocked) and log lines carry the identifier hashed (the default:
// hex of the first 16 bytes of SHA-256 over "portcullis/recovery-audit\x00" and the
// canonical identifier, lower-cased for an email; unkeyed on purpose, so an operator can
// hash a given address and search for it, which also means anyone holding the stream can
// test guesses) or masked ("a***@acme.com"), the domain, the org, the reason, the client
// address and the location it was found in. The raw identifier is never logged. Every
// refusal is audited except those that would let one client flood the bounded stream:
// rate-limited refusals after the first of a window, and malformed requests (which count
// against per_client too) from a client past its limit; those are logged and counted only.

// RecoveryStore is what the guard asks Redis. *store.Store implements it; every error that
// is not store.ErrNotFound blocks the request with 503 (fail closed).
type RecoveryStore interface {
	DomainHolder(ctx context.Context, domain string) (*store.Org, string, error)
	PersonByEmail(ctx context.Context, email string) (*store.PersonRecord, error)
	PersonByUsername(ctx context.Context, name string) (*store.PersonRecord, error)
	CountRecovery(ctx context.Context, route, identifier, client string, window time.Duration, now time.Time) (store.RecoveryCount, error)
}

// Reason codes of the recovery guard, beside authz's problem codes.
const (
	recoveryAllowed            = "allowed"
	recoveryStaleDomain        = "stale_domain"
	recoveryMisconfigured      = "guard_misconfigured"
	recoveryUnknownDomain      = "unknown_domain"
	recoveryNoActiveMembership = "no_active_membership"
	recoveryRateLimited        = "rate_limited"
	recoveryReadError          = "body_read_error"
)

// Results, the metric's result label.
const (
	resultAllowed  = "allowed"  // forwarded after the checks
	resultBlocked  = "blocked"  // refused for a fact about the account, the rate or the store
	resultRejected = "rejected" // refused as a malformed request
)

// recoveryCheck is one guarded request on its way through the checks.
type recoveryCheck struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	route  *config.Route
	g      *config.RecoveryGuard
	fi     *forwardInfo
	client string
	id     authz.Identifier
	found  bool
	org    string
	user   string
	detail string
	quiet  bool // logged and counted, not audited (see decide and finish)
}

// compileRecovery turns the configured guard into authz's compiled rule.
func compileRecovery(g *config.RecoveryGuard) (*authz.RecoverySpec, error) {
	rule := authz.RecoveryRule{Methods: g.Methods, Kind: authz.IdentifierKind(g.Kind), BodyLimit: int64(g.BodyLimit)}
	for _, l := range g.Identifier {
		rule.Locations = append(rule.Locations, authz.IdentifierLocation{Source: authz.IdentifierSource(l.From), Name: l.Name})
	}
	return authz.NewRecoverySpec(rule)
}

// guardRecovery runs the recovery guard of a public route. It writes the refusal itself and
// returns false, or returns the request to forward (its body restored) and true.
func (s *Server) guardRecovery(w http.ResponseWriter, r *http.Request, st *state, route *config.Route, spec *authz.RecoverySpec, fi *forwardInfo) (*http.Request, bool) {
	g := route.RecoveryGuard
	client, _ := clientAddr(r, st.trusted)
	c := &recoveryCheck{s: s, w: w, r: r, route: route, g: g, fi: fi, client: client.String()}

	if !spec.Guards(r.Method) {
		return r, true
	}
	limit := spec.BodyLimit()
	if len(r.Header.Values("Content-Type")) > 1 {
		c.detail = "content_type_repeated"
		c.finish(resultRejected, string(authz.ProblemMalformedBody), http.StatusBadRequest, nil)
		return nil, false
	}
	if r.ContentLength > limit {
		c.tooLarge()
		return nil, false
	}
	body, err := authz.ReadBody(r.Body, limit)
	switch {
	case errors.Is(err, authz.ErrBodyTooLarge):
		c.tooLarge()
		return nil, false
	case err != nil:
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "recovery body could not be read",
			slog.String("route", route.Name), slog.String("request_id", fi.requestID), slog.Any("error", err))
		w.Header().Set("Connection", "close")
		c.finish(resultRejected, recoveryReadError, http.StatusBadRequest, nil)
		return nil, false
	}

	id, prob := authz.ExtractIdentifier(spec, r.Method, r.Header.Get("Content-Type"), r.URL.RawQuery, body)
	switch {
	case prob.Code == authz.ProblemIdentifierMissing && g.MissingIdentifier == config.RecoveryForward:
		c.count(resultAllowed, string(prob.Code))
		return restoreBody(r, body), true
	case prob.Code == authz.ProblemIdentifierMissing:
		c.finish(resultRejected, string(prob.Code), http.StatusBadRequest, nil)
		return nil, false
	case prob.Blocks():
		c.detail = prob.Detail
		if prob.Code == authz.ProblemBodyTooLarge {
			c.tooLarge()
		} else {
			c.finish(resultRejected, string(prob.Code), prob.Status(), nil)
		}
		return nil, false
	case !prob.OK():
		// method_not_guarded cannot happen here (Guards was checked); refuse rather than guess.
		c.finish(resultBlocked, recoveryMisconfigured, http.StatusInternalServerError, nil)
		return nil, false
	}
	c.id, c.found = id, true

	reason, err := c.decide(spec)
	if err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "recovery store unavailable; refusing (fail closed)",
			slog.String("route", route.Name), slog.String("request_id", fi.requestID), slog.Any("error", err))
		c.finish(resultBlocked, reasonStoreUnavailable, http.StatusServiceUnavailable, nil)
		return nil, false
	}
	if reason != recoveryAllowed {
		c.blocked(reason)
		return nil, false
	}
	c.count(resultAllowed, recoveryAllowed)
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "recovery request allowed",
		slog.String("route", route.Name), slog.String("request_id", fi.requestID),
		slog.String("identifier", c.shownIdentifier()), slog.String("domain", id.Domain), slog.String("org", c.org))
	return restoreBody(r, body), true
}

// decide runs the rate limits and the account checks; it returns the reason code, or an
// error when the store could not answer.
func (c *recoveryCheck) decide(spec *authz.RecoverySpec) (string, error) {
	s, ctx := c.s, c.r.Context()
	rs := s.opts.Recovery
	if rs == nil || s.opts.Members == nil {
		return "", errors.New("no recovery store configured")
	}
	now := s.now()
	n, err := rs.CountRecovery(ctx, c.route.Name, c.lookupKey(), c.client, c.g.RateLimit.Window.D(), now)
	if err != nil {
		return "", err
	}
	if n.Identifier > int64(c.g.RateLimit.PerIdentifier) || n.Client > int64(c.g.RateLimit.PerClient) {
		if secs := int64(n.Reset.Sub(now)/time.Second) + 1; secs > 0 {
			c.w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		// Audited once per window and counter, when the limit is first passed: a client
		// hammering the route must not flood the bounded audit stream (and push out the
		// events of changes). Every refusal is still logged and counted.
		c.quiet = n.Identifier != int64(c.g.RateLimit.PerIdentifier)+1 && n.Client != int64(c.g.RateLimit.PerClient)+1
		return recoveryRateLimited, nil
	}

	var person *store.PersonRecord
	if spec.Kind() == authz.IdentifierUsername {
		person, err = rs.PersonByUsername(ctx, c.id.Raw)
	} else {
		org, matched, herr := rs.DomainHolder(ctx, c.id.Domain)
		unknown := errors.Is(herr, store.ErrNotFound)
		switch {
		case herr != nil && !unknown:
			return "", herr
		case unknown && c.g.UnknownDomains != config.RecoveryAllow:
			return recoveryUnknownDomain, nil
		case !unknown:
			c.org = org.ID
			if stale(org, matched, now) {
				return recoveryStaleDomain, nil
			}
		}
		person, err = rs.PersonByEmail(ctx, c.lookupKey())
		if unknown && errors.Is(err, store.ErrNotFound) {
			return recoveryAllowed, nil // unknown_domains: allow, and nobody we know
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return recoveryNoActiveMembership, nil
	case err != nil:
		return "", err
	}
	c.user = person.User
	live, err := c.live(ctx, person.User, now)
	switch {
	case err != nil:
		return "", err
	case !live:
		return recoveryNoActiveMembership, nil
	}
	return recoveryAllowed, nil
}

// liftDomain is the requirement of a liveness check: any live membership, the email-domain
// check lifted (the recovery address's domain is checked on its own).
var liftDomain = func() authz.Requirement {
	f := false
	return authz.CompileRequire(&config.Require{VerifiedEmailDomain: &f})
}()

// live reports whether user holds a membership that authz.Decide allows in at least one
// organisation: active, not expired, not overdue for review, in an active organisation.
func (c *recoveryCheck) live(ctx context.Context, user string, now time.Time) (bool, error) {
	m := c.s.opts.Members
	orgs, err := m.OrgsOf(ctx, user)
	if err != nil {
		return false, err
	}
	for _, org := range orgs {
		o, mem, err := m.Lookup(ctx, org, user)
		if err != nil {
			return false, err
		}
		if authz.Decide(authz.Input{User: user, OrgID: org, Org: o, Membership: mem, Require: liftDomain}, now).Allow {
			if c.org == "" {
				c.org = org
			}
			return true, nil
		}
	}
	return false, nil
}

// stale reports whether the matched domain of org no longer vouches for its mailboxes: not
// verified now, or its organisation not active.
func stale(o *store.Org, matched string, now time.Time) bool {
	if o.Status != store.OrgActive || o.MergedInto != "" || (!o.ContractEnd.IsZero() && !now.Before(o.ContractEnd)) {
		return true
	}
	for _, d := range o.Domains {
		if d.Name == matched {
			return d.Status != store.DomainVerified
		}
	}
	return true // the index names an org that does not list the domain: no present holder
}

// lookupKey is the identifier as the indexes and counters know it: an email lower-cased
// (local part included, as at sign-in), a username as written.
func (c *recoveryCheck) lookupKey() string {
	if c.id.Kind == authz.IdentifierEmail {
		return strings.ToLower(c.id.Canonical())
	}
	return c.id.Raw
}

// shownIdentifier is the identifier as logs and audit events may carry it.
func (c *recoveryCheck) shownIdentifier() string {
	if !c.found {
		return ""
	}
	if c.g.IdentifierInAudit == config.RecoveryAuditMask {
		return maskIdentifier(c.id)
	}
	sum := sha256.Sum256([]byte("portcullis/recovery-audit\x00" + c.lookupKey()))
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// maskIdentifier keeps the first character and the domain: "a***@acme.com", "a***".
func maskIdentifier(id authz.Identifier) string {
	if id.Kind == authz.IdentifierEmail {
		return id.Local[:1] + "***@" + id.Domain
	}
	if id.Raw == "" {
		return "***"
	}
	return id.Raw[:1] + "***"
}

func (c *recoveryCheck) count(result, reason string) {
	c.s.metrics.recovery.WithLabelValues(c.route.Name, result, reason).Inc()
}

func (c *recoveryCheck) tooLarge() {
	// Whatever is left of the body is never read: the connection must not be reused.
	c.w.Header().Set("Connection", "close")
	c.finish(resultRejected, string(authz.ProblemBodyTooLarge), http.StatusRequestEntityTooLarge, nil)
}

// blocked answers a request refused for a fact about the account or the rate.
func (c *recoveryCheck) blocked(reason string) {
	switch {
	case reason == recoveryRateLimited:
		c.finish(resultBlocked, reason, http.StatusTooManyRequests, nil)
	case c.g.BlockedResponse == config.RecoveryForbidden:
		c.finish(resultBlocked, reason, http.StatusForbidden, nil)
	default:
		c.finish(resultBlocked, reason, http.StatusOK, c.generic)
	}
}

// generic writes the route's generic answer.
func (c *recoveryCheck) generic() {
	h := c.w.Header()
	h.Set("Content-Type", c.g.GenericContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(c.g.GenericBody)))
	c.w.WriteHeader(http.StatusOK)
	if c.r.Method != http.MethodHead {
		_, _ = io.WriteString(c.w, c.g.GenericBody)
	}
}

var recoveryMessages = map[string]string{
	recoveryStaleDomain:               "Account recovery is not available for this address: its email domain is no longer verified for an active organisation.",
	recoveryUnknownDomain:             "Account recovery is not available for this address: its email domain is not known.",
	recoveryNoActiveMembership:        "Account recovery is not available for this address: it belongs to no active membership.",
	recoveryRateLimited:               "Too many account-recovery requests. Try again later.",
	reasonStoreUnavailable:            "Account recovery cannot be checked right now, so it is refused. Try again in a moment.",
	recoveryMisconfigured:             "Account recovery is not available right now.",
	recoveryReadError:                 "The request body could not be read.",
	string(authz.ProblemBodyTooLarge): "The request body is too large.",
}

// finish counts, logs and audits a refusal and writes it: write when given, else a problem
// page with status and reason.
func (c *recoveryCheck) finish(result, reason string, status int, write func()) {
	s, r := c.s, c.r
	c.count(result, reason)
	if result == resultRejected && s.opts.Recovery != nil {
		// Malformed requests count against the client's limit too, and like rate-limited
		// ones are audited only up to it, so anonymous garbage cannot flood the bounded audit
		// stream. The answer stays what the syntax says; a store error changes nothing here.
		n, err := s.opts.Recovery.CountRecovery(r.Context(), c.route.Name, "", c.client, c.g.RateLimit.Window.D(), s.now())
		c.quiet = err == nil && n.Client > int64(c.g.RateLimit.PerClient)+1
	}
	attrs := []slog.Attr{
		slog.String("route", c.route.Name), slog.String("reason", reason), slog.String("result", result),
		slog.String("client", c.client), slog.String("request_id", c.fi.requestID),
	}
	detail := map[string]string{"client": c.client, "result": result}
	if c.detail != "" {
		attrs = append(attrs, slog.String("detail", c.detail))
		detail["detail"] = c.detail
	}
	if c.found {
		shown := c.shownIdentifier()
		attrs = append(attrs, slog.String("identifier", shown), slog.String("domain", c.id.Domain),
			slog.String("location", c.id.Location.String()), slog.String("org", c.org))
		detail["identifier"], detail["location"] = shown, c.id.Location.String()
		if c.id.Domain != "" {
			detail["domain"] = c.id.Domain
		}
	}
	s.log.LogAttrs(r.Context(), slog.LevelWarn, "recovery request blocked", attrs...)
	if !c.quiet {
		s.appendAudit(r, audit.Event{Type: audit.RecoveryBlocked, Org: c.org, User: c.user, Reason: reason,
			Route: c.route.Name, RequestID: c.fi.requestID, Detail: detail})
	}
	if write != nil {
		write()
		return
	}
	msg, ok := recoveryMessages[reason]
	if !ok {
		msg = "The account-recovery request could not be understood: it must carry exactly one well-formed identifier."
	}
	p := problem.New(status, reason, msg)
	p.RequestID = c.fi.requestID
	writeProblem(c.w, r, p)
}

// restoreBody puts the bytes read back as the request body, with their exact length, so the
// portal receives what the client sent.
func restoreBody(r *http.Request, body []byte) *http.Request {
	if len(body) == 0 {
		r.Body, r.ContentLength = http.NoBody, 0
	} else {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	r.TransferEncoding = nil
	r.Header.Del("Expect")
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return r
}
