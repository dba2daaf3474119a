package store

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

func TestRecoveryKeysStayInTheirHashTag(t *testing.T) {
	k := mustKeys(t, "")
	for _, id := range attackIDs {
		for _, tc := range []struct{ key, tag string }{
			{k.personByEmail(id), "p:" + escape(id)},
			{k.personByUsername(id), "n:" + escape(id)},
			{k.recoveryIdentifierCount(id, "r}{", 7), "ri:" + escape(id)},
			{k.recoveryClientCount(id, id, 7), "rc:" + escape(id)},
		} {
			if got := hashTag(tc.key); got != tc.tag {
				t.Errorf("id %q: key %q hashes on %q, want %q", id, tc.key, got, tc.tag)
			}
			if strings.Count(tc.key, "{") != 1 || strings.Count(tc.key, "}") != 1 {
				t.Errorf("id %q: key %q has braces beyond its hash tag", id, tc.key)
			}
		}
	}
	// The identifier is hashed: no address appears in a key.
	if h := recoveryHash("email", "alice@fresh.example"); len(h) != 32 || strings.Contains(k.personByEmail(h), "alice") {
		t.Errorf("hash %q", h)
	}
	if recoveryHash("email", "x") == recoveryHash("username", "x") {
		t.Error("kinds share a hash")
	}
}

