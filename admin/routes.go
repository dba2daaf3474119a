package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/store"
)

// endpoints is the route table of the API: the mux and the OpenAPI document are both built
// from it.
func (s *Server) endpoints() []endpoint {
	return append([]endpoint{
		{method: "GET", path: basePath + "/whoami", summary: "Who the credential authenticates, and how", access: anyone,
			out: whoami{}, handle: (*call).whoami},

		{method: "GET", path: basePath + "/orgs", summary: "List the organisations (operators)", access: operator,
			out: list[store.Org]{}, handle: (*call).listOrgs},
		{method: "POST", path: basePath + "/orgs", summary: "Create an organisation (operators)", access: operator, change: true,
			in: orgInput{}, out: store.Org{}, status: http.StatusCreated, handle: (*call).createOrg},
		{method: "GET", path: basePath + "/orgs/{org}", summary: "An organisation (operators and its administrators)", access: anyone,
			out: store.Org{}, handle: (*call).getOrg},
		{method: "POST", path: basePath + "/orgs/{org}/status", summary: "Set an organisation's status (active, suspended, ended), its contract end or what absorbed it (operators; business events are the way to end or merge with their effects)",
			access: operator, change: true, in: orgStatusInput{}, out: store.Org{}, handle: (*call).setOrgStatus},
		{method: "POST", path: basePath + "/orgs/{org}/domains", summary: "Add an email domain to an organisation (pending verification), or set its status: verified, pending, lapsed (operators)",
			access: operator, change: true, in: domainInput{}, out: store.Org{}, handle: (*call).setDomain},
		{method: "GET", path: basePath + "/providers", summary: "The OpenID Providers: those of the configuration file and those managed here, with the organisations listing each (operators)",
			access: operator, out: list[ProviderView]{}, handle: (*call).listProviders},
		{method: "PUT", path: basePath + "/providers/{name}", summary: "Add or replace a managed OpenID Provider (oidc.managed_providers): the keys of an oidc.providers entry, its client secret by reference only (client_secret_file in secrets_dir, client_secret_env with secrets_env_prefix), optionally bound to one organisation (org). In force on every replica at once; organisations list it to trust it (operators)",
			access: operator, change: true, in: providerDoc{}, out: ProviderView{}, handle: (*call).saveProvider},
		{method: "POST", path: basePath + "/providers/{name}/delete", summary: "Remove a managed OpenID Provider that no organisation lists (operators)",
			access: operator, change: true, in: deleteProviderInput{}, out: map[string]string{}, handle: (*call).deleteProvider},
		{method: "PUT", path: basePath + "/orgs/{org}/providers", summary: "Replace the OpenID Providers that may sign people in for an organisation (names of configured providers, default for oidc's own; none: the shared providers). People signed in through a provider no longer listed are refused at once (operators)",
			access: operator, change: true, in: providersInput{}, out: store.Org{}, handle: (*call).setProviders},
		{method: "GET", path: basePath + "/orgs/{org}/scim/tokens", summary: "The SCIM tokens of an organisation's directory (operators and its own administrators)",
			access: anyone, out: list[store.Token]{}, handle: (*call).listSCIMTokens},
		{method: "POST", path: basePath + "/orgs/{org}/scim/tokens", summary: "Create a SCIM token for an organisation's directory, shown once: it provisions that organisation at /scim/v2/{org} and is no admin API credential (operators and its own administrators)",
			access: anyone, change: true, in: scimTokenInput{}, out: createdToken{}, status: http.StatusCreated, handle: (*call).createSCIMToken},
		{method: "POST", path: basePath + "/orgs/{org}/scim/tokens/{id}/revoke", summary: "Revoke an organisation's SCIM token (operators and its own administrators)",
			access: anyone, change: true, in: decisionInput{}, out: store.Token{}, handle: (*call).revokeSCIMToken},
		{method: "GET", path: basePath + "/orgs/{org}/policy", summary: "An organisation's lifecycle policy: its own limits, the platform's rules and the rules in force, per kind (operators and its administrators)",
			access: anyone, out: policyView{}, handle: (*call).getPolicy},
		{method: "PUT", path: basePath + "/orgs/{org}/policy", summary: "Replace an organisation's own lifecycle limits, which may only tighten the platform's (operators and the organisation's own administrators)",
			access: anyone, change: true, in: policyInput{}, out: policyView{}, handle: (*call).setPolicy},
		{method: "GET", path: basePath + "/orgs/{org}/members", summary: "The memberships of an organisation (operators and its administrators)",
			access: anyone, out: list[store.Membership]{}, handle: (*call).listMembers},
		{method: "POST", path: basePath + "/orgs/{org}/members", summary: "Grant or replace a membership, within the lifecycle policy (operators and the organisation's administrators; support and service memberships go through requests)",
			access: anyone, change: true, in: grantInput{}, out: store.Membership{}, handle: (*call).grant},
		{method: "POST", path: basePath + "/orgs/{org}/members/change", summary: "Change a membership in place: add or remove roles and purposes, a new kind, end or review date, suspend or resume it, within the lifecycle policy (operators and the organisation's administrators, never for their own)",
			access: anyone, change: true, in: changeInput{}, out: store.Membership{}, handle: (*call).changeMember},
		{method: "POST", path: basePath + "/orgs/{org}/members/revoke", summary: "Revoke a membership (operators and the organisation's administrators)",
			access: anyone, change: true, in: revokeInput{}, out: store.Membership{}, handle: (*call).revoke},

		{method: "GET", path: basePath + "/orgs/{org}/invitations", summary: "The invitations of an organisation that wait for their first sign-in (operators and its administrators)",
			access: anyone, out: list[store.Invitation]{}, handle: (*call).listInvitations},
		{method: "POST", path: basePath + "/orgs/{org}/invitations", summary: "Invite an email address: the membership it binds to at the first sign-in with that address verified, within the lifecycle policy (employees at the organisation's verified domains only)",
			access: anyone, change: true, in: inviteInput{}, out: store.Invitation{}, status: http.StatusCreated, handle: (*call).invite},
		{method: "POST", path: basePath + "/orgs/{org}/invitations/import", summary: "Invite many addresses in one change (a portal's existing users): every row within the policy, all written or none, one parent audit event",
			access: anyone, change: true, in: importInput{}, out: importOutcome{}, bodyLimit: 1 << 20, handle: (*call).importInvitations},
		{method: "POST", path: basePath + "/orgs/{org}/invitations/withdraw", summary: "Withdraw an invitation before it is used",
			access: anyone, change: true, in: withdrawInput{}, out: store.Invitation{}, handle: (*call).withdrawInvitation},

		{method: "GET", path: basePath + "/orgs/{org}/requests", summary: "The access requests of an organisation, newest first (operators and its administrators)",
			access: anyone, out: list[requestView]{}, handle: (*call).listRequests},
		{method: "POST", path: basePath + "/orgs/{org}/requests", summary: "Ask for a role, a purpose or a membership, for a limited time",
			access: anyone, change: true, in: requestInput{}, out: requestView{}, status: http.StatusCreated, handle: (*call).createRequest},
		{method: "GET", path: basePath + "/orgs/{org}/requests/{id}", summary: "One access request (operators, its administrators, the requester and the person it is for)",
			access: anyone, out: requestView{}, handle: (*call).getRequest},
		{method: "POST", path: basePath + "/orgs/{org}/requests/{id}/approve", summary: "Approve a request; the last approval the policy requires writes the time-boxed grant",
			access: anyone, change: true, in: decisionInput{}, out: requestView{}, handle: (*call).approve},
		{method: "POST", path: basePath + "/orgs/{org}/requests/{id}/deny", summary: "Deny a request (its approvers)",
			access: anyone, change: true, in: decisionInput{}, out: requestView{}, handle: (*call).deny},
		{method: "POST", path: basePath + "/orgs/{org}/requests/{id}/cancel", summary: "Withdraw a request (the requester, the person it is for, operators)",
			access: anyone, change: true, in: decisionInput{}, out: requestView{}, handle: (*call).cancel},
		{method: "GET", path: basePath + "/me/administers", summary: "The organisations the caller administers: in their own right, and through live delegations to those (never transitively)",
			access: anyone, out: list[administered]{}, handle: (*call).myAdministered},
		{method: "GET", path: basePath + "/me/requests", summary: "The caller's own access requests, in every organisation",
			access: anyone, out: list[requestView]{}, handle: (*call).myRequests},

		{method: "GET", path: basePath + "/orgs/{org}/delegations", summary: "The organisations whose administrators may administer this one, ended ones included (operators and its administrators)",
			access: anyone, out: list[delegationView]{}, handle: (*call).listDelegations},
		{method: "POST", path: basePath + "/orgs/{org}/delegations", summary: "Let another organisation's administrators (an MSP, a reseller, a head office) administer this one within the policy, until an end (operators and the organisation's own administrators)",
			access: anyone, change: true, in: delegationInput{}, out: store.Delegation{}, status: http.StatusCreated, handle: (*call).delegate},
		{method: "POST", path: basePath + "/orgs/{org}/delegations/{id}/end", summary: "End a delegation now (operators, the organisation's own administrators, the delegate's administrators)",
			access: anyone, change: true, in: decisionInput{}, out: store.Delegation{}, handle: (*call).endDelegation},

		{method: "GET", path: basePath + "/orgs/{org}/access", summary: "Who has what in an organisation: every membership with its kind, roles, purposes, since, granted and approved by, end, review date and last use (operators and its administrators; ?format=csv)",
			access: anyone, out: accessReport{}, csv: true, handle: (*call).orgAccess},
		{method: "GET", path: basePath + "/access", summary: "What one person has, in every organisation: one's own, or for operators anyone's (?user=issuer|subject; ?format=csv)",
			access: anyone, out: accessReport{}, csv: true, query: []string{"user"}, handle: (*call).personAccess},
		{method: "GET", path: basePath + "/orgs/{org}/activity", summary: "The audit events concerning an organisation, newest first: its changes, requests, support and partner access, refusals (operators and its administrators; ?before, ?count, ?type, ?kind; ?format=csv)",
			access: anyone, out: activityPage{}, csv: true, query: []string{"before", "count", "type", "kind"}, handle: (*call).orgActivity},
		{method: "GET", path: basePath + "/orgs/{org}/reviews", summary: "The access review campaigns of an organisation, newest first (operators and its administrators)",
			access: anyone, out: list[store.Review]{}, handle: (*call).listReviews},
		{method: "POST", path: basePath + "/orgs/{org}/reviews", summary: "Start an access review: every live membership (of the kinds given) is due by the deadline, and stops granting then unless kept or changed",
			access: anyone, change: true, in: reviewInput{}, out: store.Review{}, status: http.StatusCreated, handle: (*call).startReview},
		{method: "GET", path: basePath + "/orgs/{org}/reviews/{id}", summary: "A campaign and its report: each item's decision, who made it and when, and what the membership does now (?format=csv)",
			access: anyone, out: reviewReport{}, csv: true, handle: (*call).getReview},
		{method: "POST", path: basePath + "/orgs/{org}/reviews/{id}/decide", summary: "Keep, change or revoke one membership of a campaign (its organisation's administrators, never for their own; operators)",
			access: anyone, change: true, in: reviewDecisionInput{}, out: store.Review{}, handle: (*call).decideReview},

		{method: "POST", path: basePath + "/events", summary: "Apply a business event (contract renewed or ended, merged into, role changed, offboarded, domain lapsed) as one change, or with dry_run list exactly what it would change: operators, and an organisation's administrators for role_changed",
			access: anyone, change: true, in: eventInput{}, out: eventOutcome{}, handle: (*call).applyEvent},

		{method: "POST", path: basePath + "/people/index", summary: "Record whose email address or portal username it is, for the recovery guard (operators; sign-in records addresses itself)",
			access: operator, change: true, in: personIndexInput{}, out: personIndexOutcome{}, handle: (*call).recordPerson},
		{method: "POST", path: basePath + "/recovery/reset", summary: "Clear the recovery rate limit of an address or username on a route, for a person locked out by their own attempts (operators)",
			access: operator, change: true, in: recoveryResetInput{}, out: recoveryResetOutcome{}, handle: (*call).resetRecoveryLimit},
		{method: "GET", path: basePath + "/reviews/due", summary: "Every membership, in every organisation, whose review is due within ?within (default 14d) (operators)",
			access: operator, out: list[store.Membership]{}, query: []string{"within"}, handle: (*call).reviewsDue},
		{method: "GET", path: basePath + "/audit", summary: "The audit stream after ?since (an event id, 0 for the oldest kept, $ for new ones), at most ?count, waiting up to ?wait seconds for one (operators)",
			access: operator, out: auditPage{}, query: []string{"since", "count", "wait"}, handle: (*call).auditTail},
		{method: "GET", path: basePath + "/tokens", summary: "The admin API tokens: all of them for operators, one's own for a person", access: anyone,
			out: list[store.Token]{}, handle: (*call).listTokens},
		{method: "POST", path: basePath + "/tokens", summary: "Create a token of one's own, shown once, no broader and no longer-lived than the calling one", access: anyone, change: true,
			in: tokenInput{}, out: createdToken{}, status: http.StatusCreated, handle: (*call).createToken},
		{method: "POST", path: basePath + "/tokens/{id}/revoke", summary: "Revoke a token (operators: any; a person: their own)", access: anyone, change: true,
			in: decisionInput{}, out: store.Token{}, handle: (*call).revokeToken},
	}, s.machineEndpoints()...)
}

