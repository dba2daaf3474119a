package session

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// What the session manager needs from storage, one small interface per flow. Package store
// implements them all against Redis (Store). Methods are safe for concurrent use; a miss is
// an error wrapping store.ErrNotFound, and an error wrapping store.ErrUnavailable means
// storage could not answer (the manager then fails closed with 503 store_unavailable).
//
// Handles (h) are hashes of the secrets given to browsers, computed here, so storage never
// holds a usable cookie or state.

// LoginStates keeps started sign-ins (state, nonce, PKCE verifier, return path) for the one
// callback that may spend them.
type LoginStates interface {
	SaveLogin(ctx context.Context, h string, rec []byte, ttl time.Duration) error
	PeekLogin(ctx context.Context, h string) ([]byte, error)
	TakeLogin(ctx context.Context, h string) ([]byte, error)
}

// Sessions keeps session records, the person's index of them (offboarding, back-channel
// logout) and the families of sessions made from one sign-in (handoff.go).
//
// LoadSession is called with the request's own context, so a store can read more in the same
// round trip when the caller asked for it there (store.Cache.WithPrefetch: the membership the
// decision needs next; proxy marks the context before Admit).
type Sessions interface {
	CreateSession(ctx context.Context, h, user, iss, sid string, rec []byte, ttl, indexTTL time.Duration) error
	LoadSession(ctx context.Context, h string) ([]byte, error)
	UpdateSession(ctx context.Context, h string, rec []byte, ttl time.Duration) error
	DeleteSession(ctx context.Context, h, user, iss, sid string) error
	EndSession(ctx context.Context, h, user, iss, sid string) (bool, error)
	RevokeUser(ctx context.Context, user string) (int, error)
	RevokeSID(ctx context.Context, iss, sid string) (int, error)
	JoinFamily(ctx context.Context, family string, ttl time.Duration, hs ...string) error
	// IndexSession adds h to user's index as well (a person keyed by another claim than
	// sub is also found by sub).
	IndexSession(ctx context.Context, user, h string, indexTTL time.Duration) error
	EndFamily(ctx context.Context, family, user, iss, sid string) (int, error)
	// UserSessions returns the records of a person's sessions by handle (SessionsOf).
	UserSessions(ctx context.Context, user string) (map[string][]byte, error)
}

// Handoffs keeps the sign-in handoff's requests and one-time codes (handoff.go), each spent
// once.
type Handoffs interface {
	SaveHandoff(ctx context.Context, h string, rec []byte, ttl time.Duration) error
	TakeHandoff(ctx context.Context, h string) ([]byte, error)
	SaveHandoffCode(ctx context.Context, h string, rec []byte, ttl time.Duration) error
	TakeHandoffCode(ctx context.Context, h string) ([]byte, error)
}

// LogoutTokens remembers the back-channel logout tokens already used (replay protection).
type LogoutTokens interface {
	MarkLogoutToken(ctx context.Context, iss, jti string, ttl time.Duration) (bool, error)
}

// Store is all of the above, as NewManager takes it: *store.Store.
type Store interface {
	LoginStates
	Sessions
	Handoffs
	LogoutTokens
}

