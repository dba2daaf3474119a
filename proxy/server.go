package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
)

// Gate admits or refuses a request to a route that is not public. It writes the refusal
// itself (a sign-in redirect, a 401, a 403 page) and returns false, or returns true with the
// request to forward, whose context may carry what the gate learnt (the session). A nil Gate
// refuses every non-public route: without sign-in, nothing protected is reachable.
type Gate interface {
	Admit(w http.ResponseWriter, r *http.Request, route *config.Route) (*http.Request, bool)
}

// ReadyCheck reports whether a dependency is usable; the error is logged, never shown.
type ReadyCheck func(ctx context.Context) error

// Options are the collaborators of a Server. The zero value is usable: a discarding logger,
// no gate (non-public routes refused), no readiness checks.
type Options struct {
	Logger  *slog.Logger
	Version string
	Gate    Gate
	// ReadyChecks are run by /.portcullis/readyz, by name.
	ReadyChecks map[string]ReadyCheck
	// Endpoints are further own endpoints, keyed by their name under /.portcullis/ ("login"
	// serves /.portcullis/login). They see the normalised path; nothing there is forwarded.
	Endpoints map[string]http.Handler
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Members answers membership lookups for org-scoped routes; nil refuses them (503).
	Members Members
	// Audit receives every denial; nil records nothing (tests).
	Audit audit.Sink
	// Signer signs the per-request assertion; nil sends none.
	Signer *assertion.Signer
	// Recovery answers the recovery guard's questions (with Members for liveness); nil
	// refuses every guarded recovery request with 503 (fail closed). See recovery.go.
	Recovery RecoveryStore
}

// Server is the Portcullis front door. It is an http.Handler; Run adds the listeners.
type Server struct {
	log     *slog.Logger
	opts    Options
	metrics *metrics
	state   atomic.Pointer[state]
	idBase  string
	idSeq   atomic.Uint64
	now     func() time.Time
}

var _ http.Handler = (*Server)(nil)

// state is everything derived from one configuration. It is never modified once published.
type state struct {
	cfg         *config.Config
	router      *router
	upstreams   []*upstream
	transports  []*http.Transport
	trusted     []netip.Prefix
	stripParams bool
	hsts        string
	accessLog   bool
	policies    []routePolicy
	// identityCGI are the CGI names of every identity header; client values are stripped.
	identityCGI []string
}

// New builds a Server for cfg. cfg must come from config.Load (validated, defaults applied).
func New(cfg *config.Config, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{log: opts.Logger, opts: opts, metrics: newMetrics(opts.Version), now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.idBase = hex.EncodeToString(b[:]) + "-"
	st, err := s.build(cfg)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	s.metrics.reloadTS.Set(float64(s.now().Unix()))
	return s, nil
}

// build compiles a configuration into request-ready state.
func (s *Server) build(cfg *config.Config) (*state, error) {
	rt, err := newRouter(cfg.Routes)
	if err != nil {
		return nil, fmt.Errorf("compile routes: %w", err)
	}
	st := &state{
		cfg:         cfg,
		router:      rt,
		trusted:     cfg.Server.TrustedPrefixes,
		stripParams: cfg.Server.PathParams == "strip",
		accessLog:   cfg.Log.AccessLog == nil || *cfg.Log.AccessLog,
	}
	if h := cfg.Server.HSTS; h.MaxAge > 0 && cfg.TLS.Mode != config.TLSModeOff {
		v := "max-age=" + strconv.FormatInt(int64(h.MaxAge.D()/time.Second), 10)
		if h.IncludeSubdomains {
			v += "; includeSubDomains"
		}
		if h.Preload {
			v += "; preload"
		}
		st.hsts = v
	}
	if st.policies, st.identityCGI, err = compilePolicies(cfg); err != nil {
		return nil, err
	}
	pools := map[transportKey]*http.Transport{}
	for _, r := range cfg.Routes {
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
		st.upstreams = append(st.upstreams, newUpstream(r, tr, s, st.hsts != "", st.identityCGI, st.policies[len(st.upstreams)].headers))
	}
	return st, nil
}

// Reload swaps in a new configuration atomically. Requests in flight finish on the old one.
// Listener addresses and TLS settings are read once at start; a change to them is logged and
// takes effect at the next restart.
func (s *Server) Reload(cfg *config.Config) error {
	st, err := s.build(cfg)
	if err != nil {
		s.metrics.reloads.WithLabelValues("failure").Inc()
		return err
	}
	old := s.state.Swap(st)
	s.metrics.reloads.WithLabelValues("success").Inc()
	s.metrics.reloadTS.Set(float64(s.now().Unix()))
	if keys := restartKeys(old.cfg, cfg); len(keys) > 0 {
		s.log.Warn("configuration reloaded, but some changed settings are read only at start; they take effect at the next restart",
			slog.Any("keys", keys))
	}
	// Idle pooled connections to the old upstreams are no longer reachable; in-flight
	// requests keep theirs until done.
	for _, t := range old.transports {
		t.CloseIdleConnections()
	}
	s.log.Info("configuration reloaded", slog.String("file", cfg.File), slog.Int("routes", len(cfg.Routes)))
	return nil
}

// restartKeys names the settings that differ between a and b but are read once at start: the
// listeners and TLS (bound sockets), and what the serve command wires once (Redis, the OIDC
// client, sessions, caches, the audit stream, the assertion key). Routes, identity headers,
// pages and the log level apply at reload.
func restartKeys(a, b *config.Config) []string {
	var keys []string
	for _, c := range []struct {
		key  string
		x, y any
	}{
		{"server.listen", a.Server.Listen, b.Server.Listen},
		{"server.redirect_listen", a.Server.RedirectListen, b.Server.RedirectListen},
		{"server.metrics_listen", a.Server.MetricsListen, b.Server.MetricsListen},
		{"tls", a.TLS, b.TLS},
		{"redis", a.Redis, b.Redis},
		{"oidc", oidcSettings(a), oidcSettings(b)},
		{"session", a.Session, b.Session},
		{"authz", a.Authz, b.Authz},
		{"audit", a.Audit, b.Audit},
		{"identity.assertion_key_file", a.Identity.AssertionKeyFile, b.Identity.AssertionKeyFile},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			keys = append(keys, c.key)
		}
	}
	return keys
}

