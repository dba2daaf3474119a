package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"text/tabwriter"

	"github.com/portcullis-proxy/portcullis/admin"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// Managed OpenID Providers (oidc.managed_providers): `portcullis admin provider …`.

// providerBackend is what the provider commands do, through the API or break-glass.
type providerBackend interface {
	Providers(ctx context.Context) ([]admin.ProviderView, error)
	// SaveProvider adds or replaces the managed provider name from doc (its JSON or YAML).
	SaveProvider(ctx context.Context, name string, doc []byte, reason string) (*admin.ProviderView, error)
	DeleteProvider(ctx context.Context, name, reason string) error
}

// adminProviderList lists the providers, the file's and the managed ones.
func adminProviderList(a *adminRun) int {
	if !a.parse() || !a.open() {
		return 2
	}
	defer a.close()
	ps, err := a.be.Providers(a.ctx)
	if err != nil {
		return a.fail(err)
	}
	return a.output(ps, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSOURCE\tIN FORCE\tORG\tISSUER\tLISTED BY")
		for _, p := range ps {
			org := p.Org
			if org == "" && p.Shared {
				org = "(shared)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%v\n", p.Name, p.Source, p.InForce, org, p.Issuer, p.ListedBy)
		}
		tw.Flush()
	})
}

// adminProviderPut adds or replaces a managed provider from a file.
func adminProviderPut(a *adminRun) int {
	file := a.fs.String("file", "", "the provider: a JSON or YAML document with the keys of an oidc.providers entry, the secret by reference (client_secret_file or client_secret_env) (required)")
	if !a.parse("NAME") {
		return 2
	}
	name := a.pos[0]
	if *file == "" {
		a.bad("--file", "is required")
	}
	var doc []byte
	if *file != "" {
		var err error
		if doc, err = os.ReadFile(*file); err != nil {
			a.bad("--file", "%s", err.Error())
		}
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	p, err := a.be.SaveProvider(a.ctx, name, doc, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(p, func(w io.Writer) {
		fmt.Fprintf(w, "provider %s saved (issuer %s", p.Name, p.Issuer)
		if p.Org != "" {
			fmt.Fprintf(w, ", bound to %s", p.Org)
		}
		fmt.Fprintf(w, "); in force here: %v. Organisations trust it once they list it: portcullis admin org providers ORG --provider %s\n", p.InForce, p.Name)
	})
}

// adminProviderDelete removes a managed provider no organisation lists.
func adminProviderDelete(a *adminRun) int {
	if !a.parse("NAME") || !a.open() {
		return 2
	}
	defer a.close()
	if err := a.be.DeleteProvider(a.ctx, a.pos[0], a.reason); err != nil {
		return a.fail(err)
	}
	return a.output(map[string]string{"deleted": a.pos[0]}, func(w io.Writer) {
		fmt.Fprintf(w, "provider %s deleted\n", a.pos[0])
	})
}

func (b *apiBackend) Providers(ctx context.Context) ([]admin.ProviderView, error) {
	var out items[admin.ProviderView]
	return out.Items, b.call(ctx, "GET", "/providers", nil, &out)
}

func (b *apiBackend) SaveProvider(ctx context.Context, name string, doc []byte, reason string) (*admin.ProviderView, error) {
	// A JSON file goes as it is; a YAML one as text, which the server reads as the
	// configuration does: its values and line numbers stay the file's.
	body := map[string]any{"reason": reason}
	if json.Valid(doc) {
		body["provider"] = json.RawMessage(doc)
	} else {
		body["provider_yaml"] = string(doc)
	}
	var out admin.ProviderView
	return &out, b.call(ctx, "PUT", "/providers/"+url.PathEscape(name), body, &out)
}

func (b *apiBackend) DeleteProvider(ctx context.Context, name, reason string) error {
	return b.call(ctx, "POST", "/providers/"+url.PathEscape(name)+"/delete", map[string]any{"reason": reason}, nil)
}

func (b *storeBackend) Providers(ctx context.Context) ([]admin.ProviderView, error) {
	return admin.ProviderViews(ctx, b.pset, b.orgs)
}

func (b *storeBackend) SaveProvider(ctx context.Context, name string, doc []byte, reason string) (*admin.ProviderView, error) {
	mc := b.pset.ManagedConfig()
	if !mc.Enabled() {
		return nil, errors.New("providers are managed in the configuration file here (oidc.managed_providers is not set)")
	}
	mp, _, err := config.ParseManagedProvider("provider file", doc, mc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, store.ErrInvalid)
	}
	if mp.Name != name {
		return nil, fmt.Errorf("the file's name %q is not %q: %w", mp.Name, name, store.ErrInvalid)
	}
	by, err := b.orgs.OrgsListing(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := b.pset.Admit(*mp, by); err != nil {
		return nil, err
	}
	if _, err := b.orgs.SaveProvider(ctx, *mp, b.actor, reason); err != nil {
		return nil, err
	}
	return &admin.ProviderView{Name: mp.Name, Issuer: mp.Issuer, Org: mp.Org, Source: "admin_api", Managed: mp}, nil
}

func (b *storeBackend) DeleteProvider(ctx context.Context, name, reason string) error {
	if b.pset.Configured(name) {
		return fmt.Errorf("provider %s is in the configuration file: remove it there: %w", name, store.ErrConflict)
	}
	return b.orgs.DeleteProvider(ctx, name, b.actor, reason)
}
