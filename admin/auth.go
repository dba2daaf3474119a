package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/clientjwt"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// principal is who makes a call: an authz.Actor, with how they were authenticated.
type principal struct {
	authz.Actor
	// via names the credential: "token <id>" or "jwt <issuer>", recorded in audit events.
	via string
	// org, when set, restricts a personal token to one organisation.
	org      string
	readOnly bool
	// expires is when the calling token ends (zero for a JWT): what it makes ends no later.
	expires time.Time
}

// authenticate finds the principal of r from its Authorization header: an admin API token, or
// an operator JWT when an operator issuer is configured. Anything else is unauthenticated.
func (s *Server) authenticate(r *http.Request) (*principal, error) {
	if p, ok := r.Context().Value(asKey{}).(*principal); ok {
		return p, nil
	}
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return nil, refuse(reason.Unauthenticated, "no single Authorization header")
	}
	scheme, cred, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return nil, refuse(reason.Unauthenticated, "not a bearer credential")
	}
	if strings.HasPrefix(cred, store.TokenPrefix) {
		t, err := s.st.TokenBySecret(r.Context(), cred)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, refuse(reason.Unauthenticated, "unknown token")
		case err != nil:
			return nil, err
		case !t.Live(s.now()):
			return nil, refuse(reason.Unauthenticated, "token "+t.ID+" expired or revoked")
		case t.SCIM:
			// A directory's credential provisions its organisation at /scim/v2, nothing more.
			return nil, refuse(reason.Unauthenticated, "token "+t.ID+" is a SCIM token: it authenticates at /scim/v2/"+t.Org+" only")
		}
		s.tokenUsed(r.Context(), t.ID)
		return &principal{Actor: authz.Actor{Operator: t.Operator, Name: t.Owner}, via: "token " + t.ID, org: t.Org, readOnly: t.ReadOnly,
			expires: t.Expires}, nil
	}
	if s.ops == nil {
		return nil, refuse(reason.Unauthenticated, "not an admin API token, and no operator issuer is configured")
	}
	name, err := s.ops.verify(r.Context(), cred)
	switch {
	case errors.Is(err, errProviderDown):
		return nil, problem.Outage(reason.IdPUnavailable, "admin API: operator identity provider unavailable", "", err)
	case err != nil:
		return nil, refuse(reason.Unauthenticated, err.Error())
	}
	return &principal{Actor: authz.Actor{Operator: true, Name: name}, via: "jwt " + s.ops.issuer}, nil
}

// asKey carries the principal of a call made in process (As).
type asKey struct{}

// As serves the API for the person user (an issuer|subject key) whom Portcullis's own
// session authenticated: the console's calls, made in process, so that a page can do nothing
// the API would refuse that person. The request's Authorization header is not read. via
// names the session in the log and the audit events ("console session …"). The person is
// never an operator, whatever they hold: operators act through their own credentials.
func (s *Server) As(user, via string) http.Handler {
	return s.as(&principal{Actor: authz.Actor{Name: user}, via: via})
}

// AsOperator is As for a person the console's configuration names as an operator
// (console.operators), once the console has checked their step-up: the call is an
// operator's, recorded with the person and the session.
func (s *Server) AsOperator(user, via string) http.Handler {
	return s.as(&principal{Actor: authz.Actor{Operator: true, Name: user}, via: via})
}

func (s *Server) as(p *principal) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), asKey{}, p)))
	})
}

// inOrg refuses a call about org by a personal token restricted to another one.
func (c *call) inOrg(org string) error {
	if c.p.org != "" && c.p.org != org {
		return refuse(reason.NotPermitted, "token restricted to "+c.p.org)
	}
	return nil
}

// adminOf reports whether the caller administers org: a live membership there holding the
// policy's admin role, or such a membership in an organisation org has a live delegation to
// (never transitively). Acting through a delegation is remembered (c.through), and named in
// the audit events of the call's changes. Operators administer nothing themselves: they act
// as operators.
func (c *call) adminOf(org string) (bool, error) {
	if c.p.Operator || (c.p.org != "" && c.p.org != org) {
		return false, nil
	}
	ok, o, err := c.directAdminOf(org)
	if err != nil || ok || o == nil {
		return ok, err
	}
	// A delegate acts in org: org's trust rule applies to them as to its own members.
	if !c.s.trust.Load().TrustsUser(o, c.p.Name) {
		return false, nil
	}
	now := c.s.now()
	for i := range o.Delegations {
		d := &o.Delegations[i]
		if !d.Live(now) {
			continue
		}
		ok, _, err := c.directAdminOf(d.To)
		if err != nil {
			return false, err
		}
		if ok {
			if c.through == nil {
				c.through = map[string]*store.Delegation{}
			}
			c.through[org] = d
			return true, nil
		}
	}
	return false, nil
}

