package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/recoveryid"
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
//  3. recoveryid.Extract: anything ambiguous, malformed or invalid is 400 (415 for an
//     undeclared body type), with the problem code as reason: a malformed request, not a
//     fact about an account, so it is answered as such in every mode. A missing identifier
//     is refused 400 identifier_missing (missing_identifier: block, the default: a guard
//     fails closed, so a reset by a field it does not know never reaches the portal), or
//     forwarded (forward). Each location has a kind (email or username); the identifier's
//     kind is the kind of the one location it was found at.
//     Steps 4 to 6 are authz.DecideRecovery's, asked again after each fact it needs is read:
//  4. Rate limits (Redis, fixed windows): rate_limited, 429 with Retry-After in every mode
//     (the counters run for every identifier, known or not, so a 429 says nothing about
//     accounts).
//  5. An email address: the domain, or its nearest parent domain, held by no organisation ever is
//     unknown_domain (blocked unless unknown_domains: allow); held but not verified any more
//     (lapsed, pending), or held by an organisation that is not active, merged, or past its
//     contract end is stale_domain.
//  6. The person: the address must be one a person signed in with (store.RecordPerson, at
//     sign-in; the local part compared in lower case, +tags kept, so "a+x@" is not "a@"),
//     or the username one an operator mapped (store.SetUsername); and that person must hold
//     a live membership somewhere: authz.Decide allows it for at least one of OrgsOf with
//     no requirement but the email-domain check lifted (the address's domain was checked in
//     5). Otherwise no_active_membership, but for an address nobody signed in with that an
//     open invitation of the organisation holding its domain names: allowed, and audited
//     (recovery.by_invitation). With unknown_domains: allow, an
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

// Results, the metric's result label.
const (
	resultAllowed  = "allowed"  // forwarded after the checks
	resultBlocked  = "blocked"  // refused for a fact about the account, the rate or the store
	resultRejected = "rejected" // refused as a malformed request
)

// recoveryRefusal is a guarded request refused: recorded with its result, its identifier
// (hashed or masked) and whose it turned out to be, and answered with the route's generic
// page or a problem.
type recoveryRefusal struct {
	result string
	code   reason.Code
	c      *recoveryCheck
	// generic answers with the route's generic page instead of a problem.
	generic bool
	// cause, when set, is logged: why the store could not answer.
	cause error
}

func (e *recoveryRefusal) Error() string { return string(e.code) }

// recoveryCheck is one guarded request on its way through the checks.
type recoveryCheck struct {
	ex     *exchange
	g      *config.RecoveryGuard
	client string
	id     recoveryid.Identifier
	found  bool
	org    string
	user   string
	detail string
	quiet  bool // logged and counted, not audited (see DecideRecovery and give)
}

// recover runs the recovery guard of a public route: on success the request goes on with its
// body restored, byte for byte.
func (ex *exchange) recover() error {
	g := ex.pol.recovery
	spec, r, w := g.Spec, ex.r, ex.w
	c := &recoveryCheck{ex: ex, g: g, client: ex.client.String()}

	if !spec.Guards(ex.method) {
		return nil
	}
	limit := spec.BodyLimit()
	if len(r.Header.Values("Content-Type")) > 1 {
		c.detail = "content_type_repeated"
		return c.refuse(resultRejected, reason.MalformedBody)
	}
	if r.ContentLength > limit {
		return c.tooLarge()
	}
	body, err := recoveryid.ReadBody(r.Body, limit)
	switch {
	case errors.Is(err, recoveryid.ErrBodyTooLarge):
		return c.tooLarge()
	case err != nil:
		ex.s.log.LogAttrs(r.Context(), slog.LevelInfo, "recovery body could not be read",
			slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID), slog.Any("error", err))
		w.Header().Set("Connection", "close")
		return c.refuse(resultRejected, reason.BodyReadError)
	}

	id, prob := recoveryid.Extract(spec, ex.method, r.Header.Get("Content-Type"), r.URL.RawQuery, body)
	switch {
	case prob.Code == reason.IdentifierMissing && g.MissingIdentifier == config.RecoveryForward:
		c.count(resultAllowed, prob.Code)
		restoreBody(r, body)
		return nil
	case prob.Code == reason.IdentifierMissing:
		return c.refuse(resultRejected, prob.Code)
	case prob.Blocks():
		c.detail = prob.Detail
		if prob.Code == reason.BodyTooLarge {
			return c.tooLarge()
		}
		return c.refuse(resultRejected, prob.Code)
	case !prob.OK():
		// method_not_guarded cannot happen here (Guards was checked); refuse rather than guess.
		return c.refuse(resultBlocked, reason.GuardMisconfigured)
	}
	c.id, c.found = id, true

	d, err := c.decide()
	switch {
	case err != nil:
		refusal := c.refuse(resultBlocked, reason.StoreUnavailable)
		refusal.cause = err
		return refusal
	case d.Reason == reason.RateLimited:
		if d.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(d.RetryAfter/time.Second), 10))
		}
		c.quiet = d.Quiet
		return c.refuse(resultBlocked, d.Reason)
	case d.Reason != reason.Allowed && g.BlockedResponse == config.RecoveryMirror:
		return c.mirror(d.Reason, body)
	case d.Reason != reason.Allowed:
		refusal := c.refuse(resultBlocked, d.Reason)
		refusal.generic = g.BlockedResponse != config.RecoveryForbidden
		return refusal
	}
	c.count(resultAllowed, reason.Allowed)
	if d.ByInvitation {
		// Audited: the one allow that rests on an invitation, not on a person's sign-in.
		ex.s.appendAudit(r, audit.Event{Type: audit.RecoveryByInvitation, Org: c.org, Route: ex.routeLabel, RequestID: ex.requestID,
			Detail: map[string]string{"identifier": c.shownIdentifier(), "domain": c.id.Domain, "client": c.client}})
	}
	ex.s.log.LogAttrs(r.Context(), slog.LevelInfo, "recovery request allowed",
		slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID),
		slog.String("identifier", c.shownIdentifier()), slog.String("domain", id.Domain), slog.String("org", c.org))
	restoreBody(r, body)
	return nil
}

