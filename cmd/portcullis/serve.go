package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/admin"
	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/console"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/internal/clientjwt"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/tracing"
	"github.com/portcullis-proxy/portcullis/notify"
	"github.com/portcullis-proxy/portcullis/providerset"
	"github.com/portcullis-proxy/portcullis/proxy"
	"github.com/portcullis-proxy/portcullis/scim"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "portcullis.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, warnings, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(cfg.Log.SlogLevel)
	log := newLogger(stdout, cfg.Log.Format, level)
	applyBrand(cfg)
	for _, w := range warnings {
		log.Warn("configuration warning", slog.String("warning", w.Error()))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	opts := proxy.Options{Logger: log, Version: version, ReadyChecks: map[string]proxy.ReadyCheck{}}
	tp, err := tracing.New(cfg.Tracing, version)
	if err != nil {
		log.Error("start", slog.Any("error", err))
		return 1
	}
	if tp != nil {
		opts.TracerProvider, opts.TraceContinueTrusted = tp, cfg.Tracing.ContinueTrusted
		defer func() {
			// The spans still batched, sent before the process ends.
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(sctx); err != nil {
				log.Warn("tracing: spans not exported at shutdown", slog.Any("error", err))
			}
		}()
		log.Info("tracing on", slog.String("endpoint", cfg.Tracing.Endpoint), slog.Float64("sample_ratio", cfg.Tracing.Ratio()))
	}
	var served atomic.Pointer[proxy.Server]
	closeAll, api, err := wireRedis(ctx, cfg, log, &opts, &served)
	defer closeAll()
	if err != nil {
		log.Error("start", slog.Any("error", err))
		return 1
	}
	srv, err := proxy.New(proxy.SettingsOf(cfg), opts)
	if err != nil {
		log.Error("start", slog.Any("error", err))
		return 1
	}
	served.Store(srv)
	go reloadLoop(ctx, *path, cfg, srv, api, level, log)

	if err := srv.Run(ctx, nil); err != nil {
		log.Error("serve", slog.Any("error", err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// applyBrand makes the configuration's pages section the look of every page Portcullis
// renders from now on.
func applyBrand(cfg *config.Config) {
	p := cfg.Pages
	page.SetBrand(page.Brand{ProductName: p.ProductName, LogoURL: p.LogoURL, SupportEmail: p.SupportEmail, SupportURL: p.SupportURL})
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// wireRedis builds everything that lives in Redis: sessions, memberships (cached, with
// invalidation), the audit stream and the assertion signer. Without redis.address it
// leaves opts alone: only public routes can then be served. served is the server built from
// opts, once it exists: the sign-in handoff asks it which hosts it serves.
func wireRedis(ctx context.Context, cfg *config.Config, log *slog.Logger, opts *proxy.Options, served *atomic.Pointer[proxy.Server]) (func(), *admin.Server, error) {
	var api *admin.Server
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if !cfg.Redis.Configured() {
		return closeAll, api, nil
	}
	store.SetClientLog(log)
	st, err := store.New(cfg.Redis)
	if err != nil {
		return closeAll, api, fmt.Errorf("redis: %w", err)
	}
	closers = append(closers, func() { st.Close() })
	if opts.TracerProvider != nil {
		if err := st.TraceWith(opts.TracerProvider); err != nil {
			return closeAll, api, fmt.Errorf("tracing redis: %w", err)
		}
	}
	opts.ReadyChecks["redis"] = st.Ping

	aud := auditStream(st, cfg.Audit)
	cache := store.NewCache(st, cfg.Authz.CacheLifetime(), log)
	closers = append(closers, func() { _ = cache.Close() })
	// Request-time events (denials, blocked recoveries, sign-ins, step-ups) are retried when
	// the append fails (#17: a denial answered from the caches while Redis hung lost its
	// event); changes write theirs in their own transaction.
	ro := audit.RetryOptions{Logger: log.With(slog.String("component", "audit"))}
	var reqAudit *audit.Retrying
	if a := cfg.Audit; a.SpoolDir != "" {
		reqAudit, err = audit.NewSpooledRetrying(aud, audit.SpoolOptions{Dir: a.SpoolDir, Fsync: a.SpoolFsync != "off", MaxBytes: int64(a.SpoolMaxMB) << 20}, ro)
		if err != nil {
			return closeAll, api, err
		}
	} else {
		reqAudit = audit.NewRetrying(aud, ro)
	}
	closers = append(closers, reqAudit.Close)
	opts.Audit, opts.Members, opts.APIKeys, opts.Clients = reqAudit, cache, cache, cache
	if opts.ClientTokens, err = clientjwt.NewVerifier(cfg.ClientJWT, nil); err != nil {
		return closeAll, api, err
	}
	if cfg.Audit.Refusals == "counted" {
		opts.RefusalInterval = cfg.Audit.RefusalInterval.D()
	}
	opts.Recovery = st // recovery guards: domain holders, person indexes, rate limits
	uses := store.NewUseRecorder(st, 0, log.With(slog.String("component", "last_used")))
	uses.ReportReaches(reqAudit) // what partners and support staff reach, for the activity pages
	closers = append(closers, uses.Close)
	opts.Uses = uses

	signer, err := newSigner(ctx, cfg, st, log)
	if err != nil {
		return closeAll, api, err
	}
	opts.Signer = signer
	opts.ReadyChecks["assertion_key"] = func(context.Context) error {
		if !signer.Ready() {
			return assertion.ErrNoKey
		}
		return nil
	}

	if hooks, sinks := cfg.Notifications.Webhooks, cfg.Audit.Sinks; len(hooks) > 0 || len(sinks) > 0 {
		// Every process delivers; the audit stream's consumer groups give each event to one.
		d, err := notify.NewWithSinks(hooks, sinks, aud, notify.Options{Logger: log.With(slog.String("component", "deliveries"))})
		if err != nil {
			return closeAll, api, err
		}
		d.Start(ctx)
		closers = append(closers, d.Close)
		if len(sinks) > 0 {
			m := newSinkMonitor(aud, d.Groups(), cfg.Audit, log.With(slog.String("component", "audit_sinks")))
			opts.Collectors = append(opts.Collectors, m.collectors()...)
			if cfg.Audit.MaxSinkLag > 0 {
				opts.ReadyChecks["audit_sinks"] = m.ready
			}
			mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			done := make(chan struct{})
			go func() { defer close(done); m.run(mctx) }()
			closers = append(closers, func() { cancel(); <-done })
		}
	}

	orgs := store.NewOrgs(st, aud)
	// The providers people sign in with: the file's, and those managed through the admin API,
	// reread on every replica when they change. One table of who may sign people in for whom
	// serves the decisions, the admin API, SCIM and sign-in.
	pset := providerset.New(cfg.OIDC, st, log.With(slog.String("component", "providers")))
	if cfg.OIDC.ManagedProviders.Enabled() {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := pset.Reload(rctx); err != nil {
			log.Warn("managed providers not readable yet; read when Redis answers", slog.String("error", err.Error()))
		}
		cancel()
	}
	opts.Trust = pset.Trust()
	{
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() {
			defer close(done)
			sweepMachines(sctx, orgs.Via("machine identity sweep"), cfg.Lifecycle.APIKeys.DisableUnusedAfter.OrZero(), time.Hour, log)
		}()
		closers = append(closers, func() { cancel(); <-done })
	}
	if cfg.AdminAPI.Enabled() || cfg.OIDC.Configured() && cfg.Console.On() {
		// The console is a client of the same API, in process, whether or not it has a
		// listener of its own.
		if api, err = newAdminAPI(cfg, st, orgs, aud, pset, log); err != nil {
			return closeAll, nil, err
		}
		if cfg.AdminAPI.Enabled() {
			opts.Admin = api
			if cfg.SCIM.Enabled {
				// Each organisation's directory provisions it at /scim/v2/{org}, beside the API.
				sc, err := scim.New(scim.Options{Store: st, Orgs: orgs, Policy: api.Policy(), PolicyOf: api.Policy, ProviderSet: pset,
					Config: cfg.SCIM, Sessions: st, Logger: log.With(slog.String("component", "scim"))})
				if err != nil {
					return closeAll, nil, err
				}
				mux := http.NewServeMux()
				mux.Handle(scim.PathPrefix, sc)
				mux.Handle("/", api)
				opts.Admin = mux
			}
		}
	}

	if !cfg.OIDC.Configured() {
		return closeAll, api, nil
	}
	oc := cfg.OIDC
	oc.All = pset.All()
	sm, err := session.NewManager(oc, cfg.Session, cfg.Server.PublicBase, st, session.Options{
		Logger: log,
		Trust:  pset.Trust(),
		Audit:  reqAudit, // sign-in, sign-out, session ends, handoffs, step-ups
		// Organisation hosts sign in through a handoff from the sign-in host, only to host
		// names a route lists (in the configuration in force, reloads included).
		HostAllowed: func(host string) bool {
			srv := served.Load()
			return srv != nil && srv.ServesHost(host)
		},
		// Identity providers' security events end sessions and drop elevations at once.
		SSF: cfg.SSF.Transmitters,
		// With several providers, an organisation host signs in at its organisation's.
		HostOrg: func(host string) string {
			if srv := served.Load(); srv != nil {
				return srv.HostOrg(host)
			}
			return ""
		},
		// Access granted to an address before its owner ever signed in binds now, once, to
		// this person (issue 4: a later owner of the address inherits nothing).
		OnSignIn: func(ctx context.Context, s session.Session) error {
			// Only organisations that trust the person's provider take their invitations:
			// the others' stay for the address's owner at a provider they trust.
			bound, err := orgs.BindInvitationsTrusted(ctx, s.Email, s.EmailVerified, s.UserKey,
				func(o *store.Org) bool { return pset.Trust().Load().TrustsUser(o, s.UserKey) })
			if len(bound) > 0 {
				log.Info("invitations bound at sign-in", slog.String("user", s.UserKey), slog.Any("orgs", bound))
			}
			if err != nil {
				return err
			}
			// The recovery guard finds the person behind an address through this index.
			// An address that does not canonicalise is skipped: the guard then finds nobody
			// for it and refuses recovery, which is the safe side.
			// A provider that an organisation holding the address's domain does not trust
			// does not speak for the address either: recording it would make the address
			// look shared and block its real owner's recovery.
			if s.EmailVerified && s.Email != "" {
				_, domain, _ := strings.Cut(s.Email, "@")
				o, err := st.VerifiedHolder(ctx, domain)
				switch {
				case err != nil:
					return err
				case o != nil && !pset.Trust().Load().TrustsUser(o, s.UserKey):
					log.Info("address not recorded: its domain's organisation does not trust the provider", slog.String("user", s.UserKey), slog.String("org", o.ID))
					return nil
				}
				if err := st.RecordPerson(ctx, s.Email, s.UserKey, time.Now(), 0); err != nil && !errors.Is(err, store.ErrInvalid) {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		return closeAll, api, fmt.Errorf("oidc: %w", err)
	}
	closers = append(closers, sm.Close)
	// From now on every change of the managed providers reaches the session manager too.
	pset.OnChange(sm.SetProviders)
	closers = append(closers, pset.Watch())
	opts.Gate, opts.StepUp, opts.Orgs, opts.Endpoints = sm, sm, sm, sm.Endpoints()
	if cfg.Console.On() {
		c, err := console.New(console.Options{Sessions: sm, API: api, StepUp: cfg.Console.StepUp, Operators: cfg.Console.Operators,
			Audit: reqAudit, Logger: log.With(slog.String("component", "console"))})
		if err != nil {
			return closeAll, api, err
		}
		maps.Copy(opts.Endpoints, c.Endpoints())
	}
	return closeAll, api, nil
}

// newSigner loads the assertion key from identity.assertion_key_file (or takes
// identity.assertion_secret for HS256), or, for development, shares one generated key per
// algorithm through Redis. A key in Redis that cannot be read at start (Redis
// down during a rolling restart) is read in the background until Redis answers: until then
// the signer has no key, /.portcullis/readyz says not ready, and requests that need an
// assertion are refused 503 (fail closed).
func newSigner(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) (*assertion.Signer, error) {
	issuer := "portcullis"
	if cfg.Server.PublicBase != nil {
		issuer = cfg.Server.PublicBase.String()
	}
	alg := cfg.Identity.AssertionAlg
	if alg == "" {
		alg = assertion.ES256
	}
	if alg == assertion.HS256 {
		s := assertion.NewPending(issuer, cfg.Identity.AssertionLifetime.D())
		if err := s.SetSecret([]byte(cfg.Identity.AssertionSecret.Reveal())); err != nil {
			return nil, fmt.Errorf("identity.assertion_secret: %w", err)
		}
		return s, nil
	}
	if f := cfg.Identity.AssertionKeyFile; f != "" {
		key, err := assertion.LoadKey(f)
		if err != nil {
			return nil, fmt.Errorf("identity.assertion_key_file: %w", err)
		}
		if got := assertion.AlgOf(key); got != alg {
			return nil, fmt.Errorf("identity.assertion_key_file %s holds a key for %s; identity.assertion_alg is %s", f, got, alg)
		}
		return assertion.New(key, issuer, cfg.Identity.AssertionLifetime.D())
	}
	s := assertion.NewPending(issuer, cfg.Identity.AssertionLifetime.D())
	load := func() error {
		// Short: a Redis that accepts connections and does not answer must not hold the
		// start long enough for a liveness probe to give up on the process.
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		pemBytes, err := st.AssertionKey(lctx, alg, func() ([]byte, error) {
			if alg == assertion.EdDSA {
				_, p, err := assertion.GenerateEdDSAKey()
				return p, err
			}
			_, p, err := assertion.GenerateKey()
			return p, err
		})
		if err != nil {
			return err
		}
		key, err := assertion.ParseKey(pemBytes)
		if err != nil {
			return err
		}
		if got := assertion.AlgOf(key); got != alg {
			return fmt.Errorf("the development key in Redis is for %s, not %s", got, alg)
		}
		return s.SetKey(key)
	}
	err := load()
	switch {
	case err == nil:
		return s, nil
	case !errors.Is(err, store.ErrUnavailable):
		return nil, fmt.Errorf("assertion key: %w", err)
	}
	log.Warn("assertion key not readable from Redis yet; starting not ready, retrying", slog.Any("error", err))
	go func() {
		wait := time.Second
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if err := load(); err == nil {
				log.Info("assertion key loaded from Redis")
				return
			} else if !errors.Is(err, store.ErrUnavailable) {
				log.Error("assertion key in Redis is unusable", slog.Any("error", err))
			}
			wait = min(2*wait, 30*time.Second)
		}
	}()
	return s, nil
}

// newAdminAPI builds the administration API of cfg over st.
func newAdminAPI(cfg *config.Config, st *store.Store, orgs *store.Orgs, aud *store.Audit, pset *providerset.Set, log *slog.Logger) (*admin.Server, error) {
	var ops *admin.OperatorVerifier
	if cfg.AdminAPI.Operators.Issuer != "" {
		var err error
		if ops, err = admin.NewOperatorVerifier(cfg.AdminAPI.Operators); err != nil {
			return nil, err
		}
	}
	issuers := map[string][]string{}
	for _, is := range cfg.ClientJWT.Issuers {
		issuers[is.Issuer] = is.Orgs
	}
	api, err := admin.New(admin.Options{Store: st, Orgs: orgs, Audit: aud, Lifecycle: authz.CompilePolicy(&cfg.Lifecycle), Operators: ops, Sessions: st,
		Logger: log.With(slog.String("component", "admin_api")), ClientIssuers: issuers, Trust: pset.Trust(), ProviderSet: pset})
	if err != nil {
		return nil, fmt.Errorf("admin api: %w", err)
	}
	return api, nil
}

// sweepActor records the machine identity sweep in audit events.
const sweepActor = "portcullis (machine identity sweep)"

// sweepMachines runs a minute after start and then every interval, until ctx ends, one pass
// over the machines (store.SweepMachines): machine identities whose sponsor's membership ended
// without a change saying so (an expiry) are suspended with their keys, and keys unused for
// unusedAfter (0: none) are revoked. Every replica sweeps: each machine and key is its own
// change, so two sweeps at once change each once.
func sweepMachines(ctx context.Context, orgs *store.Orgs, unusedAfter, interval time.Duration, log *slog.Logger) {
	t := time.NewTimer(time.Minute + time.Duration(rand.Int64N(int64(time.Minute))))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		suspended, revoked, err := orgs.SweepMachines(ctx, unusedAfter, sweepActor)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("machine identity sweep failed; it runs again later", "error", err, "suspended", suspended, "revoked", revoked)
		case suspended > 0 || revoked > 0:
			log.Info("machine identity sweep: machines whose sponsor's membership ended suspended, keys unused for too long revoked",
				"suspended", suspended, "revoked", revoked, "unused_after", unusedAfter.String())
		}
		t.Reset(interval)
	}
}
