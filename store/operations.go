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

// Business events as operations (README, "Governance"). A contract renewed or ended, a merger,
// a role change, an offboarding or a lapsed domain is one command, not a series of edits: Apply
// reads everything the event touches, works out every change (the plan), and writes them all
// in one transaction with one parent audit event and a child event per change, all carrying
// the operation's id. A dry run builds the same plan from the same code and writes nothing,
// so it lists exactly what the real run would change, as long as nothing else changes in
// between (the real run rebuilds the plan under WATCH, and retries when a record it read
// changes before it commits).

// Business events (BusinessEvent.Event).
const (
	// EventContractRenewed moves the contract end to Until; memberships bound to the contract
	// (ending when it ended) follow, and partner and reseller memberships are due for review
	// within RenewalReview. An organisation ended by its contract becomes active again.
	EventContractRenewed = "contract_renewed"
	// EventContractEnded ends the organisation now: every membership stops granting (the
	// records stay), pending requests lapse and invitations are withdrawn.
	EventContractEnded = "contract_ended"
	// EventMergedInto ends the organisation as absorbed by Into: its memberships are not
	// copied, each live one becomes a pending request in Into (for Into's approvers; support
	// and service memberships are not carried over); its
	// domains lapse and are added to Into as pending, to be verified there; its pending
	// requests lapse and its invitations are withdrawn.
	EventMergedInto = "merged_into"
	// EventRoleChanged sets the person's standing roles in Org to Roles; time-boxed role
	// grants end, and so do step-up elevations for the organisation (ElevationsAfter).
	EventRoleChanged = "role_changed"
	// EventOffboarded ends everything the person holds: every membership is revoked, pending
	// requests for them cancelled, invitations to their addresses withdrawn and their admin
	// API tokens revoked. Ending their sessions is the caller's (package session).
	EventOffboarded = "offboarded"
	// EventDomainLapsed marks Domain lapsed for Org: members whose address is in it stop
	// getting access on routes that need a verified domain, and recovery through it stops.
	EventDomainLapsed = "domain_lapsed"
	// EventSupportMoved moves Org's support from the partner organisation From to To: Org's
	// delegations to From end; the partner, reseller and support memberships in Org of From's
	// people (everyone with a membership record in From, current or past) are revoked and
	// their pending requests in Org cancelled; each of People (To's live members) gets a
	// pending request in Org, for Kind (default partner) with Roles (default: the standing
	// roles the revoked memberships held), for Org's approvers to approve.
	EventSupportMoved = "support_moved"
)

// RenewalReview is how soon a partner or reseller membership is due for review after its
// organisation's contract is renewed: the renewal is the moment to check who still works on
// it.
const RenewalReview = 30 * 24 * time.Hour

// BusinessEvent is one business event, as Apply takes it. Which fields an event needs is said
// at its constant.
type BusinessEvent struct {
	Event string `json:"event"`
	// Org is the organisation concerned (every event but offboarded).
	Org string `json:"org,omitempty"`
	// User is the person concerned (role_changed, offboarded).
	User string `json:"user,omitempty"`
	// Until is the contract's new end (contract_renewed).
	Until time.Time `json:"until,omitzero"`
	// Into is the surviving organisation (merged_into).
	Into string `json:"into,omitempty"`
	// Roles are the person's new standing roles (role_changed).
	Roles []string `json:"roles,omitempty"`
	// Domain is the domain that lapsed (domain_lapsed).
	Domain string `json:"domain,omitempty"`
	// Emails are further addresses of the person whose invitations are withdrawn
	// (offboarded), besides those their memberships record.
	Emails []string `json:"emails,omitempty"`
	// From and To are the partner organisations support moves between, People the persons
	// of To who take it over, and Kind the kind of membership they are asked for
	// (support_moved).
	From   string   `json:"from,omitempty"`
	To     string   `json:"to,omitempty"`
	People []string `json:"people,omitempty"`
	Kind   string   `json:"kind,omitempty"`
	// RequestTTL is how long the requests a merger creates wait for approval (the API and the
	// CLI pass lifecycle.request_ttl); 0: 14 days.
	RequestTTL time.Duration `json:"-"`
	// Policy, when set, shapes and checks every membership and request the event writes, in
	// the transaction that writes them (package admin passes the lifecycle policy).
	Policy EventPolicy `json:"-"`
}

// EventPolicy is what a business event asks of the lifecycle policy.
type EventPolicy interface {
	// Membership may adjust after, what the event writes in place of before, in org at now
	// (cap an end the policy does not allow, say), and returns an error to refuse the whole
	// event.
	Membership(before, after *Membership, org *Org, now time.Time) error
	// Request may adjust r, the request a merger creates in org for the absorbed membership
	// m, and returns an error to refuse the whole event.
	Request(r *Request, m *Membership, org *Org, now time.Time) error
}

// Change is one record a business event changes: one child audit event.
type Change struct {
	Type audit.Type `json:"type"`
	Org  string     `json:"org,omitempty"`
	User string     `json:"user,omitempty"`
	// Object names the record within the organisation when Org and User do not: a request
	// id, an invited address, a token id.
	Object string `json:"object,omitempty"`
	// What says what changes, in words.
	What string `json:"what"`
	// ID is the id a record created by the change received (a merger's requests); a dry run
	// cannot know it.
	ID string `json:"id,omitempty"`
}

