package proxy

import (
	"bytes"
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
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
// The body, when Envoy sends it (with_request_body), is not read: decisions that need it are
// refused with forward_auth_body as for any ingress.

// answerOnlyHeaders are the headers of an allowed forward-auth answer that describe the answer
// itself; every other one is for the upstream request.
var answerOnlyHeaders = map[string]bool{
	"Cache-Control": true, "X-Request-Id": true, "Strict-Transport-Security": true,
	hdrFAUpstreamCookie: true, "Content-Length": true, "Content-Type": true, "Date": true,
}

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
	q := extAuthzQuestion(ctx, req)
	w := &captureWriter{header: http.Header{}}
	a.s.serve(w, q, true)
	return extAuthzAnswer(w), nil
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
	for _, k := range [...]string{hdrOriginalMethod, hdrOriginalURI, hdrForwardedMethod, hdrForwardedURI,
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For", "Content-Length", "Transfer-Encoding"} {
		h.Del(k)
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
	// handling), never a header the client wrote.
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		if ip, err := netip.ParseAddr(sa.GetAddress()); err == nil {
			h.Set("X-Forwarded-For", ip.Unmap().String())
		}
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

// extAuthzAnswer maps the forward-auth answer w holds to a CheckResponse.
func extAuthzAnswer(w *captureWriter) *authv3.CheckResponse {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	if status == http.StatusOK {
		ok := &authv3.OkHttpResponse{}
		for k, vs := range w.header {
			if answerOnlyHeaders[k] {
				continue
			}
			if len(vs) == 0 || vs[0] == "" {
				ok.HeadersToRemove = append(ok.HeadersToRemove, strings.ToLower(k))
				continue
			}
			ok.Headers = append(ok.Headers, headerOption(k, vs[0], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
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
	header http.Header
	status int
	body   bytes.Buffer
}

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
