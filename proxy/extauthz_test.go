package proxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// A panic while answering Check must become an error Envoy refuses on, not the end of the
// process deciding every other request: grpc-go does not recover handlers' panics.
func TestRecoverUnary(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewJSONHandler(&logs, nil))}
	info := &grpc.UnaryServerInfo{FullMethod: "/envoy.service.auth.v3.Authorization/Check"}
	resp, err := s.recoverUnary(context.Background(), nil, info, func(context.Context, any) (any, error) {
		panic("decision bug")
	})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Fatalf("resp %v, err %v: want codes.Internal", resp, err)
	}
	if strings.Contains(err.Error(), "decision bug") {
		t.Errorf("the panic's value reached the caller: %v", err)
	}
	if !strings.Contains(logs.String(), "decision bug") || !strings.Contains(logs.String(), "Check") {
		t.Errorf("the panic was not logged: %s", logs.String())
	}
	// A handler that returns is untouched.
	resp, err = s.recoverUnary(context.Background(), nil, info, func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Errorf("resp %v, err %v", resp, err)
	}
}

// A recovery guard behind Envoy runs on the body Envoy sends (with_request_body) when it is
// the whole body, with the proxy's answers: an allowed request is forwarded, a blocked one is
// answered by Portcullis (the generic 200 included, which must never read as an allow), and
// anything short of the whole body, or a mirror guard, is refused rather than guessed.
func TestExtAuthzRecoveryGuard(t *testing.T) {
	t.Parallel()
	up := newEcho(t)
	cfg := loadConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", metrics_listen: "off", trusted_proxies: [127.0.0.1/32]}
tls: {mode: self_signed}
forward_auth: {enabled: true}
routes:
  - name: reset
    path: /reset
    upstream: %[1]s
    public: true
    recovery_guard: {identifier: [{from: form, name: email}]}
  - name: strict
    path: /strict
    upstream: %[1]s
    public: true
    recovery_guard: {identifier: [{from: form, name: email}], blocked_response: forbidden}
  - name: mirror
    path: /mirror
    upstream: %[1]s
    public: true
    recovery_guard: {identifier: [{from: form, name: email}], blocked_response: mirror}
`, up.URL))
	f := newRecFake()
	rec := &audit.Recorder{}
	tp := newTestProxy(t, cfg, Options{Recovery: f, Members: f, Audit: rec})
	f.org("acme", store.OrgActive, verified("fresh.example"))
	f.member("acme", "alice", "alice@fresh.example", store.MembershipActive)
	f.org("oldco", store.OrgActive, store.Domain{Name: "stale.example", Status: store.DomainLapsed})
	f.member("oldco", "victim", "victim@stale.example", store.MembershipActive)

	a := &extAuthz{s: tp.srv}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
	ask := func(path, body string, edit func(hr *authv3.AttributeContext_HttpRequest)) *authv3.CheckResponse {
		t.Helper()
		hr := &authv3.AttributeContext_HttpRequest{Method: "POST", Path: path, Host: "portal.example.com", Scheme: "https",
			Headers: map[string]string{"content-type": "application/x-www-form-urlencoded", "accept": "text/html",
				"content-length": strconv.Itoa(len(body)), "x-envoy-auth-partial-body": "false"},
			Size: int64(len(body)), RawBody: []byte(body)}
		if edit != nil {
			edit(hr)
		}
		resp, err := a.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7"}}}},
			Request: &authv3.AttributeContext_Request{Http: hr}}})
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	deniedReason := func(what string, resp *authv3.CheckResponse, status int, code string) *authv3.DeniedHttpResponse {
		t.Helper()
		d := resp.GetDeniedResponse()
		if resp.GetOkResponse() != nil || d == nil || int(d.GetStatus().GetCode()) != status || resp.GetStatus().GetMessage() != code {
			t.Errorf("%s: %v, want denied %d %s", what, resp, status, code)
		}
		return d
	}

	if resp := ask("/reset", "email=alice%40fresh.example", nil); resp.GetOkResponse() == nil {
		t.Errorf("alice's reset: %v", resp)
	}
	// Blocked, with the route's generic answer: a 200 Envoy must send, never an allow.
	d := deniedReason("a stale domain", ask("/reset", "email=victim%40stale.example", nil), 200, "")
	if d.GetBody() != config.DefaultRecoveryGenericBody {
		t.Errorf("generic body %q", d.GetBody())
	}
	for _, h := range d.GetHeaders() {
		if strings.HasPrefix(h.GetHeader().GetKey(), "x-portcullis") {
			t.Errorf("the generic answer says why: %s", h.GetHeader().GetKey())
		}
	}
	if ev := rec.Events(); len(ev) == 0 || ev[len(ev)-1].Type != audit.RecoveryBlocked || ev[len(ev)-1].Reason != string(reason.StaleDomain) {
		t.Errorf("not audited as blocked: %+v", ev)
	}
	deniedReason("a stale domain, forbidden", ask("/strict", "email=victim%40stale.example", nil), 403, string(reason.StaleDomain))

	// Short of the whole body, the guard is not run.
	for what, edit := range map[string]func(hr *authv3.AttributeContext_HttpRequest){
		"no body sent": func(hr *authv3.AttributeContext_HttpRequest) {
			delete(hr.Headers, "x-envoy-auth-partial-body")
		},
		"part of it": func(hr *authv3.AttributeContext_HttpRequest) {
			hr.Headers["x-envoy-auth-partial-body"] = "true"
		},
		// The client's own header to an Envoy that buffers nothing: the portal would get
		// the body Portcullis never saw.
		"claimed whole, none sent": func(hr *authv3.AttributeContext_HttpRequest) {
			hr.RawBody = nil
		},
		"claimed whole, shorter than its Content-Length": func(hr *authv3.AttributeContext_HttpRequest) {
			hr.Size = -1
			hr.RawBody = hr.RawBody[:10]
		},
		"chunked, of unknown size": func(hr *authv3.AttributeContext_HttpRequest) {
			hr.Size = -1
			delete(hr.Headers, "content-length")
			hr.Headers["transfer-encoding"] = "chunked"
		},
		"the header twice": func(hr *authv3.AttributeContext_HttpRequest) {
			hr.Headers = nil
			hr.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "content-type", Value: "application/x-www-form-urlencoded"}, {Key: "content-length", Value: strconv.Itoa(len(hr.RawBody))},
				{Key: "x-envoy-auth-partial-body", Value: "false"}, {Key: "x-envoy-auth-partial-body", Value: "true"}}}
		},
	} {
		deniedReason(what, ask("/reset", "email=alice%40fresh.example", edit), 403, string(reason.ForwardAuthBody))
	}
	// A mirror guard forwards a rewritten body: Envoy forwards the original.
	deniedReason("a mirror guard", ask("/mirror", "email=victim%40stale.example", nil), 403, string(reason.ForwardAuthBody))
	up.mu.Lock()
	n := len(up.seen)
	up.mu.Unlock()
	if n != 0 {
		t.Errorf("%d requests reached the portal: a question is never forwarded", n)
	}
}

// server.client_ip_header's value is the client's, exactly, or the question is refused: the
// answer carries it, but a snippet that does not copy it passes the client's own on.
func TestUnsafeClientHeaderClientIP(t *testing.T) {
	t.Parallel()
	client := netip.MustParseAddr("203.0.113.7")
	cgi := []string{"X_PORTCULLIS_USER", "TRUE_CLIENT_IP"}
	for _, tc := range []struct {
		name string
		h    http.Header
		want string
	}{
		{"the client's", http.Header{"True-Client-Ip": {"203.0.113.7"}}, ""},
		{"another address", http.Header{"True-Client-Ip": {"10.0.0.1"}}, "True-Client-Ip"},
		{"twice", http.Header{"True-Client-Ip": {"203.0.113.7", "10.0.0.1"}}, "True-Client-Ip"},
		{"mapped", http.Header{"True-Client-Ip": {"::ffff:203.0.113.7"}}, "True-Client-Ip"},
		{"another spelling", http.Header{"True_client_ip": {"203.0.113.7"}}, "True_client_ip"},
		{"an identity header", http.Header{"X-Portcullis-User": {"x"}}, "X-Portcullis-User"},
		{"none", http.Header{"Accept": {"*/*"}}, ""},
	} {
		if got := unsafeClientHeader(tc.h, cgi, "True-Client-Ip", client); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := unsafeClientHeader(http.Header{"True-Client-Ip": {"203.0.113.7"}}, cgi, "True-Client-Ip", netip.Addr{}); got == "" {
		t.Error("accepted with no decided client")
	}
}
