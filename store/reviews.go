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

// Access reviews (README, "Access reviews"): a campaign lists every live membership of an
// organisation (or of some kinds) for its reviewers to keep, change or revoke by a deadline.
// Starting it brings each membership's review date forward to the deadline, so an item nobody
// decides stops granting when the deadline passes, on every replica, through the decision's
// review_by rule: nothing has to run at the deadline.

// Review states.
const (
	ReviewOpen   = "open"
	ReviewClosed = "closed"
)

// Review decisions.
const (
	DecisionKeep   = "keep"
	DecisionChange = "change"
	DecisionRevoke = "revoke"
)

// Review is one access review campaign.
type Review struct {
	ID  string `json:"id"`
	Org string `json:"org"`
	// Kinds limits the campaign to these membership kinds; empty: every kind, machine
	// identities (service) included.
	Kinds     []string     `json:"kinds,omitempty"`
	Deadline  time.Time    `json:"deadline"`
	Reason    string       `json:"reason"`
	State     string       `json:"state"`
	Created   time.Time    `json:"created"`
	CreatedBy string       `json:"created_by"`
	Items     []ReviewItem `json:"items"`
}

// ReviewItem is one membership under review, as it was when the campaign started, and what
// its reviewer decided.
type ReviewItem struct {
	User  string   `json:"user"`
	Kind  string   `json:"kind"`
	Roles []string `json:"roles,omitempty"`
	// ReviewBy is the membership's review date before the campaign brought it forward.
	ReviewBy time.Time `json:"review_by,omitzero"`
	Decision string    `json:"decision,omitempty"`
	// NewRoles are the roles a change decision set.
	NewRoles  []string  `json:"new_roles,omitempty"`
	DecidedBy string    `json:"decided_by,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	Note      string    `json:"note,omitempty"`
}

// Undecided counts the items nobody has decided yet.
func (r *Review) Undecided() int {
	n := 0
	for _, it := range r.Items {
		if it.Decision == "" {
			n++
		}
	}
	return n
}

func newReviewID() string { return newID("rev_") }

func validReviewID(id string) bool {
	rest, ok := strings.CutPrefix(id, "rev_")
	return ok && len(rest) == 16 && strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz234567") == ""
}

// StartReview starts a campaign over the live memberships of org (of kinds, when given; every
// kind, machine identities included, otherwise) due by deadline, in one transaction: the campaign record, each
// membership's review date brought forward to the deadline where it was later, and the events
// (review.started, then membership.changed for each date moved). An organisation with nothing
// to review is ErrInvalid.
func (o *Orgs) StartReview(ctx context.Context, org string, kinds []string, deadline time.Time, actor, reason string) (*Review, error) {
	op := "start review " + org
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	now := o.now()
	switch {
	case !syntax.OrgID(org):
		return nil, fmt.Errorf("%s: org: %w", op, ErrNotFound)
	case !deadline.After(now):
		return nil, fmt.Errorf("%s: deadline: must be in the future: %w", op, ErrInvalid)
	case strings.TrimSpace(reason) == "" || len(reason) > 1024:
		return nil, fmt.Errorf("%s: reason: required, at most 1024 bytes: %w", op, ErrInvalid)
	}
	for _, k := range kinds {
		if !validKind(k) {
			return nil, fmt.Errorf("%s: kind %q: %w", op, k, ErrInvalid)
		}
	}
	deadline = deadline.UTC()
	var out *Review
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		p := &plan{o: o, ctx: ctx, c: tx, tx: tx, now: now, actor: actor, reason: reason}
		if _, _, err := p.org(org); err != nil {
			return err
		}
		ms, err := p.members(org)
		if err != nil {
			return err
		}
		rv := &Review{ID: newReviewID(), Org: org, Kinds: slices.Clone(kinds), Deadline: deadline, Reason: reason, State: ReviewOpen,
			Created: now, CreatedBy: actor, Items: []ReviewItem{}}
		var writes []func(*batch)
		var events []audit.Event
		var inval []string
		for _, m := range ms {
			if !live(m.m, now) || (len(kinds) > 0 && !slices.Contains(kinds, m.m.Kind)) {
				continue
			}
			rv.Items = append(rv.Items, ReviewItem{User: m.m.User, Kind: m.m.Kind, Roles: slices.Clone(m.m.Roles), ReviewBy: m.m.ReviewBy})
			if !m.m.ReviewBy.IsZero() && !m.m.ReviewBy.After(deadline) {
				continue
			}
			nm := cloneMembership(m.m)
			nm.ReviewBy, nm.Updated = deadline, now
			b, err := json.Marshal(nm)
			if err != nil {
				return err
			}
			writes = append(writes, func(w *batch) { o.putMembership(w, nm, b) })
			events = append(events, audit.Event{Type: audit.MembershipChanged, Actor: actor, Org: org, User: nm.User, Reason: reason,
				Before: raw(m.before), After: b, Detail: map[string]string{"review": rv.ID}})
			inval = append(inval, invalMembership(org, nm.User))
		}
		if len(rv.Items) == 0 {
			return fmt.Errorf("org %s has no live membership to review: %w", org, ErrInvalid)
		}
		b, err := json.Marshal(rv)
		if err != nil {
			return err
		}
		key, idx := o.s.keys.review(org, rv.ID), o.s.keys.orgReviews(org)
		out = rv
		parent := audit.Event{Type: audit.ReviewStarted, Actor: actor, Org: org, Reason: reason,
			Detail: map[string]string{"review": rv.ID, "items": strconv.Itoa(len(rv.Items)), "deadline": deadline.Format(time.RFC3339)}}
		return o.commit(ctx, tx, func(w *batch) {
			w.do("SET", key, b)
			w.do("ZADD", idx, float64(now.UnixMilli()), rv.ID)
			for _, f := range writes {
				f(w)
			}
		}, append([]audit.Event{parent}, events...), inval...)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Review returns the campaign id of org, or ErrNotFound.
func (s *Store) Review(ctx context.Context, org, id string) (*Review, error) {
	if !syntax.OrgID(org) || !validReviewID(id) {
		return nil, fmt.Errorf("review %s/%s: %w", org, id, ErrNotFound)
	}
	rv, _, err := s.getReview(ctx, s.rdb, org, id)
	return rv, err
}

func (s *Store) getReview(ctx context.Context, c redis.Cmdable, org, id string) (*Review, string, error) {
	v, err := c.Get(ctx, s.keys.review(org, id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, "", fmt.Errorf("review %s/%s: %w", org, id, ErrNotFound)
	case err != nil:
		return nil, "", s.unavailable("get review", err)
	}
	var rv Review
	if err := json.Unmarshal([]byte(v), &rv); err != nil {
		return nil, "", fmt.Errorf("decode review %s/%s: %w", org, id, err)
	}
	return &rv, v, nil
}

// Reviews returns the campaigns of org, newest first.
func (s *Store) Reviews(ctx context.Context, org string) ([]Review, error) {
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("reviews of %q: %w", org, ErrNotFound)
	}
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.keys.orgReviews(org), Start: 0, Stop: 999, Rev: true}).Result()
	if err != nil {
		return nil, s.unavailable("reviews", err)
	}
	out := []Review{}
	for _, id := range ids {
		rv, err := s.Review(ctx, org, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *rv)
	}
	return out, nil
}

// ReviewDecision is one reviewer's decision on one item.
type ReviewDecision struct {
	User     string
	Decision string // DecisionKeep, DecisionChange, DecisionRevoke
	// Roles are the new standing roles (DecisionChange).
	Roles []string
	// NextReview is the membership's next review date (keep and change; zero: none): the
	// caller computes it from the kind's review_every, or sets it in check.
	NextReview time.Time
	Note       string
}

// DecideReview records decision d on the item of d.User in campaign id of org, and applies it
// to the membership in the same transaction (keep: the next review date; change: the roles
// and the next review date; revoke: revoked). check, when set, is called with the membership
// before and after, inside the transaction, and may refuse (the lifecycle policy, who may
// decide). An item is decided once; a closed campaign takes no decisions; a membership that
// was revoked meanwhile can only be confirmed revoked.
func (o *Orgs) DecideReview(ctx context.Context, org, id string, d ReviewDecision, check func(rv *Review, before, after *Membership) error, actor string) (*Review, error) {
	op := "decide review " + org
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(org) || !validReviewID(id) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	switch d.Decision {
	case DecisionKeep, DecisionRevoke:
	case DecisionChange:
		for _, r := range d.Roles {
			if !syntax.Name(r) {
				return nil, fmt.Errorf("%s: role %q: %w", op, r, ErrInvalid)
			}
		}
	default:
		return nil, fmt.Errorf("%s: decision %q: want keep, change or revoke: %w", op, d.Decision, ErrInvalid)
	}
	if len(d.Note) > 1024 {
		return nil, fmt.Errorf("%s: note: at most 1024 bytes: %w", op, ErrInvalid)
	}
	key := o.s.keys.review(org, id)
	var out *Review
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		rv, before, err := o.s.getReview(ctx, tx, org, id)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(rv.Items, func(it ReviewItem) bool { return it.User == d.User })
		switch {
		case rv.State != ReviewOpen:
			return fmt.Errorf("review %s is %s: %w", id, rv.State, ErrConflict)
		case i < 0:
			return fmt.Errorf("no item of %s in review %s: %w", d.User, id, ErrNotFound)
		case rv.Items[i].Decision != "":
			return fmt.Errorf("the item of %s was decided already (%s): %w", d.User, rv.Items[i].Decision, ErrConflict)
		}
		memKey := o.s.keys.membership(org, d.User)
		if err := tx.Watch(ctx, memKey, o.s.keys.org(org)).Err(); err != nil {
			return err
		}
		m, mBefore, err := o.s.getMembership(ctx, tx, org, d.User)
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("membership of %s in %s: %w", d.User, org, ErrNotFound)
		}
		now := o.now()
		nm := cloneMembership(m)
		switch d.Decision {
		case DecisionKeep:
			nm.ReviewBy = d.NextReview.UTC()
		case DecisionChange:
			nm.Roles, nm.ReviewBy = slices.Clone(d.Roles), d.NextReview.UTC()
		case DecisionRevoke:
			nm.Status = MembershipRevoked
		}
		if m.Status == MembershipRevoked && d.Decision != DecisionRevoke {
			return fmt.Errorf("the membership of %s was revoked meanwhile: %w", d.User, ErrConflict)
		}
		if check != nil {
			if err := check(rv, m, nm); err != nil {
				return &editError{err}
			}
		}
		if nm.Status != MembershipRevoked && !nm.ReviewBy.IsZero() && !nm.ReviewBy.After(now) {
			return fmt.Errorf("next review: must be in the future: %w", ErrInvalid)
		}
		nm.Updated = now
		normaliseMembership(nm, actor)
		carryCut(m, nm, now)
		settleKeys(nm, now, actor)
		if err := checkMembership(nm); err != nil {
			return err
		}
		it := &rv.Items[i]
		it.Decision, it.DecidedBy, it.DecidedAt, it.Note = d.Decision, actor, now, d.Note
		if d.Decision == DecisionChange {
			it.NewRoles = nm.Roles
		}
		if rv.Undecided() == 0 {
			rv.State = ReviewClosed
		}
		rb, err := json.Marshal(rv)
		if err != nil {
			return err
		}
		mb, err := json.Marshal(nm)
		if err != nil {
			return err
		}
		typ := audit.MembershipChanged
		if nm.Status == MembershipRevoked && m.Status != MembershipRevoked {
			typ = audit.MembershipRevoked
		}
		detail := map[string]string{"review": id, "decision": d.Decision}
		out = rv
		why := "access review " + id + ": " + d.Decision
		ends := &machineEnds{}
		if typ == audit.MembershipRevoked && !IsMachineUser(d.User) {
			if ends, err = o.sponsoredEnds(ctx, tx, org, d.User, now, actor, why); err != nil {
				return err
			}
		}
		return o.commit(ctx, tx, func(w *batch) {
			w.do("SET", key, rb)
			o.putMembership(w, nm, mb)
			ends.writes(o, w)
		}, append([]audit.Event{
			{Type: audit.ReviewDecided, Actor: actor, Org: org, User: d.User, Reason: d.Note, Before: raw(before), After: rb, Detail: detail},
			{Type: typ, Actor: actor, Org: org, User: d.User, Reason: why, Before: raw(mBefore), After: mb, Detail: detail},
		}, ends.events...), append([]string{invalMembership(org, d.User)}, ends.inval...)...)
	}, key)
	if err != nil {
		return nil, err
	}
	return out, nil
}