// decide reads the facts authz.DecideRecovery asks for, one at a time, until it decides; an
// error means the store could not answer.
func (c *recoveryCheck) decide() (authz.RecoveryDecision, error) {
	s, ctx, ex := c.ex.s, c.ex.r.Context(), c.ex
	rs, members := s.opts.Recovery, s.opts.Members
	if rs == nil || members == nil {
		return authz.RecoveryDecision{}, errors.New("no recovery store configured")
	}
	now := s.now()
	f := authz.RecoveryFacts{Username: c.id.Kind == recoveryid.KindUsername}
	for {
		d := authz.DecideRecovery(ex.pol.recoveryPolicy, &f, now)
		c.org, c.user = d.Org, d.User
		var err error
		switch d.Need {
		case authz.NeedNothing:
			return d, nil
		case authz.NeedCount:
			n, cerr := rs.CountRecovery(ctx, ex.routeLabel, c.lookupKey(), c.client, c.g.RateLimit.Window.D(), now)
			f.Count, err = &n, cerr
		case authz.NeedDomain:
			o, matched, herr := rs.DomainHolder(ctx, c.id.Domain)
			if errors.Is(herr, store.ErrNotFound) {
				o, herr = nil, nil
			}
			f.Domain, err = &authz.DomainHolder{Org: o, Matched: matched}, herr
		case authz.NeedPerson:
			lookup := rs.PersonByEmail
			key := c.lookupKey()
			if c.id.Kind == recoveryid.KindUsername {
				lookup, key = rs.PersonByUsername, c.id.Raw
			}
			p, perr := lookup(ctx, key)
			switch {
			case errors.Is(perr, store.ErrNotFound):
			case perr != nil:
				err = perr
			default:
				f.Person = p.User
			}
			f.PersonRead = true
		case authz.NeedOrgs:
			f.Orgs, err = members.OrgsOf(ctx, f.Person)
			f.OrgsRead = true
		case authz.NeedInvitations:
			f.Invitations, err = rs.Invitations(ctx, c.lookupKey())
			if errors.Is(err, store.ErrInvalid) {
				err = nil
			}
			f.InvitationsRead = true
		case authz.NeedMailDomains:
			f.MailDomains, err = rs.MailDomains(ctx, f.Person)
			f.MailDomainsRead = true
		case authz.NeedMailDomainHolder:
			o, matched, herr := rs.DomainHolder(ctx, f.MailDomains[len(f.MailHolders)])
			if errors.Is(herr, store.ErrNotFound) {
				o, herr = nil, nil
			}
			f.MailHolders, err = append(f.MailHolders, authz.DomainHolder{Org: o, Matched: matched}), herr
		case authz.NeedMembership:
			o, m, lerr := members.Lookup(ctx, f.Orgs[len(f.Memberships)], f.Person)
			f.Memberships, err = append(f.Memberships, authz.HeldMembership{Org: o, Membership: m}), lerr
		}
		if err != nil {
			return d, err
		}
	}
}

// lookupKey is the identifier as the indexes and counters know it: an email lower-cased
// (local part included, as at sign-in), a username as written.
func (c *recoveryCheck) lookupKey() string { return c.id.LookupKey() }

// shownIdentifier is the identifier as logs and audit events may carry it.
func (c *recoveryCheck) shownIdentifier() string {
	if !c.found {
		return ""
	}
	if c.g.IdentifierInAudit == config.RecoveryAuditMask {
		return maskIdentifier(c.id)
	}
	return c.id.AuditHash()
}

// maskIdentifier keeps the first character and the domain: "a***@acme.com", "a***".
func maskIdentifier(id recoveryid.Identifier) string {
	if id.Kind == recoveryid.KindEmail {
		return id.Local[:1] + "***@" + id.Domain
	}
	if id.Raw == "" {
		return "***"
	}
	return id.Raw[:1] + "***"
}

func (c *recoveryCheck) count(result string, code reason.Code) {
	c.ex.s.metrics.recovery.WithLabelValues(c.ex.routeLabel, result, string(code)).Inc()
}

