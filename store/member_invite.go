package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
)

// DefaultInvitationTTL is how long an invitation waits for its first sign-in when Invite is
// given no Until: access granted to an address should not wait forever for whoever ends up
// owning it.
const DefaultInvitationTTL = 14 * 24 * time.Hour

// Invitation is access granted to an email address before its owner ever signed in. At the
// first sign-in with that address verified by the IdP it becomes a Membership of the person
// (BindInvitations) and is deleted, so a later owner of the address inherits nothing.
type Invitation struct {
	Org   string `json:"org"`
	Email string `json:"email"` // canonical (lower case)
	// The membership to create: Kind, Roles, Grants, ExpiresAt, ReviewBy and ApprovedBy are
	// copied into it; InvitedBy becomes its GrantedBy.
	Kind       string    `json:"kind"`
	Roles      []string  `json:"roles,omitempty"`
	Grants     []Grant   `json:"grants,omitempty"`
	ExpiresAt  time.Time `json:"expires_at,omitzero"`
	ReviewBy   time.Time `json:"review_by,omitzero"`
	InvitedBy  string    `json:"invited_by,omitempty"`
	ApprovedBy string    `json:"approved_by,omitempty"`
	Created    time.Time `json:"created,omitzero"`
	// Until is when the invitation lapses unused. Zero in Invite means DefaultInvitationTTL.
	Until time.Time `json:"until"`
}

// membership is the membership inv grants to user.
func (inv *Invitation) membership(user string) Membership {
	return Membership{
		Org: inv.Org, User: user, Kind: inv.Kind, Roles: inv.Roles, Grants: inv.Grants,
		Status: MembershipActive, ExpiresAt: inv.ExpiresAt, ReviewBy: inv.ReviewBy,
		GrantedBy: inv.InvitedBy, ApprovedBy: inv.ApprovedBy, Email: inv.Email,
	}
}

// Invite stores an invitation of inv.Email to inv.Org (which must exist), replacing an earlier
// one to the same address and org. The email is canonicalised; InvitedBy defaults to actor.
// The invitation grants nothing until BindInvitations turns it into a membership.
func (o *Orgs) Invite(ctx context.Context, inv Invitation, actor, reason string) (*Invitation, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	email, err := canonicalEmail(inv.Email)
	if err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	inv.Email = email
	now := o.now()
	if inv.InvitedBy == "" {
		inv.InvitedBy = actor
	}
	inv.Created = now
	if inv.Until.IsZero() {
		inv.Until = now.Add(DefaultInvitationTTL)
	}
	inv.Until = utc(inv.Until)
	if !inv.Until.After(now) {
		return nil, fmt.Errorf("invite %s: until is in the past: %w", inv.Org, ErrInvalid)
	}
	// Validate the membership it would become, and store it in that normal form.
	m := inv.membership("invitation")
	normaliseMembership(&m, inv.InvitedBy)
	if err := checkMembership(&m); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	inv.Roles, inv.Grants, inv.ExpiresAt, inv.ReviewBy = m.Roles, m.Grants, m.ExpiresAt, m.ReviewBy

	orgKey, invKey := o.s.keys.org(inv.Org), o.s.keys.invitations(email)
	err = o.atomically(ctx, "invite "+inv.Org, func(tx *redis.Tx) error {
		if n, err := tx.Exists(ctx, orgKey).Result(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("org %s: %w", inv.Org, ErrNotFound)
		}
		before, err := tx.HGet(ctx, invKey, inv.Org).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		after, err := json.Marshal(&inv)
		if err != nil {
			return err
		}
		ttl, err := tx.PExpireTime(ctx, invKey).Result()
		if err != nil {
			return err
		}
		return o.commit(ctx, tx, func(w *batch) {
			w.do("HSET", invKey, inv.Org, after)
			// The key lives as long as its longest invitation; BindInvitations also skips
			// lapsed ones, since fields do not expire one by one.
			if ttl < 0 || time.UnixMilli(int64(ttl/time.Millisecond)).Before(inv.Until) {
				w.do("PEXPIREAT", invKey, inv.Until.UnixMilli())
			}
		}, []audit.Event{{Type: audit.MembershipInvited, Actor: actor, Org: inv.Org, Reason: reason,
			Before: raw(before), After: after, Detail: map[string]string{"email": email}}})
	}, orgKey, invKey)
	if err != nil {
		return nil, err
	}
	return &inv, nil
}