// Options are the collaborators of a Manager. The zero value is usable.
type Options struct {
	// Logger receives outages and refusals (never tokens or session ids). nil discards.
	Logger *slog.Logger
	// Now is the clock for session expiry and token checks. nil means time.Now.
	Now func() time.Time
	// HTTPClient talks to the provider (discovery, keys, token endpoint). nil builds one that
	// trusts oidc.ca_root_file when set, else the system roots.
	HTTPClient *http.Client
	// OnSignIn, when set, runs after a sign-in is verified and before the session exists:
	// binding invitations to the person, for example. An error refuses the sign-in (503
	// store_unavailable), since the person would otherwise arrive without their access.
	OnSignIn func(ctx context.Context, s Session) error
	// Audit receives the session events (session.signed_in, signin_refused, signed_out,
	// ended, handoff, handoff_refused) and step-up grants and refusals (stepup.granted,
	// stepup.refused). nil records nothing (tests); a failed append is logged.
	Audit audit.Sink
	// CacheTTL, when not zero, overrides the configuration's session.cache and
	// session.cache_ttl: how long a session record is reused without reading storage again,
	// when the store announces changes (store.Store does). Negative disables the cache (every
	// request reads its session from storage).
	CacheTTL time.Duration
	// Realms finds the organisation of an email domain and its providers, for home-realm
	// discovery when several providers are configured, and for a provider's
	// verified_domains_only. nil uses the store, when it can (store.Store does).
	Realms Realms
	// SSF are the Shared Signals transmitters whose events the receiver at SSFPath accepts
	// (ssf.go). None: it answers 404.
	SSF []config.SSFTransmitter
	// HostOrg returns the organisation an organisation host serves ("" for none): such a
	// host signs its people in at that organisation's provider without asking. nil: none.
	HostOrg func(host string) string
	// Trust is the trust rule's table in force (providerset.Set.Trust), which changes when
	// providers are managed through the admin API; with SetProviders. nil: compiled from
	// oc.All once.
	Trust *authz.Trust
	// HostAllowed reports whether host (a Host header, possibly with a port) is one Portcullis
	// serves for browsers: a host some route names (proxy.Server.ServesHost). A browser on such
	// a host other than the sign-in host (oidc.redirect_url's) signs in through a handoff from
	// the sign-in host (handoff.go). nil allows no other host: sign-in there is refused.
	HostAllowed func(host string) bool
}

// Discovery retry bounds: quick at first so a provider starting beside Portcullis is picked up
// soon, capped so a long outage costs one request per half minute.
const (
	discoveryTimeout  = 10 * time.Second
	retryFirst        = 250 * time.Millisecond
	retryMax          = 30 * time.Second
	keySetMaxAge      = 15 * time.Minute
	providerCallLimit = 15 * time.Second
)

// refusalBurst is how many sign-in refusals a process audits in a burst; then one a second.
const refusalBurst = 120

// Manager is the OIDC relying party and the keeper of sessions. It implements proxy.Gate
// (Admit) and serves the sign-in endpoints (Endpoints). It is safe for concurrent use.
//
// If the provider cannot be discovered at start, the Manager still starts and retries in the
// background; until discovery succeeds, sign-in and every request without a valid session
// answer 503 idp_unavailable. Requests carrying a valid session keep working meanwhile:
// sessions live in storage, not at the provider.
type Manager struct {
	log        *slog.Logger
	now        func() time.Time
	logins     LoginStates
	st         Sessions
	handoffs   Handoffs
	logouts    LogoutTokens
	oc         config.OIDC
	sc         config.Session
	publicBase *url.URL
	origin     string // scheme://host of the public base, "" when unknown
	onSignIn   func(context.Context, Session) error
	audit      audit.Sink
	// signInHost is the lower-case host name of oidc.redirect_url, where the callback arrives;
	// signInOrigin its scheme://host[:port]. hostAllowed is Options.HostAllowed.
	signInHost, signInOrigin string
	hostAllowed              func(string) bool

	// idps are the providers in configuration order (oidc.All); trust is the trust rule on
	// them (which may sign people in for which organisation); realms and hostOrg serve
	// home-realm discovery (realm.go).
	idps         atomic.Pointer[[]*idp] // replaced whole by SetProviders
	idpsMu       sync.Mutex             // serialises SetProviders
	transmitters []*transmitter
	events       SecurityEvents // the store's, for the receiver (ssf.go); nil: none
	revals       Revalidations  // the store's, for providers that revalidate; nil: none
	trust        *authz.Trust
	realms       Realms
	hostOrg      func(string) string

	// cache holds session records between requests (nil: none); touch writes last-seen.
	cache     *sessionCache
	touch     func(ctx context.Context, h string, rec []byte, ttl time.Duration) error
	stopWatch func()

	stop context.CancelFunc
	bg   context.Context // background work's, until Close
	// httpClient is Options.HTTPClient (nil: each provider's own, from its ca_root_file).
	httpClient *http.Client
	stopped    sync.WaitGroup // background discoveries
	closeOne   sync.Once
	// refusalBudget bounds the sign-in refusals audited per process (session.signin_refused).
	refusalBudget *rate.Limiter
}

