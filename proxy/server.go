package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/internal/clientjwt"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Gate admits or refuses a request to a route that is not public. It writes the refusal
// itself (a sign-in redirect, a 401, a 403 page) and returns false, or returns true with the
// request to forward, whose context carries the session (session.FromContext). A nil Gate
// refuses every non-public route: without sign-in, nothing protected is reachable.
//
// The request the gate is given may carry a membership prefetch (Members.WithPrefetch) in
// its context: the gate must load the session with that context for the prefetch to work.
type Gate interface {
	Admit(w http.ResponseWriter, r *http.Request, route *config.Route) (*http.Request, bool)
}

// StepUpTickets signs the step-up interstitial's button for the session of an admitted
// request (session.Manager.StepUpTicket): the route's demand, which the button posts to
// /.portcullis/step-up.
type StepUpTickets interface {
	StepUpTicket(r *http.Request, c session.Challenge) string
}

// OrgChooser is what the org picker needs from the session side, for an admitted request: a
// CSRF token bound to the session, and a way to record the organisation chosen.
type OrgChooser interface {
	CSRFToken(r *http.Request) string
	CheckCSRF(r *http.Request, token string) bool
	SetActiveOrg(ctx context.Context, r *http.Request, org string) error
}

// ReadyCheck reports whether a dependency is usable; the error is logged, never shown.
type ReadyCheck func(ctx context.Context) error

// Options are the collaborators of a Server. The zero value is usable: a discarding logger,
// no gate (non-public routes refused), no readiness checks.
type Options struct {
	Logger  *slog.Logger
	Version string
	// RefusalInterval is how often the counted refusals (no_session, store_unavailable) are
	// recorded in Audit, one event per reason and route (refusals.go); 0: not recorded.
	// Recorded while Run runs.
	RefusalInterval time.Duration
	// TracerProvider records the requests' spans (tracing.go); nil: tracing off.
	TracerProvider trace.TracerProvider
	// TraceContinueTrusted continues the trace of a traceparent from server.trusted_proxies
	// instead of starting one linked to it.
	TraceContinueTrusted bool
	Gate                 Gate
	// StepUp signs the interstitial's button; nil shows the interstitial without one.
	StepUp StepUpTickets
	// Orgs backs the org picker (/.portcullis/orgs) and records an organisation chosen because
	// it is the person's only one; nil: no picker (404), and nothing is recorded.
	Orgs OrgChooser
	// Trust is the trust rule's table in force (providerset.Set.Trust), when providers can
	// change while the process runs. nil: Settings.Providers, compiled.
	Trust *authz.Trust
	// ReadyChecks are run by /.portcullis/readyz, by name.
	ReadyChecks map[string]ReadyCheck
	// Collectors are further Prometheus metrics served on the metrics listener (the audit
	// sinks' progress).
	Collectors []prometheus.Collector
	// Endpoints are further own endpoints, keyed by their name under /.portcullis/ ("login"
	// serves /.portcullis/login; "console/" every path under /.portcullis/console/). They see
	// the normalised path; nothing there is forwarded.
	Endpoints map[string]http.Handler
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Members answers membership lookups for org-scoped routes; nil refuses them (503).
	Members authz.Members
	// Audit receives every denial; nil records nothing (tests).
	Audit audit.Sink
	// Signer signs the per-request assertion; nil sends none.
	Signer *assertion.Signer
	// Recovery answers the recovery guard's questions (with Members for liveness); nil
	// refuses every guarded recovery request with 503 (fail closed). See recovery.go.
	Recovery authz.RecoveryRecords
	// Admin is the administration API (package admin), served by Run on Settings.AdminListen
	// with the main listener's TLS; nil serves none.
	Admin http.Handler
	// Uses is told of every membership an allowed request used, for the access reports' last
	// use; it must not block (store.UseRecorder). nil records nothing.
	Uses UseNotes
	// APIKeys finds the machine identity of an API key, for routes whose auth lists api_key
	// (with Members for its records); nil refuses every API key (503).
	APIKeys authz.APIKeys
	// ClientTokens verifies machine identities' client-credentials tokens on routes whose auth
	// lists client_jwt (clientjwt.Verifier), and Clients finds the machine a client is bound
	// to; nil refuses such tokens (503).
	ClientTokens ClientTokenVerifier
	Clients      authz.ClientIndex
}

// ClientTokenVerifier verifies a client-credentials token (clientjwt.Verifier).
type ClientTokenVerifier interface {
	Verify(ctx context.Context, raw string) (clientjwt.Client, error)
}

// UseNotes records the use of a membership and of an API key, and what people from outside
// an organisation (partners, resellers, support staff) reach in it (store.UseRecorder).
type UseNotes interface {
	Reached(org, user, route, kind, purpose, ticket string, now time.Time)
	Used(org, user string, now time.Time)
	KeyUsed(org, id string, now time.Time)
}

