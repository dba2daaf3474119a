package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Lifecycle is the access lifecycle policy of the platform (README, "Governance"): how long each kind
// of membership may last and how often it is reviewed, who approves it and how many
// approvals it needs, which roles are privileged and reached only just in time, and how long
// a request waits. An organisation may only tighten it (store.OrgPolicy). Package authz
// enforces it when a grant is written and at every decision.
type Lifecycle struct {
	// Kinds is the policy of each membership kind.
	Kinds KindPolicies `yaml:"kinds"`
	// PrivilegedRoles are roles held only just in time: granted by an approved request for at
	// most max_elevation, never as a standing role of a membership (a standing one does not
	// count). Default: none.
	PrivilegedRoles map[string]PrivilegedRole `yaml:"privileged_roles"`
	// AdminRole is the role that makes a member an administrator of their organisation: the
	// org_admin of approver rules, and who may manage its memberships through the admin API.
	// Default "org-admin".
	AdminRole string `yaml:"admin_role"`
	// RequestTTL is how long a request waits for its approvals before it lapses. Default 72h.
	RequestTTL Duration `yaml:"request_ttl"`
	// APIKeys bounds machine identities' API keys.
	APIKeys APIKeyPolicy `yaml:"api_keys"`
}

// APIKeyPolicy bounds the API keys of machine identities: every key has an end.
type APIKeyPolicy struct {
	// MaxLifetime is the longest a key may be valid from its creation. Default 90d, at most
	// 366d.
	MaxLifetime Duration `yaml:"max_lifetime"`
	// MaxOverlap is the longest a rotated-out key keeps working beside its replacement.
	// Default 7d.
	MaxOverlap Duration `yaml:"max_overlap"`
	// DisableUnusedAfter revokes a key that admitted no request for this long (from its
	// creation when it never did): a forgotten integration's key does not wait for its end.
	// Default 30d; 0 keeps unused keys until they end.
	DisableUnusedAfter *Duration `yaml:"disable_unused_after"`
}

// KindPolicies holds one policy per membership kind.
type KindPolicies struct {
	// Employee is the policy of the customer's own staff. Defaults: no end required,
	// review_every 365d, approvers [org_admin, operator], one approval.
	Employee KindPolicy `yaml:"employee"`
	// Partner is the policy of partners acting for the customer. Defaults: max_duration 365d,
	// review_every 90d, approvers [org_admin, operator], one approval.
	Partner KindPolicy `yaml:"partner"`
	// Reseller is the policy of resellers. Defaults as partner.
	Reseller KindPolicy `yaml:"reseller"`
	// Support is the policy of the portal owner's support staff in a customer organisation.
	// Defaults: max_duration 30d, review_every 30d, approvers [org_admin], one approval, a
	// ticket required.
	Support KindPolicy `yaml:"support"`
	// Service is the policy of machine identities' memberships. Defaults as partner.
	Service KindPolicy `yaml:"service"`
}

// Of returns the policy of kind, and false for a kind Portcullis does not know.
func (k *KindPolicies) Of(kind string) (*KindPolicy, bool) {
	switch kind {
	case "employee":
		return &k.Employee, true
	case "partner":
		return &k.Partner, true
	case "reseller":
		return &k.Reseller, true
	case "support":
		return &k.Support, true
	case "service":
		return &k.Service, true
	}
	return nil, false
}

