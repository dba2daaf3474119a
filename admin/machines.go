package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/store"
)

// Machine identities through the API (store/machines.go has the model). Who may do what:
//
//   - create: operators, for any live member as sponsor; and the organisation's own
//     administrators where the service kind's policy lets one administrator approve alone (as
//     for a direct grant), sponsoring it themselves: nobody makes a machine that someone else
//     answers for, and whoever holds a machine's keys is the person whose end ends it. The
//     machine gets no role its sponsor does not hold standing, and lives within the service
//     kind's policy (the decision caps it at its sponsor's access at every request anyway).
//   - asking for one (POST /orgs/{org}/requests with machine): any member, who sponsors it
//     once the service kind's approvers approve (admin/requests.go).
//   - creating and rotating keys, binding federated clients: its sponsor and operators, so
//     that a key's secret is only ever shown to the person it ends with (or the platform's
//     staff).
//   - revoking keys, unbinding clients and retiring the machine: also the organisation's
//     administrators.
//   - handing it over to another sponsor: as creating one, and every key ends with it.
//   - listing: the organisation's administrators and operators; a sponsor, their own.
//
// A key lives at most lifecycle.api_keys.max_lifetime, never longer than the machine.

func (s *Server) machineEndpoints() []endpoint {
	base := basePath + "/orgs/{org}/machines"
	return []endpoint{
		{method: "GET", path: base, summary: "The machine identities of an organisation with their keys (never a secret or its hash), sponsors and last use (operators and its administrators; a sponsor, those they sponsor)",
			access: anyone, out: list[store.Membership]{}, handle: (*call).listMachines},
		{method: "POST", path: base, summary: "Create a machine identity sponsored by a live member, with no role the sponsor lacks, within the service kind's policy (operators, for any sponsor; an organisation's own administrators, where that policy lets one approve alone, sponsoring it themselves)",
			access: anyone, change: true, in: machineInput{}, out: store.Membership{}, status: http.StatusCreated, handle: (*call).createMachine},
		{method: "POST", path: base + "/{id}/keys", summary: "Create an API key for a machine identity, shown once, within lifecycle.api_keys (its sponsor and operators)",
			access: anyone, change: true, in: keyInput{}, out: createdKey{}, status: http.StatusCreated, handle: (*call).createKey},
		{method: "POST", path: base + "/{id}/keys/{key}/rotate", summary: "Replace a key: the new one is shown once, the old one keeps working for the overlap (at most lifecycle.api_keys.max_overlap; its sponsor and operators)",
			access: anyone, change: true, in: rotateInput{}, out: createdKey{}, status: http.StatusCreated, handle: (*call).rotateKey},
		{method: "POST", path: base + "/{id}/keys/{key}/revoke", summary: "Revoke a key now (its sponsor, the organisation's administrators, operators)",
			access: anyone, change: true, in: decisionInput{}, out: store.APIKey{}, handle: (*call).revokeKey},
		{method: "POST", path: base + "/{id}/clients", summary: "Bind a federated client (the issuer, one of client_jwt.issuers, and subject of client-credentials tokens a customer's IdP issues) to a machine identity: its tokens are the machine from then on (its sponsor and operators)",
			access: anyone, change: true, in: clientInput{}, out: store.Membership{}, handle: (*call).bindClient},
		{method: "POST", path: base + "/{id}/clients/unbind", summary: "Unbind a federated client: its tokens stop being the machine at once (its sponsor, the organisation's administrators, operators)",
			access: anyone, change: true, in: clientInput{}, out: store.Membership{}, handle: (*call).unbindClient},
		{method: "POST", path: base + "/{id}/sponsor", summary: "Hand a machine identity over to another sponsor, a live member holding its roles standing; every key it holds is revoked (operators, and the organisation's own administrators where the service kind's policy lets one approve alone)",
			access: anyone, change: true, in: handOverInput{}, out: store.Membership{}, handle: (*call).handOver},
		{method: "POST", path: base + "/{id}/revoke", summary: "Retire a machine identity: its membership and every key revoked (its sponsor, the organisation's administrators, operators)",
			access: anyone, change: true, in: decisionInput{}, out: store.Membership{}, handle: (*call).revokeMachine},
	}
}

