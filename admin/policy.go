package admin

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/store"
)

// An organisation's own lifecycle limits (store.OrgPolicy): the platform's policy, from the
// configuration, is the floor; an organisation may only tighten it, kind by kind: a shorter
// longest membership or review period, more approvals, a ticket required, fewer of the
// platform's approver rules, fewer roles a membership may hold. The API refuses a
// value that would not tighten (it would have no effect: authz applies the stricter of both,
// and a caller who believed otherwise would be misled). The organisation's own
// administrators and operators set it; a delegate does not (it would bind the organisation
// that delegated).

// kindLimitsIO is one kind's limits as the API reads and shows them: durations as "30d".
type kindLimitsIO struct {
	MaxDuration       string   `json:"max_duration,omitempty"`
	ReviewEvery       string   `json:"review_every,omitempty"`
	ApprovalsRequired int      `json:"approvals_required,omitempty"`
	RequiresTicket    bool     `json:"requires_ticket,omitempty"`
	Approvers         []string `json:"approvers,omitempty"`
	AllowedRoles      []string `json:"allowed_roles,omitempty"`
}

// policyInput replaces an organisation's limits: kinds not listed take the platform's.
type policyInput struct {
	Kinds  map[string]kindLimitsIO `json:"kinds"`
	Reason string                  `json:"reason"`
}

func (in *policyInput) why() string { return in.Reason }

// kindRuleView is the rule in force for one kind.
type kindRuleView struct {
	MaxDuration       string   `json:"max_duration,omitempty"`
	ReviewEvery       string   `json:"review_every,omitempty"`
	Approvers         []string `json:"approvers"`
	ApprovalsRequired int      `json:"approvals_required"`
	RequiresTicket    bool     `json:"requires_ticket"`
	AllowedRoles      []string `json:"allowed_roles,omitempty"`
	// NoRoles: the organisation's allowed roles are none the platform still allows.
	NoRoles bool `json:"no_roles,omitempty"`
}

// policyView is an organisation's policy: its own limits, the platform's rules, and the
// rules in force (the stricter of both), per kind.
type policyView struct {
	Org       string                  `json:"org"`
	Own       map[string]kindLimitsIO `json:"own"`
	Platform  map[string]kindRuleView `json:"platform"`
	Effective map[string]kindRuleView `json:"effective"`
}

func (c *call) getPolicy() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	o, err := c.s.st.Org(c.ctx, org)
	if err != nil {
		return nil, err
	}
	return c.policyOf(o), nil
}

func (c *call) setPolicy() (any, error) {
	var in policyInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	if err := c.mayAdministerDirectly(org); err != nil {
		return nil, err
	}
	p, err := c.orgPolicyInput(in.Kinds)
	if err != nil {
		return nil, err
	}
	o, err := c.changes().SetOrgPolicy(c.ctx, org, p, c.p.Name, in.Reason)
	if err != nil {
		return nil, err
	}
	return c.policyOf(o), nil
}

// orgPolicyInput checks that every limit given tightens the platform's rule, naming each one
// that does not.
func (c *call) orgPolicyInput(kinds map[string]kindLimitsIO) (*store.OrgPolicy, error) {
	pol := c.policy.Policy
	out := &store.OrgPolicy{Kinds: map[string]store.KindLimits{}}
	var problems []string
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, kind := range names {
		in := kinds[kind]
		platform, ok := pol.Kind(kind, nil)
		if !ok {
			problems = append(problems, fmt.Sprintf("kinds.%s: not a membership kind", kind))
			continue
		}
		var l store.KindLimits
		var problem string
		if l.MaxDuration, problem = tighter(kind, "max_duration", in.MaxDuration, platform.MaxDuration, "30d"); problem != "" {
			problems = append(problems, problem)
		}
		if l.ReviewEvery, problem = tighter(kind, "review_every", in.ReviewEvery, platform.ReviewEvery, "90d"); problem != "" {
			problems = append(problems, problem)
		}
		switch n := in.ApprovalsRequired; {
		case n == 0:
		case n < 0 || n > 5:
			problems = append(problems, fmt.Sprintf("kinds.%s.approvals_required: must be from 1 to 5", kind))
		case n <= platform.ApprovalsRequired:
			problems = append(problems, fmt.Sprintf("kinds.%s.approvals_required: %d does not tighten the platform's %d", kind, n, platform.ApprovalsRequired))
		default:
			l.ApprovalsRequired = n
		}
		switch {
		case !in.RequiresTicket:
		case platform.RequiresTicket:
			problems = append(problems, fmt.Sprintf("kinds.%s.requires_ticket: the platform requires a ticket already", kind))
		default:
			l.RequiresTicket = true
		}
		if l.Approvers, problem = fewerApprovers(kind, in.Approvers, platform.Approvers); problem != "" {
			problems = append(problems, problem)
		}
		if l.AllowedRoles, problem = fewerRoles(kind, in.AllowedRoles, &platform, pol.AdminRole()); problem != "" {
			problems = append(problems, problem)
		}
		if !l.IsZero() {
			out.Kinds[kind] = l
		}
	}
	if len(problems) > 0 {
		return nil, invalid(strings.Join(problems, "; "))
	}
	return out, nil
}

