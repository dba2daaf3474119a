package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// The membership changes of Orgs (org_changes.go has the type, its transactions and the
// organisation changes): grant, change, revoke, offboard. Each is one transaction that also
// writes its audit event and publishes its invalidation.

// Grant creates or replaces m.User's membership of m.Org, which must exist (ErrNotFound). The
// stored membership is m with Status active, Created kept from a replaced record, GrantedBy
// (of the membership and of each purpose grant) defaulting to actor, times in UTC. It adds the
// org to the person's index.
func (o *Orgs) Grant(ctx context.Context, m Membership, actor, reason string) (*Membership, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("grant: %w", err)
	}
	m.Status = MembershipActive
	if m.Email != "" {
		// Kept canonical, as invitations are: lapses and offboarding compare it exactly.
		e, err := canonicalEmail(m.Email)
		if err != nil {
			return nil, fmt.Errorf("grant: %w", err)
		}
		m.Email = e
	}
	normaliseMembership(&m, actor)
	if err := checkMembership(&m); err != nil {
		return nil, fmt.Errorf("grant: %w", err)
	}
	orgKey, memKey := o.s.keys.org(m.Org), o.s.keys.membership(m.Org, m.User)
	err := o.atomically(ctx, "grant "+m.Org, func(tx *redis.Tx) error {
		if n, err := tx.Exists(ctx, orgKey).Result(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("org %s: %w", m.Org, ErrNotFound)
		}
		old, before, err := o.s.getMembership(ctx, tx, m.Org, m.User)
		if err != nil {
			return err
		}
		now := o.now()
		m.Created, m.Updated = now, now
		if old != nil && !old.Created.IsZero() {
			m.Created = old.Created
		}
		carryCut(old, &m, now)
		return o.writeMembership(ctx, tx, &m, before, audit.MembershipGranted, actor, reason, nil)
	}, orgKey, memKey)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// writeMembership queues the write of m with its indexes, event and invalidation on tx.
func (o *Orgs) writeMembership(ctx context.Context, tx *redis.Tx, m *Membership, before string, typ audit.Type, actor, reason string, detail map[string]string) error {
	return o.writeMembershipWith(ctx, tx, m, before, typ, actor, reason, detail, nil)
}

// writeMembershipWith is writeMembership with further writes (a machine's index entries) and
// invalidations in the same commit.
func (o *Orgs) writeMembershipWith(ctx context.Context, tx *redis.Tx, m *Membership, before string, typ audit.Type, actor, reason string,
	detail map[string]string, also func(w *batch), inval ...string) error {
	after, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return o.commit(ctx, tx, func(w *batch) {
		o.putMembership(w, m, after)
		if also != nil {
			also(w)
		}
	}, []audit.Event{{Type: typ, Actor: actor, Org: m.Org, User: m.User, Reason: reason, Before: raw(before), After: after, Detail: detail}},
		append([]string{invalMembership(m.Org, m.User)}, inval...)...)
}

// writeWithSponsored is writeMembership for a person's revoked membership, with the ends of
// what they sponsor (sponsoredEnds) in the same transaction.
func (o *Orgs) writeWithSponsored(ctx context.Context, tx *redis.Tx, m *Membership, before string, typ audit.Type, actor, reason string) error {
	after, err := json.Marshal(m)
	if err != nil {
		return err
	}
	ends, err := o.sponsoredEnds(ctx, tx, m.Org, m.User, m.Updated, actor, reason)
	if err != nil {
		return err
	}
	return o.commit(ctx, tx, func(w *batch) {
		o.putMembership(w, m, after)
		ends.writes(o, w)
	}, append([]audit.Event{{Type: typ, Actor: actor, Org: m.Org, User: m.User, Reason: reason, Before: raw(before), After: after}}, ends.events...),
		append([]string{invalMembership(m.Org, m.User)}, ends.inval...)...)
}