// Outcome is what a business event did, or in a dry run would do.
type Outcome struct {
	// Operation is the id every event of the operation carries (audit.Event.Operation); a
	// dry run's is only for reference.
	Operation string   `json:"operation"`
	Event     string   `json:"event"`
	DryRun    bool     `json:"dry_run"`
	Changes   []Change `json:"changes"`
	// Ends lists the live memberships that stop granting access without their records
	// changing: those of an organisation the event makes inactive, or of the people at a
	// lapsed domain (as far as their memberships record their address).
	Ends []MemberRef `json:"ends,omitempty"`
	// Skipped lists what the event leaves alone, and why.
	Skipped []Change `json:"skipped,omitempty"`
}

// Apply applies the business event ev, or with dryRun only says what it would change. reason
// is required: it goes into every event. Errors: ErrNotFound (an organisation, person or
// domain), ErrInvalid (a malformed event, or one that makes no sense: ending an ended
// contract, merging into an inactive organisation), ErrConflict (concurrent changes), and
// whatever ev.Policy returns, as it is.
func (o *Orgs) Apply(ctx context.Context, ev BusinessEvent, actor, reason string, dryRun bool) (*Outcome, error) {
	op := "business event " + ev.Event
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if strings.TrimSpace(reason) == "" || len(reason) > 1024 {
		return nil, fmt.Errorf("%s: reason: required, at most 1024 bytes: %w", op, ErrInvalid)
	}
	if err := ev.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	id := newOperationID()
	var out *Outcome
	run := func(c redis.Cmdable, tx *redis.Tx) error {
		p := &plan{o: o, ctx: ctx, c: c, tx: tx, ev: &ev, now: o.now(), actor: actor, reason: reason, op: id}
		if err := p.build(); err != nil {
			return err
		}
		out = &Outcome{Operation: id, Event: ev.Event, DryRun: tx == nil, Changes: p.changes, Ends: p.ends, Skipped: p.skipped}
		if out.Changes == nil {
			out.Changes = []Change{}
		}
		if tx == nil {
			return nil
		}
		return o.commit(ctx, tx, func(w *batch) {
			for _, f := range p.writes {
				f(w)
			}
		}, append([]audit.Event{p.parent()}, p.events...), p.inval...)
	}
	var err error
	if dryRun {
		err = o.classify(op, run(o.s.rdb, nil))
	} else {
		err = o.atomically(ctx, op, func(tx *redis.Tx) error { return run(tx, tx) })
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// check validates the event's fields before anything is read.
func (ev *BusinessEvent) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
	}
	needOrg := func() error {
		if !syntax.OrgID(ev.Org) {
			return bad("org %q: want an organisation id", ev.Org)
		}
		return nil
	}
	needUser := func() error {
		if !validUser(ev.User) {
			return bad("user %q: want a user key (issuer|subject)", ev.User)
		}
		return nil
	}
	switch ev.Event {
	case EventContractRenewed:
		if ev.Until.IsZero() {
			return bad("until: the contract's new end is required")
		}
		ev.Until = ev.Until.UTC()
		return needOrg()
	case EventContractEnded:
		return needOrg()
	case EventMergedInto:
		if !syntax.OrgID(ev.Into) || ev.Into == ev.Org {
			return bad("into %q: want the surviving organisation, another than %q", ev.Into, ev.Org)
		}
		return needOrg()
	case EventRoleChanged:
		for _, r := range ev.Roles {
			if !syntax.Name(r) {
				return bad("roles: %q: want [a-z0-9_-]{1,64}", r)
			}
		}
		ev.Roles = slices.Compact(slices.Sorted(slices.Values(ev.Roles)))
		if err := needOrg(); err != nil {
			return err
		}
		if IsMachineUser(ev.User) {
			return bad("user %q: a machine identity's roles are its sponsor's to change, through /orgs/{org}/machines", ev.User)
		}
		return needUser()
	case EventOffboarded:
		for i, e := range ev.Emails {
			c, err := canonicalEmail(e)
			if err != nil {
				return bad("emails[%d]: %v", i, err)
			}
			ev.Emails[i] = c
		}
		return needUser()
	case EventDomainLapsed:
		d, err := canonicalDomain(ev.Domain)
		if err != nil {
			return bad("domain: %v", err)
		}
		ev.Domain = d
		return needOrg()
	case EventSupportMoved:
		switch {
		case !syntax.OrgID(ev.From) || !syntax.OrgID(ev.To) || ev.From == ev.To:
			return bad("from %q, to %q: want two partner organisations", ev.From, ev.To)
		case ev.From == ev.Org || ev.To == ev.Org:
			return bad("from and to are the partners, not the customer organisation %q itself", ev.Org)
		}
		if ev.Kind == "" {
			ev.Kind = KindPartner
		}
		if ev.Kind != KindPartner && ev.Kind != KindReseller && ev.Kind != KindSupport {
			return bad("kind %q: want partner, reseller or support", ev.Kind)
		}
		for _, u := range ev.People {
			if !validUser(u) {
				return bad("people: %q: want a user key (issuer|subject)", u)
			}
		}
		ev.People = slices.Compact(slices.Sorted(slices.Values(ev.People)))
		for _, r := range ev.Roles {
			if !syntax.Name(r) {
				return bad("roles: %q: want [a-z0-9_-]{1,64}", r)
			}
		}
		ev.Roles = slices.Compact(slices.Sorted(slices.Values(ev.Roles)))
		return needOrg()
	}
	return bad("event %q: want one of %s", ev.Event, strings.Join(BusinessEvents(), ", "))
}