// idp is one OpenID Provider people sign in with, and what its discovery yielded.
type idp struct {
	cfg       config.OIDCProvider
	client    *http.Client
	requireEV bool
	rp        atomic.Pointer[relyingParty]
	keysMu    sync.Mutex // serialises key set refreshes
	// stop ends its background discovery (the provider was removed, or the manager closed).
	life context.Context
	stop context.CancelFunc
}

// relyingParty is what discovery yields. It is replaced whole (key set refresh), never changed.
type relyingParty struct {
	p          *idp
	provider   *oidc.Provider
	verifier   *oidc.IDTokenVerifier
	oauth      oauth2.Config
	endSession string // end_session_endpoint, "" when not advertised
	issParam   bool   // the provider sends iss in authorisation responses (RFC 9207)
	jwksURI    string
	keysAt     time.Time
}

// NewManager builds a Manager for the providers of oc (oc.All) and the session settings sc.
// publicBase is server.public_url (nil: own endpoints use the request's host). Discovery is
// attempted once per provider here with a timeout; failure is logged and retried in the
// background, not returned. Errors are configuration errors (an unreadable CA file). Call
// Close to stop background work.
func NewManager(oc config.OIDC, sc config.Session, publicBase *url.URL, st Store, opts Options) (*Manager, error) {
	if len(oc.All) == 0 && oc.Issuer != "" {
		// Built by hand rather than by config.Load (tests): the default provider alone.
		oc.All = []config.OIDCProvider{oc.Default()}
	}
	if len(oc.All) == 0 || oc.RedirectURI == nil {
		return nil, errors.New("session: oidc providers and redirect_url are required (use a configuration from config.Load)")
	}
	if st == nil {
		return nil, errors.New("session: a store is required")
	}
	m := &Manager{
		log: opts.Logger, now: opts.Now, logins: st, st: st, handoffs: st, logouts: st, oc: oc, sc: sc,
		publicBase:    publicBase,
		onSignIn:      opts.OnSignIn,
		audit:         opts.Audit,
		refusalBudget: rate.NewLimiter(rate.Every(time.Second), refusalBurst),
		signInHost:    strings.ToLower(oc.RedirectURI.Hostname()),
		signInOrigin:  oc.RedirectURI.Scheme + "://" + strings.ToLower(oc.RedirectURI.Host),
		hostAllowed:   opts.HostAllowed,
		trust:         opts.Trust,
		realms:        opts.Realms,
		hostOrg:       opts.HostOrg,
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.realms == nil {
		m.realms, _ = st.(Realms)
	}
	if m.trust == nil {
		m.trust = authz.NewTrust(authz.CompileProviders(oc.All))
	}
	m.httpClient = opts.HTTPClient
	if publicBase != nil {
		m.origin = publicBase.Scheme + "://" + publicBase.Host
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stop, m.bg = cancel, ctx
	var idps []*idp
	for _, pc := range oc.All {
		p, err := m.newIdP(ctx, pc)
		if err != nil {
			cancel()
			return nil, err
		}
		idps = append(idps, p)
	}
	m.idps.Store(&idps)
	ts, err := newTransmitters(opts.SSF, oc)
	if err != nil {
		return nil, err
	}
	m.transmitters = ts
	m.events, _ = st.(SecurityEvents)
	if len(ts) > 0 && m.events == nil {
		return nil, errors.New("session: the store cannot remember security events (ssf.transmitters)")
	}
	m.revals, _ = st.(Revalidations)
	for _, p := range idps {
		if p.cfg.Revalidate.Interval > 0 && m.revals == nil {
			return nil, fmt.Errorf("session: the store cannot keep revalidation records (provider %s revalidates)", p.cfg.Name)
		}
	}
	m.touch, m.stopWatch = st.UpdateSession, func() {}
	ttl := opts.CacheTTL
	if ttl == 0 {
		ttl = cacheTTL(sc)
	}
	if w, ok := st.(watcher); ok && ttl > 0 {
		m.cache = newSessionCache(ttl, m.now)
		m.st, m.touch = cachingStore{Sessions: st, c: m.cache}, w.TouchSession
		m.stopWatch = w.WatchSessions(store.SessionEvents{
			Changed: m.cache.Forget,
			Live:    m.cache.SetLive,
		}, m.log)
	}
	// Providers are discovered side by side: one that is down delays no other.
	var first sync.WaitGroup
	for _, p := range idps {
		first.Go(func() {
			if err := m.discover(p.life, p); err != nil {
				m.log.Warn("identity provider unavailable at start; sign-in through it answers 503 until it is reachable",
					slog.String("provider", p.cfg.Name), slog.String("issuer", p.cfg.Issuer), slog.String("error", err.Error()))
				m.stopped.Go(func() { m.retryDiscovery(p.life, p) })
			}
		})
	}
	first.Wait()
	return m, nil
}

// newIdP makes the provider of pc, whose background work ends with parent.
func (m *Manager) newIdP(parent context.Context, pc config.OIDCProvider) (*idp, error) {
	if pc.Issuer == "" || pc.ClientID == "" {
		return nil, fmt.Errorf("session: provider %q needs an issuer and a client_id", pc.Name)
	}
	p := &idp{cfg: pc, client: m.httpClient, requireEV: pc.RequireVerifiedEmail == nil || *pc.RequireVerifiedEmail}
	if p.client == nil {
		c, err := providerClient(pc.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("provider %s: %w", pc.Name, err)
		}
		p.client = c
	}
	p.life, p.stop = context.WithCancel(parent)
	return p, nil
}

// providers are the providers people sign in with now, in order (oidc.All, then the managed
// ones).
func (m *Manager) providers() []*idp { return *m.idps.Load() }

// SetProviders makes all the providers people sign in with (providerset.Set.OnChange): a
// provider whose configuration is unchanged is kept as it is, discovered keys and all; a new
// or changed one is discovered in the background (its sign-ins answer 503 idp_unavailable
// until then); a removed one's sign-ins and callbacks are refused from now on. A provider that
// cannot be made (an unreadable CA file) is left out and logged. The trust rule's table is the
// Trust's owner's to change, before this is called.
func (m *Manager) SetProviders(all []config.OIDCProvider) {
	m.idpsMu.Lock()
	defer m.idpsMu.Unlock()
	old := m.providers()
	var next []*idp
	for _, pc := range all {
		if i := slices.IndexFunc(old, func(p *idp) bool { return p.cfg.Name == pc.Name && reflect.DeepEqual(p.cfg, pc) }); i >= 0 {
			next = append(next, old[i])
			continue
		}
		p, err := m.newIdP(m.bg, pc)
		if err != nil {
			m.log.Error("provider left out", slog.String("provider", pc.Name), slog.String("error", err.Error()))
			continue
		}
		if pc.Revalidate.Interval > 0 && m.revals == nil {
			p.stop()
			m.log.Error("provider left out: the store cannot keep revalidation records", slog.String("provider", pc.Name))
			continue
		}
		next = append(next, p)
		m.stopped.Go(func() {
			if err := m.discover(p.life, p); err != nil {
				m.log.Warn("identity provider unavailable; sign-in through it answers 503 until it is reachable",
					slog.String("provider", p.cfg.Name), slog.String("issuer", p.cfg.Issuer), slog.String("error", err.Error()))
				m.retryDiscovery(p.life, p)
			}
		})
	}
	if len(next) == 0 {
		m.log.Error("no provider left to sign people in with; keeping the previous ones")
		return
	}
	m.idps.Store(&next)
	for _, p := range old {
		if !slices.Contains(next, p) {
			p.stop()
		}
	}
}

// Close stops background discovery. Handlers keep working with what was discovered.
func (m *Manager) Close() {
	m.closeOne.Do(func() {
		m.stop()
		m.stopped.Wait()
		m.stopWatch()
	})
}

func providerClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("oidc ca_root_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oidc ca_root_file %s: no PEM certificates found", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: providerCallLimit}, nil
}

// ctx returns a context whose HTTP calls to the provider use p's client.
func (p *idp) ctx(parent context.Context) context.Context {
	return oidc.ClientContext(parent, p.client)
}

func (m *Manager) discover(parent context.Context, p *idp) error {
	ctx, cancel := context.WithTimeout(parent, discoveryTimeout)
	defer cancel()
	// go-oidc checks that the document's issuer is exactly ours (OIDC-04).
	op, err := oidc.NewProvider(p.ctx(ctx), p.cfg.Issuer)
	if err != nil {
		return err
	}
	var extra struct {
		EndSession string `json:"end_session_endpoint"`
		JWKSURI    string `json:"jwks_uri"`
		// RFC 9207: a provider that says so puts iss in every authorisation response.
		IssParameter bool `json:"authorization_response_iss_parameter_supported"`
	}
	if err := op.Claims(&extra); err != nil {
		return fmt.Errorf("read discovery document: %w", err)
	}
	rp := &relyingParty{
		p:          p,
		provider:   op,
		endSession: extra.EndSession,
		jwksURI:    extra.JWKSURI,
		issParam:   extra.IssParameter,
		oauth: oauth2.Config{
			ClientID:     p.cfg.ClientID,
			ClientSecret: p.cfg.ClientSecret.Reveal(),
			Endpoint:     op.Endpoint(),
			RedirectURL:  p.redirect(m.oc).String(),
			Scopes:       p.cfg.Scopes,
		},
	}
	m.withKeys(rp)
	p.rp.Store(rp)
	m.log.Info("identity provider discovered", slog.String("provider", p.cfg.Name), slog.String("issuer", p.cfg.Issuer))
	return nil
}

// withKeys gives rp a fresh remote key set and a verifier on it. go-oidc refetches keys only for
// an unknown kid, so a key the provider withdrew would be trusted for ever; a key set that is
// rebuilt every keySetMaxAge forgets it.
func (m *Manager) withKeys(rp *relyingParty) {
	// The key set's context must outlive any request: keys are fetched lazily.
	keys := oidc.NewRemoteKeySet(rp.p.ctx(context.Background()), rp.jwksURI)
	skew := m.oc.ClockSkew.D()
	rp.verifier = oidc.NewVerifier(rp.p.cfg.Issuer, keys, &oidc.Config{
		ClientID:             rp.p.cfg.ClientID,
		SupportedSigningAlgs: rp.p.cfg.SigningAlgs,
		// Expiry is checked against a clock set back by the allowed skew, i.e. with tolerance.
		Now: func() time.Time { return m.now().Add(-skew) },
	})
	rp.keysAt = m.now()
}

// current returns p as discovered, with a key set younger than keySetMaxAge, or nil before
// discovery.
func (m *Manager) current(p *idp) *relyingParty {
	if p == nil {
		return nil
	}
	rp := p.rp.Load()
	if rp == nil || m.now().Sub(rp.keysAt) < keySetMaxAge {
		return rp
	}
	p.keysMu.Lock()
	defer p.keysMu.Unlock()
	if rp = p.rp.Load(); m.now().Sub(rp.keysAt) < keySetMaxAge {
		return rp
	}
	next := *rp
	m.withKeys(&next)
	p.rp.Store(&next)
	return &next
}

// redirect is p's callback: its own (config.OIDCProvider.RedirectURI), or oidc.redirect_url
// for a provider configured by hand.
func (p *idp) redirect(oc config.OIDC) *url.URL {
	if p.cfg.RedirectURI != nil {
		return p.cfg.RedirectURI
	}
	return oc.RedirectURI
}

// demand is d in p's terms: the routes' acr values as p names them (acr_values).
func (p *idp) demand(d authz.Demand) authz.Demand {
	if len(p.cfg.ACRValues) == 0 || len(d.ACR) == 0 {
		return d
	}
	d.ACR = slices.Clone(d.ACR)
	for i, v := range d.ACR {
		if theirs, ok := p.cfg.ACRValues[v]; ok {
			d.ACR[i] = theirs
		}
	}
	return d
}

// grant is authz.Grant for a step-up at p: the demand in p's terms, the elevation under the
// route's acr names (which later requests compare).
func (p *idp) grant(d authz.Demand, started time.Time, issuer, subject string, a authz.Authentication, now time.Time) (authz.Elevation, reason.Code, string) {
	el, code, cause := authz.Grant(p.demand(d), started, issuer, subject, a, now)
	el.ACR = p.routeACR(d.ACR, el.ACR)
	return el, code, cause
}

// routeACR is the route's name (one of want, the demand's acr values) for acr, the value p's
// token carried; acr itself when no mapping applies.
func (p *idp) routeACR(want []string, acr string) string {
	for _, v := range want {
		if theirs, ok := p.cfg.ACRValues[v]; ok && theirs == acr {
			return v
		}
	}
	return acr
}

// provider returns the provider named name, or nil.
func (m *Manager) provider(name string) *idp {
	for _, p := range m.providers() {
		if p.cfg.Name == name {
			return p
		}
	}
	return nil
}

// providerOf returns the provider whose issuer is issuer (a session's, a token's), or nil.
func (m *Manager) providerOf(issuer string) *idp {
	if name := m.trust.Load().ByIssuer(issuer); name != "" {
		// The trust table and the providers in force change apart (providerset, then
		// SetProviders): only a provider in force with this very issuer counts.
		if p := m.provider(name); p != nil && strings.TrimSuffix(p.cfg.Issuer, "/") == strings.TrimSuffix(issuer, "/") {
			return p
		}
	}
	return nil
}

// anyDiscovered reports whether some provider can sign people in.
func (m *Manager) anyDiscovered() bool {
	for _, p := range m.providers() {
		if p.rp.Load() != nil {
			return true
		}
	}
	return false
}

func (m *Manager) retryDiscovery(ctx context.Context, p *idp) {
	wait := retryFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := m.discover(ctx, p)
		if err == nil {
			return
		}
		m.log.Warn("identity provider still unavailable", slog.String("provider", p.cfg.Name), slog.String("issuer", p.cfg.Issuer),
			slog.String("error", err.Error()), slog.Duration("retry_in", min(2*wait, retryMax)))
		wait = min(2*wait, retryMax)
	}
}