func TestRecoveryPersonIndexes(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	if err := f.s.RecordPerson(ctx, "Alice@Fresh.Example", alice, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	p, err := f.s.PersonByEmail(ctx, "alice@fresh.example")
	if err != nil || p.User != alice || p.Seen.IsZero() {
		t.Fatalf("PersonByEmail = %+v, %v", p, err)
	}
	for _, other := range []string{"alice+x@fresh.example", "bob@fresh.example", "not an address", ""} {
		_, err := f.s.PersonByEmail(ctx, other)
		wantErr(t, "PersonByEmail("+other+")", err, ErrNotFound)
	}
	wantErr(t, "RecordPerson(bad)", f.s.RecordPerson(ctx, "no-at-sign", alice, time.Now(), 0), ErrInvalid)
	// The person keeps every domain they signed in with (the username check reads them); no
	// address is kept there, only domains.
	if err := f.s.RecordPerson(ctx, "alice@Old-Corp.Example", alice, time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	if ds, err := f.s.MailDomains(ctx, alice); err != nil || !slices.Equal(ds, []string{"fresh.example", "old-corp.example"}) {
		t.Errorf("MailDomains = %v, %v", ds, err)
	}
	if ds, err := f.s.MailDomains(ctx, "https://idp.example|nobody"); err != nil || len(ds) != 0 {
		t.Errorf("MailDomains of nobody = %v, %v", ds, err)
	}
	// An address names one person until someone else signs in with it too.
	if u, err := f.s.ResolveEmail(ctx, "ALICE@fresh.example"); err != nil || u != alice {
		t.Errorf("ResolveEmail = %q, %v", u, err)
	}
	if err := f.s.RecordPerson(ctx, "alice@fresh.example", "https://other.idp|alice2", time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.ResolveEmail(ctx, "alice@fresh.example")
	wantErr(t, "ResolveEmail(shared)", err, ErrConflict)
	if err := f.s.RecordPerson(ctx, "alice@fresh.example", alice, time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.ResolveEmail(ctx, "alice@fresh.example")
	wantErr(t, "ResolveEmail(shared, once)", err, ErrConflict)
	_, err = f.s.ResolveEmail(ctx, "nobody@fresh.example")
	wantErr(t, "ResolveEmail(nobody)", err, ErrNotFound)

	if err := f.s.SetUsername(ctx, "Alice01", alice); err != nil {
		t.Fatal(err)
	}
	if p, err := f.s.PersonByUsername(ctx, "Alice01"); err != nil || p.User != alice {
		t.Fatalf("PersonByUsername = %+v, %v", p, err)
	}
	_, err = f.s.PersonByUsername(ctx, "alice01")
	wantErr(t, "usernames compare exactly", err, ErrNotFound)
	if err := f.s.SetUsername(ctx, "Alice01", ""); err != nil {
		t.Fatal(err)
	}
	_, err = f.s.PersonByUsername(ctx, "Alice01")
	wantErr(t, "removed username", err, ErrNotFound)
}

func TestRecoveryDomainHolder(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	f.createOrg("acme")
	if _, err := f.o.AddDomain(ctx, "acme", "acme.example", admin, "setup"); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.s.DomainHolder(ctx, "acme.example")
	wantErr(t, "pending, never verified", err, ErrNotFound)
	if _, err := f.o.SetDomainStatus(ctx, "acme", "acme.example", DomainVerified, admin, "setup"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"acme.example", "ACME.example.", "mail.acme.example", "a.b.acme.example"} {
		o, matched, err := f.s.DomainHolder(ctx, d)
		if err != nil || o.ID != "acme" || matched != "acme.example" {
			t.Errorf("DomainHolder(%s) = %v, %q, %v", d, o, matched, err)
		}
	}
	for _, d := range []string{"evilacme.example", "example", "acme.example.evil"} {
		_, _, err := f.s.DomainHolder(ctx, d)
		if err == nil {
			t.Errorf("DomainHolder(%s) found a holder", d)
		}
	}
	if _, err := f.o.SetDomainStatus(ctx, "acme", "acme.example", DomainLapsed, admin, "expired"); err != nil {
		t.Fatal(err)
	}
	o, _, err := f.s.DomainHolder(ctx, "mail.acme.example")
	if err != nil || o.ID != "acme" || o.Domains[0].Status != DomainLapsed {
		t.Errorf("lapsed domain: %+v, %v", o, err)
	}
}

func TestRecoveryCount(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	now := time.Unix(1_800_000_000, 0)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := f.s.CountRecovery(ctx, "reset", "alice@fresh.example", "192.0.2.1", time.Hour, now); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	n, err := f.s.CountRecovery(ctx, "reset", "alice@fresh.example", "192.0.2.1", time.Hour, now)
	if err != nil || n.Identifier != 21 || n.Client != 21 || !n.Reset.After(now) {
		t.Fatalf("after 21 requests: %+v, %v", n, err)
	}
	n, _ = f.s.CountRecovery(ctx, "reset", "bob@fresh.example", "192.0.2.1", time.Hour, now)
	if n.Identifier != 1 || n.Client != 22 {
		t.Errorf("another identifier, same client: %+v", n)
	}
	n, _ = f.s.CountRecovery(ctx, "reset", "", "192.0.2.9", time.Hour, now)
	if n.Identifier != 0 || n.Client != 1 {
		t.Errorf("no identifier: %+v", n)
	}
	n, _ = f.s.CountRecovery(ctx, "reset", "alice@fresh.example", "192.0.2.1", time.Hour, now.Add(time.Hour))
	if n.Identifier != 1 || n.Client != 1 {
		t.Errorf("next window: %+v", n)
	}
	// Every counter has an expiry.
	keys, err := f.raw.Keys(ctx, f.s.keys.prefix+"{r*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	for _, k := range keys {
		if ttl := f.raw.TTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("%s has TTL %v", k, ttl)
		}
	}
}

func TestRecoveryFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, config.Redis{Address: srv.Addr, ReadTimeout: config.Duration(300 * time.Millisecond), DialTimeout: config.Duration(300 * time.Millisecond)})
	srv.Stop()
	ctx := ctxT(t, 5*time.Second)
	errs := concurrently(map[string]func() error{
		"DomainHolder":     func() error { _, _, err := s.DomainHolder(ctx, "acme.example"); return err },
		"PersonByEmail":    func() error { _, err := s.PersonByEmail(ctx, "alice@acme.example"); return err },
		"PersonByUsername": func() error { _, err := s.PersonByUsername(ctx, "alice"); return err },
		"CountRecovery": func() error {
			_, err := s.CountRecovery(ctx, "reset", "alice@acme.example", "192.0.2.1", time.Hour, time.Now())
			return err
		},
		"RecordPerson": func() error { return s.RecordPerson(ctx, "alice@acme.example", alice, time.Now(), 0) },
	})
	for _, op := range slices.Sorted(maps.Keys(errs)) {
		wantErr(t, op, errs[op], ErrUnavailable)
	}
}