// BusinessEvents lists the events Apply knows.
func BusinessEvents() []string {
	return []string{EventContractRenewed, EventContractEnded, EventMergedInto, EventRoleChanged, EventOffboarded, EventDomainLapsed, EventSupportMoved}
}

func newOperationID() string { return newID("op_") }

// plan is one run of a business event: what it read (under WATCH in a real run) and what it
// will write.
type plan struct {
	o      *Orgs
	ctx    context.Context
	c      redis.Cmdable
	tx     *redis.Tx // nil in a dry run
	ev     *BusinessEvent
	now    time.Time
	actor  string
	reason string
	op     string

	changes []Change
	events  []audit.Event
	writes  []func(*batch)
	inval   []string
	ends    []MemberRef
	skipped []Change
}

func (p *plan) build() error {
	switch p.ev.Event {
	case EventContractRenewed:
		return p.contractRenewed()
	case EventContractEnded:
		return p.contractEnded()
	case EventMergedInto:
		return p.mergedInto()
	case EventRoleChanged:
		return p.roleChanged()
	case EventOffboarded:
		return p.offboarded()
	case EventDomainLapsed:
		return p.domainLapsed()
	case EventSupportMoved:
		return p.supportMoved()
	}
	return fmt.Errorf("event %q: %w", p.ev.Event, ErrInvalid)
}

// parent is the operation's own event, written before its children.
func (p *plan) parent() audit.Event {
	typ := map[string]audit.Type{
		EventContractRenewed: audit.BusinessContractRenewed, EventContractEnded: audit.BusinessContractEnded,
		EventMergedInto: audit.BusinessMergedInto, EventRoleChanged: audit.BusinessRoleChanged,
		EventOffboarded: audit.PersonOffboarded, EventDomainLapsed: audit.BusinessDomainLapsed,
		EventSupportMoved: audit.BusinessSupportMoved,
	}[p.ev.Event]
	detail := map[string]string{"event": p.ev.Event, "changes": strconv.Itoa(len(p.changes))}
	switch {
	case !p.ev.Until.IsZero():
		detail["until"] = p.ev.Until.Format(time.RFC3339)
	case p.ev.Into != "":
		detail["into"] = p.ev.Into
	case p.ev.Domain != "":
		detail["domain"] = p.ev.Domain
	case p.ev.Event == EventRoleChanged:
		detail["roles"] = strings.Join(p.ev.Roles, ",")
	case p.ev.Event == EventSupportMoved:
		detail["from"], detail["to"] = p.ev.From, p.ev.To
	}
	if len(p.ends) > 0 {
		detail["ends"] = strconv.Itoa(len(p.ends))
	}
	if p.ev.Event == EventOffboarded {
		// What person.offboarded has always said: the orgs and tokens it ended.
		var orgs, tokens []string
		for _, c := range p.changes {
			switch c.Type {
			case audit.MembershipRevoked:
				orgs = append(orgs, c.Org)
			case audit.TokenRevoked:
				tokens = append(tokens, c.Object)
			}
		}
		detail["orgs"] = strings.Join(orgs, ",")
		if len(tokens) > 0 {
			detail["tokens"] = strings.Join(tokens, ",")
		}
	}
	return audit.Event{Type: typ, Actor: p.actor, Org: p.ev.Org, User: p.ev.User, Reason: p.reason, Detail: detail, Operation: p.op}
}

// watch adds keys to the transaction's WATCH before they are read (nothing in a dry run).
func (p *plan) watch(keys ...string) error {
	if p.tx == nil || len(keys) == 0 {
		return nil
	}
	return p.tx.Watch(p.ctx, keys...).Err()
}

// org reads an organisation; ErrNotFound when there is none.
func (p *plan) org(id string) (*Org, string, error) {
	if err := p.watch(p.o.s.keys.org(id)); err != nil {
		return nil, "", err
	}
	org, before, err := p.o.s.getOrg(p.ctx, p.c, id)
	if err != nil {
		return nil, "", fmt.Errorf("org %s: %w", id, err)
	}
	return org, before, nil
}

// member is a membership as read, with its stored form.
type member struct {
	m      *Membership
	before string
}

func (p *plan) membership(org, user string) (*member, error) {
	if err := p.watch(p.o.s.keys.membership(org, user)); err != nil {
		return nil, err
	}
	m, before, err := p.o.s.getMembership(p.ctx, p.c, org, user)
	if err != nil || m == nil {
		return nil, err
	}
	return &member{m, before}, nil
}

// members reads every membership record of org, sorted by person.
func (p *plan) members(org string) ([]member, error) {
	if err := p.watch(p.o.s.keys.orgMembers(org)); err != nil {
		return nil, err
	}
	users, err := p.c.SMembers(p.ctx, p.o.s.keys.orgMembers(org)).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(users)
	var out []member
	for _, u := range users {
		m, err := p.membership(org, u)
		if err != nil {
			return nil, err
		}
		if m != nil {
			out = append(out, *m)
		}
	}
	return out, nil
}

// stored is a request as read, with its stored form.
type stored struct {
	r      *Request
	before string
}

