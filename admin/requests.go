package admin

import (
	"slices"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/store"
)

// requestInput asks for access.
type requestInput struct {
	// For is the person (user key) the access is for; empty: the caller.
	For string `json:"for,omitempty"`
	// Kind asks for a new membership of that kind (support access, say); Role and Purpose ask
	// for a role or a purpose, in the membership that exists, or with the new one.
	Kind    string `json:"kind,omitempty"`
	Role    string `json:"role,omitempty"`
	Purpose string `json:"purpose,omitempty"`
	// Machine asks for a new machine identity that the person it is for sponsors, with Role
	// (one the sponsor holds standing): created when the request is approved.
	Machine *store.RequestedMachine `json:"machine,omitempty"`
	// Duration is how long the grant lasts from its approval ("8h", "30d").
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Ticket   string `json:"ticket,omitempty"`
}

// decisionInput is an approval, a denial, a withdrawal or a revocation: it says why.
type decisionInput struct {
	Reason string `json:"reason"`
}

// requestView is a request as the API shows it, with its state as of now: "ended" once an
// approved grant is over, "lapsed" once a pending request waited too long.
type requestView struct {
	store.Request
	Effective string `json:"effective_state"`
}

func (c *call) view(r *store.Request) requestView {
	now := c.s.now()
	v := requestView{Request: *r, Effective: r.State}
	switch {
	case r.State == store.RequestPending && !now.Before(r.Lapses):
		v.Effective = store.RequestLapsed
	case r.State == store.RequestApproved && !r.GrantedUntil.IsZero() && !now.Before(r.GrantedUntil):
		v.Effective = "ended"
	}
	return v
}

func (c *call) views(rs []store.Request) list[requestView] {
	out := list[requestView]{Items: []requestView{}}
	for i := range rs {
		out.Items = append(out.Items, c.view(&rs[i]))
	}
	return out
}

func (c *call) createRequest() (any, error) {
	var in requestInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	if err := c.inOrg(org); err != nil {
		return nil, err
	}
	d, err := durationInput("duration", in.Duration)
	if err != nil {
		return nil, err
	}
	who := in.For
	if who == "" {
		who = c.p.Name
	}
	if store.IsMachineUser(who) {
		// A machine holds what its sponsor holds: a request is for the sponsor.
		return nil, invalid("for: a machine identity gets no grant of its own; its sponsor asks for what it needs")
	}
	if who != c.p.Name {
		// Asking on someone's behalf is an administrator's act.
		if err := c.mayAdminister(org); err != nil {
			return nil, err
		}
	}
	subject := who
	if in.Machine != nil {
		// The machine, with no role its sponsor lacks; the policy is the service kind's.
		in.Kind = store.KindService
		if !syntax.Name(in.Machine.ID) {
			return nil, invalid("machine.id: want [a-z0-9_-]{1,64}")
		}
		var roles []string
		if in.Role != "" {
			roles = []string{in.Role}
		}
		if err := c.withinSponsor(org, who, roles, nil); err != nil {
			return nil, err
		}
		subject = store.MachineUser(org, in.Machine.ID)
	}
	o, m, err := c.s.st.Lookup(c.ctx, org, subject)
	if err != nil {
		return nil, err
	}
	if o == nil {
		return nil, refuse(reason.NotFound, "no org "+org)
	}
	r := store.Request{Org: org, For: who, Requester: c.p.Name, Kind: in.Kind, Role: in.Role, Purpose: in.Purpose, Duration: d,
		Reason: in.Reason, Ticket: in.Ticket, Machine: in.Machine}
	if vs := c.policy.CheckRequest(&r, o, m, c.s.now()); len(vs) > 0 {
		return nil, violation(vs)
	}
	created, err := c.changes().CreateRequest(c.ctx, r, c.policy.RequestTTL(), c.p.Name)
	if err != nil {
		return nil, err
	}
	return c.view(created), nil
}