// KindPolicy is what a membership of one kind must respect.
type KindPolicy struct {
	// MaxDuration is the longest a membership (or a request's grant) may last from when it is
	// granted. 0: no end required, but then review_every must be set.
	MaxDuration *Duration `yaml:"max_duration"`
	// ReviewEvery is how often a membership must be re-approved: a grant gets a review date
	// this far ahead, and a review that keeps it sets the next. 0: no periodic review.
	ReviewEvery *Duration `yaml:"review_every"`
	// Approvers names who may approve a request of this kind: operator (the platform's
	// operators), org_admin (an administrator of the organisation concerned), or
	// org_admin_of:ORG (an administrator of that organisation, such as the partner's own).
	Approvers []string `yaml:"approvers"`
	// ApprovalsRequired is how many distinct approvers, none of them the requester, a request
	// needs (two for a two-person rule).
	ApprovalsRequired int `yaml:"approvals_required"`
	// RequiresTicket refuses a request or grant without a ticket reference.
	RequiresTicket *bool `yaml:"requires_ticket"`
	// AllowedRoles are the roles a membership of this kind may hold; a role outside the list
	// is refused when written and does not count at decision time. Empty: any role.
	AllowedRoles []string `yaml:"allowed_roles"`
}

// PrivilegedRole is a role reached only just in time.
type PrivilegedRole struct {
	// MaxElevation is the longest one approved request may grant the role for. Required.
	MaxElevation Duration `yaml:"max_elevation"`
}

// Approver rules of KindPolicy.Approvers.
const (
	ApproverOperator   = "operator"
	ApproverOrgAdmin   = "org_admin"
	ApproverOrgAdminOf = "org_admin_of:"
)

// lifecycleDefaults are the built-in kind policies: the defaults of each key of
// lifecycle.kinds.KIND, applied key by key to what the file leaves unset.
var lifecycleDefaults = map[string]KindPolicy{
	"employee": {MaxDuration: days(0), ReviewEvery: days(365), Approvers: []string{ApproverOrgAdmin, ApproverOperator}, ApprovalsRequired: 1},
	"partner":  {MaxDuration: days(365), ReviewEvery: days(90), Approvers: []string{ApproverOrgAdmin, ApproverOperator}, ApprovalsRequired: 1},
	"reseller": {MaxDuration: days(365), ReviewEvery: days(90), Approvers: []string{ApproverOrgAdmin, ApproverOperator}, ApprovalsRequired: 1},
	"support":  {MaxDuration: days(30), ReviewEvery: days(30), Approvers: []string{ApproverOrgAdmin}, ApprovalsRequired: 1, RequiresTicket: ptr(true)},
	"service":  {MaxDuration: days(365), ReviewEvery: days(90), Approvers: []string{ApproverOrgAdmin, ApproverOperator}, ApprovalsRequired: 1},
}

func days(n int) *Duration {
	d := Duration(time.Duration(n) * day)
	return &d
}

const day = 24 * time.Hour

func ptr[T any](v T) *T { return &v }

// OrZero returns the value of an optional duration as a time.Duration: 0 when it is nil.
func (d *Duration) OrZero() time.Duration {
	if d == nil {
		return 0
	}
	return time.Duration(*d)
}

// lifecycleDefaultRules are the defaults of every key of lifecycle.kinds, one rule per kind
// and key, from lifecycleDefaults (an explicit 0 for max_duration or review_every is kept: no
// end, no periodic review).
func lifecycleDefaultRules() []defaultRule {
	var rules []defaultRule
	for _, kind := range MembershipKinds {
		d := lifecycleDefaults[kind]
		of := func(c *Config) *KindPolicy { k, _ := c.Lifecycle.Kinds.Of(kind); return k }
		p := "lifecycle.kinds." + kind + "."
		rules = append(rules,
			defaultRule{Default{p + "max_duration", showDays(d.MaxDuration, "0 (no end)")}, func(c *Config) {
				if k := of(c); k.MaxDuration == nil {
					k.MaxDuration = ptr(*d.MaxDuration)
				}
			}},
			defaultRule{Default{p + "review_every", showDays(d.ReviewEvery, "0 (no review)")}, func(c *Config) {
				if k := of(c); k.ReviewEvery == nil {
					k.ReviewEvery = ptr(*d.ReviewEvery)
				}
			}},
			defaultRule{Default{p + "approvers", "[" + strings.Join(d.Approvers, ", ") + "]"}, func(c *Config) {
				if k := of(c); len(k.Approvers) == 0 {
					k.Approvers = slices.Clone(d.Approvers)
				}
			}},
			defaultRule{Default{p + "approvals_required", strconv.Itoa(d.ApprovalsRequired)}, func(c *Config) {
				setInt(&of(c).ApprovalsRequired, d.ApprovalsRequired)
			}},
			defaultRule{Default{p + "requires_ticket", strconv.FormatBool(d.RequiresTicket != nil && *d.RequiresTicket)}, func(c *Config) {
				setBool(&of(c).RequiresTicket, d.RequiresTicket != nil && *d.RequiresTicket)
			}},
		)
	}
	return rules
}

