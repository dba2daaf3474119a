package admin

import (
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Business events (store.Orgs.Apply) through the API: contract renewed or ended, merged into,
// role changed, offboarded, domain lapsed, support moved. Each is one change with a dry run that lists
// exactly what the real run changes.

// eventInput is a business event as the API takes it: the event's fields (which an event
// needs: the README, "Business events"), whether it is a dry run, and why.
type eventInput struct {
	store.BusinessEvent
	// DryRun lists what the event would change and changes nothing.
	DryRun bool   `json:"dry_run,omitempty"`
	Reason string `json:"reason"`
}

func (in *eventInput) why() string { return in.Reason }

// eventOutcome is what an event did (or would do), with the sessions an offboarding ended.
type eventOutcome struct {
	store.Outcome
	SessionsEnded int `json:"sessions_ended,omitempty"`
}

// operatorEvents are the events only operators apply: they change the business relationship
// itself (the contract, a merger, a domain) or a person across every organisation.
var operatorEvents = []string{store.EventContractRenewed, store.EventContractEnded, store.EventMergedInto,
	store.EventOffboarded, store.EventDomainLapsed}

func (c *call) applyEvent() (any, error) {
	var in eventInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	if !slices.Contains(store.BusinessEvents(), in.Event) {
		return nil, invalid("event: want one of " + strings.Join(store.BusinessEvents(), ", "))
	}
	if !c.p.Operator && in.Event == store.EventSupportMoved {
		// The customer's own administrators decide who supports them; a delegate (perhaps
		// the very partner being replaced) does not.
		if err := c.mayAdministerDirectly(in.Org); err != nil {
			return nil, err
		}
	} else if !c.p.Operator {
		if slices.Contains(operatorEvents, in.Event) {
			return nil, refuse(reason.NotPermitted, in.Event+" is applied by the platform's operators")
		}
		// role_changed, by an administrator of the organisation, never for themselves, and
		// only where they could grant the membership's kind alone.
		if in.User == c.p.Name {
			return nil, refuse(reason.NotPermitted, "an administrator does not change their own roles; ask another administrator")
		}
		if err := c.mayAdminister(in.Org); err != nil {
			return nil, err
		}
		_, m, err := c.s.st.Lookup(c.ctx, in.Org, in.User)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if m == nil {
			return nil, refuse(reason.NotFound, "no membership of that person in "+in.Org)
		}
	}
	pol := eventPolicy{p: c.policy.Policy, ticket: in.Reason}
	if !c.p.Operator && in.Event == store.EventRoleChanged {
		// Checked on the membership as the event reads it, in its transaction: a kind change
		// racing the event cannot slip a kind past that the administrator may not grant.
		pol.grantable = func(kind string) error { _, err := c.mayGrant(in.Org, kind); return err }
	}
	ev := in.BusinessEvent
	ev.RequestTTL, ev.Policy = c.policy.RequestTTL(), pol
	out, err := c.changes().Apply(c.ctx, ev, c.p.Name, in.Reason, in.DryRun)
	if err != nil {
		return nil, err
	}
	res := eventOutcome{Outcome: *out}
	if in.Event == store.EventOffboarded && !in.DryRun && c.s.sess != nil {
		// Memberships first, then sessions: a session opened in between finds no membership.
		n, err := c.s.sess.RevokeUser(c.ctx, in.User)
		if err != nil {
			return nil, err
		}
		res.SessionsEnded = n
	}
	return res, nil
}

// EventPolicy is the lifecycle policy p as a business event applies it (store.BusinessEvent
// Policy): what an event writes is held to the same rules as a grant or an approval. reason
// is the event's, taken as the ticket reference where a kind requires one. The API and the
// CLI both use it.
func EventPolicy(p *authz.Policy, reason string) store.EventPolicy {
	return eventPolicy{p: p, ticket: reason}
}

type eventPolicy struct {
	p *authz.Policy
	// ticket is the reason given, for kinds that require a ticket reference.
	ticket string
	// grantable, when set, refuses a membership of a kind the caller may not grant alone.
	grantable func(kind string) error
}

// Membership caps an end the event moved beyond the kind's max_duration, then refuses what
// still breaks the policy (and did not before).
func (e eventPolicy) Membership(before, after *store.Membership, org *store.Org, now time.Time) error {
	if e.grantable != nil {
		if err := e.grantable(before.Kind); err != nil {
			return err
		}
	}
	if kr, ok := e.p.Kind(after.Kind, org); ok && kr.MaxDuration > 0 && !after.ExpiresAt.Equal(before.ExpiresAt) &&
		(after.ExpiresAt.IsZero() || after.ExpiresAt.Sub(now) > kr.MaxDuration) {
		after.ExpiresAt = now.Add(kr.MaxDuration)
	}
	if vs := e.p.CheckChange(before, after, org, e.ticket, now); len(vs) > 0 {
		return violation(vs)
	}
	return nil
}

// Request shapes a merger's request: privileged roles are left out (they are asked for on
// their own, just in time), and so is the administrator role (who administers the survivor
// is its administrators' own decision); the duration is what was left of the membership,
// capped by the kind's max_duration, or for a membership without an end the kind's review
// period; the event's reason is the ticket reference where the kind requires one; then the
// request must meet the policy.
func (e eventPolicy) Request(r *store.Request, m *store.Membership, org *store.Org, now time.Time) error {
	kr, ok := e.p.Kind(r.Kind, org)
	if !ok {
		return violation([]authz.Violation{{Rule: "kind", Message: r.Kind + " is not a membership kind"}})
	}
	r.Roles = slices.DeleteFunc(r.Roles, func(role string) bool {
		_, priv := e.p.Privileged(role)
		return priv || role == e.p.AdminRole()
	})
	if kr.RequiresTicket && r.Ticket == "" {
		r.Ticket = e.ticket
		if len(r.Ticket) > 256 {
			r.Ticket = r.Ticket[:256]
		}
	}
	if r.Duration <= 0 {
		r.Duration = kr.ReviewEvery
	}
	if kr.MaxDuration > 0 && (r.Duration <= 0 || r.Duration > kr.MaxDuration) {
		r.Duration = kr.MaxDuration
	}
	if vs := e.p.CheckRequest(r, org, nil, now); len(vs) > 0 {
		return violation(vs)
	}
	return nil
}