// list is a listing.
type list[T any] struct {
	Items []T `json:"items"`
}

// whoami is who a credential authenticates.
type whoami struct {
	Name     string `json:"name"`
	Operator bool   `json:"operator"`
	Via      string `json:"via"`
	Org      string `json:"org,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

func (c *call) whoami() (any, error) {
	return whoami{Name: c.p.Name, Operator: c.p.Operator, Via: c.p.via, Org: c.p.org, ReadOnly: c.p.readOnly}, nil
}

// orgParam is the {org} of the path, checked.
func (c *call) orgParam() (string, error) {
	org := c.r.PathValue("org")
	if !syntax.OrgID(org) {
		return "", refuse(reason.NotFound, "malformed org id")
	}
	return org, nil
}

// administeredOrg is the {org} of the path, which the caller must administer (or be an
// operator).
func (c *call) administeredOrg() (string, error) {
	org, err := c.orgParam()
	if err != nil {
		return "", err
	}
	return org, c.mayAdminister(org)
}

// administeredChange is orgChange for a change to an organisation the caller must administer
// (or be an operator).
func (c *call) administeredChange(in reasoned) (string, error) {
	org, err := c.orgChange(in)
	if err != nil {
		return "", err
	}
	return org, c.mayAdminister(org)
}

// orgInput creates an organisation.
type orgInput struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Contact     string    `json:"contact,omitempty"`
	ContractEnd time.Time `json:"contract_end,omitzero"`
	Reason      string    `json:"reason"`
}

func (c *call) listOrgs() (any, error) {
	ids, err := c.s.st.OrgIDs(c.ctx)
	if err != nil {
		return nil, err
	}
	out := list[store.Org]{Items: []store.Org{}}
	for _, id := range ids {
		o, err := c.s.st.Org(c.ctx, id)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, *o)
	}
	return out, nil
}

func (c *call) createOrg() (any, error) {
	var in orgInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	return c.changes().CreateOrg(c.ctx, store.Org{ID: in.ID, Name: in.Name, Contact: in.Contact, ContractEnd: in.ContractEnd}, c.p.Name, in.Reason)
}

func (c *call) getOrg() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	return c.s.st.Org(c.ctx, org)
}

func (c *call) listMembers() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	ms, err := c.s.st.Memberships(c.ctx, org)
	if err != nil {
		return nil, err
	}
	return list[store.Membership]{Items: append([]store.Membership{}, ms...)}, nil
}

// grantInput grants or replaces a membership.
type grantInput struct {
	// User is the person's key, issuer|subject.
	User string `json:"user,omitempty"`
	// Email, instead of User, names the person by the verified address they signed in with:
	// refused when nobody, or more than one person, did (invite the address instead).
	Email string `json:"email,omitempty"`
	accessInput
}

// accessInput is what a membership grants, as a grant or an invitation writes it.
type accessInput struct {
	Kind      string         `json:"kind"`
	Roles     []string       `json:"roles,omitempty"`
	Purposes  []purposeInput `json:"purposes,omitempty"`
	ExpiresAt time.Time      `json:"expires_at,omitzero"`
	ReviewBy  time.Time      `json:"review_by,omitzero"`
	Ticket    string         `json:"ticket,omitempty"`
	Reason    string         `json:"reason"`
}

// purposeInput is one purpose grant of a membership.
type purposeInput struct {
	Purpose   string    `json:"purpose"`
	Reason    string    `json:"reason"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// directKinds are the kinds an organisation's administrator may grant directly; support and
// service memberships come only from approved requests (and machine identities).
var directKinds = []string{store.KindEmployee, store.KindPartner, store.KindReseller}

func (c *call) grant() (any, error) {
	var in grantInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	// Authority first: nothing about a person is looked up for a caller who may not grant
	// here (the index would otherwise say who signed in with an address).
	if err := c.mayAdminister(org); err != nil {
		return nil, err
	}
	switch {
	case in.User != "" && in.Email != "":
		return nil, invalid("give user or email, not both")
	case in.Email != "":
		user, err := c.s.st.ResolveEmail(c.ctx, in.Email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, invalid("nobody has signed in with " + in.Email + " yet: invite the address instead")
		case errors.Is(err, store.ErrConflict):
			return nil, invalid("more than one person has signed in with " + in.Email + ": grant by user key")
		case err != nil:
			return nil, err
		}
		in.User = user
	}
	if store.IsMachineUser(in.User) {
		return nil, invalid("user: a machine identity is created and changed through /orgs/{org}/machines")
	}
	if !c.p.Operator && in.User == c.p.Name {
		// Separation of duties: an administrator's own access is granted by someone else.
		return nil, refuse(reason.NotPermitted, "an administrator does not grant or change their own membership; ask another administrator, or request it")
	}
	o, err := c.mayGrant(org, in.Kind)
	if err != nil {
		return nil, err
	}
	m := c.membershipOf(org, in.User, &in.accessInput)
	m.Email = in.Email
	if err := c.withinPolicy(&m, o, in.Ticket); err != nil {
		return nil, err
	}
	return c.changes().Grant(c.ctx, m, c.p.Name, in.Reason)
}

// mayGrant checks that the caller may write a membership of kind in org directly, without a
// request, and returns the organisation: operators may; an organisation's administrator may
// for the kinds an administrator grants (directKinds), when the kind's policy lets one
// administrator approve alone.
func (c *call) mayGrant(org, kind string) (*store.Org, error) {
	if err := c.mayAdminister(org); err != nil {
		return nil, err
	}
	if !c.p.Operator && !slices.Contains(directKinds, kind) {
		return nil, refuse(reason.NotPermitted, "an administrator grants "+strings.Join(directKinds, ", ")+" memberships; "+kind+" goes through a request")
	}
	return c.mayApproveAlone(org, kind)
}

// mayApproveAlone returns the organisation when the caller may approve a membership of kind
// in org alone: operators, and the organisation's administrators when the kind's policy has
// one administrator's approval suffice.
func (c *call) mayApproveAlone(org, kind string) (*store.Org, error) {
	if err := c.mayAdminister(org); err != nil {
		return nil, err
	}
	o, err := c.s.st.Org(c.ctx, org)
	if err != nil {
		return nil, err
	}
	if kr, ok := c.policy.Kind(kind, o); ok && !c.p.Operator && (kr.ApprovalsRequired > 1 || !slices.Contains(kr.Approvers, config.ApproverOrgAdmin)) {
		// One administrator may not write alone what the policy has more people approve.
		return nil, refuse(reason.NotPermitted, fmt.Sprintf("%s memberships need %d approval(s) from %s (lifecycle.kinds.%s): ask for it with a request",
			kind, kr.ApprovalsRequired, strings.Join(kr.Approvers, ", "), kind))
	}
	return o, nil
}

// membershipOf is the membership in writes for user in org, approved by the caller.
func (c *call) membershipOf(org, user string, in *accessInput) store.Membership {
	m := store.Membership{Org: org, User: user, Kind: in.Kind, Roles: in.Roles, ExpiresAt: in.ExpiresAt, ReviewBy: in.ReviewBy,
		ApprovedBy: c.p.Name}
	for _, p := range in.Purposes {
		m.Grants = append(m.Grants, store.Grant{Purpose: p.Purpose, Reason: p.Reason, ExpiresAt: p.ExpiresAt, ApprovedBy: c.p.Name})
	}
	return m
}

// withinPolicy gives m the review date its kind asks for when it has none, then refuses it,
// naming every rule, unless it meets the lifecycle policy.
func (c *call) withinPolicy(m *store.Membership, o *store.Org, ticket string) error {
	now := c.s.now()
	if kr, ok := c.policy.Kind(m.Kind, o); ok && m.ReviewBy.IsZero() && kr.ReviewEvery > 0 &&
		(m.ExpiresAt.IsZero() || m.ExpiresAt.Sub(now) > kr.ReviewEvery) {
		m.ReviewBy = now.Add(kr.ReviewEvery)
	}
	if vs := c.policy.CheckMembership(m, o, ticket, now); len(vs) > 0 {
		return violation(vs)
	}
	return nil
}

// revokeInput revokes a membership.
type revokeInput struct {
	User   string `json:"user"`
	Reason string `json:"reason"`
}

func (c *call) revoke() (any, error) {
	var in revokeInput
	org, err := c.administeredChange(&in)
	if err != nil {
		return nil, err
	}
	return c.changes().Revoke(c.ctx, org, in.User, c.p.Name, in.Reason)
}

// durationInput reads a duration as the configuration writes them ("8h", "30d").
func durationInput(field, s string) (time.Duration, error) {
	d, err := config.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, invalid(field + " must be a positive duration such as \"8h\" or \"30d\"")
	}
	return d, nil
}

