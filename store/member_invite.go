package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
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

// Invite stores an invitation of inv.Email to inv.Org, replacing an earlier one to the same
// address and org. The email is canonicalised; InvitedBy defaults to actor. The invitation
// grants nothing until BindInvitations turns it into a membership.
//
// Refused (ErrInvalid, naming why): an organisation that is not active (suspended, ended,
// past its contract end, merged), and an employee invited at an address whose domain the
// organisation has not verified (its staff are at its own domains; partners and support
// staff come from theirs).
func (o *Orgs) Invite(ctx context.Context, inv Invitation, actor, reason string) (*Invitation, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("invite: %w", err)
	}
	if err := o.prepareInvitation(&inv, actor); err != nil {
		return nil, err
	}
	now := inv.Created
	email := inv.Email

	orgKey, invKey := o.s.keys.org(inv.Org), o.s.keys.invitations(email)
	err := o.atomically(ctx, "invite "+inv.Org, func(tx *redis.Tx) error {
		org, _, err := o.s.getOrg(ctx, tx, inv.Org)
		if err != nil {
			return err
		}
		if org == nil {
			return fmt.Errorf("org %s: %w", inv.Org, ErrNotFound)
		}
		if err := invitable(org, &inv, now); err != nil {
			return fmt.Errorf("invite %s: %w: %w", inv.Org, ErrInvalid, err)
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
			w.do("SADD", o.s.keys.orgInvitations(inv.Org), email)
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

// prepareInvitation checks inv on its own (the address, its end, the membership it would
// become) and puts it in its stored form.
func (o *Orgs) prepareInvitation(inv *Invitation, actor string) error {
	email, err := canonicalEmail(inv.Email)
	if err != nil {
		return fmt.Errorf("invite: %w", err)
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
	switch {
	case !inv.Until.After(now):
		return fmt.Errorf("invite %s: until is in the past: %w", inv.Org, ErrInvalid)
	case inv.Until.Sub(now) > MaxInvitationTTL:
		// An open invitation counts for account recovery: it must not stand for ever.
		return fmt.Errorf("invite %s: until: an invitation waits at most %d days: %w", inv.Org, MaxInvitationTTL/(24*time.Hour), ErrInvalid)
	}
	// Validate the membership it would become, and store it in that normal form.
	m := inv.membership("invitation")
	normaliseMembership(&m, inv.InvitedBy)
	if err := checkMembership(&m); err != nil {
		return fmt.Errorf("invite %s: %w", email, err)
	}
	inv.Roles, inv.Grants, inv.ExpiresAt, inv.ReviewBy = m.Roles, m.Grants, m.ExpiresAt, m.ReviewBy
	return nil
}

// MaxInvitationTTL bounds how long an invitation waits for its first sign-in.
const MaxInvitationTTL = 90 * 24 * time.Hour

// MaxImport bounds the invitations of one import: one transaction holds them all.
const MaxImport = 5000

// ImportInvitations invites every one of invs to org in one change: all of them or none (an
// invalid row, a second row for one address, or an address the organisation cannot invite
// refuses the whole import, naming the row), with one parent event
// (invitations.imported) and a membership.invited event per invitation, all carrying the
// operation's id. It is how a portal's existing users are brought in before their first
// sign-in (an invitation binds then, and counts for account recovery until then).
func (o *Orgs) ImportInvitations(ctx context.Context, org string, invs []Invitation, actor, reason string) ([]Invitation, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("import invitations: %w", err)
	}
	switch {
	case len(invs) == 0:
		return nil, fmt.Errorf("import invitations: nothing to import: %w", ErrInvalid)
	case len(invs) > MaxImport:
		return nil, fmt.Errorf("import invitations: %d rows, at most %d at once: %w", len(invs), MaxImport, ErrInvalid)
	}
	seen := map[string]int{}
	keys := []string{o.s.keys.org(org)}
	for i := range invs {
		invs[i].Org = org
		if err := o.prepareInvitation(&invs[i], actor); err != nil {
			return nil, fmt.Errorf("row %d: %w", i+1, err)
		}
		if j, dup := seen[invs[i].Email]; dup {
			return nil, fmt.Errorf("import invitations: %w: row %d: %s is row %d already", ErrInvalid, i+1, invs[i].Email, j+1)
		}
		seen[invs[i].Email] = i
		keys = append(keys, o.s.keys.invitations(invs[i].Email))
	}
	op := newOperationID()
	err := o.atomically(ctx, "import invitations to "+org, func(tx *redis.Tx) error {
		rec, _, err := o.s.getOrg(ctx, tx, org)
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("org %s: %w", org, ErrNotFound)
		}
		events := []audit.Event{{Type: audit.InvitationsImported, Actor: actor, Org: org, Reason: reason, Operation: op,
			Detail: map[string]string{"invitations": strconv.Itoa(len(invs))}}}
		var writes []func(*batch)
		for i := range invs {
			inv := &invs[i]
			if err := invitable(rec, inv, inv.Created); err != nil {
				// ErrInvalid first: what follows it is the detail the API shows.
				return fmt.Errorf("import invitations: %w: row %d (%s): %w", ErrInvalid, i+1, inv.Email, err)
			}
			invKey := o.s.keys.invitations(inv.Email)
			before, err := tx.HGet(ctx, invKey, org).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			after, err := json.Marshal(inv)
			if err != nil {
				return err
			}
			ttl, err := tx.PExpireTime(ctx, invKey).Result()
			if err != nil {
				return err
			}
			email, until := inv.Email, inv.Until
			writes = append(writes, func(w *batch) {
				w.do("HSET", invKey, org, after)
				w.do("SADD", o.s.keys.orgInvitations(org), email)
				if ttl < 0 || time.UnixMilli(int64(ttl/time.Millisecond)).Before(until) {
					w.do("PEXPIREAT", invKey, until.UnixMilli())
				}
			})
			events = append(events, audit.Event{Type: audit.MembershipInvited, Actor: actor, Org: org, Reason: reason, Operation: op,
				Before: raw(before), After: after, Detail: map[string]string{"email": email}})
		}
		return o.commit(ctx, tx, func(w *batch) {
			for _, f := range writes {
				f(w)
			}
		}, events)
	}, keys...)
	if err != nil {
		return nil, err
	}
	return invs, nil
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
	return o.BindInvitationsTrusted(ctx, email, emailVerified, user, nil)
}

// BindInvitationsTrusted is BindInvitations for a person signed in through a provider that
// only some organisations trust: an invitation to an organisation for which trusts (given the
// organisation's record, nil when it has none) is false stays, unbound, for the address's
// owner at a provider that organisation trusts. A nil trusts trusts every organisation.
func (o *Orgs) BindInvitationsTrusted(ctx context.Context, email string, emailVerified bool, user string, trusts func(*Org) bool) ([]string, error) {
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
		var inval, spent []string
		for _, inv := range invs {
			if trusts != nil {
				if err := tx.Watch(ctx, o.s.keys.org(inv.Org)).Err(); err != nil {
					return err
				}
				org, _, err := o.s.getOrg(ctx, tx, inv.Org)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
				if !trusts(org) {
					continue
				}
			}
			spent = append(spent, inv.Org)
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
			carryCut(old, &m, now)
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
		if len(spent) == 0 {
			return nil
		}
		return o.commit(ctx, tx, func(w *batch) {
			// A hash whose last field goes is deleted with it.
			for _, org := range spent {
				w.do("HDEL", invKey, org)
				w.do("SREM", o.s.keys.orgInvitations(org), e)
			}
			for _, b := range binds {
				o.putMembership(w, &b.m, b.after)
			}
		}, events, inval...)
	}, invKey)
	if err != nil {
		return nil, err
	}
	return bound, nil
}

// invitable says why org cannot take the invitation inv at now, or nil.
func invitable(org *Org, inv *Invitation, now time.Time) error {
	switch {
	case org.Status != OrgActive:
		return fmt.Errorf("the organisation is %s", org.Status)
	case org.MergedInto != "":
		return fmt.Errorf("the organisation was merged into %s", org.MergedInto)
	case !org.ContractEnd.IsZero() && !now.Before(org.ContractEnd):
		return errors.New("the organisation's contract has ended")
	}
	if inv.Kind == KindEmployee {
		_, domain, _ := strings.Cut(inv.Email, "@")
		if !org.VerifiedDomain(domain) {
			return fmt.Errorf("an employee is invited at one of the organisation's verified domains, and %s is not one", domain)
		}
	}
	return nil
}

// OrgInvitations returns the invitations to org that wait for their first sign-in (lapsed
// ones included until they are cleaned up), sorted by email.
func (s *Store) OrgInvitations(ctx context.Context, org string) ([]Invitation, error) {
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("invitations of %q: %w", org, ErrNotFound)
	}
	emails, err := s.rdb.SMembers(ctx, s.keys.orgInvitations(org)).Result()
	if err != nil {
		return nil, s.unavailable("invitations", err)
	}
	slices.Sort(emails)
	out := []Invitation{}
	for _, e := range emails {
		v, err := s.rdb.HGet(ctx, s.keys.invitations(e), org).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue // bound, withdrawn or expired with its key
		case err != nil:
			return nil, s.unavailable("invitation", err)
		}
		var inv Invitation
		if err := json.Unmarshal([]byte(v), &inv); err != nil {
			return nil, fmt.Errorf("decode invitation of %s to %s: %w", e, org, err)
		}
		out = append(out, inv)
	}
	return out, nil
}

