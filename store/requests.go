package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Access requests (README, "Governance"): someone asks for a role, a purpose
// or a membership in an organisation, with a reason and a duration; approvers approve or deny;
// once the approvals the policy requires are in, the request becomes a time-boxed grant that
// carries its id. The store keeps the records and applies each step in one transaction with
// its audit event; who may approve, and whether the grant meets the policy, is for package
// authz to decide before.

// Request states. A request is pending until decided; approved means its grant was written
// (whether that grant has ended is a matter of its GrantedUntil and the clock).
const (
	RequestPending   = "pending"
	RequestApproved  = "approved"
	RequestDenied    = "denied"
	RequestCancelled = "cancelled"
	RequestLapsed    = "lapsed"
)

// Request is one access request.
type Request struct {
	ID  string `json:"id"`
	Org string `json:"org"`
	// For is the person (user key) the access is for; Requester who asked (the same person,
	// or an administrator asking on their behalf).
	For       string `json:"for"`
	Requester string `json:"requester"`
	// What is asked: Role or Purpose in an existing membership, or a new membership of Kind
	// (with Role, when given).
	Kind    string `json:"kind,omitempty"`
	Role    string `json:"role,omitempty"`
	Purpose string `json:"purpose,omitempty"`
	// Roles are further roles asked with a new membership (Kind): a merger asks the
	// surviving organisation for each absorbed membership with all its standing roles.
	Roles []string `json:"roles,omitempty"`
	// Machine, when set, asks for a new machine identity of kind service that For sponsors
	// (with Role, when given): the approval creates it.
	Machine *RequestedMachine `json:"machine,omitempty"`
	// Duration is how long the grant lasts from its approval.
	Duration time.Duration `json:"duration"`
	Reason   string        `json:"reason"`
	Ticket   string        `json:"ticket,omitempty"`

	State     string     `json:"state"`
	Approvals []Approval `json:"approvals,omitempty"`
	Created   time.Time  `json:"created"`
	// Lapses is when a pending request stops waiting for approvals.
	Lapses time.Time `json:"lapses"`
	// Decided, DecidedBy and DecisionReason record what ended the pending state.
	Decided        time.Time `json:"decided,omitzero"`
	DecidedBy      string    `json:"decided_by,omitempty"`
	DecisionReason string    `json:"decision_reason,omitempty"`
	// GrantedUntil is the end of the grant an approval wrote.
	GrantedUntil time.Time `json:"granted_until,omitzero"`
}

// RequestedMachine is the machine identity a request asks for.
type RequestedMachine struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// subject is the user key of the membership r grants: the machine's for a machine request,
// else the person's.
func (r *Request) subject() string {
	if r.Machine != nil {
		return MachineUser(r.Org, r.Machine.ID)
	}
	return r.For
}

// Approval is one approver's approval of a request.
type Approval struct {
	By string `json:"by"`
	// Via is the credential the approver used (as audit.Event.Via).
	Via string `json:"via,omitempty"`
	// Rule is the approver rule of the policy that made By an approver (org_admin, operator,
	// org_admin_of:ORG).
	Rule string    `json:"rule"`
	At   time.Time `json:"at"`
}

// Pending reports whether r still waits for approvals at now.
func (r *Request) Pending(now time.Time) bool {
	return r.State == RequestPending && now.Before(r.Lapses)
}

// newRequestID returns a random request id: "req_" and 16 base32 characters (80 bits).
func newRequestID() string { return newID("req_") }