// tooLarge refuses a body over the limit. Whatever is left of it is never read: the
// connection must not be reused.
func (c *recoveryCheck) tooLarge() error {
	c.ex.w.Header().Set("Connection", "close")
	return c.refuse(resultRejected, reason.BodyTooLarge)
}

// refuse is the refusal of this request with code, as a result.
func (c *recoveryCheck) refuse(result string, code reason.Code) *recoveryRefusal {
	return &recoveryRefusal{result: result, code: code, c: c}
}

// mirror answers a blocked request with the portal's own answer for an address nobody has:
// the request goes on with the identifier replaced by a decoy that cannot receive mail (an
// address at the reserved .invalid domain, RFC 2606, or a username nobody holds), so the
// client gets exactly what the portal says for any unknown address (status, Location, body,
// cookies, and about the same time), and the portal has no one to send a reset to. It is
// counted, logged and audited as blocked.
func (c *recoveryCheck) mirror(code reason.Code, body []byte) error {
	ex, r := c.ex, c.ex.r
	decoy := "portcullis-nobody-" + randomHex(8)
	if c.id.Kind == recoveryid.KindEmail {
		decoy = "nobody-" + randomHex(8) + "@" + mirrorDomain
	}
	q, b, err := recoveryid.Replace(c.id, r.Header.Get("Content-Type"), r.URL.RawQuery, body, decoy)
	if err != nil {
		// What Extract read it can rewrite; if not, refuse rather than forward the address.
		// Answered as any request the guard cannot read, whatever the address: the answer
		// must not depend on whether it was blocked.
		c.ex.s.log.LogAttrs(r.Context(), slog.LevelError, "recovery mirror could not rewrite the request; refused as malformed",
			slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID), slog.Any("error", err))
		c.found, c.detail = false, "mirror_rewrite"
		return c.refuse(resultRejected, reason.MalformedBody)
	}
	c.detail = "mirrored"
	(&recoveryRefusal{result: resultBlocked, code: code, c: c}).record(ex)
	r.URL.RawQuery, r.URL.ForceQuery = q, false
	restoreBody(r, b)
	return nil
}

// mirrorDomain is the domain of the decoy addresses: reserved, it never resolves, so no mail
// can be delivered to it.
const mirrorDomain = "portcullis.invalid"

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// give counts, logs and audits the refusal and answers it: with the route's generic page, or
// a problem.
func (e *recoveryRefusal) give(ex *exchange) {
	e.record(ex)
	c, r := e.c, ex.r
	if e.generic {
		c.writeGeneric()
		return
	}
	p := problem.New(e.code)
	p.RequestID = ex.requestID
	problem.Write(ex.w, r, p)
}

// record counts, logs and audits the refusal.
func (e *recoveryRefusal) record(ex *exchange) {
	c, s, r := e.c, ex.s, ex.r
	if e.cause != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "recovery store unavailable; refusing (fail closed)",
			slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID), slog.Any("error", e.cause))
	}
	c.count(e.result, e.code)
	if e.result == resultRejected && s.opts.Recovery != nil {
		// Malformed requests count against the client's limit too, and like rate-limited
		// ones are audited only up to it, so anonymous garbage cannot flood the bounded audit
		// stream. The answer stays what the syntax says; a store error changes nothing here.
		n, err := s.opts.Recovery.CountRecovery(r.Context(), ex.routeLabel, "", c.client, c.g.RateLimit.Window.D(), s.now())
		c.quiet = err == nil && n.Client > int64(c.g.RateLimit.PerClient)+1
	}
	attrs := []slog.Attr{
		slog.String("route", ex.routeLabel), slog.String("reason", string(e.code)), slog.String("result", e.result),
		slog.String("client", c.client), slog.String("request_id", ex.requestID),
	}
	detail := map[string]string{"client": c.client, "result": e.result}
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
		s.appendAudit(r, audit.Event{Type: audit.RecoveryBlocked, Org: c.org, User: c.user, Reason: string(e.code),
			Route: ex.routeLabel, RequestID: ex.requestID, Detail: detail})
	}
}

// writeGeneric writes the route's generic answer: the same whether the request was
// forwarded or blocked.
func (c *recoveryCheck) writeGeneric() {
	h := c.ex.w.Header()
	h.Set("Content-Type", c.g.GenericContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(c.g.GenericBody)))
	for name, v := range c.g.GenericHeaders {
		h.Set(name, v)
	}
	status := c.g.GenericStatus
	if status == 0 {
		status = http.StatusOK
	}
	c.ex.w.WriteHeader(status)
	if c.ex.r.Method != http.MethodHead {
		_, _ = io.WriteString(c.ex.w, c.g.GenericBody)
	}
}

// restoreBody puts the bytes read back as the request body, with their exact length, so the
// portal receives what the client sent.
func restoreBody(r *http.Request, body []byte) {
	if len(body) == 0 {
		r.Body, r.ContentLength = http.NoBody, 0
	} else {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	r.TransferEncoding = nil
	r.Header.Del("Expect")
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}