// pendingRequests reads the requests of index key (an organisation's or a person's; refs
// are ids, or org/id for a person's) that still wait for approval.
func (p *plan) pendingRequests(index string, ref func(string) (org, id string, ok bool)) ([]stored, error) {
	if err := p.watch(index); err != nil {
		return nil, err
	}
	refs, err := p.c.ZRange(p.ctx, index, 0, -1).Result()
	if err != nil {
		return nil, err
	}
	var out []stored
	for _, s := range refs {
		org, id, ok := ref(s)
		if !ok {
			continue
		}
		if err := p.watch(p.o.s.keys.request(org, id)); err != nil {
			return nil, err
		}
		r, before, err := p.o.s.getRequest(p.ctx, p.c, org, id)
		if err != nil {
			return nil, err
		}
		if r != nil && r.Pending(p.now) {
			out = append(out, stored{r, before})
		}
	}
	return out, nil
}

// invitation is an invitation as read, with its stored form.
type invitation struct {
	inv *Invitation
	raw string
}

// orgInvitations reads the invitations to org, sorted by address.
func (p *plan) orgInvitations(org string) ([]invitation, error) {
	if err := p.watch(p.o.s.keys.orgInvitations(org)); err != nil {
		return nil, err
	}
	emails, err := p.c.SMembers(p.ctx, p.o.s.keys.orgInvitations(org)).Result()
	if err != nil {
		return nil, err
	}
	slices.Sort(emails)
	var out []invitation
	for _, e := range emails {
		key := p.o.s.keys.invitations(e)
		if err := p.watch(key); err != nil {
			return nil, err
		}
		v, err := p.c.HGet(p.ctx, key, org).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil:
			return nil, err
		}
		var inv Invitation
		if err := json.Unmarshal([]byte(v), &inv); err != nil {
			return nil, fmt.Errorf("decode invitation of %s to %s: %w", e, org, err)
		}
		out = append(out, invitation{&inv, v})
	}
	return out, nil
}

// invitationsOf reads the invitations to the address email, in every organisation.
func (p *plan) invitationsOf(email string) ([]invitation, error) {
	key := p.o.s.keys.invitations(email)
	if err := p.watch(key); err != nil {
		return nil, err
	}
	vals, err := p.c.HGetAll(p.ctx, key).Result()
	if err != nil {
		return nil, err
	}
	orgs := make([]string, 0, len(vals))
	for org := range vals {
		orgs = append(orgs, org)
	}
	slices.Sort(orgs)
	var out []invitation
	for _, org := range orgs {
		var inv Invitation
		if err := json.Unmarshal([]byte(vals[org]), &inv); err != nil {
			return nil, fmt.Errorf("decode invitation of %s to %s: %w", email, org, err)
		}
		out = append(out, invitation{&inv, vals[org]})
	}
	return out, nil
}

// change records one change: its summary, its child event and its invalidation.
func (p *plan) change(c Change, e audit.Event, inval string) {
	p.changes = append(p.changes, c)
	e.Actor, e.Reason, e.Operation = p.actor, p.reason, p.op
	p.events = append(p.events, e)
	if inval != "" && !slices.Contains(p.inval, inval) {
		p.inval = append(p.inval, inval)
	}
}

// putOrg writes after in place of the organisation's record before.
func (p *plan) putOrg(before string, after *Org, typ audit.Type, what string, detail map[string]string) error {
	after.Updated = p.now
	b, err := json.Marshal(after)
	if err != nil {
		return err
	}
	key := p.o.s.keys.org(after.ID)
	p.writes = append(p.writes, func(w *batch) { w.do("SET", key, b) })
	p.change(Change{Type: typ, Org: after.ID, What: what},
		audit.Event{Type: typ, Org: after.ID, Before: raw(before), After: b, Detail: detail}, invalOrg(after.ID))
	return nil
}

