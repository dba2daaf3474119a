package authz

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Requests and approvals: who may approve a request (the kind's approver rules, never the
// requester nor the person the access is for, each approver once), when it is complete (the
// kind's approvals_required, raised by an organisation's policy), and what the grant it makes
// looks like (time-boxed, carrying the request id). The admin API gathers the facts (the
// request, the membership, whether the approver administers the organisations the rules
// name) and writes what these functions decide.

// Actor is who acts through the admin API, as authenticated.
type Actor struct {
	// Operator: the platform's operators' authority (an operator token or JWT).
	Operator bool
	// Name is the individual: an operator's name, or a person's user key (issuer|subject).
	Name string
}

// RequestKind is the membership kind whose policy governs r: the kind asked for in a request
// for a membership, else the kind of the membership m the role or purpose is asked in.
func RequestKind(r *store.Request, m *store.Membership) string {
	if r.Kind != "" || m == nil {
		return r.Kind
	}
	return m.Kind
}

// CheckRequest reports every way a new request r, for the person whose current membership in
// the organisation o is m (nil: none), breaks the policy at now. A role or purpose needs a
// live membership to be granted in (a new membership needs a kind, and no membership yet); the
// duration is within the kind's max_duration, or the role's max_elevation; a ticket where the
// kind requires one; a role the kind allows.
func (p *Policy) CheckRequest(r *store.Request, o *store.Org, m *store.Membership, now time.Time) []Violation {
	var out []Violation
	switch {
	case r.Kind != "" && m != nil && m.Status != store.MembershipRevoked:
		return []Violation{{"request", "the person already has a membership in " + r.Org + ": ask for a role or a purpose in it"}}
	case r.Kind == "" && (m == nil || m.Status != store.MembershipActive):
		return []Violation{{"request", "a role or a purpose is granted in an active membership, and the person has none in " + r.Org}}
	}
	kind := RequestKind(r, m)
	kr, ok := p.Kind(kind, o)
	if !ok {
		return []Violation{{"kind", fmt.Sprintf("%q is not a membership kind", kind)}}
	}
	key := "lifecycle.kinds." + kind
	maxEl, priv := p.Privileged(r.Role)
	switch {
	case r.Role != "" && priv && r.Duration > maxEl:
		out = append(out, Violation{"lifecycle.privileged_roles." + r.Role + ".max_elevation",
			fmt.Sprintf("%q may be held for at most %s at a time", r.Role, showDuration(maxEl))})
	case kr.MaxDuration > 0 && r.Duration > kr.MaxDuration:
		out = append(out, Violation{key + ".max_duration", fmt.Sprintf("%s membership's grants last at most %s; %s was asked",
			article(kind), showDuration(kr.MaxDuration), showDuration(r.Duration))})
	}
	if r.Role != "" && !kr.roleAllowed(r.Role) {
		out = append(out, Violation{key + ".allowed_roles", fmt.Sprintf("%s membership may not hold the role %q", article(kind), r.Role)})
	}
	for _, role := range r.Roles {
		if _, priv := p.Privileged(role); priv {
			out = append(out, Violation{"lifecycle.privileged_roles." + role,
				fmt.Sprintf("%q is privileged: it is asked for on its own, for a limited time", role)})
		} else if !kr.roleAllowed(role) {
			out = append(out, Violation{key + ".allowed_roles", fmt.Sprintf("%s membership may not hold the role %q", article(kind), role)})
		}
	}
	if kr.RequiresTicket && strings.TrimSpace(r.Ticket) == "" {
		out = append(out, Violation{key + ".requires_ticket", fmt.Sprintf("a request for a %s membership needs a ticket reference", kind)})
	}
	if len(kr.Approvers) == 0 {
		out = append(out, Violation{key + ".approvers", "no one may approve it"})
	}
	return out
}

// ApproverOrgs lists the organisations whose administrators the approver rules of kind name
// for a request in org: what the caller must find out about an approver before Approve.
func (p *Policy) ApproverOrgs(kind, org string, o *store.Org) []string {
	kr, _ := p.Kind(kind, o)
	var out []string
	for _, rule := range kr.Approvers {
		switch {
		case rule == config.ApproverOrgAdmin:
			out = append(out, org)
		case strings.HasPrefix(rule, config.ApproverOrgAdminOf):
			out = append(out, strings.TrimPrefix(rule, config.ApproverOrgAdminOf))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Reviewer reports whether a may decide an access review item for a membership of kind in
// the organisation org (its record o): whoever may approve such a membership reviews it (the
// kind's approver rules: its administrators, another organisation's administrators, the
// operators), and operators always may. adminOf answers whether a administers an organisation
// (for each of ApproverOrgs, and org). Nobody reviews their own membership: the caller checks
// that, as it knows whose the item is.
func (p *Policy) Reviewer(kind, org string, o *store.Org, a Actor, adminOf func(org string) bool) bool {
	if a.Operator {
		return true
	}
	kr, ok := p.Kind(kind, o)
	if !ok {
		return false
	}
	for _, ap := range kr.Approvers {
		switch {
		case ap == config.ApproverOrgAdmin && adminOf(org):
			return true
		case strings.HasPrefix(ap, config.ApproverOrgAdminOf) && adminOf(strings.TrimPrefix(ap, config.ApproverOrgAdminOf)):
			return true
		}
	}
	return false
}

// Reviewers names who reviews a membership of kind in org, for a campaign's report:
// "operators", "administrators of ORG", in the kind's rule order.
func (p *Policy) Reviewers(kind, org string, o *store.Org) []string {
	out := []string{"operators"}
	kr, _ := p.Kind(kind, o)
	for _, ap := range kr.Approvers {
		switch {
		case ap == config.ApproverOrgAdmin:
			out = append(out, "administrators of "+org)
		case strings.HasPrefix(ap, config.ApproverOrgAdminOf):
			out = append(out, "administrators of "+strings.TrimPrefix(ap, config.ApproverOrgAdminOf))
		}
	}
	return slices.Compact(out)
}

// Approve decides whether a may approve r, of membership kind kind in the organisation o, at
// now; adminOf answers whether a administers an organisation (for each of ApproverOrgs). It
// returns the approver rule that makes a an approver and whether this approval completes the
// request, or the refusal's code and a cause for the log.
//
// The order: the request must still be pending (request_not_pending, request_lapsed); nobody
// approves a request of their own or for themselves (self_approval); nobody approves twice
// (approval_duplicate); and the approver must meet one of the kind's rules (not_an_approver).
func (p *Policy) Approve(r *store.Request, kind string, o *store.Org, a Actor, adminOf func(org string) bool, now time.Time) (rule string, complete bool, code reason.Code, cause string) {
	switch {
	case r.State != store.RequestPending:
		return "", false, reason.RequestNotPending, "the request is " + r.State
	case !now.Before(r.Lapses):
		return "", false, reason.RequestLapsed, "the request lapsed"
	case a.Name == "" || a.Name == r.Requester || a.Name == r.For:
		return "", false, reason.SelfApproval, "the approver asked for it, or it is for them"
	}
	for _, ap := range r.Approvals {
		if ap.By == a.Name {
			return "", false, reason.ApprovalDuplicate, "already approved by this approver"
		}
	}
	kr, ok := p.Kind(kind, o)
	if !ok {
		return "", false, reason.NotAnApprover, "unknown kind " + kind
	}
	for _, ap := range kr.Approvers {
		var meets bool
		switch {
		case ap == config.ApproverOperator:
			meets = a.Operator
		case ap == config.ApproverOrgAdmin:
			meets = !a.Operator && adminOf(r.Org)
		case strings.HasPrefix(ap, config.ApproverOrgAdminOf):
			meets = !a.Operator && adminOf(strings.TrimPrefix(ap, config.ApproverOrgAdminOf))
		}
		if meets {
			return ap, len(r.Approvals)+1 >= kr.ApprovalsRequired, "", ""
		}
	}
	return "", false, reason.NotAnApprover, "meets none of " + strings.Join(kr.Approvers, ", ")
}

// Fulfil is the membership a complete request r writes at now, from the person's current
// membership m (nil: none): a new membership of r.Kind ending after r.Duration, with a review
// date within the kind's review_every; or, in m, a role grant (a role held for r.Duration,
// never beyond the membership's own end) or a purpose grant, each carrying the request id and
// its approvers. It also returns when the grant ends.
func (p *Policy) Fulfil(r *store.Request, m *store.Membership, o *store.Org, now time.Time) (*store.Membership, time.Time) {
	until := now.Add(r.Duration)
	approvers := make([]string, len(r.Approvals))
	for i, ap := range r.Approvals {
		approvers[i] = ap.By
	}
	if m == nil || r.Kind != "" {
		kr, _ := p.Kind(r.Kind, o)
		nm := &store.Membership{Org: r.Org, User: r.For, Kind: r.Kind, Status: store.MembershipActive, ExpiresAt: until,
			ApprovedBy: strings.Join(approvers, ","), GrantedBy: r.Requester}
		if kr.ReviewEvery > 0 && kr.ReviewEvery < r.Duration {
			nm.ReviewBy = now.Add(kr.ReviewEvery)
		}
		// Further roles are standing roles (CheckRequest refuses privileged ones there).
		nm.Roles = slices.Clone(r.Roles)
		if r.Role != "" {
			if _, priv := p.Privileged(r.Role); priv {
				nm.RoleGrants = []store.RoleGrant{{Role: r.Role, ExpiresAt: until, GrantedAt: now, RequestID: r.ID, ApprovedBy: approvers}}
			} else {
				nm.Roles = append(nm.Roles, r.Role)
			}
		}
		if r.Purpose != "" {
			nm.Grants = []store.Grant{{Purpose: r.Purpose, Reason: requestReason(r), GrantedBy: r.Requester,
				ApprovedBy: strings.Join(approvers, ","), ExpiresAt: until, RequestID: r.ID}}
		}
		return nm, until
	}
	if !m.ExpiresAt.IsZero() && m.ExpiresAt.Before(until) {
		until = m.ExpiresAt
	}
	// A new record: m stays what it was, for the caller to compare (CheckChange).
	cp := *m
	cp.Roles, cp.Grants, cp.RoleGrants = slices.Clone(m.Roles), slices.Clone(m.Grants), slices.Clone(m.RoleGrants)
	m = &cp
	switch {
	case r.Role != "":
		m.RoleGrants = slices.DeleteFunc(m.RoleGrants, func(g store.RoleGrant) bool { return !now.Before(g.ExpiresAt) })
		m.RoleGrants = append(m.RoleGrants, store.RoleGrant{Role: r.Role, ExpiresAt: until, GrantedAt: now, RequestID: r.ID, ApprovedBy: approvers})
	case r.Purpose != "":
		m.Grants = slices.DeleteFunc(m.Grants, func(g store.Grant) bool { return g.Purpose == r.Purpose })
		m.Grants = append(m.Grants, store.Grant{Purpose: r.Purpose, Reason: requestReason(r), GrantedBy: r.Requester,
			ApprovedBy: strings.Join(approvers, ","), ExpiresAt: until, RequestID: r.ID})
	}
	return m, until
}

func requestReason(r *store.Request) string {
	if r.Ticket != "" {
		return r.Ticket
	}
	return r.Reason
}