// showDays writes a default duration in days, or zero when it is 0.
func showDays(d *Duration, zero string) string {
	if d.OrZero() == 0 {
		return zero
	}
	return strconv.Itoa(int(d.OrZero()/day)) + "d"
}

// lifecycle checks the lifecycle section.
func (v *validator) lifecycle(l *Lifecycle) {
	for _, kind := range MembershipKinds {
		k, _ := l.Kinds.Of(kind)
		p := "lifecycle.kinds." + kind
		if k.MaxDuration.OrZero() == 0 && k.ReviewEvery.OrZero() == 0 {
			v.errorf(p, "needs max_duration or review_every: every entitlement has an end or a review date")
		}
		if k.ApprovalsRequired < 1 || k.ApprovalsRequired > 5 {
			v.errorf(p+".approvals_required", "must be from 1 to 5, got %s", v.showInt(p+".approvals_required", k.ApprovalsRequired))
		}
		for i, a := range k.Approvers {
			ap := fmt.Sprintf("%s.approvers[%d]", p, i)
			if !validApprover(a) {
				v.errorf(ap, "must be operator, org_admin or org_admin_of:ORG, got %s", v.show(ap, a))
			}
		}
		v.names(p+".allowed_roles", k.AllowedRoles)
	}
	for role, pr := range l.PrivilegedRoles {
		p := "lifecycle.privileged_roles." + role
		if !routeNamePattern.MatchString(role) {
			v.keyErrorf(p, "must be lower-case letters, digits, \"_\" and \"-\"")
		}
		if pr.MaxElevation <= 0 {
			v.errorf(p+".max_elevation", "is required and must be positive")
		}
	}
	if !routeNamePattern.MatchString(l.AdminRole) {
		v.errorf("lifecycle.admin_role", "must be lower-case letters, digits, \"_\" and \"-\"")
	}
	if _, ok := l.PrivilegedRoles[l.AdminRole]; ok {
		// Reported where the file says it: the admin role is often the default, not written.
		v.keyErrorf("lifecycle.privileged_roles."+l.AdminRole, "is the admin role (lifecycle.admin_role): administrators hold it standing to approve requests, so it cannot be privileged")
	}
	if d := l.RequestTTL.D(); d < time.Minute || d > 90*day {
		v.errorf("lifecycle.request_ttl", "must be from 1m to 90d")
	}
	if d := l.APIKeys.MaxLifetime.D(); d < time.Hour || d > 366*day {
		v.errorf("lifecycle.api_keys.max_lifetime", "must be from 1h to 366d")
	}
	if d := l.APIKeys.MaxOverlap.D(); d < 0 || d > l.APIKeys.MaxLifetime.D() {
		v.errorf("lifecycle.api_keys.max_overlap", "must be from 0 to max_lifetime")
	}
	if d := l.APIKeys.DisableUnusedAfter.OrZero(); d != 0 && d < 24*time.Hour {
		v.errorf("lifecycle.api_keys.disable_unused_after", "must be 0 (never) or at least 1d: last uses are recorded hourly")
	}
}

// validApprover reports whether a is an approver rule.
func validApprover(a string) bool {
	if a == ApproverOperator || a == ApproverOrgAdmin {
		return true
	}
	org, ok := strings.CutPrefix(a, ApproverOrgAdminOf)
	return ok && syntax.OrgID(org)
}
