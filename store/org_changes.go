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

// Orgs makes every change to organisations, memberships and invitations. Each change is one
// code path that, in one transaction guarded by WATCH on the records it read (see commit),
// appends the audit event (actor, before, after, reason), writes the record and its indexes,
// and PUBLISHes the invalidation that makes every replica's Cache drop what changed. If the
// event cannot be written, nothing is.
//
// Atomicity holds on a single Redis (with or without replicas), which is what Store connects
// to. The records of one org share a slot, but a change also touches the person's index
// ({u:…}), the domain index and the audit stream, so a Redis Cluster deployment would need
// these transactions split by slot (event first, then record, indexes, invalidation).
//
// Orgs is safe for concurrent use: concurrent changes to the same record retry (optimistic
// locking) and so apply one after the other.
type Orgs struct {
	s     *Store
	audit *Audit
	now   func() time.Time // UTC; tests replace it
	// via is written into every event's Via: how the actor was authenticated (Via).
	via string
}

// Via returns the change API recording via as the Via of every event it writes: the
// credential or delegation the actor acted through ("token tok_…", an operator issuer).
func (o *Orgs) Via(via string) *Orgs {
	c := *o
	c.via = via
	return &c
}

// NewOrgs returns the change API over s, writing events to a (nil: the stream of s with
// DefaultAuditMaxLen).
func NewOrgs(s *Store, a *Audit) *Orgs {
	if a == nil {
		a = NewAudit(s, 0)
	}
	return &Orgs{s: s, audit: a, now: func() time.Time { return time.Now().UTC() }}
}

// maxTxAttempts bounds the optimistic-locking retries of one change; running out means the
// record is being changed in a tight loop by someone else, reported as ErrConflict.
const maxTxAttempts = 16

// atomically runs fn under WATCH of keys until its EXEC commits, and names errors with op.
func (o *Orgs) atomically(ctx context.Context, op string, fn func(*redis.Tx) error, keys ...string) error {
	for range maxTxAttempts {
		err := o.s.rdb.Watch(ctx, fn, keys...)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		return o.classify(op, err)
	}
	return fmt.Errorf("%s: %w: concurrent changes", op, ErrConflict)
}

// classify keeps named errors and marks everything else from Redis as unavailable.
func (o *Orgs) classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ee *editError
	for _, named := range []error{ErrNotFound, ErrInvalid, ErrExists, ErrConflict, ErrUnavailable, audit.ErrInvalid} {
		if errors.Is(err, named) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	if errors.As(err, &ee) {
		return fmt.Errorf("%s: %w", op, ee.err)
	}
	return o.s.unavailable(op, err)
}

// editError carries an error from a caller's edit function out of the transaction unchanged.
type editError struct{ err error }

func (e *editError) Error() string { return e.err.Error() }
func (e *editError) Unwrap() error { return e.err }

// commit applies writes, the audit events and the invalidation messages as one unit: one Lua
// script inside MULTI/EXEC on tx, so the WATCHed reads still guard it. The script runs the
// XADDs first, then the writes, then the PUBLISHes, and stops at the first error (unlike
// MULTI/EXEC alone, which would run the remaining commands): a change whose event cannot be
// written is not made, and nothing is announced that did not happen. Events are encoded before
// anything is sent, so an event that cannot be encoded stops the change too.
func (o *Orgs) commit(ctx context.Context, tx *redis.Tx, writes func(w *batch), events []audit.Event, inval ...string) error {
	now := o.now()
	var b batch
	for _, e := range events {
		if e.Via == "" {
			e.Via = o.via
		}
		a, err := o.audit.xadd(e, now)
		if err != nil {
			return err
		}
		cmd := []any{"XADD", a.Stream}
		if a.MaxLen > 0 {
			cmd = append(cmd, "MAXLEN", "~", a.MaxLen)
		}
		cmd = append(cmd, "*")
		b.do(append(cmd, a.Values.([]any)...)...)
	}
	writes(&b)
	for _, m := range inval {
		b.do("PUBLISH", o.s.keys.invalidations(), m)
	}
	_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, applyScript, nil, b.args...)
		return nil
	})
	if err != nil {
		return err
	}
	// On tx's connection, which made the writes: WAIT counts the replicas holding its last one.
	return o.s.replicated("change", o.s.waitReplicas(ctx, tx))
}

// batch is a list of Redis commands for applyScript: each is its argument count followed by
// its arguments.
type batch struct{ args []any }

func (b *batch) do(cmd ...any) {
	b.args = append(b.args, len(cmd))
	b.args = append(b.args, cmd...)
}

// applyScript runs the commands of a batch in order; redis.call raises on the first error,
// which ends the script there. Key names travel in ARGV: the commands span slots (the record,
// the person's index, the stream), which a single Redis accepts.
const applyScript = `local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return #ARGV`