// newID is a record id: prefix and 80 random bits in lower-case base32 (16 characters).
func newID(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// validRequestID accepts what newRequestID makes.
func validRequestID(id string) bool {
	rest, ok := strings.CutPrefix(id, "req_")
	if !ok || len(rest) != 16 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

func checkRequest(r *Request) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !syntax.OrgID(r.Org) {
		bad("org %q: want [a-z0-9-]{1,63}", r.Org)
	}
	if !validUser(r.For) || !validUser(r.Requester) {
		bad("for and requester: want user keys")
	}
	if r.Kind != "" && !validKind(r.Kind) {
		bad("kind %q: want employee, partner, reseller, support or service", r.Kind)
	}
	if r.Role != "" && !syntax.Name(r.Role) {
		bad("role %q: want [a-z0-9_-]{1,64}", r.Role)
	}
	for _, role := range r.Roles {
		if !syntax.Name(role) {
			bad("roles: %q: want [a-z0-9_-]{1,64}", role)
		}
	}
	if len(r.Roles) > 0 && r.Kind == "" {
		bad("roles: further roles are asked only with a new membership (kind)")
	}
	if r.Purpose != "" && !syntax.Name(r.Purpose) {
		bad("purpose %q: want [a-z0-9_-]{1,64}", r.Purpose)
	}
	if mc := r.Machine; mc != nil {
		switch {
		case r.Kind != KindService:
			bad("machine: a machine identity's membership is of kind service")
		case !syntax.Name(mc.ID):
			bad("machine.id %q: want [a-z0-9_-]{1,64}", mc.ID)
		case strings.TrimSpace(mc.Name) == "" || len(mc.Name) > 128 || !printable(mc.Name) || len(mc.Description) > 1024 || !printable(mc.Description):
			bad("machine: a name (printable, at most 128 bytes) and an optional description (at most 1024)")
		case r.Purpose != "":
			bad("machine: a machine is asked for with a role, not a purpose")
		}
	}
	if IsMachineUser(r.For) {
		bad("for: a machine identity gets no grant of its own; its sponsor asks")
	}
	if r.Kind == "" && r.Role == "" && r.Purpose == "" {
		bad("nothing requested: want a role, a purpose or a kind of membership")
	}
	if r.Role != "" && r.Purpose != "" {
		bad("a request asks for a role or a purpose, not both")
	}
	if r.Duration <= 0 {
		bad("duration: want a positive duration")
	}
	if strings.TrimSpace(r.Reason) == "" || len(r.Reason) > 1024 {
		bad("reason: required, at most 1024 bytes")
	}
	if len(r.Ticket) > 256 {
		bad("ticket: at most 256 bytes")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("request: %w: %w", ErrInvalid, errors.Join(errs...))
}

// CreateRequest stores r as a new pending request, lapsing after ttl, and returns it with its
// id and times. The organisation must exist (ErrNotFound).
func (o *Orgs) CreateRequest(ctx context.Context, r Request, ttl time.Duration, actor string) (*Request, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("create request: %w", err)
	}
	now := o.now()
	r.ID, r.State, r.Approvals, r.Created, r.Lapses = newRequestID(), RequestPending, nil, now, now.Add(ttl)
	r.Decided, r.DecidedBy, r.DecisionReason, r.GrantedUntil = time.Time{}, "", "", time.Time{}
	if err := checkRequest(&r); err != nil {
		return nil, fmt.Errorf("create request: %w", err)
	}
	orgKey := o.s.keys.org(r.Org)
	err := o.atomically(ctx, "create request "+r.Org, func(tx *redis.Tx) error {
		if n, err := tx.Exists(ctx, orgKey).Result(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("org %s: %w", r.Org, ErrNotFound)
		}
		return o.writeRequest(ctx, tx, &r, "", audit.RequestCreated, actor, r.Reason, nil)
	}, orgKey)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// writeRequest queues the write of r with its indexes and event on tx; and of m, when not
// nil, with its own event (typ of the membership) and invalidation.
func (o *Orgs) writeRequest(ctx context.Context, tx *redis.Tx, r *Request, before string, typ audit.Type, actor, reason string, m *grantWrite) error {
	after, err := json.Marshal(r)
	if err != nil {
		return err
	}
	events := []audit.Event{{Type: typ, Actor: actor, Org: r.Org, User: r.For, Reason: reason, Before: raw(before), After: after,
		Detail: map[string]string{"request": r.ID}}}
	var inval []string
	var mem []byte
	if m != nil {
		if mem, err = json.Marshal(m.m); err != nil {
			return err
		}
		events = append(events, audit.Event{Type: m.typ, Actor: actor, Org: m.m.Org, User: m.m.User, Reason: reason,
			Before: raw(m.before), After: mem, Detail: map[string]string{"request": r.ID}})
		inval = append(inval, invalMembership(m.m.Org, m.m.User))
	}
	score := float64(r.Created.UnixMilli())
	return o.commit(ctx, tx, func(w *batch) {
		w.do("SET", o.s.keys.request(r.Org, r.ID), after)
		w.do("ZADD", o.s.keys.orgRequests(r.Org), score, r.ID)
		w.do("ZADD", o.s.keys.userRequests(r.For), score, r.Org+"/"+r.ID)
		if m != nil {
			o.putMembership(w, m.m, mem)
		}
	}, events, inval...)
}

// grantWrite is the membership an approval writes with its request.
type grantWrite struct {
	m      *Membership
	before string
	typ    audit.Type
}

// Request returns the request id of org, or ErrNotFound.
func (s *Store) Request(ctx context.Context, org, id string) (*Request, error) {
	if !syntax.OrgID(org) || !validRequestID(id) {
		return nil, fmt.Errorf("request %s/%s: %w", org, id, ErrNotFound)
	}
	r, _, err := s.getRequest(ctx, s.rdb, org, id)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("request %s/%s: %w", org, id, ErrNotFound)
	}
	return r, nil
}

func (s *Store) getRequest(ctx context.Context, c redis.Cmdable, org, id string) (*Request, string, error) {
	v, err := c.Get(ctx, s.keys.request(org, id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, "", nil
	case err != nil:
		return nil, "", s.unavailable("load request", err)
	}
	var r Request
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return nil, "", fmt.Errorf("decode request %s/%s: %w", org, id, err)
	}
	return &r, v, nil
}

// Requests returns the requests of org, newest first, at most limit (0: 1000).
func (s *Store) Requests(ctx context.Context, org string, limit int) ([]Request, error) {
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("requests of %q: %w", org, ErrInvalid)
	}
	if limit <= 0 {
		limit = 1000
	}
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.keys.orgRequests(org), Start: 0, Stop: int64(limit - 1), Rev: true}).Result()
	if err != nil {
		return nil, s.unavailable("requests", err)
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.keys.request(org, id)
	}
	return s.loadRequests(ctx, keys)
}

