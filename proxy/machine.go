package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/internal/clientjwt"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
)

// Machine identities on the request path (store/machines.go has the model, authz.DecideMachine
// the decision). A request presents an API key in its Authorization header, as a bearer token
// (RFC 6750 §2.1), and nowhere else: a key in a query string or a cookie is never read, so it
// is just another parameter the portal gets. Which principal a request is decided as is
// settled before anything is looked up:
//
//   - a Portcullis API key (Bearer pc_…) on a route whose auth does not list api_key, or in a
//     forward-auth question: credential_not_accepted, rather than silently deciding it as a
//     person without a session;
//   - an API key together with a session cookie: credential_mixed (RFC 6750 forbids more than
//     one method, and one request is one principal);
//   - an API key on a route that accepts them: the machine path below;
//   - a JWT on a route whose auth lists client_jwt: a client-credentials token of a trusted
//     issuer (client_jwt.issuers), the machine its client is bound to, the same decision; on
//     such a route every bearer JWT is taken as one (and refused if it is not), and like
//     keys they are refused beside a session cookie and in forward-auth questions;
//   - on a route that accepts API keys only, anything else: credential_missing without a
//     bearer token, credential_invalid with one that is not ours;
//   - otherwise the person's session, as before (a portal's own bearer tokens pass through).

// credential is the principal a request presents.
type credential int

const (
	credSession   credential = iota // a person, by their session (or none yet)
	credAPIKey                      // a machine identity, by an API key in ex.apiKey
	credClientJWT                   // a machine identity, by a client-credentials token in ex.apiKey
)

// choosePrincipal settles how the request authenticates, or refuses it.
func (ex *exchange) choosePrincipal() (credential, error) {
	route := ex.route
	token, bearer := bearerToken(ex.r.Header)
	ours := bearer && strings.HasPrefix(token, apikey.Prefix)
	switch {
	case ours && (!route.AcceptsAPIKey() || ex.question):
		// Behind forward-auth the ingress would pass the key on to the portal, which must
		// never hold it: machine identities are served with Portcullis as the proxy.
		return 0, ex.machineRefusal(reason.CredentialNotAccepted, "", "")
	case ours && hasSessionCookie(ex.r.Header):
		return 0, ex.machineRefusal(reason.CredentialMixed, "", "")
	case ours:
		ex.apiKey = token
		return credAPIKey, nil
	case bearer && route.AcceptsClientJWT() && looksLikeJWT(token):
		switch {
		case ex.question:
			return 0, ex.machineRefusal(reason.CredentialNotAccepted, "", "")
		case hasSessionCookie(ex.r.Header):
			return 0, ex.machineRefusal(reason.CredentialMixed, "", "")
		}
		ex.apiKey = token
		return credClientJWT, nil
	case !route.AcceptsSession() && bearer:
		return 0, ex.machineRefusal(reason.CredentialInvalid, "", "")
	case !route.AcceptsSession():
		return 0, ex.machineRefusal(reason.CredentialMissing, "", "")
	}
	return credSession, nil
}

// presentsAPIKey reports whether the request carries a Portcullis API key as a bearer token.
func presentsAPIKey(h http.Header) bool {
	token, bearer := bearerToken(h)
	return bearer && strings.HasPrefix(token, apikey.Prefix)
}

