package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// limitBody answers a request whose declared body is over limit with 413 body_too_large
// before reading it (draining the rest so the client can read the answer: linger), and
// bounds any other body to limit.
func limitBody(h http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			w.Header().Set("Connection", "close")
			problem.Write(w, r, problem.New(reason.BodyTooLarge))
			if r.ProtoMajor == 1 {
				linger(w, r)
			}
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// Listeners are the addresses the running server is bound to, for callers that asked for
// port 0 (tests) and for the start-up log.
type Listeners struct {
	Main, Redirect, Metrics, Admin, ForwardAuth, Envoy net.Addr
}

// Run binds the listeners of the configuration the Server was created with and serves until
// ctx is done, then drains in-flight requests for at most server.shutdown_timeout. ready, if
// not nil, receives the bound addresses once every listener is up.
func (s *Server) Run(ctx context.Context, ready func(Listeners)) error {
	set := s.state.Load().set
	sc := set.Server
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)

	main := &http.Server{
		Handler:           s.traced(s, "portcullis"),
		ReadHeaderTimeout: sc.ReadHeaderTimeout.D(),
		ReadTimeout:       sc.ReadTimeout.D(),
		WriteTimeout:      sc.WriteTimeout.D(),
		IdleTimeout:       sc.IdleTimeout.D(),
		MaxHeaderBytes:    sc.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	var servers []*http.Server
	var lns Listeners
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	serve := func(srv *http.Server, ln net.Listener, useTLS bool) {
		servers = append(servers, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if useTLS {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}

	// Bind before starting ACME: certmagic then answers challenges through our listeners
	// instead of racing them for the ports.
	ln, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", sc.Listen, err)
	}
	lns.Main = ln.Addr()
	var rln net.Listener
	if sc.RedirectListen != "" {
		if rln, err = net.Listen("tcp", sc.RedirectListen); err != nil {
			ln.Close()
			return fmt.Errorf("listen %s (redirect_listen): %w", sc.RedirectListen, err)
		}
		lns.Redirect = rln.Addr()
	}
	ts, err := newTLSSetup(ctx, set.TLS, routeHosts(set.Routes), s.log)
	if err != nil {
		ln.Close()
		if rln != nil {
			rln.Close()
		}
		return fmt.Errorf("tls: %w", err)
	}
	defer ts.Close()
	// Each listener its own copy, made before any serves: http.Server.ServeTLS adds its ALPN
	// protocols to the config it is given (http2ConfigureServer), so a shared one would be
	// written by one server while another reads or copies it.
	ownTLS := func() *tls.Config {
		if ts.Config == nil {
			return nil
		}
		return ts.Config.Clone()
	}
	adminTLS, faTLS, envoyTLS := withDefaultName(ownTLS(), ts.DefaultName), ownTLS(), ownTLS()
	main.TLSConfig = ts.Config
	if ts.Config != nil {
		serve(main, ln, true)
	} else {
		serve(main, ln, false)
	}

	if rln != nil {
		serve(&http.Server{
			Handler:           ts.HTTPHandler(s.redirectHandler(ln.Addr())),
			ReadHeaderTimeout: sc.ReadHeaderTimeout.D(),
			ReadTimeout:       sc.ReadHeaderTimeout.D(),
			WriteTimeout:      sc.ReadHeaderTimeout.D(),
			IdleTimeout:       sc.IdleTimeout.D(),
			MaxHeaderBytes:    sc.MaxHeaderBytes,
			ErrorLog:          errLog,
		}, rln, false)
	}

	if sc.MetricsListen != "" && sc.MetricsListen != "off" {
		mln, err := net.Listen("tcp", sc.MetricsListen)
		if err != nil {
			shutdownAll(servers, time.Second)
			return fmt.Errorf("listen %s (metrics_listen): %w", sc.MetricsListen, err)
		}
		lns.Metrics = mln.Addr()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.MetricsHandler())
		if sc.Pprof {
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		}
		writeTimeout := 30 * time.Second
		if sc.Pprof {
			writeTimeout = 2 * time.Minute // a CPU profile takes 30s by default, up to a minute
		}
		serve(&http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			WriteTimeout:      writeTimeout,
			ErrorLog:          errLog,
		}, mln, false)
	}

	if h := s.opts.Admin; h != nil && set.AdminListen != "" {
		aln, err := net.Listen("tcp", set.AdminListen)
		if err != nil {
			shutdownAll(servers, time.Second)
			return fmt.Errorf("listen %s (admin_api.listen): %w", set.AdminListen, err)
		}
		lns.Admin = aln.Addr()
		// The administration API, with the main listener's TLS: the same certificates and
		// protocol settings, no forwarding, none of the proxy's routes. Its clients often
		// connect by address (127.0.0.1:9443), so a handshake without a name gets the first
		// ACME domain's certificate rather than none (adminTLS).
		asrv := &http.Server{
			Handler:           limitBody(h, 1<<20),
			ReadHeaderTimeout: sc.ReadHeaderTimeout.D(),
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       sc.IdleTimeout.D(),
			MaxHeaderBytes:    sc.MaxHeaderBytes,
			ErrorLog:          errLog,
			TLSConfig:         adminTLS,
		}
		serve(asrv, aln, adminTLS != nil)
	}

	if fa := set.ForwardAuth; fa.Enabled && fa.Listen != "" {
		fln, err := net.Listen("tcp", fa.Listen)
		if err != nil {
			shutdownAll(servers, time.Second)
			return fmt.Errorf("listen %s (forward_auth.listen): %w", fa.Listen, err)
		}
		lns.ForwardAuth = fln.Addr()
		// No body limit: a question's body (an ingress may pass the original one along) is
		// never read.
		serve(&http.Server{
			Handler:           s.traced(s.forwardAuthHandler(), "portcullis.forward_auth"),
			ReadHeaderTimeout: sc.ReadHeaderTimeout.D(),
			ReadTimeout:       sc.ReadHeaderTimeout.D(),
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       sc.IdleTimeout.D(),
			MaxHeaderBytes:    sc.MaxHeaderBytes,
			ErrorLog:          errLog,
			TLSConfig:         faTLS,
		}, fln, faTLS != nil)
	}

	// Envoy's ext_authz, last: nothing after it can fail and leave it serving.
	var grpcs []*grpc.Server
	if fa := set.ForwardAuth; fa.Enabled && fa.EnvoyListen != "" {
		eln, err := net.Listen("tcp", fa.EnvoyListen)
		if err != nil {
			shutdownAll(servers, time.Second)
			return fmt.Errorf("listen %s (forward_auth.envoy_listen): %w", fa.EnvoyListen, err)
		}
		lns.Envoy = eln.Addr()
		opts := []grpc.ServerOption{
			grpc.MaxRecvMsgSize(4 << 20), // headers; a body Envoy may add is never read
			grpc.ConnectionTimeout(sc.ReadHeaderTimeout.D()),
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		}
		if envoyTLS != nil {
			opts = append(opts, grpc.Creds(credentials.NewTLS(envoyTLS)))
		}
		gs := grpc.NewServer(append(opts, grpc.ChainUnaryInterceptor(s.recoverUnary))...)
		s.RegisterExtAuthz(gs)
		grpcs = append(grpcs, gs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := gs.Serve(eln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errc <- err
			}
		}()
	}

	attrs := []any{slog.String("listen", lns.Main.String()), slog.String("tls_mode", set.TLS.Mode), slog.Int("routes", len(set.Routes))}
	if lns.Redirect != nil {
		attrs = append(attrs, slog.String("redirect_listen", lns.Redirect.String()))
	}
	if lns.Metrics != nil {
		attrs = append(attrs, slog.String("metrics_listen", lns.Metrics.String()))
	}
	if lns.Admin != nil {
		attrs = append(attrs, slog.String("admin_listen", lns.Admin.String()))
	}
	if lns.ForwardAuth != nil {
		attrs = append(attrs, slog.String("forward_auth_listen", lns.ForwardAuth.String()))
	}
	if lns.Envoy != nil {
		attrs = append(attrs, slog.String("forward_auth_envoy_listen", lns.Envoy.String()))
	}
	s.log.Info("portcullis serving", attrs...)
	if ready != nil {
		ready(lns)
	}

	countCtx, stopCounting := context.WithCancel(context.WithoutCancel(ctx))
	counted := make(chan struct{})
	if s.opts.RefusalInterval > 0 {
		go func() { s.countRefusals(countCtx); close(counted) }()
	} else {
		close(counted)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info("shutting down", slog.Duration("drain", sc.ShutdownTimeout.D()))
	var stopping sync.WaitGroup
	for _, gs := range grpcs {
		stopping.Go(func() { stopGRPC(gs, sc.ShutdownTimeout.D()) })
	}
	shutdownAll(servers, sc.ShutdownTimeout.D())
	stopping.Wait()
	wg.Wait()
	// The refusals counted up to the last request drained, recorded.
	stopCounting()
	<-counted
	return runErr
}

func shutdownAll(servers []*http.Server, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
		}()
	}
	wg.Wait()
}

