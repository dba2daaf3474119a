package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// ProviderSet is the providers in force and their management (providerset.Set): what the
// provider endpoints read and change.
type ProviderSet interface {
	All() []config.OIDCProvider
	Managed() []config.ManagedProvider
	Configured(name string) bool
	ManagedConfig() config.ManagedProviders
	Admit(mp config.ManagedProvider, listedBy []string) error
	Reload(ctx context.Context) error
}

// ProviderView is a provider as the API shows it (GET /providers): where it comes from, whether it is in force
// in this process, and for a managed one its record (secrets by reference only).
type ProviderView struct {
	Name    string `json:"name"`
	Issuer  string `json:"issuer"`
	Org     string `json:"org,omitempty"`
	Shared  bool   `json:"shared,omitempty"`
	Source  string `json:"source"` // configuration or admin_api
	InForce bool   `json:"in_force"`
	// Managed is the record of a provider added through the API.
	Managed *config.ManagedProvider `json:"managed,omitempty"`
	// ListedBy are the organisations whose provider list names it.
	ListedBy []string `json:"listed_by,omitempty"`
}

// providerInput adds or replaces a managed provider: the keys of an oidc.providers entry, with
// the client secret by reference (client_secret_file, client_secret_env) and, optionally, the
// one organisation it is bound to (org).
type providerInput struct {
	Provider json.RawMessage `json:"provider,omitempty"`
	// ProviderYAML is the provider as a YAML document instead (the CLI sends the file as it
	// is, so its values and line numbers are the file's).
	ProviderYAML string `json:"provider_yaml,omitempty"`
	Reason       string `json:"reason"`
}

func (in *providerInput) why() string { return in.Reason }

// providerDoc is providerInput as the OpenAPI document describes it.
type providerDoc struct {
	Provider     config.ManagedProvider `json:"provider"`
	ProviderYAML string                 `json:"provider_yaml,omitempty"`
	Reason       string                 `json:"reason"`
}

func (c *call) providerSet() (ProviderSet, error) {
	if c.s.pset == nil || !c.s.pset.ManagedConfig().Enabled() {
		return nil, refuse(reason.NotPermitted, "providers are managed in the configuration file here (oidc.managed_providers is not set)")
	}
	return c.s.pset, nil
}

func (c *call) listProviders() (any, error) {
	out := list[ProviderView]{Items: []ProviderView{}}
	if c.s.pset == nil {
		return out, nil
	}
	views, err := ProviderViews(c.ctx, c.s.pset, c.s.orgs)
	if views != nil {
		out.Items = views
	}
	return out, err
}

// ProviderViews are the providers of ps as the API shows them: the file's, then the managed
// ones, each with the organisations whose list names it (orgs.Listings).
func ProviderViews(ctx context.Context, ps ProviderSet, orgs interface {
	Listings(ctx context.Context) (map[string][]string, error)
}) ([]ProviderView, error) {
	var out []ProviderView
	inForce := map[string]bool{}
	for _, p := range ps.All() {
		inForce[p.Name] = true
		if ps.Configured(p.Name) {
			out = append(out, ProviderView{Name: p.Name, Issuer: p.Issuer, Org: p.Org, Shared: p.Shared, Source: "configuration", InForce: true})
		}
	}
	for _, mp := range ps.Managed() {
		out = append(out, ProviderView{Name: mp.Name, Issuer: mp.Issuer, Org: mp.Org, Source: "admin_api", InForce: inForce[mp.Name], Managed: &mp})
	}
	by, err := orgs.Listings(ctx)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].ListedBy = by[out[i].Name]
	}
	return out, nil
}

// saveProvider adds or replaces the managed provider of the path. It is checked as the
// configuration checks oidc.providers entries, its secret reference must resolve in this
// process, and neither its name nor its issuer may be another provider's.
func (c *call) saveProvider() (any, error) {
	ps, err := c.providerSet()
	if err != nil {
		return nil, err
	}
	name := c.r.PathValue("name")
	var in providerInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	doc, docName := []byte(in.Provider), "provider"
	switch has := len(in.Provider) > 0 && string(in.Provider) != "null"; {
	case has && in.ProviderYAML != "":
		return nil, invalid("give provider or provider_yaml, not both")
	case in.ProviderYAML != "":
		doc, docName = []byte(in.ProviderYAML), "provider_yaml"
	case !has:
		return nil, invalid("provider: is required")
	}
	mp, _, err := config.ParseManagedProvider(docName, doc, ps.ManagedConfig())
	if err != nil {
		return nil, invalid(configProblem(err))
	}
	if mp.Name != name {
		return nil, invalid(fmt.Sprintf("provider.name %q is not the name of the path, %q", mp.Name, name))
	}
	by, err := c.changes().OrgsListing(c.ctx, name)
	if err != nil {
		return nil, err
	}
	if err := ps.Admit(*mp, by); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, refuse(reason.Conflict, err.Error())
		}
		return nil, invalid(err.Error())
	}
	if _, err := c.changes().SaveProvider(c.ctx, *mp, c.p.Name, in.Reason); err != nil {
		return nil, err
	}
	// In force here at once; the other replicas hear the announcement.
	if err := ps.Reload(c.ctx); err != nil {
		c.s.log.Warn("managed providers not reread after a change; the subscription will", "error", err.Error())
	}
	v := ProviderView{Name: mp.Name, Issuer: mp.Issuer, Org: mp.Org, Source: "admin_api", Managed: mp}
	for _, p := range ps.All() {
		v.InForce = v.InForce || p.Name == mp.Name
	}
	return v, nil
}

// deleteProviderInput removes a managed provider.
type deleteProviderInput struct {
	Reason string `json:"reason"`
}

func (in *deleteProviderInput) why() string { return in.Reason }

func (c *call) deleteProvider() (any, error) {
	ps, err := c.providerSet()
	if err != nil {
		return nil, err
	}
	name := c.r.PathValue("name")
	var in deleteProviderInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	if ps.Configured(name) {
		return nil, refuse(reason.Conflict, "provider "+name+" is in the configuration file: remove it there")
	}
	if err := c.changes().DeleteProvider(c.ctx, name, c.p.Name, in.Reason); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, refuse(reason.Conflict, "organisations list provider "+name+": change their lists first")
		}
		return nil, err
	}
	if err := ps.Reload(c.ctx); err != nil {
		c.s.log.Warn("managed providers not reread after a change; the subscription will", "error", err.Error())
	}
	return map[string]string{"deleted": name}, nil
}

// configProblem is the configuration's errors as one detail: each key with its message.
func configProblem(err error) string {
	var errs config.Errors
	if !errors.As(err, &errs) {
		return err.Error()
	}
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, e.Key+": "+e.Message)
	}
	return strings.Join(parts, "; ")
}
