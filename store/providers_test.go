package store

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
)

// Managed providers are audited changes, announced on their channel; a record holds secrets
// by reference only; one listed by an organisation cannot be deleted; one bound to an
// organisation needs it to exist.
func TestManagedProviderRecords(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	var heard atomic.Int32
	changed := make(chan struct{}, 16)
	stop := f.s.WatchProviders(func() { heard.Add(1); changed <- struct{}{} }, nil)
	defer stop()
	select { // the subscription's confirmation rereads once
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no reread when the subscription became active")
	}

	p := config.ManagedProvider{Name: "acme-okta", Issuer: "https://acme.okta.example", ClientID: "0oa1", ClientSecretFile: "acme-okta", Org: "acme"}
	if _, err := f.o.SaveProvider(ctx, config.ManagedProvider{Name: "default", Issuer: "https://x.example"}, admin, "r"); !errors.Is(err, ErrInvalid) {
		t.Errorf("the default provider's name: %v", err)
	}
	if _, err := f.o.SaveProvider(ctx, config.ManagedProvider{Name: "x", Issuer: "https://x.example", Org: "ghost"}, admin, "r"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bound to a missing organisation: %v", err)
	}
	f.expect(nil)
	created, err := f.o.SaveProvider(ctx, p, admin, "acme's Okta")
	if err != nil || !created {
		t.Fatalf("save: %v %v", created, err)
	}
	evs := f.expect([]audit.Type{audit.ProviderSaved})
	if evs[0].Org != "acme" || evs[0].Detail["provider"] != "acme-okta" || evs[0].Reason != "acme's Okta" || evs[0].Actor != admin {
		t.Errorf("event %+v", evs[0])
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("the change was not announced")
	}
	p.DisplayName = "Acme (Okta)"
	if created, err := f.o.SaveProvider(ctx, p, admin, "rename"); err != nil || created {
		t.Fatalf("replace: %v %v", created, err)
	}
	evs = f.expect([]audit.Type{audit.ProviderSaved})
	if !strings.Contains(string(evs[0].Before), `"acme-okta"`) || !strings.Contains(string(evs[0].After), "Acme (Okta)") {
		t.Errorf("before/after %s → %s", evs[0].Before, evs[0].After)
	}
	// Its issuer cannot change, and no other may take it.
	moved := p
	moved.Issuer = "https://evil.example"
	if _, err := f.o.SaveProvider(ctx, moved, admin, "r"); !errors.Is(err, ErrConflict) {
		t.Errorf("issuer changed: %v", err)
	}
	twin := config.ManagedProvider{Name: "twin", Issuer: "https://acme.okta.example/", ClientID: "c"}
	if _, err := f.o.SaveProvider(ctx, twin, admin, "r"); !errors.Is(err, ErrConflict) {
		t.Errorf("another provider on the same issuer: %v", err)
	}
	f.expect(nil)
	list, bad, err := f.s.ManagedProviders(ctx)
	if err != nil || len(bad) != 0 || len(list) != 1 || list[0].DisplayName != "Acme (Okta)" || list[0].ClientSecretFile != "acme-okta" {
		t.Fatalf("list %+v %v %v", list, bad, err)
	}

	if _, err := f.o.SetOrgProviders(ctx, "acme", []string{"acme-okta"}, admin, "r"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.OrgProvidersChanged}, invalOrg("acme"))
	if err := f.o.DeleteProvider(ctx, "acme-okta", admin, "r"); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete while listed: %v", err)
	}
	if _, err := f.o.SetOrgProviders(ctx, "acme", nil, admin, "r"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.OrgProvidersChanged}, invalOrg("acme"))
	if err := f.o.DeleteProvider(ctx, "acme-okta", admin, "contract ended"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.ProviderDeleted})
	if err := f.o.DeleteProvider(ctx, "acme-okta", admin, "again"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	// Added again, the name keeps its issuer: it cannot come back pointing elsewhere.
	if _, err := f.o.SaveProvider(ctx, moved, admin, "r"); !errors.Is(err, ErrConflict) {
		t.Errorf("re-added pointing elsewhere: %v", err)
	}
	if _, err := f.o.SaveProvider(ctx, p, admin, "back"); err != nil {
		t.Errorf("re-added as it was: %v", err)
	}
	f.expect([]audit.Type{audit.ProviderSaved})
	// A record that does not read is left out, and said so.
	f.raw.HSet(ctx, f.s.keys.providers(), "broken", "{not json")
	if list, bad, err := f.s.ManagedProviders(ctx); err != nil || len(list) != 1 || len(bad) != 1 {
		t.Errorf("with a broken record: %v %v %v", list, bad, err)
	}
}