// raw returns a stored form for Before (nil when the record did not exist).
func raw(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func checkActor(actor string) error {
	if !validUser(actor) {
		return fmt.Errorf("actor %q: every change needs who made it: %w", actor, ErrInvalid)
	}
	return nil
}

// CreateOrg stores a new organisation. o.Status defaults to OrgActive; o.Domains must be empty
// (add them with AddDomain, which keeps the domain index). ErrExists if the id is taken.
func (o *Orgs) CreateOrg(ctx context.Context, org Org, actor, reason string) (*Org, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("create org: %w", err)
	}
	if org.Status == "" {
		org.Status = OrgActive
	}
	if err := checkOrg(&org); err != nil {
		return nil, fmt.Errorf("create org: %w", err)
	}
	if len(org.Domains) > 0 {
		return nil, fmt.Errorf("create org %s: domains are added with AddDomain: %w", org.ID, ErrInvalid)
	}
	org.ContractEnd = utc(org.ContractEnd)
	key := o.s.keys.org(org.ID)
	err := o.atomically(ctx, "create org "+org.ID, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, key).Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return ErrExists
		}
		org.Updated = o.now()
		after, err := json.Marshal(&org)
		if err != nil {
			return err
		}
		return o.commit(ctx, tx, func(w *batch) {
			w.do("SET", key, after)
			w.do("SADD", o.s.keys.orgIDs(), org.ID)
		}, []audit.Event{{Type: audit.OrgCreated, Actor: actor, Org: org.ID, Reason: reason, After: after}},
			invalOrg(org.ID))
	}, key)
	if err != nil {
		return nil, err
	}
	return &org, nil
}

// OrgStatus is the new state given to SetOrgStatus. Zero ContractEnd and empty MergedInto keep
// the stored values.
type OrgStatus struct {
	Status      string    // OrgActive, OrgSuspended, OrgEnded
	ContractEnd time.Time // when the contract ends (or ended)
	MergedInto  string    // the org that absorbed this one
}

// SetOrgStatus changes an organisation's status (and contract end / merged-into). Setting the
// status it already has still records the event when the other fields change.
func (o *Orgs) SetOrgStatus(ctx context.Context, id string, st OrgStatus, actor, reason string) (*Org, error) {
	switch {
	case st.Status != OrgActive && st.Status != OrgSuspended && st.Status != OrgEnded:
		return nil, fmt.Errorf("set org status %s: status %q: %w", id, st.Status, ErrInvalid)
	case st.MergedInto != "" && (!syntax.OrgID(st.MergedInto) || st.MergedInto == id):
		return nil, fmt.Errorf("set org status %s: merged_into %q: %w", id, st.MergedInto, ErrInvalid)
	}
	return o.updateOrg(ctx, "set org status", id, actor, reason, audit.OrgStatusChanged, nil,
		func(_ *redis.Tx, org *Org) (func(*batch), error) {
			org.Status = st.Status
			if !st.ContractEnd.IsZero() {
				org.ContractEnd = utc(st.ContractEnd)
			}
			if st.MergedInto != "" {
				org.MergedInto = st.MergedInto
			}
			return nil, nil
		})
}

// maxApprovals is the most approvals any policy may require (as the configuration allows).
const maxApprovals = 5

// SetOrgPolicy replaces an organisation's own lifecycle limits (nil or no kinds: the
// platform's as they are). The limits are checked for shape here (known kinds, no negative
// values); that they tighten the platform's is the caller's check (package authz applies the
// stricter of both anyway, so a looser value would have no effect).
func (o *Orgs) SetOrgPolicy(ctx context.Context, id string, p *OrgPolicy, actor, reason string) (*Org, error) {
	if p != nil {
		for kind, l := range p.Kinds {
			switch {
			case !validKind(kind):
				return nil, fmt.Errorf("set org policy %s: kind %q: %w", id, kind, ErrInvalid)
			case l.MaxDuration < 0 || l.ReviewEvery < 0 || l.ApprovalsRequired < 0 || l.ApprovalsRequired > maxApprovals:
				return nil, fmt.Errorf("set org policy %s: kind %s: negative or too many: %w", id, kind, ErrInvalid)
			}
		}
		if len(p.Kinds) == 0 {
			p = nil
		}
	}
	return o.updateOrg(ctx, "set org policy", id, actor, reason, audit.OrgPolicyChanged, nil,
		func(_ *redis.Tx, org *Org) (func(*batch), error) {
			org.Policy = p
			return nil, nil
		})
}

// SetOrgProviders replaces the OpenID Providers that may sign people in for an organisation
// (configured provider names; none: the shared providers). Names are checked for shape here;
// that they are configured is the caller's check, since this process's configuration is not
// every replica's. Sessions of people signed in through a provider no longer trusted are
// refused from the next decision on (the org's caches are invalidated).
func (o *Orgs) SetOrgProviders(ctx context.Context, id string, providers []string, actor, reason string) (*Org, error) {
	names := slices.Clone(providers)
	slices.Sort(names)
	names = slices.Compact(names)
	for _, n := range names {
		if !syntax.Name(n) {
			return nil, fmt.Errorf("set org providers %s: provider %q: %w", id, n, ErrInvalid)
		}
	}
	if len(names) == 0 {
		names = nil
	}
	return o.updateOrg(ctx, "set org providers", id, actor, reason, audit.OrgProvidersChanged,
		map[string]string{"providers": strings.Join(names, " ")},
		func(_ *redis.Tx, org *Org) (func(*batch), error) {
			org.Providers = names
			return nil, nil
		})
}