// Settings is the part of a configuration a Server uses: the listeners and HTTP hardening,
// TLS, the access log switch, the identity header names and the route table, with the file
// they came from for messages. Both New and Reload take it; SettingsOf cuts it from a loaded
// configuration.
type Settings struct {
	File      string
	Server    config.Server
	TLS       config.TLS
	AccessLog bool
	Headers   config.IdentityHeaders
	// Forward is identity.forward: what portals are told of admitted requests on routes that
	// do not say (config.ForwardModes; "" is full).
	Forward string
	Routes  []config.Route
	// Lifecycle is the access lifecycle policy every decision applies.
	Lifecycle config.Lifecycle
	// AdminListen is the administration API's address; "" for none.
	AdminListen string
	// ForwardAuth is the forward-auth endpoint's configuration.
	ForwardAuth config.ForwardAuth
	// Providers are the OpenID Providers (config.OIDC.All): which may sign people in for
	// which organisation (authz.Providers). None: no trust rule (sign-in is not configured).
	// New reads them; Reload keeps New's.
	Providers []config.OIDCProvider
}

// SettingsOf is the part of c a Server uses. c must come from config.Load.
func SettingsOf(c *config.Config) Settings {
	s := Settings{File: c.File, Server: c.Server, TLS: c.TLS, AccessLog: c.Log.AccessLog == nil || *c.Log.AccessLog,
		Headers: c.Identity.Headers, Forward: c.Identity.Forward, Routes: c.Routes, Lifecycle: c.Lifecycle, ForwardAuth: c.ForwardAuth,
		Providers: c.OIDC.All}
	if c.AdminAPI.Enabled() {
		s.AdminListen = c.AdminAPI.Listen
	}
	return s
}

// Server is the Portcullis front door. It is an http.Handler; Run adds the listeners.
type Server struct {
	log    *slog.Logger
	opts   Options
	tracer trace.Tracer // nil: tracing off
	// refusals counts the refusals recorded as counts (refusals.go).
	refusals refusalCounter
	metrics  *metrics
	state    atomic.Pointer[state]
	idBase   string
	idSeq    atomic.Uint64
	now      func() time.Time
}

var _ http.Handler = (*Server)(nil)

// state is everything derived from one configuration. It is never modified once published.
type state struct {
	set         Settings
	router      *router
	upstreams   []*upstream
	transports  []*http.Transport
	trusted     []netip.Prefix
	stripParams bool
	hsts        string
	policies    []routePolicy
	overrides   []overridePolicy
	// lifecycle is the compiled lifecycle policy (Settings.Lifecycle).
	lifecycle *authz.Policy
	// trust is the trust rule's table in force (Options.Trust, or Settings.Providers compiled).
	trust *authz.Trust
	// identityCGI are the CGI names of every identity header; client values are stripped.
	identityCGI []string
	// clientIPHeader is server.client_ip_header, canonical ("" for none).
	clientIPHeader string
	// rendered are the identities told to portals under this configuration (identity.go).
	rendered renderCache
}

// New builds a Server for the settings of a loaded configuration.
func New(set Settings, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{log: opts.Logger, opts: opts, metrics: newMetrics(opts.Version, opts.Collectors...), now: opts.Now}
	if opts.TracerProvider != nil {
		s.tracer = opts.TracerProvider.Tracer("github.com/portcullis-proxy/portcullis/proxy")
	}
	if s.now == nil {
		s.now = time.Now
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.idBase = hex.EncodeToString(b[:]) + "-"
	st, err := s.build(set)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	s.metrics.reloadTS.Set(float64(s.now().Unix()))
	return s, nil
}

// build compiles a configuration into request-ready state.
func (s *Server) build(set Settings) (*state, error) {
	rt, err := newRouter(set.Routes)
	if err != nil {
		return nil, fmt.Errorf("compile routes: %w", err)
	}
	st := &state{
		set:         set,
		lifecycle:   authz.CompilePolicy(&set.Lifecycle),
		trust:       s.opts.Trust,
		router:      rt,
		trusted:     set.Server.TrustedPrefixes,
		stripParams: set.Server.PathParams == "strip",
	}
	if h := set.Server.HSTS; h.MaxAge > 0 && set.TLS.Mode != config.TLSModeOff {
		v := "max-age=" + strconv.FormatInt(int64(h.MaxAge.D()/time.Second), 10)
		if h.IncludeSubdomains {
			v += "; includeSubDomains"
		}
		if h.Preload {
			v += "; preload"
		}
		st.hsts = v
	}
	if st.trust == nil {
		st.trust = authz.NewTrust(authz.CompileProviders(set.Providers))
	}
	if st.policies, st.identityCGI, err = compilePolicies(set, st.lifecycle, st.trust); err != nil {
		return nil, err
	}
	st.overrides = compileOverrides(set.Routes)
	if h := set.Server.ClientIPHeader; h != "" {
		st.clientIPHeader = http.CanonicalHeaderKey(h)
		st.identityCGI = append(st.identityCGI, cgiName(h))
	}
	pools := map[transportKey]*http.Transport{}
	for _, r := range set.Routes {
		k := transportKey{
			scheme: r.UpstreamURL.Scheme, host: r.UpstreamURL.Host,
			dial: r.Timeouts.Dial.D(), respHeader: r.Timeouts.ResponseHeader.D(), idle: r.Timeouts.IdleConn.D(),
			caFile: r.UpstreamTLS.CAFile, serverName: r.UpstreamTLS.ServerName, insecure: r.UpstreamTLS.InsecureSkipVerify,
		}
		tr, ok := pools[k]
		if !ok {
			tr, err = newTransport(r)
			if err != nil {
				return nil, err
			}
			pools[k] = tr
			st.transports = append(st.transports, tr)
		}
		st.upstreams = append(st.upstreams, newUpstream(r, tr, s, st.hsts != "", st.identityCGI))
	}
	return st, nil
}

// Reload swaps in new settings atomically. Requests in flight finish on the old ones.
// Listener addresses and TLS settings are read once at start (Run); the caller says which
// changed settings wait for a restart.
func (s *Server) Reload(set Settings) error {
	// Sign-in (oidc) is read only at start: sessions, the sign-in hook and the admin API keep
	// the providers they started with, and so must every decision.
	set.Providers = s.state.Load().set.Providers
	st, err := s.build(set)
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		return err
	}
	old := s.state.Swap(st)
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.metrics.reloadTS.Set(float64(s.now().Unix()))
	// Idle pooled connections to the old upstreams are no longer reachable; in-flight
	// requests keep theirs until done.
	for _, t := range old.transports {
		t.CloseIdleConnections()
	}
	s.log.Info("configuration reloaded", slog.String("file", set.File), slog.Int("routes", len(set.Routes)))
	return nil
}

