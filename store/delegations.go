package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Delegations (README, "Delegated administration"): an organisation lets the administrators
// of another one (its managed-service provider, its reseller, its head office) administer it
// within the policy. A delegation lives in the delegating organisation's record, so everything
// that reads the organisation (and watches it, as an approval does) sees it change; it has an
// end and may have a review date, like a membership, and it is never transitive.

// MaxDelegation is the longest a delegation may last: it is renewed, not held.
const MaxDelegation = 366 * 24 * time.Hour

// Delegation lets the administrators of To administer the organisation that holds it.
type Delegation struct {
	ID string `json:"id"`
	// To is the organisation whose administrators may act.
	To        string    `json:"to"`
	ExpiresAt time.Time `json:"expires_at"`
	ReviewBy  time.Time `json:"review_by,omitzero"`
	GrantedBy string    `json:"granted_by"`
	Reason    string    `json:"reason"`
	Created   time.Time `json:"created"`
	// Ended, when set, is when the delegation was ended before its time, and by whom.
	Ended   time.Time `json:"ended,omitzero"`
	EndedBy string    `json:"ended_by,omitempty"`
}

// Live reports whether d may be acted through at now.
func (d *Delegation) Live(now time.Time) bool {
	return d.Ended.IsZero() && now.Before(d.ExpiresAt) && (d.ReviewBy.IsZero() || now.Before(d.ReviewBy))
}

func newDelegationID() string { return newID("del_") }

// Delegate adds delegation d (To, ExpiresAt, ReviewBy) to org, returning it with its id.
// Refused (ErrInvalid): to itself, to an organisation that does not exist or is not active,
// without an end or beyond MaxDelegation, a review date after the end; a second live
// delegation to the same organisation is ErrExists.
func (o *Orgs) Delegate(ctx context.Context, org string, d Delegation, actor, reason string) (*Delegation, error) {
	now := o.now()
	switch {
	case !syntax.OrgID(d.To) || d.To == org:
		return nil, fmt.Errorf("delegate %s: to %q: want another organisation: %w", org, d.To, ErrInvalid)
	case !d.ExpiresAt.After(now) || d.ExpiresAt.Sub(now) > MaxDelegation:
		return nil, fmt.Errorf("delegate %s: expires_at: a delegation ends, within %d days: %w", org, MaxDelegation/(24*time.Hour), ErrInvalid)
	case !d.ReviewBy.IsZero() && (!d.ReviewBy.After(now) || d.ReviewBy.After(d.ExpiresAt)):
		return nil, fmt.Errorf("delegate %s: review_by: between now and the end: %w", org, ErrInvalid)
	case strings.TrimSpace(reason) == "":
		return nil, fmt.Errorf("delegate %s: reason: required: %w", org, ErrInvalid)
	}
	d.ID, d.GrantedBy, d.Reason, d.Created = newDelegationID(), actor, reason, now
	d.ExpiresAt, d.ReviewBy, d.Ended, d.EndedBy = d.ExpiresAt.UTC(), utc(d.ReviewBy), time.Time{}, ""
	out := d
	_, err := o.updateOrg(ctx, "delegate", org, actor, reason, audit.DelegationGranted, map[string]string{"delegation": d.ID, "to": d.To},
		func(tx *redis.Tx, rec *Org) (func(*batch), error) {
			if slices.ContainsFunc(rec.Delegations, func(x Delegation) bool { return x.To == d.To && x.Live(now) }) {
				return nil, fmt.Errorf("a live delegation of %s to %s: %w", org, d.To, ErrExists)
			}
			if err := tx.Watch(ctx, o.s.keys.org(d.To)).Err(); err != nil {
				return nil, err
			}
			to, _, err := o.s.getOrg(ctx, tx, d.To)
			if err != nil {
				return nil, fmt.Errorf("org %s: %w", d.To, err)
			}
			if !orgActive(to, now) || !orgActive(rec, now) {
				return nil, fmt.Errorf("delegate %s to %s: both organisations must be active: %w", org, d.To, ErrInvalid)
			}
			rec.Delegations = append(rec.Delegations, d)
			return func(w *batch) { w.do("SADD", o.s.keys.delegators(d.To), org) }, nil
		})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// EndDelegation ends delegation id of org now; ErrNotFound when org holds none such, and
// ErrConflict when it has ended already.
func (o *Orgs) EndDelegation(ctx context.Context, org, id, actor, reason string) (*Delegation, error) {
	var out Delegation
	_, err := o.updateOrg(ctx, "end delegation", org, actor, reason, audit.DelegationEnded, map[string]string{"delegation": id},
		func(_ *redis.Tx, rec *Org) (func(*batch), error) {
			i := slices.IndexFunc(rec.Delegations, func(x Delegation) bool { return x.ID == id })
			switch {
			case i < 0:
				return nil, fmt.Errorf("delegation %s of %s: %w", id, org, ErrNotFound)
			case !rec.Delegations[i].Ended.IsZero():
				return nil, fmt.Errorf("delegation %s has ended already: %w", id, ErrConflict)
			}
			rec.Delegations = slices.Clone(rec.Delegations)
			rec.Delegations[i].Ended, rec.Delegations[i].EndedBy = o.now(), actor
			out = rec.Delegations[i]
			return nil, nil
		})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Delegators returns the organisations that have delegated their administration to org, ended
// delegations included: the caller checks each organisation's own record (Delegation.Live).
func (s *Store) Delegators(ctx context.Context, org string) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.delegators(org)).Result()
	if err != nil {
		return nil, s.unavailable("delegators", err)
	}
	slices.Sort(ids)
	return ids, nil
}