// stopGRPC lets a gRPC server finish its calls for at most timeout, then closes it.
func stopGRPC(gs *grpc.Server, timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		gs.Stop()
		<-done
	}
}

// redirectHandler sends plain-HTTP requests to HTTPS, only for hosts a route answers for, so
// the listener cannot be used to bounce browsers to arbitrary names.
func (s *Server) redirectHandler(mainAddr net.Addr) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := s.state.Load()
		host, ok := canonicalHost(r.Host)
		if !ok || !st.router.answersHost(host) {
			s.metrics.rejected.WithLabelValues(string(reason.NoRoute)).Inc()
			p := problem.New(reason.NoRoute)
			p.RequestID = s.newRequestID(r, false)
			problem.Write(w, r, p)
			return
		}
		target := "https://" + hostWithPort(host, st.set.Server, mainAddr)
		uri := r.RequestURI
		if !strings.HasPrefix(uri, "/") {
			uri = "/"
		}
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, target+uri, http.StatusPermanentRedirect)
	})
}

// hostWithPort gives the authority of the HTTPS side: the public URL's when it names this
// host, else the host with the main listener's port unless that is 443.
func hostWithPort(host string, sc config.Server, mainAddr net.Addr) string {
	if pb := sc.PublicBase; pb != nil && strings.EqualFold(pb.Hostname(), host) {
		return pb.Host
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if ta, ok := mainAddr.(*net.TCPAddr); ok && ta.Port != 443 {
		return fmt.Sprintf("%s:%d", host, ta.Port)
	}
	return host
}

// routeHosts lists the exact host names of the routes, for the development certificate.
func routeHosts(routes []config.Route) []string {
	var hosts []string
	seen := map[string]bool{}
	for _, r := range routes {
		for _, h := range r.Hosts {
			if !strings.HasPrefix(h, "*.") && !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
		}
	}
	return hosts
}
