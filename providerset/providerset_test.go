package providerset

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

type fakeSource struct {
	list []config.ManagedProvider
	err  error
}

func (f *fakeSource) ManagedProviders(context.Context) ([]config.ManagedProvider, []error, error) {
	return f.list, nil, f.err
}
func (f *fakeSource) WatchProviders(func(), *slog.Logger) func() { return func() {} }

func oidcWith(t *testing.T) config.OIDC {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "acme"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb, _ := url.Parse("https://login.portal.example/.portcullis/callback")
	return config.OIDC{
		RedirectURI:      cb,
		ManagedProviders: config.ManagedProviders{SecretsDir: dir},
		All:              []config.OIDCProvider{{Name: config.DefaultProvider, Issuer: "https://idp.portal.example", ClientID: "c", Shared: true}},
	}
}

// Reload puts the managed providers in force beside the configured ones, with their callback
// and secret, and leaves out (failing closed) one that clashes or whose secret is missing here.
func TestReload(t *testing.T) {
	src := &fakeSource{list: []config.ManagedProvider{
		{Name: "acme", Issuer: "https://acme.example", ClientID: "c", ClientSecretFile: "acme", Org: "acme"},
		{Name: "clash", Issuer: "https://idp.portal.example/", ClientID: "c"}, // the default's issuer
		{Name: "default", Issuer: "https://other.example", ClientID: "c"},     // a configured name
		{Name: "nosecret", Issuer: "https://n.example", ClientID: "c", ClientSecretFile: "missing"},
	}}
	s := New(oidcWith(t), src, nil)
	var heard [][]config.OIDCProvider
	s.OnChange(func(all []config.OIDCProvider) { heard = append(heard, all) })
	if s.Trust().Load().Known("acme") {
		t.Fatal("a managed provider in force before Reload")
	}
	if err := s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	all := s.All()
	if len(all) != 2 || all[1].Name != "acme" || all[1].ClientSecret.Reveal() != "s3cret" ||
		all[1].RedirectURI.String() != "https://login.portal.example/.portcullis/callback/acme" {
		t.Fatalf("in force: %+v", all)
	}
	tr := s.Trust().Load()
	if !tr.Known("acme") || tr.Known("clash") || tr.Known("nosecret") || tr.BoundTo("acme") != "acme" {
		t.Error("trust table")
	}
	if len(heard) != 1 || len(heard[0]) != 2 {
		t.Errorf("OnChange heard %v", heard)
	}
	if len(s.Managed()) != 4 {
		t.Errorf("Managed = %d records, want all four as read", len(s.Managed()))
	}
	// A source that cannot be read keeps what is in force.
	src.err = errors.Join(store.ErrUnavailable)
	if err := s.Reload(context.Background()); err == nil || !s.Trust().Load().Known("acme") {
		t.Errorf("after a failed read: %v, acme known %v", err, s.Trust().Load().Known("acme"))
	}
	// Deleting it takes it out of force.
	src.err, src.list = nil, nil
	if err := s.Reload(context.Background()); err != nil || s.Trust().Load().Known("acme") || len(s.All()) != 1 {
		t.Errorf("after deletion: %v %+v", err, s.All())
	}
}

// Without oidc.managed_providers nothing is read, whatever the store holds.
func TestNotManaged(t *testing.T) {
	oc := oidcWith(t)
	oc.ManagedProviders = config.ManagedProviders{}
	src := &fakeSource{list: []config.ManagedProvider{{Name: "acme", Issuer: "https://acme.example", ClientID: "c"}}}
	s := New(oc, src, nil)
	if err := s.Reload(context.Background()); err != nil || len(s.All()) != 1 {
		t.Errorf("%v %+v", err, s.All())
	}
}