// loadRequest is the {org}/{id} request, if the caller may see it: operators, the
// administrators its approver rules name (the organisation's, a partner's), and the
// requester and the person it is for.
func (c *call) loadRequest() (*store.Request, error) {
	org, err := c.orgParam()
	if err != nil {
		return nil, err
	}
	if err := c.inOrg(org); err != nil {
		return nil, err
	}
	r, err := c.s.st.Request(c.ctx, org, c.r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if c.p.Operator || r.Requester == c.p.Name || r.For == c.p.Name {
		return r, nil
	}
	orgs, err := c.approverOrgs(r)
	if err != nil {
		return nil, err
	}
	for _, o := range append(orgs, org) {
		ok, err := c.adminOf(o)
		if err != nil {
			return nil, err
		}
		if ok {
			return r, nil
		}
	}
	// Someone else's request that one may not decide does not exist.
	return nil, refuse(reason.NotFound, "not the caller's request")
}

func (c *call) getRequest() (any, error) {
	r, err := c.loadRequest()
	if err != nil {
		return nil, err
	}
	return c.view(r), nil
}

func (c *call) listRequests() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	rs, err := c.s.st.Requests(c.ctx, org, 0)
	if err != nil {
		return nil, err
	}
	return c.views(rs), nil
}

func (c *call) myRequests() (any, error) {
	rs, err := c.s.st.RequestsFor(c.ctx, c.p.Name, 0)
	if err != nil {
		return nil, err
	}
	if c.p.org != "" {
		kept := rs[:0]
		for _, r := range rs {
			if r.Org == c.p.org {
				kept = append(kept, r)
			}
		}
		rs = kept
	}
	return c.views(rs), nil
}

// approverOrgs lists the organisations whose administrators the approver rules of r's kind
// name (as the request and the membership are now).
func (c *call) approverOrgs(r *store.Request) ([]string, error) {
	o, m, err := c.s.st.Lookup(c.ctx, r.Org, r.For)
	if err != nil {
		return nil, err
	}
	return c.policy.ApproverOrgs(authz.RequestKind(r, m), r.Org, o), nil
}

// approverFacts finds out which of orgs the caller administers. Called inside DecideRequest,
// with the caller's memberships there watched, so what it reads still holds at the write.
func (c *call) approverFacts(orgs []string) (func(string) bool, error) {
	admin := map[string]bool{}
	for _, org := range orgs {
		ok, err := c.adminOf(org)
		if err != nil {
			return nil, err
		}
		admin[org] = ok
	}
	return func(org string) bool { return admin[org] }, nil
}

func (c *call) approve() (any, error) { return c.decide(true) }
func (c *call) deny() (any, error)    { return c.decide(false) }

