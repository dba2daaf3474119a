package config

import (
	"slices"
	"strings"
)

// SCIM configures the SCIM 2.0 service provider (RFC 7643/7644) each organisation's own
// directory provisions its people through: /scim/v2/{org}/Users and /Groups on the admin API
// listener, behind tokens made for that organisation. What a provisioned user becomes is a
// membership like any other, within the lifecycle policy.
type SCIM struct {
	// Enabled serves SCIM. It needs admin_api.listen. Default false.
	Enabled bool `yaml:"enabled"`
	// SubjectAttribute is the user attribute holding the person's subject ("sub") at the
	// organisation's provider: externalId (default; Okta sends its user id there, which is
	// its sub) or userName.
	SubjectAttribute string `yaml:"subject_attribute"`
	// Kind is the kind of the memberships SCIM creates. Default employee.
	Kind string `yaml:"kind"`
	// Roles are the roles every provisioned member holds. Default [user].
	Roles []string `yaml:"roles"`
	// GroupRoles maps a SCIM group's displayName to the role its members hold (within the
	// kind's allowed_roles). A privileged role (lifecycle.privileged_roles) cannot be
	// named: those are reached by an approved request, never provisioned. Default: none.
	GroupRoles map[string]string `yaml:"group_roles"`
}

// SCIM subject attributes.
const (
	SCIMSubjectExternalID = "externalId"
	SCIMSubjectUserName   = "userName"
)

func (v *validator) scim(c *Config) {
	s := &c.SCIM
	if !s.Enabled {
		return
	}
	if !c.AdminAPI.Enabled() {
		v.errorf("scim.enabled", "needs admin_api.listen: SCIM is served on the admin API listener")
	}
	switch s.SubjectAttribute {
	case SCIMSubjectExternalID, SCIMSubjectUserName:
	default:
		v.errorf("scim.subject_attribute", "%s must be externalId or userName", v.show("scim.subject_attribute", s.SubjectAttribute))
	}
	if !slices.Contains([]string{"employee", "partner", "reseller"}, s.Kind) {
		// Support and service memberships go through requests, never a grant alone.
		v.errorf("scim.kind", "%s must be one of employee, partner, reseller", v.show("scim.kind", s.Kind))
	}
	roles := slices.Clone(s.Roles)
	groups := map[string]bool{}
	for g, r := range s.GroupRoles {
		p := "scim.group_roles." + g
		groups[strings.ToLower(g)] = true
		if strings.TrimSpace(g) == "" || r == "" {
			v.keyErrorf(p, "must map a group's displayName to a role")
			continue
		}
		roles = append(roles, r)
	}
	for _, r := range roles {
		if _, ok := c.Lifecycle.PrivilegedRoles[r]; ok {
			v.errorf("scim", "role %s is privileged (lifecycle.privileged_roles): it is reached by an approved request, never provisioned", r)
		}
		if k, ok := c.Lifecycle.Kinds.Of(s.Kind); ok && len(k.AllowedRoles) > 0 && !slices.Contains(k.AllowedRoles, r) {
			v.errorf("scim", "role %s is not among lifecycle.kinds.%s.allowed_roles", r, s.Kind)
		}
	}
	if len(groups) < len(s.GroupRoles) {
		v.errorf("scim.group_roles", "names a group twice (group names compare without case)")
	}
}