// Invitations returns the pending invitations to email (lapsed ones included until they are
// cleaned up), sorted by org.
func (s *Store) Invitations(ctx context.Context, email string) ([]Invitation, error) {
	e, err := canonicalEmail(email)
	if err != nil {
		return nil, fmt.Errorf("invitations: %w", err)
	}
	vals, err := s.rdb.HGetAll(ctx, s.keys.invitations(e)).Result()
	if err != nil {
		return nil, s.unavailable("invitations", err)
	}
	return decodeInvitations(vals)
}

func decodeInvitations(vals map[string]string) ([]Invitation, error) {
	out := make([]Invitation, 0, len(vals))
	for org, v := range vals {
		var inv Invitation
		if err := json.Unmarshal([]byte(v), &inv); err != nil {
			return nil, fmt.Errorf("decode invitation to %s: %w", org, err)
		}
		out = append(out, inv)
	}
	slices.SortFunc(out, func(a, b Invitation) int {
		if a.Org < b.Org {
			return -1
		}
		if a.Org > b.Org {
			return 1
		}
		return 0
	})
	return out, nil
}

// BindInvitations turns every pending invitation to email into a membership of user, at sign-in.
// It does nothing unless emailVerified (the IdP vouches that user controls the address): an
// unverified claim to an address must never collect its access. Each invitation binds once: it
// is deleted in the same transaction that writes the membership, so whoever signs in with the
// address later, under another user key, gets nothing. Lapsed invitations are deleted unbound.
// A user who already has a membership (not revoked) of the org keeps it; the invitation is
// consumed. It returns the orgs whose membership it created, sorted, with one audit event per
// binding.
func (o *Orgs) BindInvitations(ctx context.Context, email string, emailVerified bool, user string) ([]string, error) {
	if !emailVerified {
		return nil, nil
	}
	e, err := canonicalEmail(email)
	if err != nil {
		return nil, fmt.Errorf("bind invitations: %w", err)
	}
	if !validUser(user) {
		return nil, fmt.Errorf("bind invitations: user %q: %w", user, ErrInvalid)
	}
	invKey := o.s.keys.invitations(e)
	var bound []string
	err = o.atomically(ctx, "bind invitations", func(tx *redis.Tx) error {
		bound = nil
		vals, err := tx.HGetAll(ctx, invKey).Result()
		if err != nil || len(vals) == 0 {
			return err
		}
		invs, err := decodeInvitations(vals)
		if err != nil {
			return err
		}
		now := o.now()
		type binding struct {
			m      Membership
			before string
			after  []byte
		}
		var binds []binding
		var events []audit.Event
		var inval []string
		for _, inv := range invs {
			if !now.Before(inv.Until) {
				events = append(events, audit.Event{Type: audit.InvitationExpired, Actor: user, Org: inv.Org,
					Reason: "invitation lapsed unused", Before: json.RawMessage(vals[inv.Org]), Detail: map[string]string{"email": e}})
				continue
			}
			if err := tx.Watch(ctx, o.s.keys.membership(inv.Org, user)).Err(); err != nil {
				return err
			}
			old, before, err := o.s.getMembership(ctx, tx, inv.Org, user)
			if err != nil {
				return err
			}
			detail := map[string]string{"email": e, "invited_by": inv.InvitedBy}
			if old != nil && old.Status != MembershipRevoked {
				detail["result"] = "already_member"
				events = append(events, audit.Event{Type: audit.InvitationBound, Actor: user, Org: inv.Org, User: user,
					Reason: "invitation consumed: already a member", Before: raw(before), Detail: detail})
				continue
			}
			m := inv.membership(user)
			m.Created, m.Updated = now, now
			normaliseMembership(&m, inv.InvitedBy)
			after, err := json.Marshal(&m)
			if err != nil {
				return err
			}
			binds = append(binds, binding{m, before, after})
			events = append(events, audit.Event{Type: audit.InvitationBound, Actor: user, Org: inv.Org, User: user,
				Reason: "invitation bound at sign-in with verified email", Before: raw(before), After: after, Detail: detail})
			inval = append(inval, invalMembership(inv.Org, user))
			bound = append(bound, inv.Org)
		}
		return o.commit(ctx, tx, func(w *batch) {
			w.do("DEL", invKey)
			for _, b := range binds {
				w.do("SET", o.s.keys.membership(b.m.Org, user), b.after)
				w.do("SADD", o.s.keys.orgMembers(b.m.Org), user)
				w.do("SADD", o.s.keys.userOrgs(user), b.m.Org)
			}
		}, events, inval...)
	}, invKey)
	if err != nil {
		return nil, err
	}
	return bound, nil
}
