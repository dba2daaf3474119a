package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Managed OpenID Providers (config.ManagedProvider): customers' providers added through the
// admin API. One hash holds them all by name; a change is announced on its own channel, which
// every process watches to rebuild the providers it signs people in with. A record holds a
// secret's reference (a file name, a variable name), never its value: config.ManagedProvider
// has no field for one.

// SaveProvider stores p under its name, replacing the record of that name, with a
// provider.saved event (the record before and after) and the announcement, in one
// transaction. It reports whether the provider is new. p is checked by its caller
// (config.ParseManagedProvider); here only its name and organisation's shape are, and that
// its organisation exists.
func (o *Orgs) SaveProvider(ctx context.Context, p config.ManagedProvider, actor, reason string) (bool, error) {
	op := "save provider " + p.Name
	if err := checkActor(actor); err != nil {
		return false, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.Name(p.Name) || p.Name == config.DefaultProvider || (p.Org != "" && !syntax.OrgID(p.Org)) {
		return false, fmt.Errorf("%s: %w", op, ErrInvalid)
	}
	after, err := json.Marshal(p)
	if err != nil {
		return false, err
	}
	key, issuers := o.s.keys.providers(), o.s.keys.providerIssuers()
	var created bool
	watch := []string{key, issuers}
	if p.Org != "" {
		watch = append(watch, o.s.keys.org(p.Org))
	}
	err = o.atomically(ctx, op, func(tx *redis.Tx) error {
		all, err := tx.HGetAll(ctx, key).Result()
		if err != nil {
			return err
		}
		before, ok := all[p.Name]
		created = !ok
		// A name deleted and added again is still the issuer it was: its secret file,
		// named after it, was the old provider's.
		switch was, err := tx.HGet(ctx, issuers, p.Name).Result(); {
		case err == nil && strings.TrimSuffix(was, "/") != strings.TrimSuffix(p.Issuer, "/"):
			return &editError{fmt.Errorf("provider name %s was issuer %s's and never names another: add a provider of another name: %w", p.Name, was, ErrConflict)}
		case err != nil && !errors.Is(err, redis.Nil):
			return err
		}
		for name, rec := range all {
			var other config.ManagedProvider
			if json.Unmarshal([]byte(rec), &other) != nil {
				continue
			}
			same := strings.TrimSuffix(other.Issuer, "/") == strings.TrimSuffix(p.Issuer, "/")
			switch {
			case name == p.Name && !same:
				// Its people's sessions and refresh tokens are the old issuer's: a name that
				// pointed elsewhere would send them there.
				return &editError{fmt.Errorf("the issuer of provider %s is %s and cannot change: add a provider of another name: %w", name, other.Issuer, ErrConflict)}
			case name != p.Name && same:
				return &editError{fmt.Errorf("issuer %s is already provider %s's: %w", p.Issuer, name, ErrConflict)}
			}
		}
		if p.Org != "" {
			if _, _, err := o.s.getOrg(ctx, tx, p.Org); err != nil {
				return err
			}
		}
		return o.commit(ctx, tx, func(w *batch) {
			w.do("HSET", key, p.Name, after)
			w.do("HSET", issuers, p.Name, p.Issuer)
			w.do("PUBLISH", o.s.keys.providerChanges(), p.Name)
		}, []audit.Event{{Type: audit.ProviderSaved, Actor: actor, Org: p.Org, Reason: reason, Before: raw(before), After: after,
			Detail: map[string]string{"provider": p.Name, "issuer": p.Issuer}}})
	}, watch...)
	return created, err
}

// DeleteProvider removes the managed provider name, with a provider.deleted event and the
// announcement. ErrNotFound when there is none; ErrConflict while an organisation lists it
// (change those lists first: people would otherwise be refused without anyone having decided
// so).
func (o *Orgs) DeleteProvider(ctx context.Context, name, actor, reason string) error {
	op := "delete provider " + name
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if users, err := o.OrgsListing(ctx, name); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if len(users) > 0 {
		return fmt.Errorf("%s: listed by %v: %w", op, users, ErrConflict)
	}
	key := o.s.keys.providers()
	return o.atomically(ctx, op, func(tx *redis.Tx) error {
		before, err := tx.HGet(ctx, key, name).Result()
		switch {
		case errors.Is(err, redis.Nil):
			return fmt.Errorf("provider %s: %w", name, ErrNotFound)
		case err != nil:
			return err
		}
		var p config.ManagedProvider
		_ = json.Unmarshal([]byte(before), &p)
		return o.commit(ctx, tx, func(w *batch) {
			w.do("HDEL", key, name)
			w.do("PUBLISH", o.s.keys.providerChanges(), name)
		}, []audit.Event{{Type: audit.ProviderDeleted, Actor: actor, Org: p.Org, Reason: reason, Before: raw(before),
			Detail: map[string]string{"provider": name}}})
	}, key)
}

// OrgsListing returns the ids of the organisations whose provider list names provider, sorted.
func (o *Orgs) OrgsListing(ctx context.Context, provider string) ([]string, error) {
	by, err := o.Listings(ctx)
	return by[provider], err
}

// Listings returns, for every provider some organisation lists, the ids of the organisations
// listing it, sorted: one read of every organisation.
func (o *Orgs) Listings(ctx context.Context) (map[string][]string, error) {
	orgs, err := o.s.AllOrgs(ctx)
	if err != nil {
		return nil, err
	}
	by := map[string][]string{}
	for _, org := range orgs { // by id: each list comes out sorted
		for _, p := range org.Providers {
			by[p] = append(by[p], org.ID)
		}
	}
	return by, nil
}

// ManagedProviders returns the managed providers, by name. A record that cannot be read is
// left out and logged by the caller from the error list.
func (s *Store) ManagedProviders(ctx context.Context) ([]config.ManagedProvider, []error, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.providers()).Result()
	if err != nil {
		return nil, nil, s.unavailable("read providers", err)
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []config.ManagedProvider
	var bad []error
	for _, n := range names {
		var p config.ManagedProvider
		if err := json.Unmarshal([]byte(m[n]), &p); err != nil || p.Name != n {
			bad = append(bad, fmt.Errorf("provider record %q is unreadable", n))
			continue
		}
		out = append(out, p)
	}
	return out, bad, nil
}

// WatchProviders calls changed whenever a managed provider may have changed: on each
// announcement, and each time the subscription is (re)confirmed, since announcements made while
// it was down are lost. changed runs on one goroutine, never concurrently. stop ends it.
func (s *Store) WatchProviders(changed func(), log *slog.Logger) (stop func()) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &channelWatch{
		s: s, channel: s.keys.providerChanges(), every: healthEvery, log: log,
		lost:      "providers: change subscription lost; managed providers are reread when it is back",
		active:    "providers: change subscription active",
		onMessage: func(string) { changed() },
		onLive: func(live bool) {
			if live {
				changed()
			}
		},
	}
	w.start(ctx)
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			_ = w.close()
		})
	}
}