// directAdminOf reports whether the caller's own membership of org holds the admin role, and
// returns the organisation as read.
func (c *call) directAdminOf(org string) (bool, *store.Org, error) {
	o, m, err := c.s.st.Lookup(c.ctx, org, c.p.Name)
	if err != nil {
		return false, nil, err
	}
	d := authz.Decide(authz.Input{User: c.p.Name, OrgID: org, Org: o, Membership: m, Require: c.policy.admin,
		Policy: c.policy.Policy, Providers: c.s.trust.Load()}, c.s.now())
	return d.Allow, o, nil
}

// mayAdministerDirectly is mayAdminister without delegations: what only the organisation's
// own administrators (and operators) do, such as delegating.
func (c *call) mayAdministerDirectly(org string) error {
	if err := c.inOrg(org); err != nil {
		return err
	}
	if c.p.Operator {
		return nil
	}
	ok, _, err := c.directAdminOf(org)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(reason.NotPermitted, "not an administrator of "+org+" in its own right")
	}
	return nil
}

// mayAdminister refuses unless the caller is an operator or an administrator of org.
func (c *call) mayAdminister(org string) error {
	if err := c.inOrg(org); err != nil {
		return err
	}
	if c.p.Operator {
		return nil
	}
	ok, err := c.adminOf(org)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(reason.NotPermitted, "not an administrator of "+org)
	}
	return nil
}

// OperatorVerifier checks operator JWTs: access tokens of the platform's own identity
// provider (admin_api.operators), verified with go-oidc against its published keys: issuer,
// audience, expiry and signature (clientjwt.Issuer), then the role claim.
type OperatorVerifier struct {
	issuer, roleClaim, role string
	is                      *clientjwt.Issuer
}

// NewOperatorVerifier prepares the verifier of c; discovery happens at the first token, and
// again at most every 30 seconds while the provider cannot be reached.
func NewOperatorVerifier(c config.OperatorTokens) (*OperatorVerifier, error) {
	is, err := clientjwt.NewIssuer(c.Issuer, c.Audience, []string{"RS256", "ES256"}, c.CARootFile, "admin_api.operators", nil)
	if err != nil {
		return nil, err
	}
	return &OperatorVerifier{issuer: c.Issuer, roleClaim: c.RoleClaim, role: c.Role, is: is}, nil
}

// verify checks raw and returns the operator's name: issuer|subject.
func (v *OperatorVerifier) verify(ctx context.Context, raw string) (string, error) {
	tok, err := v.is.Verify(ctx, raw)
	switch {
	case errors.Is(err, clientjwt.ErrUnavailable):
		return "", fmt.Errorf("%w: %w", errProviderDown, err)
	case err != nil:
		return "", fmt.Errorf("operator token: %w", err)
	}
	var claims map[string]json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return "", fmt.Errorf("operator token claims: %w", err)
	}
	if !hasRole(claims[v.roleClaim], v.role) {
		return "", fmt.Errorf("operator token of %s lacks the role %q in %q", tok.Subject, v.role, v.roleClaim)
	}
	return store.UserKey(tok.Issuer, tok.Subject), nil
}

// hasRole reads a role claim that is a string (space-separated) or an array of strings.
func hasRole(raw json.RawMessage, role string) bool {
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return slices.Contains(list, role)
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return slices.Contains(strings.Fields(one), role)
	}
	return false
}

// errProviderDown: the operator identity provider could not be discovered, so no operator
// token can be checked (an outage, not a bad token).
var errProviderDown = errors.New("operator identity provider unavailable")

// tokenUseInterval is how often one process records a token's use at most.
const tokenUseInterval = time.Minute

// tokenUsed records that token id authenticated a call, at most once per tokenUseInterval
// per process; a failure is logged, not fatal: the record is a report's hint.
func (s *Server) tokenUsed(ctx context.Context, id string) {
	now := s.now()
	s.tokenUseMu.Lock()
	last, ok := s.tokenUse[id]
	if ok && now.Sub(last) < tokenUseInterval && !now.Before(last) {
		s.tokenUseMu.Unlock()
		return
	}
	if len(s.tokenUse) > 10000 {
		clear(s.tokenUse)
	}
	s.tokenUse[id] = now
	s.tokenUseMu.Unlock()
	if err := s.st.TokenUsed(context.WithoutCancel(ctx), id, now); err != nil {
		s.log.Warn("token use not recorded", slog.String("token", id), slog.Any("error", err))
	}
}