// putMembership writes m in place of the record before, after ev.Policy's say.
func (p *plan) putMembership(before *member, m *Membership, org *Org, typ audit.Type, what string) error {
	if p.ev.Policy != nil {
		if err := p.ev.Policy.Membership(before.m, m, org, p.now); err != nil {
			return &editError{err}
		}
	}
	m.Updated = p.now
	normaliseMembership(m, p.actor)
	carryCut(before.m, m, p.now)
	settleKeys(m, p.now, p.actor)
	if err := checkMembership(m); err != nil {
		return err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p.writes = append(p.writes, func(w *batch) { p.o.putMembership(w, m, b) })
	p.change(Change{Type: typ, Org: m.Org, User: m.User, What: what},
		audit.Event{Type: typ, Org: m.Org, User: m.User, Before: raw(before.before), After: b}, invalMembership(m.Org, m.User))
	if m.Status == MembershipRevoked && before.m.Status != MembershipRevoked && !IsMachineUser(m.User) {
		// What the person sponsors there ends with their membership, in the same step.
		return p.suspendSponsored(m.Org, m.User)
	}
	return nil
}

// decideRequest ends a pending request (lapsed or cancelled) with why.
func (p *plan) decideRequest(s stored, state string, typ audit.Type, why string) error {
	r := *s.r
	r.State, r.Decided, r.DecidedBy, r.DecisionReason = state, p.now, p.actor, why
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key := p.o.s.keys.request(r.Org, r.ID)
	p.writes = append(p.writes, func(w *batch) { w.do("SET", key, b) })
	p.change(Change{Type: typ, Org: r.Org, User: r.For, Object: r.ID, What: "request " + state + ": " + why},
		audit.Event{Type: typ, Org: r.Org, User: r.For, Before: raw(s.before), After: b, Detail: map[string]string{"request": r.ID}}, "")
	return nil
}

// withdraw takes back an invitation.
func (p *plan) withdraw(inv invitation, why string) {
	org, email := inv.inv.Org, inv.inv.Email
	invKey, idx := p.o.s.keys.invitations(email), p.o.s.keys.orgInvitations(org)
	p.writes = append(p.writes, func(w *batch) {
		w.do("HDEL", invKey, org)
		w.do("SREM", idx, email)
	})
	p.change(Change{Type: audit.InvitationWithdrawn, Org: org, Object: email, What: "invitation withdrawn: " + why},
		audit.Event{Type: audit.InvitationWithdrawn, Org: org, Before: json.RawMessage(inv.raw), Detail: map[string]string{"email": email}}, "")
}

// live reports whether m still grants anything at now (as far as its own record says).
func live(m *Membership, now time.Time) bool {
	return m.Status == MembershipActive && (m.ExpiresAt.IsZero() || now.Before(m.ExpiresAt))
}

// orgActive reports whether an organisation can take part in a business event as a live
// party: active, within its contract, not merged.
func orgActive(org *Org, now time.Time) bool {
	return org.Status == OrgActive && org.MergedInto == "" && (org.ContractEnd.IsZero() || now.Before(org.ContractEnd))
}

// endOrg is what an organisation becoming inactive does beyond its record: its pending
// requests lapse, its invitations are withdrawn, and its live memberships are listed as
// ending.
func (p *plan) endOrg(org, why string) error {
	reqs, err := p.pendingRequests(p.o.s.keys.orgRequests(org), func(id string) (string, string, bool) { return org, id, validRequestID(id) })
	if err != nil {
		return err
	}
	for _, s := range reqs {
		if err := p.decideRequest(s, RequestLapsed, audit.RequestLapsed, why); err != nil {
			return err
		}
	}
	invs, err := p.orgInvitations(org)
	if err != nil {
		return err
	}
	for _, inv := range invs {
		p.withdraw(inv, why)
	}
	ms, err := p.members(org)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if live(m.m, p.now) {
			p.ends = append(p.ends, MemberRef{Org: org, User: m.m.User})
		}
	}
	return nil
}

func (p *plan) contractRenewed() error {
	ev := p.ev
	org, before, err := p.org(ev.Org)
	if err != nil {
		return err
	}
	switch {
	case org.MergedInto != "":
		return fmt.Errorf("org %s was merged into %s: its contract cannot be renewed: %w", org.ID, org.MergedInto, ErrInvalid)
	case !ev.Until.After(p.now):
		return fmt.Errorf("until %s: the new contract end must be in the future: %w", ev.Until.Format(time.RFC3339), ErrInvalid)
	}
	old := org.ContractEnd
	after := *org
	after.ContractEnd = ev.Until
	what := "contract end " + showTime(old) + " → " + showTime(ev.Until)
	if after.Status == OrgEnded && !old.IsZero() && !p.now.Before(old) {
		// Ended by its contract: the renewal revives it. An organisation ended otherwise
		// (by hand, for cause) stays ended; activating it is a decision of its own.
		after.Status = OrgActive
		what += "; status ended → active"
	}
	if err := p.putOrg(before, &after, audit.OrgContractChanged, what, map[string]string{"until": ev.Until.Format(time.RFC3339)}); err != nil {
		return err
	}
	ms, err := p.members(org.ID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.m.Status == MembershipRevoked {
			continue
		}
		nm := cloneMembership(m.m)
		var whats []string
		if !old.IsZero() && nm.ExpiresAt.Equal(old) {
			nm.ExpiresAt = ev.Until
			whats = append(whats, "end follows the contract")
		}
		if nm.Kind == KindPartner || nm.Kind == KindReseller {
			if due := p.now.Add(RenewalReview); nm.ReviewBy.IsZero() || nm.ReviewBy.After(due) {
				nm.ReviewBy = due
				whats = append(whats, "review due within 30 days")
			}
		}
		if len(whats) == 0 {
			continue
		}
		if err := p.putMembership(&m, nm, &after, audit.MembershipChanged, strings.Join(whats, "; ")); err != nil {
			return err
		}
	}
	return nil
}

func (p *plan) contractEnded() error {
	org, before, err := p.org(p.ev.Org)
	if err != nil {
		return err
	}
	if org.Status == OrgEnded {
		return fmt.Errorf("org %s has ended already: %w", org.ID, ErrInvalid)
	}
	after := *org
	after.Status = OrgEnded
	if after.ContractEnd.IsZero() || after.ContractEnd.After(p.now) {
		after.ContractEnd = p.now
	}
	if err := p.putOrg(before, &after, audit.OrgStatusChanged, "status "+org.Status+" → ended; the contract ends now",
		map[string]string{"status": OrgEnded}); err != nil {
		return err
	}
	return p.endOrg(org.ID, "the contract of "+org.ID+" ended")
}

