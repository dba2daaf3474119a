package admin

import (
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Access reviews and the standing reports: a campaign of an organisation's memberships for its
// administrators to keep, change or revoke by a deadline; "who has what", per organisation and
// per person. Every report is JSON, or CSV with ?format=csv.

// reviewInput starts a campaign.
type reviewInput struct {
	// Kinds limits the campaign to these membership kinds; empty: every kind, machine identities included.
	Kinds    []string  `json:"kinds,omitempty"`
	Deadline time.Time `json:"deadline"`
	Reason   string    `json:"reason"`
}

func (in *reviewInput) why() string { return in.Reason }

// reviewDecisionInput is one reviewer's decision on one item.
type reviewDecisionInput struct {
	User     string `json:"user"`
	Decision string `json:"decision"` // keep, change, revoke
	// Roles are the new standing roles (change).
	Roles  []string `json:"roles,omitempty"`
	Reason string   `json:"reason"`
}

func (in *reviewDecisionInput) why() string { return in.Reason }

func (c *call) startReview() (any, error) {
	var in reviewInput
	org, err := c.administeredChange(&in)
	if err != nil {
		return nil, err
	}
	if in.Deadline.IsZero() {
		return nil, invalid("deadline is required: when undecided memberships stop granting")
	}
	return c.changes().StartReview(c.ctx, org, in.Kinds, in.Deadline, c.p.Name, in.Reason)
}

func (c *call) listReviews() (any, error) {
	org, err := c.orgParam()
	if err != nil {
		return nil, err
	}
	o, all, err := c.reviewScope(org)
	if err != nil {
		return nil, err
	}
	rs, err := c.s.st.Reviews(c.ctx, org)
	if err != nil {
		return nil, err
	}
	if !all {
		// Another organisation's administrators see the campaigns with items they review,
		// and only those items.
		var mine []store.Review
		for _, rv := range rs {
			if rv.Items = c.reviewable(org, o, rv.Items); len(rv.Items) > 0 {
				mine = append(mine, rv)
			}
		}
		rs = mine
	}
	return list[store.Review]{Items: append([]store.Review{}, rs...)}, nil
}

// reviewScope says what of org's campaigns the caller sees: all of them (operators, its
// administrators), or only the items they review (another organisation's administrators
// named by a kind's approver rules); anyone else is refused.
func (c *call) reviewScope(org string) (*store.Org, bool, error) {
	if err := c.inOrg(org); err != nil {
		return nil, false, err
	}
	o, err := c.s.st.Org(c.ctx, org)
	if err != nil {
		return nil, false, err
	}
	if c.p.Operator {
		return o, true, nil
	}
	if ok, err := c.adminOf(org); err != nil || ok {
		return o, ok, err
	}
	for _, kind := range []string{store.KindEmployee, store.KindPartner, store.KindReseller, store.KindSupport, store.KindService} {
		if c.mayReview(org, o, kind) {
			return o, false, nil
		}
	}
	return nil, false, refuse(reason.NotPermitted, "not an administrator of "+org+" nor a reviewer of its memberships")
}

// mayReview reports whether the caller reviews memberships of kind in org (authz.Reviewer).
func (c *call) mayReview(org string, o *store.Org, kind string) bool {
	facts, err := c.approverFacts(append(c.policy.ApproverOrgs(kind, org, o), org))
	if err != nil {
		return false
	}
	return c.policy.Reviewer(kind, org, o, c.p.Actor, facts)
}

// reviewable keeps the items the caller may decide.
func (c *call) reviewable(org string, o *store.Org, items []store.ReviewItem) []store.ReviewItem {
	return slices.DeleteFunc(slices.Clone(items), func(it store.ReviewItem) bool { return !c.mayReview(org, o, it.Kind) })
}

// reviewReport is a campaign with, per item, what its membership is now: JSON, or CSV.
type reviewReport struct {
	store.Review
	Undecided int          `json:"undecided"`
	Rows      []reviewLine `json:"report"`
}

// reviewLine is one item of a campaign report.
type reviewLine struct {
	store.ReviewItem
	// Reviewers are who may decide it: whoever may approve a membership of its kind there.
	Reviewers []string `json:"reviewers"`
	// Now is the membership's effective state now (accessLine.Effective).
	Now      string    `json:"now"`
	LastUsed time.Time `json:"last_used,omitzero"`
}

func (r reviewReport) table() ([]string, [][]string) {
	head := []string{"review", "org", "deadline", "user", "kind", "roles", "review_by_before", "reviewers", "decision", "new_roles",
		"decided_by", "decided_at", "note", "now", "last_used"}
	rows := make([][]string, 0, len(r.Rows))
	for _, l := range r.Rows {
		rows = append(rows, []string{r.ID, r.Org, showTime(r.Deadline), l.User, l.Kind, strings.Join(l.Roles, " "), showTime(l.ReviewBy),
			strings.Join(l.Reviewers, "; "), l.Decision, strings.Join(l.NewRoles, " "), l.DecidedBy, showTime(l.DecidedAt), l.Note, l.Now, showTime(l.LastUsed)})
	}
	return head, rows
}

func (c *call) getReview() (any, error) {
	org, err := c.orgParam()
	if err != nil {
		return nil, err
	}
	_, all, err := c.reviewScope(org)
	if err != nil {
		return nil, err
	}
	rv, err := c.s.st.Review(c.ctx, org, c.r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	o, ms, used, err := c.orgRecords(org)
	if err != nil {
		return nil, err
	}
	if !all {
		if rv.Items = c.reviewable(org, o, rv.Items); len(rv.Items) == 0 {
			return nil, refuse(reason.NotFound, "no item of this campaign is the caller's to review")
		}
	}
	now := c.s.now()
	out := reviewReport{Review: *rv, Undecided: rv.Undecided(), Rows: []reviewLine{}}
	for _, it := range rv.Items {
		l := reviewLine{ReviewItem: it, Reviewers: c.policy.Reviewers(it.Kind, org, o), Now: "gone", LastUsed: used[it.User]}
		if i := slices.IndexFunc(ms, func(m store.Membership) bool { return m.User == it.User }); i >= 0 {
			l.Now = effective(&ms[i], o, now)
		}
		out.Rows = append(out.Rows, l)
	}
	return out, nil
}

func (c *call) decideReview() (any, error) {
	var in reviewDecisionInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	if err := c.inOrg(org); err != nil {
		return nil, err
	}
	if !c.p.Operator && in.User == c.p.Name {
		// Nobody certifies their own access.
		return nil, refuse(reason.SelfApproval, "a reviewer does not decide their own membership")
	}
	now := c.s.now()
	d := store.ReviewDecision{User: in.User, Decision: in.Decision, Roles: in.Roles, Note: in.Reason}
	// check runs in the transaction: the caller must review memberships of the kind the
	// membership has now (whoever may approve such a membership there), and the next review
	// date is the kind's review_every from now.
	check := func(_ *store.Review, before, after *store.Membership) error {
		o, err := c.s.st.Org(c.ctx, org)
		if err != nil {
			return err
		}
		if !c.mayReview(org, o, before.Kind) {
			return refuse(reason.NotPermitted, "not a reviewer of "+before.Kind+" memberships in "+org)
		}
		if before.Machine != nil && before.Machine.Sponsor == c.p.Name && !c.p.Operator {
			return refuse(reason.SelfApproval, "a reviewer does not decide a machine identity they sponsor")
		}
		if kr, ok := c.policy.Kind(after.Kind, o); ok && after.Status != store.MembershipRevoked {
			after.ReviewBy = time.Time{}
			if kr.ReviewEvery > 0 {
				after.ReviewBy = now.Add(kr.ReviewEvery)
			}
		}
		if in.Decision == store.DecisionChange {
			// New roles are a grant: only where the reviewer could grant the kind alone.
			if _, err := c.mayGrant(org, after.Kind); err != nil {
				return err
			}
			if vs := c.policy.CheckChange(before, after, o, in.Reason, now); len(vs) > 0 {
				return violation(vs)
			}
			if after.Machine != nil {
				if err := c.withinSponsor(org, after.Machine.Sponsor, after.Roles, nil); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return c.changes().DecideReview(c.ctx, org, c.r.PathValue("id"), d, check, c.p.Name)
}

// accessLine is one membership in the "who has what" report.
type accessLine struct {
	Org  string `json:"org"`
	User string `json:"user"`
	Kind string `json:"kind"`
	// Effective is what the membership does now: active, expired, review_overdue, suspended,
	// revoked, or org_inactive.
	Effective  string            `json:"effective"`
	Roles      []string          `json:"roles,omitempty"`
	RoleGrants []store.RoleGrant `json:"role_grants,omitempty"`
	Purposes   []store.Grant     `json:"purposes,omitempty"`
	Since      time.Time         `json:"since,omitzero"`
	GrantedBy  string            `json:"granted_by,omitempty"`
	ApprovedBy string            `json:"approved_by,omitempty"`
	ExpiresAt  time.Time         `json:"expires_at,omitzero"`
	ReviewBy   time.Time         `json:"review_by,omitzero"`
	LastUsed   time.Time         `json:"last_used,omitzero"`
	// Sponsor, for a machine identity, is the person who answers for it.
	Sponsor string `json:"sponsor,omitempty"`
}

// accessReport is "who has what".
type accessReport struct {
	Items []accessLine `json:"items"`
}

func (r accessReport) table() ([]string, [][]string) {
	head := []string{"org", "user", "kind", "effective", "roles", "role_grants", "purposes", "since", "granted_by", "approved_by",
		"expires_at", "review_by", "last_used", "sponsor"}
	rows := make([][]string, 0, len(r.Items))
	for _, l := range r.Items {
		var rg, pg []string
		for _, g := range l.RoleGrants {
			rg = append(rg, g.Role+" until "+showTime(g.ExpiresAt))
		}
		for _, g := range l.Purposes {
			pg = append(pg, g.Purpose+" until "+showTime(g.ExpiresAt))
		}
		rows = append(rows, []string{l.Org, l.User, l.Kind, l.Effective, strings.Join(l.Roles, " "), strings.Join(rg, "; "),
			strings.Join(pg, "; "), showTime(l.Since), l.GrantedBy, l.ApprovedBy, showTime(l.ExpiresAt), showTime(l.ReviewBy), showTime(l.LastUsed), l.Sponsor})
	}
	return head, rows
}

func (c *call) line(m *store.Membership, o *store.Org, used time.Time, now time.Time) accessLine {
	l := accessLine{Org: m.Org, User: m.User, Kind: m.Kind, Effective: effective(m, o, now), Roles: m.Roles, RoleGrants: liveRoleGrants(m, now),
		Purposes: m.Grants, Since: m.Created, GrantedBy: m.GrantedBy, ApprovedBy: m.ApprovedBy, ExpiresAt: m.ExpiresAt, ReviewBy: m.ReviewBy, LastUsed: used}
	if m.Machine != nil {
		l.Sponsor = m.Machine.Sponsor
	}
	return l
}

func (c *call) orgAccess() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	o, ms, used, err := c.orgRecords(org)
	if err != nil {
		return nil, err
	}
	now := c.s.now()
	out := accessReport{Items: []accessLine{}}
	for i := range ms {
		out.Items = append(out.Items, c.line(&ms[i], o, used[ms[i].User], now))
	}
	return out, nil
}

// personAccess is "what does this person have", in every organisation: operators for anyone
// (?user=), everyone for themselves.
func (c *call) personAccess() (any, error) {
	user := c.r.URL.Query().Get("user")
	switch {
	case user == "":
		user = c.p.Name
	case user != c.p.Name && !c.p.Operator:
		return nil, refuse(reason.NotPermitted, "another person's access is for operators")
	}
	orgs, err := c.s.st.OrgsOf(c.ctx, user)
	if err != nil {
		return nil, err
	}
	now := c.s.now()
	out := accessReport{Items: []accessLine{}}
	for _, org := range orgs {
		if c.p.org != "" && c.p.org != org {
			continue // a token restricted to one organisation sees that one
		}
		o, m, err := c.s.st.Lookup(c.ctx, org, user)
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		used, err := c.s.st.LastUsed(c.ctx, org)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, c.line(m, o, used[user], now))
	}
	return out, nil
}

// orgRecords reads what a report of org shows: the organisation, its memberships, and when
// each was last used.
func (c *call) orgRecords(org string) (*store.Org, []store.Membership, map[string]time.Time, error) {
	o, err := c.s.st.Org(c.ctx, org)
	if err != nil {
		return nil, nil, nil, err
	}
	ms, err := c.s.st.Memberships(c.ctx, org)
	if err != nil {
		return nil, nil, nil, err
	}
	used, err := c.s.st.LastUsed(c.ctx, org)
	if err != nil {
		return nil, nil, nil, err
	}
	return o, ms, used, nil
}

// effective is what a membership does at now, in words a report can filter on.
func effective(m *store.Membership, o *store.Org, now time.Time) string {
	switch {
	case m.Status == store.MembershipRevoked:
		return "revoked"
	case m.Status == store.MembershipSuspended:
		return "suspended"
	case o == nil || o.Status != store.OrgActive || o.MergedInto != "" || (!o.ContractEnd.IsZero() && !now.Before(o.ContractEnd)):
		return "org_inactive"
	case !m.ExpiresAt.IsZero() && !now.Before(m.ExpiresAt):
		return "expired"
	case !m.ReviewBy.IsZero() && !now.Before(m.ReviewBy):
		return "review_overdue"
	}
	return "active"
}

func liveRoleGrants(m *store.Membership, now time.Time) []store.RoleGrant {
	var out []store.RoleGrant
	for _, g := range m.RoleGrants {
		if now.Before(g.ExpiresAt) {
			out = append(out, g)
		}
	}
	return out
}

func showTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