// machineEnds is what the end of a sponsor's membership writes: each live machine identity
// of the organisation they sponsor suspended, its keys revoked, with an event of its own.
type machineEnds struct {
	puts   []*Membership
	bodies [][]byte
	events []audit.Event
	inval  []string
}

func (e *machineEnds) writes(o *Orgs, w *batch) {
	for i, m := range e.puts {
		o.putMembership(w, m, e.bodies[i])
	}
}

// sponsoredEnds reads, under tx's WATCH, the live machine identities of org that user
// sponsors, and returns their ends at now.
func (o *Orgs) sponsoredEnds(ctx context.Context, tx *redis.Tx, org, user string, now time.Time, actor, reason string) (*machineEnds, error) {
	machines, err := o.sponsored(ctx, tx, watchOn(ctx, tx), org, user)
	if err != nil {
		return nil, err
	}
	e := &machineEnds{}
	for _, mc := range machines {
		nm := cloneMembership(mc.m)
		nm.Status, nm.Updated = MembershipSuspended, now
		nm.Machine = endKeys(nm.Machine, now, actor)
		b, err := json.Marshal(nm)
		if err != nil {
			return nil, err
		}
		e.puts, e.bodies = append(e.puts, nm), append(e.bodies, b)
		e.events = append(e.events, audit.Event{Type: audit.MachineSuspended, Actor: actor, Org: org, User: nm.User, Reason: reason,
			Before: raw(mc.before), After: b, Detail: map[string]string{"machine": nm.Machine.ID, "sponsor": user}})
		e.inval = append(e.inval, invalMembership(org, nm.User))
	}
	return e, nil
}

// sponsored reads through c, each key given to watch before it is read, the live machine
// identities of org that user sponsors. Only machines' records are read: a large organisation
// has few.
func (o *Orgs) sponsored(ctx context.Context, c redis.Cmdable, watch func(keys ...string) error, org, user string) ([]member, error) {
	idx := o.s.keys.orgMembers(org)
	if err := watch(idx); err != nil {
		return nil, err
	}
	users, err := c.SMembers(ctx, idx).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(users)
	var out []member
	for _, u := range users {
		if !IsMachineUser(u) {
			continue
		}
		if err := watch(o.s.keys.membership(org, u)); err != nil {
			return nil, err
		}
		mc, before, err := o.s.getMembership(ctx, c, org, u)
		if err != nil {
			return nil, err
		}
		if mc != nil && mc.Machine != nil && mc.Machine.Sponsor == user && mc.Status == MembershipActive {
			out = append(out, member{mc, before})
		}
	}
	return out, nil
}

// watchOn is the watch of sponsored for a transaction of its own.
func watchOn(ctx context.Context, tx *redis.Tx) func(keys ...string) error {
	return func(keys ...string) error { return tx.Watch(ctx, keys...).Err() }
}

// putMembership queues on w the write of m (encoded as after) and its indexes: every change
// that writes a membership, whatever made it (a grant, an approval, an invitation's binding).
func (o *Orgs) putMembership(w *batch, m *Membership, after []byte) {
	w.do("SET", o.s.keys.membership(m.Org, m.User), after)
	w.do("SADD", o.s.keys.orgMembers(m.Org), m.User)
	// The person's index lists what could still grant access: a revoked membership leaves
	// it (the record stays, so a denial can say "revoked").
	if m.Status == MembershipRevoked {
		w.do("SREM", o.s.keys.userOrgs(m.User), m.Org)
	} else {
		w.do("SADD", o.s.keys.userOrgs(m.User), m.Org)
	}
}

// errNoChange ends a membership edit that has nothing to do.
var errNoChange = errors.New("no change")