// WithdrawInvitation takes back the invitation of email to org before anyone used it, with
// its audit event; ErrNotFound when there is none.
func (o *Orgs) WithdrawInvitation(ctx context.Context, org, email, actor, reason string) (*Invitation, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("withdraw invitation: %w", err)
	}
	e, err := canonicalEmail(email)
	if err != nil {
		return nil, fmt.Errorf("withdraw invitation: %w", err)
	}
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("withdraw invitation: org %q: %w", org, ErrNotFound)
	}
	invKey := o.s.keys.invitations(e)
	var out *Invitation
	err = o.atomically(ctx, "withdraw invitation "+org, func(tx *redis.Tx) error {
		v, err := tx.HGet(ctx, invKey, org).Result()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("invitation of %s to %s: %w", e, org, ErrNotFound)
		}
		if err != nil {
			return err
		}
		var inv Invitation
		if err := json.Unmarshal([]byte(v), &inv); err != nil {
			return fmt.Errorf("decode invitation: %w", err)
		}
		out = &inv
		return o.commit(ctx, tx, func(w *batch) {
			w.do("HDEL", invKey, org)
			w.do("SREM", o.s.keys.orgInvitations(org), e)
		}, []audit.Event{{Type: audit.InvitationWithdrawn, Actor: actor, Org: org, Reason: reason, Before: json.RawMessage(v),
			Detail: map[string]string{"email": e}}})
	}, invKey)
	if err != nil {
		return nil, err
	}
	return out, nil
}
