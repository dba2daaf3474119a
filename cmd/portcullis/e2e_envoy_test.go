package main

// End-to-end test of Envoy's ext_authz (#18) against the real binary: a gRPC client built on
// go-control-plane's types asks envoy.service.auth.v3.Authorization/Check over TLS, with the
// CheckRequests Envoy's HTTP filter sends (lower-case headers, pseudo-headers, the source
// address), for a person signed in through Portcullis's own pages. No Envoy binary is
// available to the tests (none is packaged for Debian); TestEnvoyExample validates
// examples/envoy/envoy.yaml with Envoy's API types instead.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.yaml.in/yaml/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// envoyClient dials the ext_authz listener over TLS from local, a loopback address.
func envoyClient(t *testing.T, addr, local string) authv3.AuthorizationClient {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// envoyCheck is the CheckRequest Envoy sends for method and path on host from the client at
// 203.0.113.7, with headers (lower-case, merged, cookies joined) and the pseudo-headers.
func envoyCheck(method, host, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path, ":authority": host, ":scheme": "https", "x-request-id": "envoy-req-1"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50123}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "envoy-req-1", Method: method, Path: path, Host: host, Scheme: "https", Protocol: "HTTP/1.1", Headers: h, Size: -1,
		}},
	}}
}

func TestE2EEnvoyExtAuthz(t *testing.T) {
	t.Parallel()
	b := newIngressBed(t, nil)
	b.pc.waitLog(t, "portcullis serving", time.Second)
	host := strings.TrimPrefix(b.ingress.base, "https://")
	alice := b.newClient()
	alice.signIn(b.ingress, "alice")
	aliceKey := b.user("sub-alice")
	var cookies []string
	for _, c := range alice.c.Jar.Cookies(&url.URL{Scheme: "https", Host: host, Path: "/"}) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	cookie := strings.Join(append(cookies, "portal_prefs=dark"), "; ")
	envoy := envoyClient(t, b.envoy, "127.0.0.1")
	ctx := t.Context()
	check := func(t *testing.T, req *authv3.CheckRequest) *authv3.CheckResponse {
		t.Helper()
		resp, err := envoy.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}
	// denied checks a refusal: its gRPC code, HTTP status, reason header and body.
	denied := func(t *testing.T, what string, resp *authv3.CheckResponse, code codes.Code, status int, reasonCode string) *authv3.DeniedHttpResponse {
		t.Helper()
		d := resp.GetDeniedResponse()
		hdr := map[string]string{}
		for _, h := range d.GetHeaders() {
			hdr[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if codes.Code(resp.GetStatus().GetCode()) != code || d == nil || int(d.GetStatus().GetCode()) != status ||
			hdr["x-portcullis-reason"] != reasonCode || resp.GetOkResponse() != nil {
			t.Errorf("%s: %v %v, want %v %d %s", what, resp.GetStatus(), d, code, status, reasonCode)
		}
		if strings.Contains(d.GetBody(), "\"error\"") && !strings.Contains(d.GetBody(), reasonCode) {
			t.Errorf("%s: body %s", what, d.GetBody())
		}
		return d
	}

	t.Run("allowed: identity on the upstream request, Portcullis's cookie removed", func(t *testing.T) {
		resp := check(t, envoyCheck("GET", host, "/orgs/acme/home?tab=1", map[string]string{
			"cookie": cookie, "accept": "application/json", "x-forwarded-for": "6.6.6.6"}))
		ok := resp.GetOkResponse()
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil {
			t.Fatalf("alice: %v", resp)
		}
		set := map[string]string{}
		for _, h := range ok.GetHeaders() {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("%s is not overwritten: %v", h.GetHeader().GetKey(), h.GetAppendAction())
			}
			set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		// X-Forwarded-For is the source address decided with, not a chain Envoy appended
		// the client's own to.
		for k, v := range map[string]string{"x-portcullis-user": aliceKey, "x-portcullis-email": "alice@acme.example",
			"x-portcullis-org": "acme", "x-portcullis-roles": "user", "x-portcullis-kind": "employee", "cookie": "portal_prefs=dark",
			"x-forwarded-for": "203.0.113.7"} {
			if set[k] != v {
				t.Errorf("upstream %s = %q, want %q", k, set[k], v)
			}
		}
		azVerifyAssertion(t, alice, b.ingress, set["x-portcullis-assertion"], "portal", aliceKey, "acme", []string{"user"})
		removed := strings.Join(ok.GetHeadersToRemove(), ",")
		if !strings.Contains(removed, "x-portcullis-purpose") {
			t.Errorf("headers to remove %q: the client's x-portcullis-purpose would reach the portal", removed)
		}
		// Identity headers and the Cookie only: nothing describing the answer itself.
		identity := map[string]bool{"x-portcullis-user": true, "x-portcullis-email": true, "x-portcullis-org": true,
			"x-portcullis-roles": true, "x-portcullis-kind": true, "x-portcullis-assertion": true, "cookie": true, "x-forwarded-for": true}
		for k := range set {
			if !identity[k] {
				t.Errorf("%s is set upstream", k)
			}
		}
	})

	t.Run("the same decision with encode_raw_headers", func(t *testing.T) {
		req := envoyCheck("GET", host, "/orgs/beta/home", nil)
		hr := req.Attributes.Request.Http
		hr.Headers = nil
		hr.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte("/orgs/acme/home")}, {Key: "cookie", RawValue: []byte(cookie)},
			{Key: "accept", RawValue: []byte("application/json")}}}
		denied(t, "beta, raw headers", check(t, req), codes.PermissionDenied, http.StatusForbidden, "not_member")
		hr.Path = "/orgs/acme/home"
		if resp := check(t, req); resp.GetOkResponse() == nil {
			t.Errorf("acme, raw headers: %v", resp)
		}
	})

	t.Run("refusals are the proxy's answers", func(t *testing.T) {
		d := denied(t, "signed out, browser", check(t, envoyCheck("GET", host, "/orgs/acme/home", map[string]string{"accept": "text/html", "sec-fetch-mode": "navigate"})),
			codes.PermissionDenied, http.StatusFound, "no_session")
		for _, h := range d.GetHeaders() {
			if h.GetHeader().GetKey() == "location" && !strings.HasPrefix(h.GetHeader().GetValue(), b.ingress.base+"/.portcullis/login?") {
				t.Errorf("sign-in Location %q", h.GetHeader().GetValue())
			}
		}
		denied(t, "signed out, API", check(t, envoyCheck("GET", host, "/orgs/acme/home", map[string]string{"accept": "application/json"})),
			codes.Unauthenticated, http.StatusUnauthorized, "no_session")
		api := map[string]string{"cookie": cookie, "accept": "application/json"}
		denied(t, "another org", check(t, envoyCheck("GET", host, "/orgs/beta/home", api)), codes.PermissionDenied, http.StatusForbidden, "not_member")
		denied(t, "role", check(t, envoyCheck("GET", host, "/admin/acme/users", api)), codes.PermissionDenied, http.StatusForbidden, "role_missing")
		d = denied(t, "step-up", check(t, envoyCheck("GET", host, "/billing/acme/x", api)), codes.Unauthenticated, http.StatusUnauthorized, "step_up_required")
		challenged := false
		for _, h := range d.GetHeaders() {
			challenged = challenged || h.GetHeader().GetKey() == "www-authenticate" && strings.Contains(h.GetHeader().GetValue(), "insufficient_user_authentication")
		}
		if !challenged {
			t.Errorf("step-up without its challenge: %v", d.GetHeaders())
		}
	})

	t.Run("the request decided is the attributes', never the client's headers", func(t *testing.T) {
		api := func(extra map[string]string) map[string]string {
			m := map[string]string{"cookie": cookie, "accept": "application/json"}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		// The client's own: refused, since Envoy would forward them to the portal.
		for _, extra := range []map[string]string{
			{"x-original-uri": "/orgs/acme/home", "x-original-method": "GET"},
			{"x-forwarded-uri": "/orgs/acme/home", "x-forwarded-method": "GET"},
			{"x-forwarded-host": "acme.portal.example.test"},
			{"x-portcullis-org": "acme"},
		} {
			denied(t, "acme with "+strings.Join(keys(extra), ","), check(t, envoyCheck("GET", host, "/orgs/acme/home", api(extra))),
				codes.PermissionDenied, http.StatusBadRequest, "forward_auth_request")
		}
		// An X-Forwarded-Host naming the authority itself (Envoy's append_x_forwarded_host).
		if resp := check(t, envoyCheck("GET", host, "/orgs/acme/home", api(map[string]string{"x-forwarded-host": host}))); resp.GetOkResponse() == nil {
			t.Errorf("X-Forwarded-Host naming the authority: %v", resp.GetStatus())
		}
		denied(t, "a path the proxy would normalise", check(t, envoyCheck("GET", host, "/orgs/acme/%2e%2e/beta/home", api(nil))),
			codes.PermissionDenied, http.StatusBadRequest, "forward_auth_path")
		denied(t, "an identity header in another spelling", check(t, envoyCheck("GET", host, "/orgs/acme/home", api(map[string]string{"x_portcullis_org": "beta"}))),
			codes.PermissionDenied, http.StatusBadRequest, "forward_auth_request")
		// Envoy forwards the client's other headers; those the proxy strips are refused.
		for name, v := range map[string]string{"x-remote-user": "mallory", "true-client-ip": "198.51.100.9",
			"forwarded": "for=198.51.100.9", "x-envoy-external-address": "198.51.100.9", "x-portcullis-upstream-cookie": "session=stolen"} {
			denied(t, name, check(t, envoyCheck("GET", host, "/orgs/acme/home", api(map[string]string{name: v}))),
				codes.PermissionDenied, http.StatusBadRequest, "forward_auth_request")
		}
		// Those Envoy sets itself are its own: x-envoy-external-address naming the source.
		own := api(map[string]string{"x-envoy-external-address": "203.0.113.7", "x-request-id": "r-1", "x-forwarded-proto": "https"})
		if resp := check(t, envoyCheck("GET", host, "/orgs/acme/home", own)); resp.GetOkResponse() == nil {
			t.Errorf("Envoy's own headers: %v", resp.GetStatus())
		}
		denied(t, "no HTTP attributes", check(t, &authv3.CheckRequest{}), codes.PermissionDenied, http.StatusBadRequest, "forward_auth_request")
		// Without the source address the client would be Envoy itself (a trusted proxy).
		noSource := envoyCheck("GET", host, "/orgs/acme/home", api(nil))
		noSource.Attributes.Source = nil
		denied(t, "no source address", check(t, noSource), codes.PermissionDenied, http.StatusBadRequest, "forward_auth_request")
		noSource.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock"}}}}
		denied(t, "a pipe for source", check(t, noSource), codes.PermissionDenied, http.StatusBadRequest, "forward_auth_request")
	})

	t.Run("only from server.trusted_proxies", func(t *testing.T) {
		other := envoyClient(t, b.envoy, "127.0.0.2")
		resp, err := other.Check(ctx, envoyCheck("GET", host, "/orgs/acme/home", map[string]string{"cookie": cookie, "accept": "application/json"}))
		if err != nil {
			t.Fatal(err)
		}
		denied(t, "from 127.0.0.2", resp, codes.PermissionDenied, http.StatusForbidden, "forward_auth_untrusted")
	})

	t.Run("a revocation refuses within moments", func(t *testing.T) {
		if _, err := b.orgs.Revoke(ctx, "acme", aliceKey, azActor, "left the company"); err != nil {
			t.Fatal(err)
		}
		req := envoyCheck("GET", host, "/orgs/acme/home", map[string]string{"cookie": cookie, "accept": "application/json"})
		// The caches are invalidated over pub/sub: asynchronous, within milliseconds.
		for deadline := time.Now().Add(2 * time.Second); check(t, req).GetOkResponse() != nil && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		denied(t, "after revocation", check(t, req), codes.PermissionDenied, http.StatusForbidden, "membership_revoked")
	})
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestEnvoyExample: examples/envoy/envoy.yaml is an Envoy bootstrap by Envoy's own API types
// (parsed with protojson, every typed_config resolved, protoc-gen-validate's rules checked) and
// asks the service the way it answers: gRPC, API v3, failing closed, no body, the path
// normalised before asking, the client's address from the connection, and Portcullis's own
// pages routed to its main listener without a question.
func TestEnvoyExample(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "examples", "envoy", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var boot bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &boot); err != nil {
		t.Fatalf("not an Envoy bootstrap: %v", err)
	}
	validate := func(what string, m interface{ ValidateAll() error }) {
		t.Helper()
		if err := m.ValidateAll(); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	unpack := func(what string, a *anypb.Any, m proto.Message) {
		t.Helper()
		if err := a.UnmarshalTo(m); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		validate(what, m.(interface{ ValidateAll() error }))
	}
	validate("bootstrap", &boot)
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range boot.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	ls := boot.GetStaticResources().GetListeners()
	if len(ls) != 1 || len(ls[0].GetFilterChains()) != 1 || len(ls[0].GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("want one listener with one filter chain and one filter: %v", ls)
	}
	fc := ls[0].GetFilterChains()[0]
	unpack("downstream TLS", fc.GetTransportSocket().GetTypedConfig(), &tlsv3.DownstreamTlsContext{})
	var hcm hcmv3.HttpConnectionManager
	unpack("http_connection_manager", fc.GetFilters()[0].GetTypedConfig(), &hcm)
	if !hcm.GetUseRemoteAddress().GetValue() || !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Errorf("use_remote_address, normalize_path, merge_slashes, escaped slashes rejected: %v %v %v %v",
			hcm.GetUseRemoteAddress(), hcm.GetNormalizePath(), hcm.GetMergeSlashes(), hcm.GetPathWithEscapedSlashesAction())
	}
	filters := hcm.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "envoy.filters.http.ext_authz" || filters[1].GetName() != "envoy.filters.http.router" {
		t.Fatalf("http filters: want ext_authz then the router: %v", filters)
	}
	var az extauthzv3.ExtAuthz
	unpack("ext_authz", filters[0].GetTypedConfig(), &az)
	unpack("router", filters[1].GetTypedConfig(), &routerv3.Router{})
	if az.GetTransportApiVersion() != corev3.ApiVersion_V3 || az.GetFailureModeAllow() || az.GetWithRequestBody() != nil ||
		az.GetGrpcService().GetEnvoyGrpc() == nil || az.GetStatusOnError().GetCode() != 503 {
		t.Errorf("ext_authz: want gRPC, v3, failing closed with 503, no body: %v", &az)
	}
	authCluster := clusters[az.GetGrpcService().GetEnvoyGrpc().GetClusterName()]
	if authCluster == nil {
		t.Fatalf("ext_authz asks cluster %q, which is not defined", az.GetGrpcService().GetEnvoyGrpc().GetClusterName())
	}
	var hpo upstreamsv3.HttpProtocolOptions
	unpack("ext_authz cluster protocol options", authCluster.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"], &hpo)
	if hpo.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("the ext_authz cluster does not speak HTTP/2 (gRPC needs it)")
	}
	routes := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
	own := routes[0]
	var per extauthzv3.ExtAuthzPerRoute
	if own.GetMatch().GetPrefix() != "/.portcullis/" || clusters[own.GetRoute().GetCluster()] == nil {
		t.Fatalf("the first route is not Portcullis's own pages: %v", own)
	}
	unpack("ext_authz per route", own.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"], &per)
	if !per.GetDisabled() {
		t.Error("Portcullis's own pages are asked about")
	}
	for _, c := range clusters {
		validate("cluster "+c.GetName(), c)
	}
	// Every other route is asked about; the recovery route sends its whole body, as bytes.
	recovery := 0
	for _, r := range routes[1:] {
		cfg := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]
		if cfg == nil {
			if r.GetTypedPerFilterConfig() != nil {
				t.Errorf("route %v changes another filter", r.GetMatch())
			}
			continue
		}
		var p extauthzv3.ExtAuthzPerRoute
		unpack("ext_authz per route", cfg, &p)
		body := p.GetCheckSettings().GetWithRequestBody()
		if p.GetDisabled() || body == nil || body.GetAllowPartialMessage() || !body.GetPackAsBytes() || body.GetMaxRequestBytes() == 0 {
			t.Errorf("route %v: want asked about, with the whole body as bytes: %v", r.GetMatch(), &p)
		}
		recovery++
	}
	if recovery != 1 {
		t.Errorf("%d routes send the body, want the recovery route", recovery)
	}
}