// decide approves or denies: the caller must meet an approver rule of the request's kind and
// be neither its requester nor the person it is for (authz.Approve). An approval that
// completes the request writes the grant (authz.Fulfil) in the same transaction, within the
// policy or not at all.
func (c *call) decide(approve bool) (any, error) {
	r, err := c.loadRequest()
	if err != nil {
		return nil, err
	}
	var in decisionInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	orgs, err := c.approverOrgs(r)
	if err != nil {
		return nil, err
	}
	// The caller's authority in every organisation the rules name, and the organisation
	// itself, are watched through the decision: a revocation racing it wins or retries it.
	// Authority through a delegation is found here first, so the delegate organisation's
	// membership is watched too and the events name the delegation.
	if _, err := c.approverFacts(orgs); err != nil {
		return nil, err
	}
	watched := map[string]bool{}
	watch := make([]store.MemberRef, 0, len(orgs))
	for _, o := range orgs {
		watch = append(watch, store.MemberRef{Org: o, User: c.p.Name})
		watched[o] = true
	}
	for _, d := range c.through {
		if !watched[d.To] {
			watch = append(watch, store.MemberRef{Org: d.To, User: c.p.Name})
			watched[d.To] = true
		}
	}
	var refusal error
	out, err := c.changes().DecideRequest(c.ctx, r.Org, r.ID, func(r *store.Request, m *store.Membership) (store.RequestStep, error) {
		refusal = nil
		now := c.s.now()
		kind := authz.RequestKind(r, m)
		org, err := c.s.st.Org(c.ctx, r.Org)
		if err != nil {
			return store.RequestStep{}, err
		}
		if !slices.Equal(c.policy.ApproverOrgs(kind, r.Org, org), orgs) {
			// The membership changed kind (or the policy its approvers) since the rules were
			// read, outside what is watched: refuse rather than decide on the old rules.
			return store.RequestStep{}, refuse(reason.Conflict, "the request's approver rules changed while it was decided; try again")
		}
		adminOf, err := c.approverFacts(orgs)
		if err != nil {
			return store.RequestStep{}, err
		}
		for _, d := range c.through {
			if !watched[d.To] {
				// A delegation that appeared since the authority was first read: its
				// membership is not watched, so decide again rather than on it.
				return store.RequestStep{}, refuse(reason.Conflict, "the approver's delegations changed while it was decided; try again")
			}
		}
		probe := *r
		if !approve {
			probe.Approvals = nil // who approved may still deny
		}
		rule, complete, code, cause := c.policy.Approve(&probe, kind, org, c.p.Actor, adminOf, now)
		switch {
		case code == reason.RequestLapsed:
			// Recorded as lapsed, then refused.
			r.State, r.Decided, r.DecisionReason = store.RequestLapsed, now, "waited longer than lifecycle.request_ttl"
			refusal = refuse(code, cause)
			return store.RequestStep{Type: audit.RequestLapsed}, nil
		case code != "":
			return store.RequestStep{}, refuse(code, cause)
		}
		if !approve {
			r.State, r.Decided, r.DecidedBy, r.DecisionReason = store.RequestDenied, now, c.p.Name, in.Reason
			return store.RequestStep{Type: audit.RequestDenied}, nil
		}
		if approve {
			// The policy as it is now, and the membership as it is now: the policy may have
			// tightened, or a membership appeared, since the request was made.
			if vs := c.policy.CheckRequest(r, org, m, now); len(vs) > 0 {
				return store.RequestStep{}, violation(vs)
			}
		}
		r.Approvals = append(r.Approvals, store.Approval{By: c.p.Name, Via: c.via(), Rule: rule, At: now})
		if !complete {
			return store.RequestStep{Type: audit.RequestApproved}, nil
		}
		typ := audit.MembershipChanged
		if m == nil || r.Kind != "" {
			typ = audit.MembershipGranted
		}
		nm, until := c.policy.Fulfil(r, m, org, now)
		if mc := r.Machine; mc != nil {
			// The machine the request asked for, sponsored by the person it is for, who must
			// still hold what it gets.
			nm.User = store.MachineUser(r.Org, mc.ID)
			nm.Machine = &store.Machine{ID: mc.ID, Name: mc.Name, Description: mc.Description, Sponsor: r.For}
			if err := c.withinSponsor(r.Org, r.For, nm.Roles, nil); err != nil {
				return store.RequestStep{}, err
			}
		}
		before := m
		if typ == audit.MembershipGranted {
			before = nil // a new membership: all of it is the change
		}
		if vs := c.policy.CheckChange(before, nm, org, r.Ticket, now); len(vs) > 0 {
			return store.RequestStep{}, violation(vs)
		}
		r.State, r.Decided, r.DecidedBy, r.DecisionReason, r.GrantedUntil = store.RequestApproved, now, c.p.Name, in.Reason, until
		return store.RequestStep{Type: audit.RequestGranted, Membership: nm, MembershipType: typ}, nil
	}, c.p.Name, in.Reason, watch...)
	if err != nil {
		return nil, err // a refusal inside the transaction comes out wrapped; fail unwraps it
	}
	if refusal != nil {
		return nil, refusal
	}
	return c.view(out), nil
}

func (c *call) cancel() (any, error) {
	r, err := c.loadRequest()
	if err != nil {
		return nil, err
	}
	var in decisionInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	if !c.p.Operator && r.Requester != c.p.Name && r.For != c.p.Name {
		return nil, refuse(reason.NotPermitted, "only the requester, the person it is for or an operator withdraws a request")
	}
	out, err := c.changes().DecideRequest(c.ctx, r.Org, r.ID, func(r *store.Request, _ *store.Membership) (store.RequestStep, error) {
		if r.State != store.RequestPending {
			return store.RequestStep{}, refuse(reason.RequestNotPending, "the request is "+r.State)
		}
		r.State, r.Decided, r.DecidedBy, r.DecisionReason = store.RequestCancelled, c.s.now(), c.p.Name, in.Reason
		return store.RequestStep{Type: audit.RequestCancelled}, nil
	}, c.p.Name, in.Reason)
	if err != nil {
		return nil, err
	}
	return c.view(out), nil
}