// changeInput changes a membership in place: what is not mentioned stays as it is.
type changeInput struct {
	User           string         `json:"user"`
	AddRoles       []string       `json:"add_roles,omitempty"`
	RemoveRoles    []string       `json:"remove_roles,omitempty"`
	AddPurposes    []purposeInput `json:"add_purposes,omitempty"`
	RemovePurposes []string       `json:"remove_purposes,omitempty"`
	// Kind, when set, is the new kind.
	Kind string `json:"kind,omitempty"`
	// ExpiresAt and ReviewBy, when set, are the new end and review date: RFC 3339, or
	// "never" for none.
	ExpiresAt string `json:"expires_at,omitempty"`
	ReviewBy  string `json:"review_by,omitempty"`
	// Status, when set, suspends the membership ("suspended": it grants nothing, its
	// machine identities work no more, until resumed) or resumes it ("active"). Revoking
	// is /members/revoke; a revoked membership is not resumed, only granted again.
	Status string `json:"status,omitempty"`
	Ticket string `json:"ticket,omitempty"`
	Reason string `json:"reason"`
}

func (in *changeInput) why() string { return in.Reason }

// changeMember changes one membership in its transaction, within the policy: the caller must
// be able to grant both its kind before and after alone, and never changes their own.
func (c *call) changeMember() (any, error) {
	var in changeInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	if !c.p.Operator && in.User == c.p.Name {
		return nil, refuse(reason.NotPermitted, "an administrator does not grant or change their own membership; ask another administrator, or request it")
	}
	if store.IsMachineUser(in.User) {
		// Its roles stay within its sponsor's, which only its own endpoints check.
		return nil, invalid("user: a machine identity is changed through /orgs/{org}/machines")
	}
	// Authority first: whether the person is a member is nobody else's business.
	if err := c.mayAdminister(org); err != nil {
		return nil, err
	}
	when := func(field, v string) (time.Time, bool, error) {
		switch v {
		case "":
			return time.Time{}, false, nil
		case "never":
			return time.Time{}, true, nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, false, invalid(field + `: want RFC 3339 or "never"`)
		}
		return t.UTC(), true, nil
	}
	exp, setExp, err := when("expires_at", in.ExpiresAt)
	if err != nil {
		return nil, err
	}
	rev, setRev, err := when("review_by", in.ReviewBy)
	if err != nil {
		return nil, err
	}
	now := c.s.now()
	edit := func(m *store.Membership) error {
		before := *m
		o, err := c.mayGrant(org, m.Kind)
		if err != nil {
			return err
		}
		roles := slices.Clone(m.Roles)
		for _, r := range in.RemoveRoles {
			if !slices.Contains(roles, r) {
				return invalid("remove_roles: the membership has no role " + r)
			}
			roles = slices.DeleteFunc(roles, func(x string) bool { return x == r })
		}
		m.Roles = append(roles, in.AddRoles...)
		grants := slices.Clone(m.Grants)
		for _, p := range in.RemovePurposes {
			if !slices.ContainsFunc(grants, func(g store.Grant) bool { return g.Purpose == p }) {
				return invalid("remove_purposes: the membership has no purpose " + p)
			}
			grants = slices.DeleteFunc(grants, func(g store.Grant) bool { return g.Purpose == p })
		}
		for _, p := range in.AddPurposes {
			grants = slices.DeleteFunc(grants, func(g store.Grant) bool { return g.Purpose == p.Purpose })
			grants = append(grants, store.Grant{Purpose: p.Purpose, Reason: p.Reason, ExpiresAt: p.ExpiresAt, ApprovedBy: c.p.Name})
		}
		m.Grants = grants
		if in.Kind != "" && in.Kind != m.Kind {
			if _, err := c.mayGrant(org, in.Kind); err != nil {
				return err
			}
			m.Kind = in.Kind
		}
		if setExp {
			m.ExpiresAt = exp
		}
		if setRev {
			m.ReviewBy = rev
		}
		switch in.Status {
		case "":
		case store.MembershipActive, store.MembershipSuspended:
			if m.Status == store.MembershipRevoked {
				return invalid("status: a revoked membership is not resumed; grant it again")
			}
			m.Status = in.Status
		default:
			return invalid("status: want active or suspended (revoking is /members/revoke)")
		}
		m.ApprovedBy = c.p.Name
		if vs := c.policy.CheckChange(&before, m, o, in.Ticket, now); len(vs) > 0 {
			return violation(vs)
		}
		return nil
	}
	return c.changes().ChangeMembership(c.ctx, org, in.User, edit, c.p.Name, in.Reason)
}