func (p *plan) mergedInto() error {
	ev := p.ev
	a, aBefore, err := p.org(ev.Org)
	if err != nil {
		return err
	}
	x, xBefore, err := p.org(ev.Into)
	if err != nil {
		return err
	}
	switch {
	case a.MergedInto != "":
		return fmt.Errorf("org %s was merged into %s already: %w", a.ID, a.MergedInto, ErrInvalid)
	case !orgActive(x, p.now):
		return fmt.Errorf("org %s is not active: an organisation is merged into a live one: %w", x.ID, ErrInvalid)
	}
	aAfter, xAfter := *a, *x
	aAfter.Status, aAfter.MergedInto = OrgEnded, x.ID
	aAfter.Domains, xAfter.Domains = slices.Clone(a.Domains), slices.Clone(x.Domains)
	var lapsed, added []string
	for i := range aAfter.Domains {
		d := &aAfter.Domains[i]
		if d.Status != DomainLapsed {
			d.Status, d.Since = DomainLapsed, p.now
			lapsed = append(lapsed, d.Name)
		}
		if !slices.ContainsFunc(xAfter.Domains, func(y Domain) bool { return y.Name == d.Name }) {
			xAfter.Domains = append(xAfter.Domains, Domain{Name: d.Name, Status: DomainPending, Since: p.now})
			added = append(added, d.Name)
		}
	}
	what := "status " + a.Status + " → ended, merged into " + x.ID
	if len(lapsed) > 0 {
		what += "; domains lapsed: " + strings.Join(lapsed, ", ")
	}
	if err := p.putOrg(aBefore, &aAfter, audit.OrgMerged, what, map[string]string{"into": x.ID, "domains": strings.Join(lapsed, ",")}); err != nil {
		return err
	}
	if len(added) > 0 {
		if err := p.putOrg(xBefore, &xAfter, audit.DomainAdded, "domains added, pending verification: "+strings.Join(added, ", "),
			map[string]string{"domain": strings.Join(added, ","), "from": a.ID}); err != nil {
			return err
		}
	}

	ttl := ev.RequestTTL
	if ttl <= 0 {
		ttl = 14 * 24 * time.Hour
	}
	ms, err := p.members(a.ID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if !live(m.m, p.now) {
			continue
		}
		if m.m.Kind == KindSupport || m.m.Kind == KindService {
			// Support access is granted case by case, with a ticket; a machine's membership
			// belongs to its own identity record. Neither is carried into the survivor.
			p.skipped = append(p.skipped, Change{Type: audit.RequestCreated, Org: x.ID, User: m.m.User,
				What: m.m.Kind + " access is not carried over: it is asked for again in " + x.ID})
			continue
		}
		have, err := p.membership(x.ID, m.m.User)
		if err != nil {
			return err
		}
		if have != nil && have.m.Status != MembershipRevoked {
			p.skipped = append(p.skipped, Change{Type: audit.RequestCreated, Org: x.ID, User: m.m.User,
				What: "already has a membership in " + x.ID + ": nothing to request"})
			continue
		}
		if err := p.mergerRequest(m.m, &xAfter, ttl); err != nil {
			return err
		}
	}
	return p.endOrg(a.ID, a.ID+" was merged into "+x.ID)
}

// mergerRequest creates the pending request in the surviving organisation x for the absorbed
// membership m: the same kind and standing roles, for what was left of m (ev.Policy caps it).
func (p *plan) mergerRequest(m *Membership, x *Org, ttl time.Duration) error {
	return p.membershipRequest(m, x, ttl, "merger of "+m.Org+" into "+x.ID, " (was in "+m.Org+")")
}

// membershipRequest creates a pending request in x for a membership like m (its person, kind,
// standing roles and what is left of its time; ev.Policy caps it), giving why as its reason
// and noting was in the change.
func (p *plan) membershipRequest(m *Membership, x *Org, ttl time.Duration, why, was string) error {
	r := Request{Org: x.ID, For: m.User, Requester: p.actor, Kind: m.Kind, Roles: slices.Clone(m.Roles),
		Reason: why + ": " + p.reason, Ticket: "", Created: p.now}
	if !m.ExpiresAt.IsZero() {
		r.Duration = m.ExpiresAt.Sub(p.now)
	}
	if p.ev.Policy != nil {
		if err := p.ev.Policy.Request(&r, m, x, p.now); err != nil {
			return &editError{err}
		}
	}
	if r.Duration <= 0 {
		r.Duration = 365 * 24 * time.Hour
	}
	r.ID, r.State, r.Lapses = newRequestID(), RequestPending, p.now.Add(ttl)
	if len(r.Reason) > 1024 {
		r.Reason = r.Reason[:1024]
	}
	if err := checkRequest(&r); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key, score := p.o.s.keys.request(r.Org, r.ID), float64(r.Created.UnixMilli())
	orgIdx, userIdx := p.o.s.keys.orgRequests(r.Org), p.o.s.keys.userRequests(r.For)
	p.writes = append(p.writes, func(w *batch) {
		w.do("SET", key, b)
		w.do("ZADD", orgIdx, score, r.ID)
		w.do("ZADD", userIdx, score, r.Org+"/"+r.ID)
	})
	what := "membership requested: " + r.Kind
	if len(r.Roles) > 0 {
		what += " with roles " + strings.Join(r.Roles, ", ")
	}
	what += was
	id := ""
	if p.tx != nil {
		id = r.ID
	}
	p.change(Change{Type: audit.RequestCreated, Org: r.Org, User: r.For, What: what, ID: id},
		audit.Event{Type: audit.RequestCreated, Org: r.Org, User: r.For, After: b, Detail: map[string]string{"request": r.ID, "from": m.Org}}, "")
	return nil
}