// machineInput creates a machine identity.
type machineInput struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Sponsor is the person who answers for the machine (a user key): the caller, unless an
	// operator names another live member.
	Sponsor   string         `json:"sponsor,omitempty"`
	Roles     []string       `json:"roles,omitempty"`
	Purposes  []purposeInput `json:"purposes,omitempty"`
	ExpiresAt time.Time      `json:"expires_at,omitzero"`
	ReviewBy  time.Time      `json:"review_by,omitzero"`
	Ticket    string         `json:"ticket,omitempty"`
	Reason    string         `json:"reason"`
}

func (in *machineInput) why() string { return in.Reason }

// keyInput creates a key.
type keyInput struct {
	// ExpiresAt is the key's end; default: lifecycle.api_keys.max_lifetime from now, or the
	// machine's end when that is sooner.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Reason    string    `json:"reason"`
}

func (in *keyInput) why() string { return in.Reason }

// rotateInput replaces a key.
type rotateInput struct {
	keyInput
	// Overlap is how long the old key keeps working ("1h", "7d"); default: none, the old key
	// ends now.
	Overlap string `json:"overlap,omitempty"`
}

// handOverInput names a machine's new sponsor.
type handOverInput struct {
	Sponsor string `json:"sponsor"`
	Reason  string `json:"reason"`
}

func (in *handOverInput) why() string { return in.Reason }

// handOver is the business event "sponsor handed over": approved like a grant of the
// machine's access to its new sponsor.
func (c *call) handOver() (any, error) {
	var in handOverInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	if _, err := c.mayGrantMachine(org); err != nil {
		return nil, err
	}
	m, err := c.machineParam(org)
	if err != nil {
		return nil, err
	}
	if store.IsMachineUser(in.Sponsor) || in.Sponsor == "" {
		return nil, invalid("sponsor: a person's user key")
	}
	if err := c.withinSponsor(org, in.Sponsor, m.Roles, nil); err != nil {
		return nil, err
	}
	return c.changes().HandOver(c.ctx, org, m.Machine.ID, in.Sponsor, c.p.Name, in.Reason)
}

// clientInput names a federated client.
type clientInput struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
}

func (in *clientInput) why() string { return in.Reason }

func (c *call) bindClient() (any, error) {
	var in clientInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	// Binding a client is making a credential: the sponsor's or an operator's act.
	m, err := c.keyMaker(org)
	if err != nil {
		return nil, err
	}
	orgs, trusted := c.s.clientIssuers[in.Issuer]
	if !trusted {
		return nil, invalid("issuer: want one of client_jwt.issuers")
	}
	if !slices.Contains(orgs, org) {
		// An issuer is a customer's own IdP: its clients are that customer's machines only.
		return nil, refuse(reason.NotPermitted, "issuer "+in.Issuer+" does not issue for "+org+" (client_jwt.issuers[].orgs)")
	}
	if strings.TrimSpace(in.Subject) == "" {
		return nil, invalid("subject: the client's subject at the issuer (its sub, client_id or azp, as the issuer's subject_claim says)")
	}
	return c.changes().BindClient(c.ctx, org, m.Machine.ID, in.Issuer, in.Subject, c.p.Name, in.Reason)
}

func (c *call) unbindClient() (any, error) {
	var in clientInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	m, err := c.machineParam(org)
	if err != nil {
		return nil, err
	}
	out, err := c.changes().UnbindClient(c.ctx, org, m.Machine.ID, in.Issuer, in.Subject, c.p.Name, in.Reason)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(reason.NotFound, "no such client bound to "+m.Machine.ID)
	}
	return out, err
}

// createdKey is a new key: the only time its secret is shown.
type createdKey struct {
	Key    string       `json:"key"`
	Record store.APIKey `json:"record"`
	// Warning says what to do with the key.
	Warning string `json:"warning"`
}

const keyWarning = "Store this key now (a secret manager, not a repository): it is shown only once. Send it as \"Authorization: Bearer <key>\"."

func (c *call) listMachines() (any, error) {
	org, err := c.orgParam()
	if err != nil {
		return nil, err
	}
	if err := c.inOrg(org); err != nil {
		return nil, err
	}
	// Administrators see every machine; a sponsor, those they answer for.
	admin := c.mayAdminister(org) == nil
	ms, err := c.s.st.Machines(c.ctx, org)
	if err != nil {
		return nil, err
	}
	out := list[store.Membership]{Items: []store.Membership{}}
	for _, m := range ms {
		if admin || m.Machine.Sponsor == c.p.Name {
			out.Items = append(out.Items, m)
		}
	}
	if !admin && len(out.Items) == 0 {
		return nil, refuse(reason.NotPermitted, "not an administrator of "+org+", nor the sponsor of any of its machine identities")
	}
	return out, nil
}

