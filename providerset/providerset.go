// Package providerset keeps the OpenID Providers a process signs people in with: those of
// the configuration (oidc, oidc.providers) and those operators manage through the admin API
// (oidc.managed_providers, kept in Redis). It is the one owner of the trust rule's table
// (authz.Trust) that the proxy's decisions, the admin API, SCIM and the session manager read,
// and it tells the session manager when the providers change, on every replica.
package providerset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// Source is where managed providers are kept (store.Store).
type Source interface {
	ManagedProviders(ctx context.Context) ([]config.ManagedProvider, []error, error)
	WatchProviders(changed func(), log *slog.Logger) (stop func())
}

// Set is the providers in force. Its methods are safe for concurrent use.
type Set struct {
	oc    config.OIDC
	src   Source // nil: configured providers only
	log   *slog.Logger
	env   func(string) (string, bool)
	trust *authz.Trust

	reload  sync.Mutex // serialises Reload, the read included: reads apply in their order
	mu      sync.Mutex // guards what follows
	all     []config.OIDCProvider
	managed []config.ManagedProvider // as last read, for the admin API
	subs    []func([]config.OIDCProvider)
}

// New is the set of oc's providers; with src and oc.ManagedProviders enabled, Reload adds the
// managed ones. log receives the managed providers that cannot be used.
func New(oc config.OIDC, src Source, log *slog.Logger) *Set {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !oc.ManagedProviders.Enabled() {
		src = nil
	}
	s := &Set{oc: oc, src: src, log: log, env: os.LookupEnv, all: slices.Clone(oc.All)}
	s.trust = authz.NewTrust(authz.CompileProviders(s.all))
	return s
}

// Trust is the trust rule's table in force, replaced at every change.
func (s *Set) Trust() *authz.Trust { return s.trust }

// All is every provider in force: the configured ones first, then the managed ones by name.
func (s *Set) All() []config.OIDCProvider {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.all)
}

// Managed is the managed providers as last read, by name.
func (s *Set) Managed() []config.ManagedProvider {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.managed)
}

// ManagedConfig is oidc.managed_providers: where managed providers' secrets may be.
func (s *Set) ManagedConfig() config.ManagedProviders { return s.oc.ManagedProviders }

// Configured reports whether name is a provider of the configuration file (which the admin
// API cannot change).
func (s *Set) Configured(name string) bool { return s.oc.Provider(name) != nil }

// OnChange makes f hear every new list of providers (Reload), after the trust table changed.
// Call it before Watch.
func (s *Set) OnChange(f func(all []config.OIDCProvider)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, f)
}

// Reload reads the managed providers and puts the new list in force. A managed provider that
// cannot be used here (its secret's file or variable is missing in this process, its name or
// issuer clashes with a configured one) is left out and logged: its people are refused as of a
// provider nobody trusts, which fails closed. An error means the source could not be read;
// the providers in force stay as they were.
func (s *Set) Reload(ctx context.Context) error {
	if s.src == nil {
		return nil
	}
	s.reload.Lock()
	defer s.reload.Unlock()
	managed, bad, err := s.src.ManagedProviders(ctx)
	if err != nil {
		return err
	}
	for _, e := range bad {
		s.log.Error("managed provider skipped", slog.String("error", e.Error()))
	}
	all := slices.Clone(s.oc.All)
	for _, mp := range managed {
		p, err := s.Resolve(mp, all)
		if err != nil {
			s.log.Error("managed provider skipped: its people cannot sign in", slog.String("provider", mp.Name), slog.String("error", err.Error()))
			continue
		}
		all = append(all, *p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all, s.managed = all, managed
	s.trust.Store(authz.CompileProviders(all))
	for _, f := range s.subs {
		f(slices.Clone(all))
	}
	return nil
}

// Resolve makes mp a provider beside others (the providers in force, or those found so far):
// checked, its secret read in this process, with its callback. Its name and issuer must be
// none of the others'.
func (s *Set) Resolve(mp config.ManagedProvider, others []config.OIDCProvider) (*config.OIDCProvider, error) {
	if err := s.conflict(mp, others); err != nil {
		return nil, err
	}
	p, err := mp.Resolve(s.oc.ManagedProviders, s.env, nil)
	if err != nil {
		return nil, err
	}
	if s.oc.RedirectURI == nil {
		return nil, errors.New("sign-in has no callback (oidc.redirect_url)")
	}
	u := *s.oc.RedirectURI
	u.Path = config.CallbackPath + "/" + p.Name
	p.RedirectURI = &u
	return p, nil
}

// conflict is why mp cannot stand beside others (wrapping store.ErrConflict): its name is a
// provider's of the configuration file, or its issuer another provider's. nil when neither.
func (s *Set) conflict(mp config.ManagedProvider, others []config.OIDCProvider) error {
	if s.Configured(mp.Name) {
		return fmt.Errorf("provider %s is in the configuration file: change it there: %w", mp.Name, store.ErrConflict)
	}
	for _, o := range others {
		if o.Name != mp.Name && strings.TrimSuffix(o.Issuer, "/") == strings.TrimSuffix(mp.Issuer, "/") {
			return fmt.Errorf("issuer %s is already provider %s's: %w", mp.Issuer, o.Name, store.ErrConflict)
		}
	}
	return nil
}

// Admit checks that mp may be saved beside the providers in force: not a provider of the
// configuration file, no other provider's issuer, its secret resolving here, and, when bound to
// an organisation, listed by no other (listedBy: the organisations listing it now). Refusals
// wrap store.ErrConflict (the state refuses it) or store.ErrInvalid (mp itself does not resolve).
func (s *Set) Admit(mp config.ManagedProvider, listedBy []string) error {
	if err := s.conflict(mp, s.All()); err != nil {
		return err
	}
	if mp.Org != "" {
		for _, o := range listedBy {
			if o != mp.Org {
				return fmt.Errorf("provider %s is listed by %s: it cannot be bound to %s: %w", mp.Name, o, mp.Org, store.ErrConflict)
			}
		}
	}
	if _, err := s.Resolve(mp, nil); err != nil {
		return fmt.Errorf("%v: %w", err, store.ErrInvalid)
	}
	return nil
}

// Watch rereads the managed providers whenever they change, on any replica, until stop.
func (s *Set) Watch() (stop func()) {
	if s.src == nil {
		return func() {}
	}
	return s.src.WatchProviders(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Reload(ctx); err != nil {
			s.log.Warn("could not reread the managed providers; those in force stay", slog.String("error", err.Error()))
		}
	}, s.log)
}

var _ Source = (*store.Store)(nil)