func (p *plan) roleChanged() error {
	ev := p.ev
	org, _, err := p.org(ev.Org)
	if err != nil {
		return err
	}
	m, err := p.membership(ev.Org, ev.User)
	if err != nil {
		return err
	}
	if m == nil || m.m.Status == MembershipRevoked {
		return fmt.Errorf("membership of %s in %s: %w", ev.User, ev.Org, ErrNotFound)
	}
	nm := cloneMembership(m.m)
	nm.Roles = slices.Clone(ev.Roles)
	var ended []string
	for _, g := range nm.RoleGrants {
		if p.now.Before(g.ExpiresAt) {
			ended = append(ended, g.Role)
		}
	}
	nm.RoleGrants = nil
	nm.ElevationsAfter = p.now
	what := "roles " + showList(m.m.Roles) + " → " + showList(ev.Roles)
	if len(ended) > 0 {
		what += "; time-boxed roles ended: " + strings.Join(ended, ", ")
	}
	what += "; step-up elevations for " + ev.Org + " ended"
	return p.putMembership(m, nm, org, audit.MembershipChanged, what)
}

func (p *plan) offboarded() error {
	ev := p.ev
	user := ev.User
	idx := p.o.s.keys.userOrgs(user)
	if err := p.watch(idx); err != nil {
		return err
	}
	orgs, err := p.c.SMembers(p.ctx, idx).Result()
	if err != nil {
		return err
	}
	slices.Sort(orgs)
	emails := slices.Clone(ev.Emails)
	for _, id := range orgs {
		m, err := p.membership(id, user)
		if err != nil {
			return err
		}
		if m == nil {
			// An index entry without a record: drop it, quietly (nothing is revoked).
			p.writes = append(p.writes, func(w *batch) { w.do("SREM", idx, id) })
			continue
		}
		if m.m.Email != "" {
			emails = append(emails, m.m.Email)
		}
		if m.m.Status == MembershipRevoked {
			continue
		}
		org, _, err := p.org(id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		nm := cloneMembership(m.m)
		nm.Status = MembershipRevoked
		if err := p.putMembership(m, nm, org, audit.MembershipRevoked, "membership revoked"); err != nil {
			return err
		}
	}
	reqs, err := p.pendingRequests(p.o.s.keys.userRequests(user), func(ref string) (string, string, bool) {
		org, id, ok := strings.Cut(ref, "/")
		return org, id, ok && syntax.OrgID(org) && validRequestID(id)
	})
	if err != nil {
		return err
	}
	for _, s := range reqs {
		if err := p.decideRequest(s, RequestCancelled, audit.RequestCancelled, "the person was offboarded"); err != nil {
			return err
		}
	}
	slices.Sort(emails)
	for _, e := range slices.Compact(emails) {
		invs, err := p.invitationsOf(e)
		if err != nil {
			return err
		}
		for _, inv := range invs {
			p.withdraw(inv, "the person was offboarded")
		}
	}
	if err := p.revokeTokens(user); err != nil {
		return err
	}
	p.inval = append(p.inval, invalUser(user))
	return nil
}

// revokeTokens revokes the live admin API tokens user owns.
func (p *plan) revokeTokens(user string) error {
	idx := p.o.s.keys.tokens()
	if err := p.watch(idx); err != nil {
		return err
	}
	refs, err := p.c.ZRange(p.ctx, idx, 0, -1).Result()
	if err != nil {
		return err
	}
	for _, ref := range refs {
		_, h, _ := strings.Cut(ref, " ")
		key := p.o.s.keys.token(h)
		if err := p.watch(key); err != nil {
			return err
		}
		v, err := p.c.Get(p.ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return err
		}
		var t Token
		if err := json.Unmarshal([]byte(v), &t); err != nil {
			return fmt.Errorf("decode token: %w", err)
		}
		if t.Owner != user || !t.Live(p.now) {
			continue
		}
		t.Revoked = p.now
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		p.writes = append(p.writes, func(w *batch) { w.do("SET", key, b) })
		p.change(Change{Type: audit.TokenRevoked, Org: t.Org, User: user, Object: t.ID, What: "admin API token revoked"},
			audit.Event{Type: audit.TokenRevoked, Org: t.Org, User: user, Detail: map[string]string{"token": t.ID}}, "")
	}
	return nil
}

func (p *plan) domainLapsed() error {
	ev := p.ev
	org, before, err := p.org(ev.Org)
	if err != nil {
		return err
	}
	after := *org
	after.Domains = slices.Clone(org.Domains)
	i := slices.IndexFunc(after.Domains, func(d Domain) bool { return d.Name == ev.Domain })
	switch {
	case i < 0:
		return fmt.Errorf("domain %s of %s: %w", ev.Domain, org.ID, ErrNotFound)
	case after.Domains[i].Status == DomainLapsed:
		return fmt.Errorf("domain %s of %s has lapsed already: %w", ev.Domain, org.ID, ErrInvalid)
	}
	was := after.Domains[i].Status
	after.Domains[i].Status, after.Domains[i].Since = DomainLapsed, p.now
	if err := p.putOrg(before, &after, audit.DomainLapsed, "domain "+ev.Domain+" "+was+" → lapsed", map[string]string{"domain": ev.Domain}); err != nil {
		return err
	}
	ms, err := p.members(org.ID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if _, d, ok := strings.Cut(m.m.Email, "@"); ok && d == ev.Domain && live(m.m, p.now) {
			p.ends = append(p.ends, MemberRef{Org: org.ID, User: m.m.User})
		}
	}
	return nil
}

func cloneMembership(m *Membership) *Membership {
	cp := *m
	cp.Roles, cp.Grants, cp.RoleGrants = slices.Clone(m.Roles), slices.Clone(m.Grants), slices.Clone(m.RoleGrants)
	cp.Machine = cloneMachine(m.Machine)
	return &cp
}

func showTime(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return t.UTC().Format(time.RFC3339)
}

func showList(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

func (p *plan) supportMoved() error {
	ev := p.ev
	c, cBefore, err := p.org(ev.Org)
	if err != nil {
		return err
	}
	if _, _, err := p.org(ev.From); err != nil {
		return err
	}
	to, _, err := p.org(ev.To)
	if err != nil {
		return err
	}
	if !orgActive(to, p.now) {
		return fmt.Errorf("org %s is not active: support moves to a live partner: %w", to.ID, ErrInvalid)
	}

	// From's delegations end.
	cAfter := *c
	cAfter.Delegations = slices.Clone(c.Delegations)
	var ended []string
	for i := range cAfter.Delegations {
		d := &cAfter.Delegations[i]
		if d.To == ev.From && d.Ended.IsZero() && p.now.Before(d.ExpiresAt) {
			d.Ended, d.EndedBy = p.now, p.actor
			ended = append(ended, d.ID)
		}
	}
	if len(ended) > 0 {
		if err := p.putOrg(cBefore, &cAfter, audit.DelegationEnded, "delegation to "+ev.From+" ended: "+strings.Join(ended, ", "),
			map[string]string{"delegation": strings.Join(ended, ","), "to": ev.From}); err != nil {
			return err
		}
	}

	// From's people: their partner, reseller and support memberships in the customer end,
	// and so do their requests there.
	people, err := p.members(ev.From)
	if err != nil {
		return err
	}
	var roles []string
	for _, fm := range people {
		user := fm.m.User
		m, err := p.membership(c.ID, user)
		if err != nil {
			return err
		}
		if m != nil && m.m.Status != MembershipRevoked {
			switch m.m.Kind {
			case KindPartner, KindReseller, KindSupport:
				roles = append(roles, m.m.Roles...)
				nm := cloneMembership(m.m)
				nm.Status = MembershipRevoked
				if err := p.putMembership(m, nm, &cAfter, audit.MembershipRevoked, "membership revoked: support moved from "+ev.From+" to "+ev.To); err != nil {
					return err
				}
			default:
				p.skipped = append(p.skipped, Change{Type: audit.MembershipRevoked, Org: c.ID, User: user,
					What: m.m.Kind + " membership kept: only partner, reseller and support access moves with the support"})
			}
		}
		reqs, err := p.pendingRequests(p.o.s.keys.userRequests(user), func(ref string) (string, string, bool) {
			org, id, ok := strings.Cut(ref, "/")
			return org, id, ok && org == c.ID && validRequestID(id)
		})
		if err != nil {
			return err
		}
		for _, s := range reqs {
			if err := p.decideRequest(s, RequestCancelled, audit.RequestCancelled, "support moved from "+ev.From+" to "+ev.To); err != nil {
				return err
			}
		}
	}

	// To's people: each asked for, for the customer's approvers.
	if len(ev.Roles) > 0 {
		roles = ev.Roles
	}
	roles = slices.Compact(slices.Sorted(slices.Values(roles)))
	ttl := ev.RequestTTL
	if ttl <= 0 {
		ttl = 14 * 24 * time.Hour
	}
	for _, user := range ev.People {
		tm, err := p.membership(to.ID, user)
		if err != nil {
			return err
		}
		if tm == nil || !live(tm.m, p.now) {
			return fmt.Errorf("%s is not a live member of %s: support moves to %s's own people: %w", user, to.ID, to.ID, ErrInvalid)
		}
		have, err := p.membership(c.ID, user)
		if err != nil {
			return err
		}
		if have != nil && live(have.m, p.now) {
			p.skipped = append(p.skipped, Change{Type: audit.RequestCreated, Org: c.ID, User: user,
				What: "already has a live membership in " + c.ID + ": nothing to request"})
			continue
		}
		waiting, err := p.pendingRequests(p.o.s.keys.userRequests(user), func(ref string) (string, string, bool) {
			org, id, ok := strings.Cut(ref, "/")
			return org, id, ok && org == c.ID && validRequestID(id)
		})
		if err != nil {
			return err
		}
		if slices.ContainsFunc(waiting, func(s stored) bool { return s.r.Kind != "" }) {
			p.skipped = append(p.skipped, Change{Type: audit.RequestCreated, Org: c.ID, User: user,
				What: "a membership request in " + c.ID + " is pending already"})
			continue
		}
		tmpl := &Membership{Org: to.ID, User: user, Kind: ev.Kind, Roles: roles}
		if err := p.membershipRequest(tmpl, &cAfter, ttl, "support moved from "+ev.From+" to "+ev.To, " (support from "+to.ID+")"); err != nil {
			return err
		}
	}
	return nil
}
