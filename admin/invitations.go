package admin

import (
	"time"

	"github.com/portcullis-proxy/portcullis/store"
)

// inviteInput invites an email address: a membership that binds at the first sign-in with
// that address verified by the identity provider.
type inviteInput struct {
	Email string `json:"email"`
	accessInput
	// Until is when the invitation lapses unused; zero: in 14 days.
	Until time.Time `json:"until,omitzero"`
}

// withdrawInput withdraws an invitation.
type withdrawInput struct {
	Email  string `json:"email"`
	Reason string `json:"reason"`
}

func (c *call) listInvitations() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	invs, err := c.s.st.OrgInvitations(c.ctx, org)
	if err != nil {
		return nil, err
	}
	return list[store.Invitation]{Items: invs}, nil
}

// invite writes an invitation under the rules of a direct grant (mayGrant, withinPolicy):
// an invitation is a membership waiting for its person.
func (c *call) invite() (any, error) {
	var in inviteInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	o, err := c.mayGrant(org, in.Kind)
	if err != nil {
		return nil, err
	}
	m := c.membershipOf(org, "", &in.accessInput)
	if err := c.withinPolicy(&m, o, in.Ticket); err != nil {
		return nil, err
	}
	inv := store.Invitation{Org: org, Email: in.Email, Kind: m.Kind, Roles: m.Roles, Grants: m.Grants, ExpiresAt: m.ExpiresAt,
		ReviewBy: m.ReviewBy, ApprovedBy: m.ApprovedBy, Until: in.Until}
	return c.changes().Invite(c.ctx, inv, c.p.Name, in.Reason)
}

func (c *call) withdrawInvitation() (any, error) {
	var in withdrawInput
	org, err := c.administeredChange(&in)
	if err != nil {
		return nil, err
	}
	return c.changes().WithdrawInvitation(c.ctx, org, in.Email, c.p.Name, in.Reason)
}