func (c *call) createMachine() (any, error) {
	var in machineInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	o, err := c.mayGrantMachine(org)
	if err != nil {
		return nil, err
	}
	if !c.p.Operator {
		// An administrator creates a machine of their own.
		if in.Sponsor != "" && in.Sponsor != c.p.Name {
			return nil, refuse(reason.NotPermitted, "an administrator creates machine identities they sponsor themselves; an operator can name another sponsor")
		}
		in.Sponsor = c.p.Name
	}
	switch {
	case !syntax.Name(in.ID):
		return nil, invalid("id: want [a-z0-9_-]{1,64}")
	case in.Sponsor == "":
		return nil, invalid("sponsor: an operator names the person who answers for the machine (a user key)")
	case store.IsMachineUser(in.Sponsor):
		return nil, invalid("sponsor: a person, not a machine")
	}
	if err := c.withinSponsor(org, in.Sponsor, in.Roles, in.Purposes); err != nil {
		return nil, err
	}
	m := c.membershipOf(org, "", &accessInput{Kind: store.KindService, Roles: in.Roles, Purposes: in.Purposes, ExpiresAt: in.ExpiresAt, ReviewBy: in.ReviewBy})
	m.User = store.MachineUser(org, in.ID)
	m.Machine = &store.Machine{ID: in.ID, Name: in.Name, Description: in.Description, Sponsor: in.Sponsor}
	if err := c.withinPolicy(&m, o, in.Ticket); err != nil {
		return nil, err
	}
	return c.changes().CreateMachine(c.ctx, m, c.p.Name, in.Reason)
}