// ChangeMembership applies edit to user's membership of org (ErrNotFound if there is none) and
// stores the result, which is validated like a grant. edit may be called more than once (when a
// concurrent change forces a retry), so it must only modify its argument; its error is returned
// as is and nothing is written. Org and User cannot be changed; Created is kept.
func (o *Orgs) ChangeMembership(ctx context.Context, org, user string, edit func(*Membership) error, actor, reason string) (*Membership, error) {
	if IsMachineUser(user) {
		// Its roles and purposes stay within its sponsor's; only its own operations change it.
		return nil, fmt.Errorf("change membership %s: %w: a machine identity changes through its own operations (keys, handover, revoke)", org, ErrInvalid)
	}
	return o.updateMembership(ctx, "change membership", org, user, actor, reason, audit.MembershipChanged, edit)
}

// Revoke marks user's membership of org revoked and removes org from the person's index. The
// record stays, so a later request is denied as membership_revoked rather than not_member.
// The machine identities of org that the person sponsors are suspended in the same change,
// their keys revoked (so does any change that revokes a person's membership).
// Revoking a revoked membership changes nothing and records nothing. Ending the person's
// sessions for that org is the caller's job (package session); the invalidation makes every
// replica's Cache drop the membership at once.
func (o *Orgs) Revoke(ctx context.Context, org, user, actor, reason string) (*Membership, error) {
	return o.updateMembership(ctx, "revoke", org, user, actor, reason, audit.MembershipRevoked, func(m *Membership) error {
		if m.Status == MembershipRevoked {
			return errNoChange
		}
		m.Status = MembershipRevoked
		return nil
	})
}

func (o *Orgs) updateMembership(ctx context.Context, op, org, user, actor, reason string, typ audit.Type, edit func(*Membership) error) (*Membership, error) {
	op = op + " " + org
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(org) || !validUser(user) {
		return nil, fmt.Errorf("%s: org or user id: %w", op, ErrInvalid)
	}
	var out *Membership
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		m, before, err := o.s.getMembership(ctx, tx, org, user)
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("membership: %w", ErrNotFound)
		}
		created, old := m.Created, cloneMembership(m)
		if err := edit(m); errors.Is(err, errNoChange) {
			out = m
			return nil
		} else if err != nil {
			return &editError{err}
		}
		m.Org, m.User, m.Created, m.Updated = org, user, created, o.now()
		normaliseMembership(m, actor)
		carryCut(old, m, m.Updated)
		settleKeys(m, m.Updated, actor)
		if err := checkMembership(m); err != nil {
			return err
		}
		out = m
		if m.Status != MembershipRevoked || IsMachineUser(user) {
			return o.writeMembership(ctx, tx, m, before, typ, actor, reason, nil)
		}
		// A person's membership is revoked: what they sponsor in the organisation ends in
		// the same transaction (the machines share the organisation's slot). A suspension
		// ends nothing for good: the decision refuses their machines while it lasts.
		return o.writeWithSponsored(ctx, tx, m, before, typ, actor, reason)
	}, o.s.keys.membership(org, user))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Offboard applies the business event offboarded to user (Apply, EventOffboarded): every
// membership revoked, pending requests for them cancelled, invitations to the addresses their
// memberships record withdrawn, admin API tokens revoked, in one step with person.offboarded
// as the parent event. It returns the orgs whose membership it revoked, sorted. Ending the
// person's sessions is the caller's job (package session, from the same admin command); the
// user-wide invalidation drops the person from every replica's Cache.
func (o *Orgs) Offboard(ctx context.Context, user, actor, reason string) ([]string, error) {
	if !validUser(user) {
		return nil, fmt.Errorf("offboard %q: %w", user, ErrInvalid)
	}
	if strings.TrimSpace(reason) == "" {
		reason = "offboarded"
	}
	out, err := o.Apply(ctx, BusinessEvent{Event: EventOffboarded, User: user}, actor, reason, false)
	if err != nil {
		return nil, err
	}
	orgs := []string{}
	for _, c := range out.Changes {
		if c.Type == audit.MembershipRevoked {
			orgs = append(orgs, c.Org)
		}
	}
	slices.Sort(orgs)
	return orgs, nil
}
