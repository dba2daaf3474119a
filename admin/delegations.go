package admin

import (
	"errors"
	"slices"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Delegated administration: an organisation lets the administrators of another one (its MSP,
// reseller or head office) administer it within the policy (store.Delegation). Only the
// organisation's own administrators and operators delegate; a delegate acts in its own name,
// and each of its changes names the delegation (the events' via).

// delegationInput creates a delegation.
type delegationInput struct {
	// To is the organisation whose administrators may act.
	To        string    `json:"to"`
	ExpiresAt time.Time `json:"expires_at"`
	ReviewBy  time.Time `json:"review_by,omitzero"`
	Reason    string    `json:"reason"`
}

func (in *delegationInput) why() string { return in.Reason }

// delegationView is a delegation with what it does now.
type delegationView struct {
	store.Delegation
	Live bool `json:"live"`
}

func (c *call) listDelegations() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	o, err := c.s.st.Org(c.ctx, org)
	if err != nil {
		return nil, err
	}
	now := c.s.now()
	out := list[delegationView]{Items: []delegationView{}}
	for _, d := range o.Delegations {
		out.Items = append(out.Items, delegationView{d, d.Live(now)})
	}
	return out, nil
}

func (c *call) delegate() (any, error) {
	var in delegationInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	// Not through a delegation: a delegate does not hand the organisation on.
	if err := c.mayAdministerDirectly(org); err != nil {
		return nil, err
	}
	return c.changes().Delegate(c.ctx, org, store.Delegation{To: in.To, ExpiresAt: in.ExpiresAt, ReviewBy: in.ReviewBy}, c.p.Name, in.Reason)
}

func (c *call) endDelegation() (any, error) {
	var in decisionInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	id := c.r.PathValue("id")
	if err := c.mayAdministerDirectly(org); err != nil {
		// The delegate organisation's own administrators may give it up.
		o, oerr := c.s.st.Org(c.ctx, org)
		if oerr != nil {
			return nil, oerr
		}
		i := slices.IndexFunc(o.Delegations, func(d store.Delegation) bool { return d.ID == id })
		if i < 0 {
			return nil, err
		}
		if ok, _, derr := c.directAdminOf(o.Delegations[i].To); derr != nil || !ok {
			if derr != nil {
				return nil, derr
			}
			return nil, refuse(reason.NotPermitted, "neither an administrator of "+org+" nor of the delegate")
		}
	}
	return c.changes().EndDelegation(c.ctx, org, id, c.p.Name, in.Reason)
}

// administered is an organisation the caller administers: in their own right, or through a
// delegation to an organisation they administer.
type administered struct {
	Org string `json:"org"`
	// Through is the organisation the administration was delegated to, and Delegation the
	// delegation's id; both "" for one's own organisation.
	Through    string `json:"through,omitempty"`
	Delegation string `json:"delegation,omitempty"`
}

// myAdministered lists the organisations the caller administers: those where their own live
// membership holds the admin role, and those that delegated their administration to one of
// these by a live delegation (never transitively). Operators administer nothing themselves.
func (c *call) myAdministered() (any, error) {
	out := list[administered]{Items: []administered{}}
	if c.p.Operator {
		return out, nil
	}
	orgs, err := c.s.st.OrgsOf(c.ctx, c.p.Name)
	if err != nil {
		return nil, err
	}
	now := c.s.now()
	for _, org := range orgs {
		ok, _, err := c.directAdminOf(org)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if c.p.org == "" || c.p.org == org {
			out.Items = append(out.Items, administered{Org: org})
		}
		clients, err := c.s.st.Delegators(c.ctx, org)
		if err != nil {
			return nil, err
		}
		for _, client := range clients {
			if c.p.org != "" && c.p.org != client {
				continue // a token restricted to one organisation sees that one
			}
			o, err := c.s.st.Org(c.ctx, client)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if i := slices.IndexFunc(o.Delegations, func(d store.Delegation) bool { return d.To == org && d.Live(now) }); i >= 0 {
				out.Items = append(out.Items, administered{Org: client, Through: org, Delegation: o.Delegations[i].ID})
			}
		}
	}
	return out, nil
}
