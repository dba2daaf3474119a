package authz

import (
	"slices"
	"strings"
	"sync/atomic"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// Providers is which OpenID Providers may establish identities for which organisations,
// compiled from oidc's providers (config.OIDC.All): the trust rule of Decide. An organisation
// that lists providers (store.Org.Providers) trusts those; one that lists none trusts the
// shared providers. A person is their issuer and subject (store.UserKey), so a membership
// already belongs to one provider's person; the rule makes sure that provider speaks for the
// organisation, whatever anyone granted or an invitation bound.
//
// A nil *Providers trusts every issuer: the decision is then what it was before providers
// (the admin API's own tests, and deployments without sign-in). It is immutable and safe to
// share.
type Providers struct {
	list []trusted
}

type trusted struct {
	name, issuer string
	shared       bool
	org          string // the one organisation it may sign people in for; "" any that lists it
}

// CompileProviders compiles the configured providers; nil when there are none.
func CompileProviders(all []config.OIDCProvider) *Providers {
	if len(all) == 0 {
		return nil
	}
	p := &Providers{}
	for _, c := range all {
		p.list = append(p.list, trusted{name: c.Name, issuer: strings.TrimSuffix(c.Issuer, "/"), shared: c.Shared && c.Org == "", org: c.Org})
	}
	return p
}

// Known reports whether name is a configured provider (none is, for a nil p).
func (p *Providers) Known(name string) bool {
	if p == nil {
		return false
	}
	for i := range p.list {
		if p.list[i].name == name {
			return true
		}
	}
	return false
}

// Unknown is the first of names that is not a configured provider, "" when all are: what an
// organisation's provider list may not name.
func (p *Providers) Unknown(names []string) string {
	for _, n := range names {
		if !p.Known(n) {
			return n
		}
	}
	return ""
}

// BoundTo is the organisation provider name is bound to (OIDCProvider.Org), "" when none.
func (p *Providers) BoundTo(name string) string {
	if p == nil {
		return ""
	}
	for i := range p.list {
		if p.list[i].name == name {
			return p.list[i].org
		}
	}
	return ""
}

// Foreign is the first of names bound to another organisation than org, "" when none is: what
// org's provider list may not name.
func (p *Providers) Foreign(org string, names []string) string {
	for _, n := range names {
		if b := p.BoundTo(n); b != "" && b != org {
			return n
		}
	}
	return ""
}

// Issuer is the issuer of the provider called name, "" when none is.
func (p *Providers) Issuer(name string) string {
	if p == nil {
		return ""
	}
	for i := range p.list {
		if p.list[i].name == name {
			return p.list[i].issuer
		}
	}
	return ""
}

// ByIssuer is the name of the provider of issuer, "" when none is configured.
func (p *Providers) ByIssuer(issuer string) string {
	if p == nil {
		return ""
	}
	// go-oidc matches a token's iss to the configured issuer exactly, but keys typed by hand
	// (a sponsor, a token's owner) may differ by a trailing slash, which names the same
	// issuer: config.admin's operator issuers compare the same way.
	issuer = strings.TrimSuffix(issuer, "/")
	for i := range p.list {
		if p.list[i].issuer == issuer {
			return p.list[i].name
		}
	}
	return ""
}

// Trusts reports whether organisation o accepts people signed in through the provider called
// name. It allocates nothing.
func (p *Providers) Trusts(o *store.Org, name string) bool {
	if p == nil {
		return true
	}
	if o == nil || name == "" {
		return false
	}
	for i := range p.list {
		t := &p.list[i]
		if t.name != name {
			continue
		}
		if t.org != "" && t.org != o.ID {
			// Bound to another organisation: whatever this one's list says.
			return false
		}
		if len(o.Providers) > 0 {
			return slices.Contains(o.Providers, name)
		}
		return t.shared
	}
	return false
}

// Trust holds the providers in force, which change while the process runs when providers are
// managed through the admin API: every decision loads the current table. Load and Store are
// safe for concurrent use and allocate nothing. A nil *Trust holds nil (trusts everyone).
type Trust struct{ p atomic.Pointer[Providers] }

// NewTrust holds p.
func NewTrust(p *Providers) *Trust {
	t := &Trust{}
	t.p.Store(p)
	return t
}

// Load is the table in force.
func (t *Trust) Load() *Providers {
	if t == nil {
		return nil
	}
	return t.p.Load()
}

// Store replaces the table in force.
func (t *Trust) Store(p *Providers) { t.p.Store(p) }

// TrustsUser reports whether o accepts the person user (a store.UserKey): whether the
// provider of the key's issuer is one o trusts. Machine identities are not signed in
// through a provider; their sponsors are, and are decided as persons.
func (p *Providers) TrustsUser(o *store.Org, user string) bool {
	if p == nil || store.IsMachineUser(user) {
		return true
	}
	iss, _, ok := strings.Cut(user, "|")
	if !ok {
		return false
	}
	return p.Trusts(o, p.ByIssuer(iss))
}