// fewerApprovers reads the approver rules given for kind: nil when none is given, or the
// problem when one is not among the platform's or they are all of them.
func fewerApprovers(kind string, given, platform []string) ([]string, string) {
	if len(given) == 0 {
		return nil, ""
	}
	key := "kinds." + kind + ".approvers"
	var out []string
	for _, a := range given {
		if !slices.Contains(platform, a) {
			return nil, fmt.Sprintf("%s: %q is not one of the platform's approver rules (%s)", key, a, strings.Join(platform, ", "))
		}
	}
	for _, a := range platform { // the platform's order, once each
		if slices.Contains(given, a) {
			out = append(out, a)
		}
	}
	if len(out) == len(platform) {
		return nil, fmt.Sprintf("%s: every one of the platform's rules (%s) does not tighten it", key, strings.Join(platform, ", "))
	}
	return out, ""
}

// fewerRoles reads the roles given for kind: nil when none is given, or the problem when
// one is not a role name or not allowed by the platform, or they are all it allows, or they
// leave out the administrator role where the platform allows it (it applies at once: the
// organisation's own administrators, the one setting it included, would stop administering
// it, and only an operator could undo it).
func fewerRoles(kind string, given []string, platform *authz.KindRule, adminRole string) ([]string, string) {
	if len(given) == 0 {
		return nil, ""
	}
	key := "kinds." + kind + ".allowed_roles"
	out := slices.Clone(given)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, r := range out {
		switch {
		case !syntax.Name(r):
			return nil, fmt.Sprintf("%s: %q is not a role name", key, r)
		case len(platform.AllowedRoles) > 0 && !slices.Contains(platform.AllowedRoles, r):
			return nil, fmt.Sprintf("%s: %q is not allowed by the platform (%s)", key, r, strings.Join(platform.AllowedRoles, ", "))
		}
	}
	if slices.Equal(out, platform.AllowedRoles) {
		return nil, fmt.Sprintf("%s: the platform's own list does not tighten it", key)
	}
	if adminAllowed := !platform.RestrictsRoles() || slices.Contains(platform.AllowedRoles, adminRole); adminAllowed && !slices.Contains(out, adminRole) {
		return nil, fmt.Sprintf("%s: must keep the administrator role %q: without it the organisation's administrators of this kind stop administering it", key, adminRole)
	}
	return out, ""
}

// tighter reads a duration limit given for kind's field: zero when not given, or the problem
// when it is not a duration or does not tighten the platform's (zero: no limit there).
func tighter(kind, field, given string, platform time.Duration, example string) (time.Duration, string) {
	if given == "" {
		return 0, ""
	}
	key := "kinds." + kind + "." + field
	d, err := durationInput(key, given)
	switch {
	case err != nil:
		return 0, fmt.Sprintf("%s: must be a positive duration such as %q", key, example)
	case platform > 0 && d >= platform:
		return 0, fmt.Sprintf("%s: %s does not tighten the platform's %s", key, given, showDuration(platform))
	}
	return d, ""
}

// policyOf shows o's policy.
func (c *call) policyOf(o *store.Org) policyView {
	pol := c.policy.Policy
	v := policyView{Org: o.ID, Own: map[string]kindLimitsIO{}, Platform: map[string]kindRuleView{}, Effective: map[string]kindRuleView{}}
	if o.Policy != nil {
		for kind, l := range o.Policy.Kinds {
			v.Own[kind] = kindLimitsIO{MaxDuration: showDuration(l.MaxDuration), ReviewEvery: showDuration(l.ReviewEvery),
				ApprovalsRequired: l.ApprovalsRequired, RequiresTicket: l.RequiresTicket, Approvers: l.Approvers, AllowedRoles: l.AllowedRoles}
		}
	}
	for _, kind := range []string{store.KindEmployee, store.KindPartner, store.KindReseller, store.KindSupport, store.KindService} {
		if r, ok := pol.Kind(kind, nil); ok {
			v.Platform[kind] = ruleView(r)
		}
		if r, ok := pol.Kind(kind, o); ok {
			v.Effective[kind] = ruleView(r)
		}
	}
	return v
}

func ruleView(r authz.KindRule) kindRuleView {
	return kindRuleView{MaxDuration: showDuration(r.MaxDuration), ReviewEvery: showDuration(r.ReviewEvery),
		Approvers: append([]string{}, r.Approvers...), ApprovalsRequired: r.ApprovalsRequired, RequiresTicket: r.RequiresTicket,
		AllowedRoles: r.AllowedRoles, NoRoles: r.RestrictsRoles() && len(r.AllowedRoles) == 0}
}

// showDuration writes d in days when it is whole days ("30d"), else as Go does; "" for zero.
func showDuration(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