// AddDomain adds an email domain to an organisation, pending verification. The domain is
// canonicalised (lower case, no trailing dot; IDNs as A-labels). ErrExists if the org already
// lists it.
func (o *Orgs) AddDomain(ctx context.Context, id, domain, actor, reason string) (*Org, error) {
	d, err := canonicalDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("add domain to %s: %w", id, err)
	}
	return o.updateOrg(ctx, "add domain", id, actor, reason, audit.DomainAdded, map[string]string{"domain": d},
		func(_ *redis.Tx, org *Org) (func(*batch), error) {
			if slices.ContainsFunc(org.Domains, func(x Domain) bool { return x.Name == d }) {
				return nil, fmt.Errorf("domain %s: %w", d, ErrExists)
			}
			org.Domains = append(org.Domains, Domain{Name: d, Status: DomainPending, Since: o.now()})
			return nil, nil
		})
}

// SetDomainStatus sets the status of a domain the organisation lists and keeps the domain →
// org index: verifying points the index at this org (ErrConflict if another org has the domain
// verified), and the index keeps naming this org while the domain is pending or lapsed, so the
// recovery guard sees the lapse. Since records when the status changed.
func (o *Orgs) SetDomainStatus(ctx context.Context, id, domain, status, actor, reason string) (*Org, error) {
	d, err := canonicalDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("set domain status in %s: %w", id, err)
	}
	var typ audit.Type
	switch status {
	case DomainVerified:
		typ = audit.DomainVerified
	case DomainPending:
		typ = audit.DomainPending
	case DomainLapsed:
		typ = audit.DomainLapsed
	default:
		return nil, fmt.Errorf("set domain status %s/%s: status %q: %w", id, d, status, ErrInvalid)
	}
	idx := o.s.keys.domainOrg(d)
	return o.updateOrg(ctx, "set domain status", id, actor, reason, typ, map[string]string{"domain": d},
		func(tx *redis.Tx, org *Org) (func(*batch), error) {
			i := slices.IndexFunc(org.Domains, func(x Domain) bool { return x.Name == d })
			if i < 0 {
				return nil, fmt.Errorf("domain %s: %w", d, ErrNotFound)
			}
			if org.Domains[i].Status != status {
				org.Domains[i].Status, org.Domains[i].Since = status, o.now()
			}
			if status != DomainVerified {
				return nil, nil
			}
			holder, err := tx.Get(ctx, idx).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				return nil, err
			}
			if holder != "" && holder != id {
				// Another org held the domain. It may be taken over only if it no longer has it
				// verified: a domain is never verified for two organisations at once.
				if err := tx.Watch(ctx, o.s.keys.org(holder)).Err(); err != nil {
					return nil, err
				}
				other, _, err := o.s.getOrg(ctx, tx, holder)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return nil, err
				}
				if other.VerifiedDomain(d) {
					return nil, fmt.Errorf("domain %s is verified for org %s: %w", d, holder, ErrConflict)
				}
			}
			return func(w *batch) { w.do("SET", idx, id) }, nil
		}, idx)
}

// updateOrg is the one path for changing an org record: read under WATCH, edit, write with the
// event and an org-wide invalidation. edit may return extra writes; it may run more than once.
func (o *Orgs) updateOrg(ctx context.Context, op, id, actor, reason string, typ audit.Type, detail map[string]string,
	edit func(*redis.Tx, *Org) (func(*batch), error), extraWatch ...string) (*Org, error) {
	op = op + " " + id
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(id) {
		return nil, fmt.Errorf("%s: org id: %w", op, ErrInvalid)
	}
	key := o.s.keys.org(id)
	var out *Org
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		org, before, err := o.s.getOrg(ctx, tx, id)
		if err != nil {
			return err
		}
		extra, err := edit(tx, org)
		if err != nil {
			return err
		}
		org.Updated = o.now()
		after, err := json.Marshal(org)
		if err != nil {
			return err
		}
		out = org
		return o.commit(ctx, tx, func(w *batch) {
			w.do("SET", key, after)
			if extra != nil {
				extra(w)
			}
		}, []audit.Event{{Type: typ, Actor: actor, Org: id, Reason: reason, Before: raw(before), After: after, Detail: detail}},
			invalOrg(id))
	}, append([]string{key}, extraWatch...)...)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func checkOrg(org *Org) error {
	var errs []error
	if !syntax.OrgID(org.ID) {
		errs = append(errs, fmt.Errorf("id %q: want [a-z0-9-]{1,63}", org.ID))
	}
	if org.Status != OrgActive && org.Status != OrgSuspended && org.Status != OrgEnded {
		errs = append(errs, fmt.Errorf("status %q: want active, suspended or ended", org.Status))
	}
	if org.MergedInto != "" && (!syntax.OrgID(org.MergedInto) || org.MergedInto == org.ID) {
		errs = append(errs, fmt.Errorf("merged_into %q: want another org id", org.MergedInto))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("org %s: %w: %w", org.ID, ErrInvalid, errors.Join(errs...))
}
