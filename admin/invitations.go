package admin

import (
	"errors"
	"fmt"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/problem"
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

// importInput invites many addresses in one change.
type importInput struct {
	Invitations []importRow `json:"invitations"`
	Reason      string      `json:"reason"`
}

// importRow is one invitation of an import: an invitation without a reason of its own.
type importRow struct {
	Email     string    `json:"email"`
	Kind      string    `json:"kind"`
	Roles     []string  `json:"roles,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	ReviewBy  time.Time `json:"review_by,omitzero"`
	Until     time.Time `json:"until,omitzero"`
	Ticket    string    `json:"ticket,omitempty"`
}

func (in *importInput) why() string { return in.Reason }

// importOutcome is what an import made.
type importOutcome struct {
	Imported    int                `json:"imported"`
	Invitations []store.Invitation `json:"invitations"`
}

// importInvitations is invite for many rows at once: each row within the policy and the
// caller's authority, and all of them written in one change, or none.
func (c *call) importInvitations() (any, error) {
	var in importInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	invs := make([]store.Invitation, 0, len(in.Invitations))
	for i, row := range in.Invitations {
		o, err := c.mayGrant(org, row.Kind)
		if err != nil {
			return nil, err
		}
		m := c.membershipOf(org, "", &accessInput{Kind: row.Kind, Roles: row.Roles, ExpiresAt: row.ExpiresAt, ReviewBy: row.ReviewBy})
		if err := c.withinPolicy(&m, o, row.Ticket); err != nil {
			var pe *problem.Error
			if errors.As(err, &pe) {
				pe.Problem.Message = fmt.Sprintf("row %d (%s): %s", i+1, row.Email, pe.Problem.Message)
			}
			return nil, err
		}
		invs = append(invs, store.Invitation{Org: org, Email: row.Email, Kind: m.Kind, Roles: m.Roles, ExpiresAt: m.ExpiresAt,
			ReviewBy: m.ReviewBy, ApprovedBy: m.ApprovedBy, Until: row.Until})
	}
	out, err := c.changes().ImportInvitations(c.ctx, org, invs, c.p.Name, in.Reason)
	if err != nil {
		return nil, err
	}
	return importOutcome{Imported: len(out), Invitations: out}, nil
}
