package admin

import (
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/providerset"
)

// TestManagedProviderEndpoints: only operators manage providers; the file's cannot be replaced
// or removed through the API; another provider's issuer cannot be taken; a provider bound to
// one organisation cannot be bound once another lists it; a refusal records nothing.
func TestManagedProviderEndpoints(t *testing.T) {
	b := newBed(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "acme-idp"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cb, _ := url.Parse("https://login.portal/.portcullis/callback")
	oc := config.OIDC{RedirectURI: cb, ManagedProviders: config.ManagedProviders{SecretsDir: dir},
		All: []config.OIDCProvider{{Name: config.DefaultProvider, Issuer: "https://idp.portal", ClientID: "c", Shared: true}}}
	ps := providerset.New(oc, b.st, nil)
	api, err := New(Options{Store: b.st, Orgs: b.orgs, Audit: b.aud, Lifecycle: b.api.policy.Load().Policy, Sessions: b.st, Now: b.now,
		Trust: ps.Trust(), ProviderSet: ps})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	b.srv = srv
	annTok := b.personal(ann, "", false)
	put := func(tok, name string, p map[string]any) answer {
		return b.call(tok, "PUT", "/api/v1/providers/"+name, map[string]any{"provider": p, "reason": "acme's IdP"})
	}
	acme := func() map[string]any {
		return map[string]any{"name": "acme-idp", "issuer": "https://idp.acme", "client_id": "c", "client_secret_file": "acme-idp", "org": "acme"}
	}

	b.want(put(annTok, "acme-idp", acme()), 403, "")
	b.want(b.call(annTok, "GET", "/api/v1/providers", nil), 403, "")
	other := acme()
	other["name"] = "other"
	b.want(put(b.ops, "acme-idp", other), 400, "invalid_input") // the path names another
	clash := acme()
	clash["issuer"] = "https://idp.portal/"
	b.want(put(b.ops, "acme-idp", clash), 409, "conflict") // the default's issuer
	def := acme()
	def["name"] = "default"
	b.want(put(b.ops, "default", def), 400, "invalid_input")
	b.want(b.call(b.ops, "POST", "/api/v1/providers/default/delete", map[string]any{"reason": "r"}), 409, "conflict")
	if evs := b.events(audit.ProviderSaved); len(evs) != 0 {
		t.Fatalf("refused changes recorded: %+v", evs)
	}

	b.want(put(b.ops, "acme-idp", acme()), 200, "")
	if !ps.Trust().Load().Known("acme-idp") {
		t.Fatal("not in force in this process after the change")
	}
	l := b.call(b.ops, "GET", "/api/v1/providers", nil)
	b.want(l, 200, "")
	if items := l.body["items"].([]any); len(items) != 2 {
		t.Fatalf("list %s", l.raw)
	}
	// acme lists it; beta cannot; rebinding it to beta is refused while acme lists it.
	b.want(b.call(b.ops, "PUT", "/api/v1/orgs/acme/providers", map[string]any{"providers": []string{"acme-idp"}, "reason": "r"}), 200, "")
	b.want(b.call(b.ops, "PUT", "/api/v1/orgs/beta/providers", map[string]any{"providers": []string{"acme-idp"}, "reason": "r"}), 403, "not_permitted")
	rebind := acme()
	rebind["org"] = "beta"
	b.want(put(b.ops, "acme-idp", rebind), 409, "conflict")
	b.want(b.call(b.ops, "POST", "/api/v1/providers/acme-idp/delete", map[string]any{"reason": "r"}), 409, "conflict")
	if evs := b.events(audit.ProviderSaved); len(evs) != 1 || evs[0].Org != "acme" {
		t.Fatalf("events %+v", evs)
	}
}

// Without oidc.managed_providers the endpoints that change providers refuse.
func TestManagedProvidersOff(t *testing.T) {
	b := newBed(t)
	b.want(b.call(b.ops, "PUT", "/api/v1/providers/acme-idp", map[string]any{"provider": map[string]any{"name": "acme-idp"}, "reason": "r"}), 403, "not_permitted")
	l := b.call(b.ops, "GET", "/api/v1/providers", nil)
	b.want(l, 200, "")
}