// Endpoints returns the handlers to serve under /.portcullis/ (proxy.Options.Endpoints).
func (m *Manager) Endpoints() map[string]http.Handler {
	eps := map[string]http.Handler{
		"login":              m.serve(m.serveLogin),
		"logout":             m.serve(m.serveLogout),
		"backchannel-logout": m.serve(m.serveBackchannelLogout),
		"whoami":             m.serve(m.serveWhoami),
		"step-up":            m.serve(m.serveStepUp),
		"handoff/start":      m.serve(m.serveHandoffStart),
		"handoff":            m.serve(m.serveHandoff),
		"handoff/step-up":    m.serve(m.serveHandoffStepUp),
		"handoff/finish":     m.serve(m.serveHandoffFinish),
		"ssf/events":         m.serve(m.serveSSF),
	}
	// Each provider's callback answers for that provider's sign-ins only: the default one's at
	// oidc.redirect_url, the others' at callback/NAME, whichever are in force at the time.
	eps["callback"] = m.serve(func(w http.ResponseWriter, r *http.Request) error {
		p := m.provider(config.DefaultProvider)
		if p == nil || p.redirect(m.oc).Path != r.URL.Path {
			return quietly(reason.NotFound)
		}
		return m.callbackOf(p)(w, r)
	})
	eps["callback/"] = m.serve(func(w http.ResponseWriter, r *http.Request) error {
		p := m.provider(strings.TrimPrefix(r.URL.Path, config.CallbackPath+"/"))
		if p == nil || p.redirect(m.oc).Path != r.URL.Path {
			return quietly(reason.NotFound)
		}
		return m.callbackOf(p)(w, r)
	})
	return eps
}

// RevokeUser ends every session of the person userKey (store.UserKey), on every replica at once
// (sessions live in storage only). It returns how many sessions ended.
func (m *Manager) RevokeUser(ctx context.Context, userKey string) (int, error) {
	n, err := m.st.RevokeUser(ctx, userKey)
	if err != nil {
		return 0, fmt.Errorf("revoke user sessions: %w", err)
	}
	return n, nil
}

// cacheTTL is the session cache lifetime session.cache and session.cache_ttl ask for; negative
// when the cache is off.
func cacheTTL(sc config.Session) time.Duration {
	switch {
	case sc.Cache != nil && !*sc.Cache:
		return -1
	case sc.CacheTTL > 0:
		return sc.CacheTTL.D()
	}
	return DefaultCacheTTL
}