// oidcSettings is the oidc section without its parsed URLs, which are pointers.
func oidcSettings(c *config.Config) config.OIDC {
	o := c.OIDC
	o.IssuerURL, o.RedirectURI = nil, nil
	return o
}

// ReloadFailed records a rejected reload in the metrics (the caller logs the errors).
func (s *Server) ReloadFailed() { s.metrics.reloads.WithLabelValues("failure").Inc() }

// Config returns the configuration currently in force.
func (s *Server) Config() *config.Config { return s.state.Load().cfg }

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

// ServeHTTP is the request flow, in order.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	st := s.state.Load()
	rec := &recorder{ResponseWriter: w}
	fi := &forwardInfo{routeLabel: labelNoRoute}

	client, xff := clientAddr(r, st.trusted)
	fi.xff = xff
	fromTrusted := isTrustedPeer(r, st.trusted)
	fi.requestID = s.newRequestID(r, fromTrusted)
	fi.proto = forwardedProto(r, fromTrusted)
	rec.Header().Set("X-Request-Id", fi.requestID)
	if st.hsts != "" && r.TLS != nil {
		rec.Header().Set("Strict-Transport-Security", st.hsts)
	}

	s.handle(rec, r, st, fi)

	status := rec.statusOr200()
	elapsed := s.now().Sub(start)
	s.metrics.requests.WithLabelValues(fi.routeLabel, s.metrics.code(status)).Inc()
	s.metrics.duration.WithLabelValues(fi.routeLabel).Observe(elapsed.Seconds())
	if st.accessLog {
		path := fi.path
		if path == "" {
			path = "(rejected)"
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", fi.requestID),
			slog.String("client", client.String()),
			slog.String("method", r.Method),
			slog.String("host", r.Host),
			slog.String("path", path),
			slog.String("route", fi.routeLabel),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("proto", r.Proto),
		)
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

func (s *Server) reject(w http.ResponseWriter, r *http.Request, fi *forwardInfo, status int, reason string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	p := newProblem(status, reason)
	p.RequestID = fi.requestID
	writeProblem(w, r, p)
}

// handle decides what happens to one request; ServeHTTP wraps it with logging and metrics.
func (s *Server) handle(w http.ResponseWriter, r *http.Request, st *state, fi *forwardInfo) {
	host, ok := canonicalHost(r.Host)
	if !ok {
		s.reject(w, r, fi, http.StatusBadRequest, reasonBadHost)
		return
	}
	if len(r.RequestURI) > maxRequestTarget {
		// Legacy portals and their logs choke on long targets long before Go's header limit.
		s.reject(w, r, fi, http.StatusRequestURITooLong, reasonURITooLong)
		return
	}
	rawPath, ok := requestPath(r)
	if !ok {
		s.reject(w, r, fi, http.StatusBadRequest, reasonBadRequest)
		return
	}
	path, escaped, reason := normalizePath(rawPath, st.stripParams)
	if reason != "" {
		s.reject(w, r, fi, http.StatusBadRequest, reason)
		return
	}
	fi.path, fi.escapedPath = path, escaped
	if len(r.Header["Authorization"]) > 1 {
		// Components disagree on which of two credentials counts (HDR-03).
		s.reject(w, r, fi, http.StatusBadRequest, reasonDuplicateAuthz)
		return
	}

	if strings.HasPrefix(path, ownPrefix) || path == ownPrefix[:len(ownPrefix)-1] {
		fi.routeLabel = labelOwn
		s.serveOwn(w, r, path, fi)
		return
	}

	idx, res := st.router.match(host, path, r.Method)
	switch res {
	case matchNotFound:
		s.reject(w, r, fi, http.StatusNotFound, reasonNotFound)
		return
	case matchMethodNotAllowed:
		w.Header().Set("Allow", st.router.allow(host, path))
		s.reject(w, r, fi, http.StatusMethodNotAllowed, reasonMethodNotAllowed)
		return
	}
	route := &st.cfg.Routes[idx]
	fi.routeLabel = route.Name

	if !route.Public {
		var ok bool
		if r, ok = s.admit(w, r, st, idx, host, fi); !ok {
			return
		}
	} else if route.RecoveryGuard != nil {
		if r, ok = s.guardRecovery(w, r, st, route, st.policies[idx].recovery, fi); !ok {
			return
		}
	}
	r = r.WithContext(context.WithValue(r.Context(), forwardInfoKey{}, fi))
	st.upstreams[idx].proxy.ServeHTTP(w, r)
}

// maxRequestTarget bounds the request-target (path and query). 8 KiB is what common servers
// and load balancers accept.
const maxRequestTarget = 8 << 10

// requestPath returns the raw path of the request-target exactly as sent. For an
// absolute-form target (GET http://host/path) net/http has already made the target's host the
// request's Host, so the host that is matched is the host that is forwarded (AUTHN-06).
func requestPath(r *http.Request) (string, bool) {
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		// absolute-form: scheme://authority/path?query
		i := strings.Index(uri, "://")
		if i < 0 {
			return "", false // asterisk-form or garbage
		}
		rest := uri[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 || rest[j] == '?' {
			return "/", true
		}
		uri = rest[j:]
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri, true
}