// RequestsFor returns the requests for the person user in every organisation, newest first.
func (s *Store) RequestsFor(ctx context.Context, user string, limit int) ([]Request, error) {
	if !validUser(user) {
		return nil, fmt.Errorf("requests for %q: %w", user, ErrInvalid)
	}
	if limit <= 0 {
		limit = 1000
	}
	refs, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.keys.userRequests(user), Start: 0, Stop: int64(limit - 1), Rev: true}).Result()
	if err != nil {
		return nil, s.unavailable("requests for", err)
	}
	var keys []string
	for _, ref := range refs {
		if org, id, ok := strings.Cut(ref, "/"); ok && syntax.OrgID(org) && validRequestID(id) {
			keys = append(keys, s.keys.request(org, id))
		}
	}
	return s.loadRequests(ctx, keys)
}

func (s *Store) loadRequests(ctx context.Context, keys []string) ([]Request, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, s.unavailable("load requests", err)
	}
	out := make([]Request, 0, len(vals))
	for i, v := range vals {
		var r *Request
		if err := decodeValue(v, &r); err != nil {
			return nil, fmt.Errorf("request %s: %w", keys[i], err)
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// RequestStep is what DecideRequest applies: the request's new state, and, for an approval
// that completes it, the membership to write (nil: none).
type RequestStep struct {
	Type       audit.Type
	Membership *Membership
	// MembershipType is the membership's event type (membership.granted or .changed).
	MembershipType audit.Type
}

// MemberRef names a membership: an organisation and a person.
type MemberRef struct {
	Org  string `json:"org"`
	User string `json:"user"`
}

// DecideRequest applies edit to the request id of org and the current membership it grants or
// changes (the person's, or for a machine request the machine's; nil when there is none), in one transaction with the audit events: edit
// changes the request in place and says what to write. edit may run more than once (a
// concurrent change retries), so it must only change its arguments; an error it returns is
// returned as it is and nothing is written.
//
// The organisation's record and the memberships in watch (and their organisations) are
// watched before edit runs: what edit reads of them (the approver's own authority, the
// organisation's status and policy) is still true when the decision is written, or edit runs
// again. Read them after edit starts, not before.
func (o *Orgs) DecideRequest(ctx context.Context, org, id string, edit func(r *Request, m *Membership) (RequestStep, error), actor, reason string, watch ...MemberRef) (*Request, error) {
	op := "decide request " + org
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(org) || !validRequestID(id) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	reqKey := o.s.keys.request(org, id)
	var out *Request
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		r, before, err := o.s.getRequest(ctx, tx, org, id)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("request %s: %w", id, ErrNotFound)
		}
		// The membership the request grants or changes: the person's, or for a machine
		// request the machine's (which must not exist yet).
		subject := r.subject()
		keys := []string{o.s.keys.membership(org, subject), o.s.keys.org(org)}
		for _, ref := range watch {
			if !syntax.OrgID(ref.Org) || !validUser(ref.User) {
				return fmt.Errorf("watch %q in %q: %w", ref.User, ref.Org, ErrInvalid)
			}
			keys = append(keys, o.s.keys.membership(ref.Org, ref.User), o.s.keys.org(ref.Org))
		}
		if err := tx.Watch(ctx, keys...).Err(); err != nil {
			return err
		}
		stored, mBefore, err := o.s.getMembership(ctx, tx, org, subject)
		if err != nil {
			return err
		}
		m := stored
		if m != nil {
			m = cloneMembership(stored) // edit's to change
		}
		step, err := edit(r, m)
		if err != nil {
			return &editError{err}
		}
		r.Org, r.ID = org, id
		var gw *grantWrite
		if step.Membership != nil {
			nm := step.Membership
			if r.Machine != nil && stored != nil {
				return fmt.Errorf("machine %s/%s exists already: %w", org, r.Machine.ID, ErrExists)
			}
			nm.Org, nm.User, nm.Updated = org, subject, o.now()
			if m == nil || m.Created.IsZero() {
				nm.Created = nm.Updated
			}
			normaliseMembership(nm, actor)
			carryCut(stored, nm, nm.Updated)
			if err := checkMembership(nm); err != nil {
				return err
			}
			gw = &grantWrite{m: nm, before: mBefore, typ: step.MembershipType}
		}
		out = r
		return o.writeRequest(ctx, tx, r, before, step.Type, actor, reason, gw)
	}, reqKey)
	if err != nil {
		return nil, err
	}
	return out, nil
}
