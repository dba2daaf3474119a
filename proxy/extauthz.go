package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/trace"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Envoy ext_authz. Envoy's HTTP filter (and gateways built on Envoy: Istio, Envoy Gateway,
// Contour) asks envoy.service.auth.v3.Authorization/Check about every request it holds. The
// question is the same as forward-auth's: the request's method, path, authority, scheme,
// headers and source address, from a peer in server.trusted_proxies. It is decided by the
// same code: the CheckRequest is rewritten as a forward-auth question in Traefik's convention
// (whose headers it sets from the request's attributes, replacing any the client sent) and
// served by the forward-auth listener's handler; the answer is mapped back:
//
//   - allowed: OK, with every identity header and the assertion set on the upstream request
//     (overwriting the client's), those without a value and Portcullis's own cookies removed;
//   - refused: the proxy's answer as a DeniedHttpResponse (status, headers such as Location
//     and WWW-Authenticate, body) for Envoy to send the client.
//
// The body, when Envoy sends all of it (with_request_body, see checkBody), is the request's
// for the decisions that need it (a recovery guard, method-override fields); without it they
// are refused with forward_auth_body as for any ingress. A client's own X-Original-*,
// X-Forwarded-Method/-Uri or another X-Forwarded-Host than the authority is refused: Envoy
// would forward it to the portal. An allowed request's X-Forwarded-For is set to the source
// address decided with.

// maxDeniedBody caps the body of a refusal passed to Envoy (Portcullis's pages are a few KiB).
const maxDeniedBody = 64 << 10

// extAuthz serves envoy.service.auth.v3.Authorization.
type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
}

// RegisterExtAuthz registers Envoy's ext_authz service, deciding with s, on g.
func (s *Server) RegisterExtAuthz(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, &extAuthz{s: s})
}

// Check implements authv3.AuthorizationServer.
func (a *extAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	identityCGI := a.s.state.Load().identityCGI
	if a.s.tracer != nil {
		var sp trace.Span
		ctx, sp = a.s.startCheckSpan(ctx, req)
		defer sp.End()
	}
	q := extAuthzQuestion(ctx, req)
	w := &captureWriter{header: http.Header{}, source: q.Header.Get("X-Forwarded-For")}
	a.s.serve(w, q, true)
	return extAuthzAnswer(w, identityCGI), nil
}

// questionBodyKey holds, in a question's context, the request body Envoy sent whole
// (with_request_body), which the recovery guard reads; absent when it sent none or part.
type questionBodyKey struct{}

// hdrEnvoyPartialBody is the header Envoy adds to a CheckRequest's headers when it buffers
// the body: "true" when it sent only the first max_request_bytes.
const hdrEnvoyPartialBody = "X-Envoy-Auth-Partial-Body"

// checkBody returns the body of a CheckRequest when Envoy sent all of it: it says so
// (x-envoy-auth-partial-body: false) and the length is the one the request declares, its
// size attribute or Content-Length. The header alone is not enough, since a client can send
// it to an Envoy that buffers nothing: an empty body would then be decided instead of the
// one the portal gets. A chunked request of unknown size is never taken as whole.
func checkBody(hr *authv3.AttributeContext_HttpRequest, h http.Header) ([]byte, bool) {
	if vs := h.Values(hdrEnvoyPartialBody); len(vs) != 1 || vs[0] != "false" {
		return nil, false
	}
	body := hr.GetRawBody()
	if len(body) == 0 {
		body = []byte(hr.GetBody())
	}
	declared := hr.GetSize()
	if cl := h.Values("Content-Length"); declared < 0 && len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil {
			declared = n
		}
	}
	if declared != int64(len(body)) {
		return nil, false
	}
	return body, true
}

// questionFaultKey marks, in a question's context, why a CheckRequest cannot be decided
// although it was rewritten as a question; forwardAuth refuses it with that detail.
type questionFaultKey struct{}

// recoverUnary turns a panic in a handler into codes.Internal, logged, instead of the end of
// the process (grpc-go, unlike net/http, does not recover). Envoy then refuses the request
// (failure_mode_allow: false) and every other one is still decided.
func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "panic answering a gRPC call", slog.String("method", info.FullMethod),
				slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

