package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	after, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return o.commit(ctx, tx, func(w *batch) { o.putMembership(w, m, after) },
		[]audit.Event{{Type: typ, Actor: actor, Org: m.Org, User: m.User, Reason: reason, Before: raw(before), After: after, Detail: detail}},
		invalMembership(m.Org, m.User))
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
	return o.updateMembership(ctx, "change membership", org, user, actor, reason, audit.MembershipChanged, edit)
}

// Revoke marks user's membership of org revoked and removes org from the person's index. The
// record stays, so a later request is denied as membership_revoked rather than not_member.
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
		if err := checkMembership(m); err != nil {
			return err
		}
		out = m
		return o.writeMembership(ctx, tx, m, before, typ, actor, reason, nil)
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