// AdminAPI returns the administration API the server was given (Options.Admin), or nil.
func (s *Server) AdminAPI() http.Handler { return s.opts.Admin }

// ReloadFailed records a rejected reload in the metrics (the caller logs the errors).
func (s *Server) ReloadFailed() { s.metrics.reloads.WithLabelValues("failure").Inc() }

// MetricsHandler serves the Prometheus metrics of this server.
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler() }

func (s *Server) newRequestID(r *http.Request, fromTrusted bool) string {
	if fromTrusted {
		if v := r.Header.Get("X-Request-Id"); validRequestID(v) {
			return v
		}
	}
	return s.idBase + strconv.FormatUint(s.idSeq.Add(1), 36)
}

func validRequestID(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ServeHTTP is the request flow: one exchange, its steps (exchange.serve), and the access
// log line and metrics of whatever came of it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serve(w, r, false) }

// serve is ServeHTTP, or with forwardAuthOnly the forward-auth listener's handler.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, forwardAuthOnly bool) {
	start := s.now()
	st := s.state.Load()
	rec := &recorder{ResponseWriter: w}
	ex := &exchange{s: s, st: st, w: rec, r: r, routeLabel: labelNoRoute}

	client, xff := clientAddr(r, st.trusted)
	ex.client, ex.xff = client, xff
	ex.trusted = isTrustedPeer(r, st.trusted)
	ex.requestID = s.newRequestID(r, ex.trusted)
	ex.proto = forwardedProto(r, ex.trusted)
	rec.Header().Set("X-Request-Id", ex.requestID)
	if st.hsts != "" && r.TLS != nil {
		rec.Header().Set("Strict-Transport-Security", st.hsts)
	}

	ex.startDecision()
	var err error
	if forwardAuthOnly {
		err = ex.serveForwardAuthListener()
	} else {
		err = ex.serve()
	}
	ex.endDecision(err)
	if err != nil {
		ex.fail(err)
	}
	if ex.r.ProtoMajor == 1 && r.ContentLength != 0 && rec.Header().Get("Connection") == "close" {
		linger(rec, r)
	}

	if rec.reason != "" {
		s.countRefusal(ex, rec.reason)
	}
	status := rec.statusOr200()
	elapsed := s.now().Sub(start)
	s.metrics.requests.WithLabelValues(ex.routeLabel, s.metrics.code(status)).Inc()
	s.metrics.duration.WithLabelValues(ex.routeLabel).Observe(elapsed.Seconds())
	if s.tracer != nil {
		ex.nameRequestSpan(client)
	}
	if st.set.AccessLog {
		path := ex.path
		if path == "" {
			path = "(rejected)"
		}
		var buf [11]slog.Attr
		attrs := append(buf[:0], slog.String("request_id", ex.requestID))
		if s.tracer != nil {
			if id := traceID(r); id != "" {
				attrs = append(attrs, slog.String("trace_id", id))
			}
		}
		attrs = append(attrs,
			slog.String("client", client.String()),
			// The request decided: for a forward-auth question, the one it describes.
			slog.String("method", ex.r.Method),
			slog.String("host", ex.r.Host),
			slog.String("path", path),
			slog.String("route", ex.routeLabel),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("proto", r.Proto),
		)
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	}
}

func isTrustedPeer(r *http.Request, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && isTrusted(peer.Addr().Unmap(), trusted)
}

// forwardedProto is the scheme the client used: our own TLS, or what a trusted load balancer
// says it terminated.
func forwardedProto(r *http.Request, fromTrusted bool) string {
	if r.TLS != nil {
		return "https"
	}
	if fromTrusted {
		switch r.Header.Get("X-Forwarded-Proto") {
		case "https":
			return "https"
		}
	}
	return "http"
}