// mayGrantMachine returns the organisation when the caller may give a machine identity's
// access alone (create one, hand one over): operators, and the organisation's administrators
// in their own right (not through a delegation) where the service kind's policy lets one
// administrator approve alone.
func (c *call) mayGrantMachine(org string) (*store.Org, error) {
	o, err := c.mayApproveAlone(org, store.KindService)
	if err != nil {
		return nil, err
	}
	if !c.p.Operator {
		if err := c.mayAdministerDirectly(org); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// withinSponsor refuses roles and purposes for a machine of org that its sponsor does not hold
// in a live membership: roles standing, purposes live and lasting as long. A machine is never
// a way to more than its sponsor has.
func (c *call) withinSponsor(org, sponsor string, roles []string, purposes []purposeInput) error {
	_, sp, err := c.s.st.Lookup(c.ctx, org, sponsor)
	if err != nil {
		return err
	}
	if sp == nil || sp.Status != store.MembershipActive {
		return invalid("sponsor " + sponsor + " holds no live membership of " + org)
	}
	var beyond []string
	for _, r := range roles {
		if !slices.Contains(sp.Roles, r) {
			beyond = append(beyond, r)
		}
	}
	if len(beyond) > 0 {
		return policyRefusal(fmt.Sprintf("roles %s: the sponsor does not hold them standing, and a machine holds nothing its sponsor does not", strings.Join(beyond, ", ")))
	}
	now := c.s.now()
	for _, p := range purposes {
		ok := false
		for _, g := range sp.Grants {
			if g.Purpose == p.Purpose && (g.ExpiresAt.IsZero() || now.Before(g.ExpiresAt) && !p.ExpiresAt.IsZero() && !p.ExpiresAt.After(g.ExpiresAt)) {
				ok = true
			}
		}
		if !ok {
			return policyRefusal("purpose " + p.Purpose + ": the sponsor holds no live grant of it lasting as long, and a machine holds nothing its sponsor does not")
		}
	}
	return nil
}

// keyMaker is machineParam for making a key or binding a client: its sponsor or an operator
// only.
func (c *call) keyMaker(org string) (*store.Membership, error) {
	m, err := c.machineParam(org)
	if err != nil {
		return nil, err
	}
	if !c.p.Operator && m.Machine.Sponsor != c.p.Name {
		return nil, refuse(reason.NotPermitted, "keys of "+m.Machine.ID+" are made by its sponsor ("+m.Machine.Sponsor+") or an operator: a key's secret is shown only to whom it ends with")
	}
	return m, nil
}

// machineParam is the {id} of the path, whose machine the caller may manage: an administrator
// of its organisation, an operator, or its sponsor. It returns the machine's membership.
func (c *call) machineParam(org string) (*store.Membership, error) {
	id := c.r.PathValue("id")
	if !syntax.Name(id) {
		return nil, refuse(reason.NotFound, "malformed machine id")
	}
	if err := c.inOrg(org); err != nil {
		return nil, err
	}
	_, m, err := c.s.st.Lookup(c.ctx, org, store.MachineUser(org, id))
	if err != nil {
		return nil, err
	}
	if m != nil && m.Machine != nil && !c.p.Operator && m.Machine.Sponsor == c.p.Name {
		return m, nil
	}
	if err := c.mayAdminister(org); err != nil {
		return nil, err
	}
	if m == nil || m.Machine == nil {
		return nil, refuse(reason.NotFound, "no machine identity "+id+" in "+org)
	}
	return m, nil
}

// keyEnd is the end of a new key of m: what was asked, or the longest the policy allows,
// never beyond the machine's end. (The calling token's end does not bound it: the key is
// the machine's credential, not a copy of the caller's.)
func (c *call) keyEnd(m *store.Membership, asked time.Time) (time.Time, error) {
	now := c.s.now()
	life, _ := c.policy.APIKeyLimits()
	limit := now.Add(life)
	if !m.ExpiresAt.IsZero() && m.ExpiresAt.Before(limit) {
		limit = m.ExpiresAt
	}
	switch {
	case asked.IsZero():
		return limit, nil
	case !asked.After(now):
		return time.Time{}, invalid("expires_at: must be in the future")
	case asked.After(limit):
		return time.Time{}, policyRefusal(fmt.Sprintf("expires_at: at most %s (lifecycle.api_keys.max_lifetime %s, or the machine's end)",
			limit.UTC().Format(time.RFC3339), life))
	}
	return asked, nil
}

func (c *call) createKey() (any, error) {
	var in keyInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	m, err := c.keyMaker(org)
	if err != nil {
		return nil, err
	}
	return c.issueKey(org, m, in.ExpiresAt, "", 0, in.Reason)
}

// issueKey makes a key of m ending at asked (or as the policy allows), replacing replaces
// after overlap when set.
func (c *call) issueKey(org string, m *store.Membership, asked time.Time, replaces string, overlap time.Duration, reason string) (any, error) {
	end, err := c.keyEnd(m, asked)
	if err != nil {
		return nil, err
	}
	key, k, err := c.changes().CreateAPIKey(c.ctx, org, m.Machine.ID, end, replaces, overlap, c.p.Name, reason)
	if err != nil {
		return nil, err
	}
	return createdKey{Key: key, Record: *k, Warning: keyWarning}, nil
}

func (c *call) rotateKey() (any, error) {
	var in rotateInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	m, err := c.keyMaker(org)
	if err != nil {
		return nil, err
	}
	old := m.Machine.Key(c.r.PathValue("key"))
	if old == nil {
		return nil, refuse(reason.NotFound, "no such key of "+m.Machine.ID)
	}
	var overlap time.Duration
	if in.Overlap != "" {
		if overlap, err = durationInput("overlap", in.Overlap); err != nil {
			return nil, err
		}
	}
	if _, most := c.policy.APIKeyLimits(); overlap > most {
		return nil, policyRefusal(fmt.Sprintf("overlap: at most %s (lifecycle.api_keys.max_overlap)", most))
	}
	return c.issueKey(org, m, in.ExpiresAt, old.ID, overlap, in.Reason)
}

func (c *call) revokeKey() (any, error) {
	var in decisionInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	m, err := c.machineParam(org)
	if err != nil {
		return nil, err
	}
	k, err := c.changes().RevokeAPIKey(c.ctx, org, m.Machine.ID, c.r.PathValue("key"), c.p.Name, in.Reason)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(reason.NotFound, "no such key of "+m.Machine.ID)
	}
	return k, err
}

func (c *call) revokeMachine() (any, error) {
	var in decisionInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	m, err := c.machineParam(org)
	if err != nil {
		return nil, err
	}
	return c.changes().RevokeMachine(c.ctx, org, m.Machine.ID, c.p.Name, in.Reason)
}