// extAuthzQuestion rewrites a CheckRequest as a forward-auth question: GET /.portcullis/auth
// from the gRPC peer, with the request's headers and the Traefik-convention ones set from its
// attributes. A CheckRequest without HTTP attributes becomes a question without them, which
// the forward-auth steps refuse (forward_auth_request).
func extAuthzQuestion(ctx context.Context, req *authv3.CheckRequest) *http.Request {
	h := http.Header{}
	attrs := req.GetAttributes()
	hr := attrs.GetRequest().GetHttp()
	for k, v := range hr.GetHeaders() {
		if !strings.HasPrefix(k, ":") {
			h.Add(k, v)
		}
	}
	if len(hr.GetHeaders()) == 0 {
		// encode_raw_headers: one entry per field line, values as bytes.
		for _, hv := range hr.GetHeaderMap().GetHeaders() {
			if k := hv.GetKey(); !strings.HasPrefix(k, ":") {
				v := hv.GetValue()
				if len(hv.GetRawValue()) > 0 {
					v = string(hv.GetRawValue())
				}
				h.Add(k, v)
			}
		}
	}
	body, whole := checkBody(hr, h)
	// The attributes name the request; the same headers from the client would reach the
	// portal (Envoy forwards them), read there as another method, path or host.
	fault := ""
	for _, k := range [...]string{hdrOriginalMethod, hdrOriginalURI, hdrForwardedMethod, hdrForwardedURI} {
		if _, ok := h[k]; ok {
			fault = "the client sent " + k
		}
	}
	if vs, ok := h["X-Forwarded-Host"]; ok && (len(vs) != 1 || !strings.EqualFold(vs[0], hr.GetHost())) {
		fault = "the client sent X-Forwarded-Host"
	}
	for _, k := range [...]string{hdrOriginalMethod, hdrOriginalURI, hdrForwardedMethod, hdrForwardedURI,
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For", "Content-Length", "Transfer-Encoding", hdrEnvoyPartialBody} {
		h.Del(k)
	}
	if whole {
		ctx = context.WithValue(ctx, questionBodyKey{}, body)
	}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	if hr != nil {
		set(hdrForwardedMethod, hr.GetMethod())
		set(hdrForwardedURI, hr.GetPath())
		set("X-Forwarded-Host", hr.GetHost())
		set("X-Forwarded-Proto", hr.GetScheme())
		if hr.GetId() != "" && h.Get("X-Request-Id") == "" {
			h.Set("X-Request-Id", hr.GetId())
		}
	}
	// The client is the address Envoy took the request from (after its own X-Forwarded-For
	// handling), never a header the client wrote. Without one the client would be Envoy.
	source := false
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		if ip, err := netip.ParseAddr(sa.GetAddress()); err == nil {
			h.Set("X-Forwarded-For", ip.Unmap().String())
			source = true
		}
	}
	switch {
	case hr == nil:
		fault = "" // refused for its missing attributes
	case !source:
		fault = "no source socket address"
	}
	if fault != "" {
		ctx = context.WithValue(ctx, questionFaultKey{}, fault)
	}
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	q := &http.Request{
		Method: http.MethodGet, URL: &url.URL{Path: forwardAuthPath}, RequestURI: forwardAuthPath,
		Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, Host: "ext-authz", RemoteAddr: remote, Body: http.NoBody,
	}
	return q.WithContext(ctx)
}

// extAuthzAnswer maps the forward-auth answer w holds to a CheckResponse. Of an allowed
// answer's headers, only identity headers (their CGI names are among identityCGI, which holds
// server.client_ip_header's too) are set on the upstream request: the others describe the
// answer (Cache-Control, X-Request-Id, Strict-Transport-Security, the reason) and a header
// added to answers later must not reach portals by default.
func extAuthzAnswer(w *captureWriter, identityCGI []string) *authv3.CheckResponse {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	// Only an answer allow wrote is an allow: a refusal may be a 200 too (a recovery guard's
	// generic answer), which Envoy must send the client instead of forwarding.
	if w.allowed {
		ok := &authv3.OkHttpResponse{}
		for k, vs := range w.header {
			if !cgiIn(k, identityCGI) {
				continue
			}
			if len(vs) == 0 || vs[0] == "" {
				ok.HeadersToRemove = append(ok.HeadersToRemove, strings.ToLower(k))
				continue
			}
			ok.Headers = append(ok.Headers, headerOption(k, vs[0], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
		}
		// The client as decided, not a chain that starts with what the client wrote.
		if w.source != "" {
			ok.Headers = append(ok.Headers, headerOption("X-Forwarded-For", w.source, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
		}
		// The portal's Cookie header without Portcullis's own cookies.
		if c := w.header.Get(hdrFAUpstreamCookie); c != "" {
			ok.Headers = append(ok.Headers, headerOption("Cookie", c, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
		} else {
			ok.HeadersToRemove = append(ok.HeadersToRemove, "cookie")
		}
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}
	}
	denied := &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(status)}, Body: w.body.String()}
	for k, vs := range w.header {
		if k == "Content-Length" {
			continue // Envoy frames the body it sends
		}
		for _, v := range vs {
			denied.Headers = append(denied.Headers, headerOption(k, v, corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
		}
	}
	code := codes.PermissionDenied
	if status == http.StatusUnauthorized {
		code = codes.Unauthenticated
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code), Message: w.header.Get(hdrFAReason)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
	}
}

func headerOption(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: strings.ToLower(k), Value: v}, AppendAction: action}
}

// captureWriter holds an answer for mapping: its status, headers and (capped) body.
type captureWriter struct {
	header  http.Header
	status  int
	body    bytes.Buffer
	allowed bool // written by exchange.allow
	// source is the source address the question was decided with (its X-Forwarded-For).
	source string
}

// markAllowed implements allowMarker.
func (w *captureWriter) markAllowed() { w.allowed = true }

func (w *captureWriter) Header() http.Header { return w.header }

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *captureWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if room := maxDeniedBody - w.body.Len(); room > 0 {
		w.body.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}