// bearerToken is the token of the request's Authorization header when its scheme is Bearer
// (case-insensitive, RFC 9110 §11.1), and whether it is. readTarget refused a request with
// more than one Authorization header.
func bearerToken(h http.Header) (string, bool) {
	v := h["Authorization"]
	if len(v) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(v[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// looksLikeJWT reports whether token has a JWS compact serialisation's shape: three
// base64url parts (the verifier then decides what it is).
func looksLikeJWT(token string) bool {
	dots := 0
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			dots++
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// hasSessionCookie reports whether the request carries Portcullis's session cookie (in any
// letter case, as stripOwnCookies removes it).
func hasSessionCookie(h http.Header) bool {
	for _, line := range h["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(part, "=")
			if strings.EqualFold(strings.TrimSpace(name), session.CookieName) {
				return true
			}
		}
	}
	return false
}

// admitMachine admits a request on an API key: the key's index entry, the machine's and its
// sponsor's memberships (all cached like a person's), and authz.DecideMachine. The key's
// secret is checked against the index entry before any record is read for it.
func (ex *exchange) admitMachine() error {
	s := ex.s
	keys, members := s.opts.APIKeys, s.opts.Members
	if keys == nil || members == nil {
		return storeDown("", errors.New("no machine identity store configured"))
	}
	ctx := ex.r.Context()
	id, ok := apikey.Parse(ex.apiKey)
	if !ok {
		return ex.machineRefusal(reason.CredentialInvalid, "", "")
	}
	in, err := authz.GatherMachine(ctx, keys, members, ex.apiKey, id)
	if err != nil {
		return storeDown("", err)
	}
	if in.Owner == nil {
		return ex.machineRefusal(reason.CredentialInvalid, "", "")
	}
	ex.resolveMachineOrg(in.Owner.Org)
	ex.completeMachine(&in)
	return ex.admitMachineDecided(in, in.Owner.User(), id)
}

// resolveMachineOrg resolves the organisation a machine's request acts for: as a person's,
// but on a route where a person's session would choose, the machine's own (own).
func (ex *exchange) resolveMachineOrg(own string) {
	if ex.pol.resolver.From() == config.OrgFromSession {
		// A machine has no org picker.
		ex.org, ex.orgKnown = own, true
		return
	}
	ex.resolveOrg("")
}

// completeMachine gives in what the route asks and the organisation resolved: what a machine's
// request and its tunnel's re-decisions ask DecideMachine beside the records.
func (ex *exchange) completeMachine(in *authz.MachineInput) {
	in.OrgID, in.Require, in.Policy, in.Providers = ex.org, ex.pol.require, ex.st.lifecycle, ex.st.trust.Load()
}

// admitClient admits a request on a client-credentials token: verified (package clientjwt,
// cached until it expires), the machine its client is bound to, authz.DecideMachine.
func (ex *exchange) admitClient() error {
	s := ex.s
	if s.opts.ClientTokens == nil || s.opts.Clients == nil || s.opts.Members == nil {
		return storeDown("", errors.New("no client token verifier or machine identity store configured"))
	}
	ctx := ex.r.Context()
	vc, err := ex.verifyClient(ctx)
	if err != nil {
		return err
	}
	ex.tokenExpiry = vc.Expiry
	in, err := authz.GatherClient(ctx, s.opts.Clients, s.opts.Members, vc)
	if err != nil {
		return storeDown("", err)
	}
	if in.ClientOwner == nil {
		// A valid token of a client no machine is bound to.
		return ex.machineRefusal(reason.CredentialInvalid, "", "")
	}
	ex.resolveMachineOrg(in.ClientOwner.Org)
	ex.completeMachine(&in)
	return ex.admitMachineDecided(in, in.ClientOwner.User(), "")
}

// verifyClient verifies the request's client-credentials token.
func (ex *exchange) verifyClient(ctx context.Context) (*authz.VerifiedClient, error) {
	c, err := ex.s.opts.ClientTokens.Verify(ctx, ex.apiKey)
	switch {
	case errors.Is(err, clientjwt.ErrExpired):
		return nil, ex.machineRefusal(reason.CredentialExpired, "", "")
	case errors.Is(err, clientjwt.ErrUnavailable):
		return nil, problem.Outage(reason.IdPUnavailable, "client token issuer unavailable; refusing (fail closed)", "", err)
	case err != nil:
		ex.s.log.LogAttrs(ctx, slog.LevelDebug, "client token refused", slog.Any("error", err), slog.String("request_id", ex.requestID))
		return nil, ex.machineRefusal(reason.CredentialInvalid, "", "")
	}
	return verifiedClient(c), nil
}

// verifiedClient is what DecideMachine is told of a verified token.
func verifiedClient(c clientjwt.Client) *authz.VerifiedClient {
	return &authz.VerifiedClient{Issuer: c.Issuer, Subject: c.Subject, Expiry: c.Expiry, Orgs: c.Orgs}
}

// admitMachineDecided decides a machine's request (in gathered) and admits it; keyID is the
// API key's id ("" for a client token), for its last use.
func (ex *exchange) admitMachineDecided(in authz.MachineInput, user, id string) error {
	s := ex.s
	d := authz.DecideMachine(in, s.now())
	if !d.Allow {
		return ex.machineDenial(d, user)
	}
	ex.id = identity{user: user, org: d.Org, kind: d.Kind, roles: d.Roles, purpose: d.Purpose,
		sponsor: d.Sponsor, machine: true}
	if g := d.Grant; g != nil {
		ex.id.grantReason, ex.id.grantEnd = g.Reason, g.ExpiresAt
	}
	if s.opts.Uses != nil {
		now := s.now()
		s.opts.Uses.Used(d.Org, user, now)
		if id != "" {
			s.opts.Uses.KeyUsed(d.Org, id, now)
		}
	}
	return nil
}

// machineDenial is the refusal of a machine's decision d: as a person's (deny), with the
// bearer challenge of the credential codes, and without telling a key holder more than
// not_member about another organisation.
func (ex *exchange) machineDenial(d authz.Decision, user string) error {
	shown := reason.Shown(d.Reason, d.Member || d.Reason == reason.NoOrg)
	p := problem.For(shown, reason.Facts{Org: d.Org, Roles: d.Missing.Roles, Purposes: d.Missing.Purposes, Kinds: d.Missing.Kinds})
	if d.Missing.Contact != "" && d.Member {
		p.Hint = "To get access, ask " + d.Missing.Contact + "."
	}
	return &denial{code: d.Reason, p: p, msg: "access denied", level: slog.LevelInfo, user: user, org: d.Org, audit: true}
}

// machineRefusal refuses a credential before any machine is known.
func (ex *exchange) machineRefusal(code reason.Code, user, org string) error {
	return &denial{code: code, p: problem.New(code), msg: "credential refused", level: slog.LevelInfo, user: user, org: org, audit: true}
}
