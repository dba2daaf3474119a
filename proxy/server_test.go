package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"

	"github.com/portcullis-proxy/portcullis/config"
)

// echoUpstream records every request that reaches the portal: a negative case must leave it
// empty (invariant 0.2.1 of the security cases).
type echoUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func newEcho(t *testing.T) *echoUpstream {
	t.Helper()
	e := &echoUpstream{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		e.mu.Lock()
		e.seen = append(e.seen, r)
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"uri": r.RequestURI, "host": r.Host, "header": r.Header, "body": string(body), "method": r.Method,
		})
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *echoUpstream) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}

func (e *echoUpstream) last(t *testing.T) *http.Request {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		t.Fatal("upstream received nothing")
	}
	return e.seen[len(e.seen)-1]
}

// loadConfig writes yaml to a file and loads it the way the binary does.
func loadConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(p)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func baseConfig(upstream string, extra string) string {
	return fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  metrics_listen: "off"
  trusted_proxies: [10.9.0.0/16]
tls:
  mode: self_signed
routes:
  - name: health
    path: /health
    path_match: exact
    upstream: %[1]s
    public: true
  - name: public
    path: /public
    upstream: %[1]s
    public: true
  - name: app
    path: /app
    upstream: %[1]s
    public: true
  - name: admin
    path: /admin
    upstream: %[1]s
%[2]s`, upstream, extra)
}

type testProxy struct {
	srv    *Server
	http   *httptest.Server
	logMu  *sync.Mutex
	logBuf *bytes.Buffer
}

func (tp *testProxy) logs() string {
	tp.logMu.Lock()
	defer tp.logMu.Unlock()
	return tp.logBuf.String()
}

func newTestProxy(t *testing.T, cfg *config.Config, opts Options) *testProxy {
	t.Helper()
	logs := &bytes.Buffer{}
	mu := &sync.Mutex{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewJSONHandler(lockedWriter{mu, logs}, nil))
	}
	s, err := New(SettingsOf(cfg), opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &testProxy{srv: s, http: hs, logMu: mu, logBuf: logs}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// raw sends bytes exactly as given, so no client library normalises the request-target.
func raw(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", req, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

func get(target string) string {
	return "GET " + target + " HTTP/1.1\r\nHost: portal.example.test\r\nConnection: close\r\n\r\n"
}

func decodeProblem(t *testing.T, resp *http.Response) problem.Problem {
	t.Helper()
	var p problem.Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("body is not a JSON problem: %v", err)
	}
	return p
}

func TestForwardsTheNormalisedRequest(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	addr := tp.http.Listener.Addr().String()
	tests := []struct{ target, want string }{
		{"/app/x?q=1", "/app/x?q=1"},
		{"/app/./x//y", "/app/x/y"},
		{"/%61pp/x", "/app/x"},
		{"/app/a/../b", "/app/b"},
		{"/public/../app/x", "/app/x"},
		{"/app/%7Euser/%41", "/app/~user/A"},
		{"/app/caf%c3%a9", "/app/caf%C3%A9"},
		{"/app/a%20b", "/app/a%20b"},
		{"/app/x?next=/admin", "/app/x?next=/admin"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			resp := raw(t, addr, get(tc.target))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := up.last(t).RequestURI; got != tc.want {
				t.Errorf("upstream got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestAttackPaths drives the PATH and AUTHN-04 cases through the handler: each is refused
// with 400, or is matched as the admin route it really names (which is not public: 401).
// The upstream must never see any of them.
func TestAttackPaths(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	addr := tp.http.Listener.Addr().String()
	for _, target := range []string{
		"/admin/../admin", "//admin", "/%61dmin", "/admin%2f..", "/admin%2F", "/%2Fadmin/users",
		"/public/../admin/users", "/public/./../admin/users", "/app/../admin/users",
		"/public/x/../../admin/users", "/static/..%2F../admin/users",
		"/public/%2e%2e/admin/users", "/public/%2E%2E/admin/users", "/public/.%2e/admin/users",
		"/public/%252e%252e/admin/users", "/public/%c0%ae%c0%ae/admin/users", "/public/%u002e%u002e/admin/users",
		"/public%2F..%2Fadmin%2Fusers", "/public%5C..%5Cadmin%5Cusers", `/public\..\admin\users`, `/admin\users`,
		"/admin;x=y/users", "/public/..;/admin/users", "/admin%3Bx=y/users",
		"///admin/users", "/./admin/users", "/public//../admin/users",
		"/admin/users#/public/x", "/public/x#/../../admin/users", "/#/../admin/users",
		"/admin%00", "/../admin", "/public/%2e%2e/%2e%2e/admin",
		"/.portcullis/healthz/../../admin/users",
	} {
		t.Run(target, func(t *testing.T) {
			resp := raw(t, addr, get(target))
			switch resp.StatusCode {
			case http.StatusBadRequest, http.StatusUnauthorized:
			default:
				t.Fatalf("status %d, want 400 or 401", resp.StatusCode)
			}
			// net/http itself refuses a few targets (%u escapes) with a plain 400 before any
			// handler runs; everything that reaches the proxy gets a problem with a reason.
			if resp.Header.Get("Content-Type") == "application/json" {
				if p := decodeProblem(t, resp); p.Reason == "" || p.RequestID == "" {
					t.Errorf("problem without reason or request id: %+v", p)
				}
			} else if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("non-JSON answer with status %d", resp.StatusCode)
			}
			if up.count() != 0 {
				t.Fatalf("upstream was contacted with %q", up.last(t).RequestURI)
			}
		})
	}
	// Case: /ADMIN does not match the case-sensitive /admin route and no other route takes it.
	if resp := raw(t, addr, get("/ADMIN/users")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/ADMIN/users: status %d, want 404", resp.StatusCode)
	}
}

// TestQueryNeverChoosesTheRoute covers AUTHN-01 and AUTHN-03: rules look at the path only.
func TestQueryNeverChoosesTheRoute(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	addr := tp.http.Listener.Addr().String()
	for _, target := range []string{
		"/admin/users?x=/public/a", "/admin/users?/health", "/admin/users?%2Fpublic%2Fa", "/admin/users?a=1&b=/public/",
	} {
		resp := raw(t, addr, get(target))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", target, resp.StatusCode)
		}
	}
	for _, ua := range []string{"GoogleHC/1.0", "kube-probe/1.31", "ELB-HealthChecker/2.0", "Consul Health Check"} {
		req := "GET /admin/users HTTP/1.1\r\nHost: portal.example.test\r\nUser-Agent: " + ua + "\r\nConnection: close\r\n\r\n"
		if resp := raw(t, addr, req); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("User-Agent %s: status %d, want 401", ua, resp.StatusCode)
		}
	}
	if up.count() != 0 {
		t.Fatalf("upstream was contacted with %q", up.last(t).RequestURI)
	}
}

func TestNonPublicRouteFailsClosedWithoutGate(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	req, _ := http.NewRequest("GET", tp.http.URL+"/admin", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if p := decodeProblem(t, resp); p.Reason != reason.NoSession {
		t.Errorf("reason %q", p.Reason)
	}
	// A browser gets a page, not JSON.
	req.Header.Set("Accept", "text/html")
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if !strings.HasPrefix(resp2.Header.Get("Content-Type"), "text/html") || !bytes.Contains(body, []byte("no_session")) {
		t.Errorf("browser got %q: %s", resp2.Header.Get("Content-Type"), body)
	}
	if up.count() != 0 {
		t.Fatal("upstream was contacted")
	}
}

// TestClientIPHeader: server.client_ip_header carries the real peer's address, whatever the
// client sent in it, in any spelling.
func TestClientIPHeader(t *testing.T) {
	up := newEcho(t)
	cfg := loadConfig(t, baseConfig(up.URL, ""))
	cfg.Server.ClientIPHeader = "true-client-ip"
	tp := newTestProxy(t, cfg, Options{})
	req := "GET /app/echo HTTP/1.1\r\nHost: portal.example.test\r\nConnection: close\r\n" +
		"True-Client-IP: 6.6.6.6\r\nTrue_Client_Ip: 6.6.6.6\r\nTRUE-CLIENT-IP: 6.6.6.6\r\n\r\n"
	if resp := raw(t, tp.http.Listener.Addr().String(), req); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := up.last(t)
	if v := got.Header.Values("True-Client-Ip"); len(v) != 1 || v[0] != "127.0.0.1" {
		t.Errorf("True-Client-IP = %q, want the peer", v)
	}
	for name, vals := range got.Header {
		if strings.Contains(strings.Join(vals, ","), "6.6.6.6") {
			t.Errorf("%s: %v reached the portal", name, vals)
		}
	}
}

// TestHeaderHygiene covers HDR-01, HDR-02, HDR-04 and AUTHN-02 for the headers this layer
// owns: no client value of a managed header, in any spelling, reaches the portal.
func TestHeaderHygiene(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	addr := tp.http.Listener.Addr().String()
	spoofed := []string{
		"X-Forwarded-For: 6.6.6.6", "X_Forwarded_For: 6.6.6.6", "X.Forwarded.For: 6.6.6.6",
		"X-Forwarded-Host: evil.test", "X_Forwarded_Host: evil.test", "x-forwarded-proto: https",
		"Forwarded: for=6.6.6.6;host=evil.test", "X-Real-IP: 6.6.6.6", "X-Request-Id: spoofed-id",
		"X-Forwarded-Uri: /public/logo.png", "X-Original-URI: /public/logo.png",
		"X-Original-URL: https://portal.example.test/public/logo.png", "X-Rewrite-URL: /public/logo.png",
		"X-Forwarded-Prefix: /public", "X-Forwarded-Path: /public/logo.png",
		"X-Portcullis-User: alice", "x_portcullis_user: alice", "X.Portcullis.Org: acme", "X~Portcullis~Roles: admin",
		"X-Forwarded-User: alice", "X-Auth-Request-User: alice", "Remote-User: alice", "X-Remote-User: alice",
		"X-WEBAUTH-USER: alice",
		// The client-address family (issue 19): every spelling a portal or CDN reads.
		"True-Client-IP: 6.6.6.6", "True_Client_IP: 6.6.6.6", "CF-Connecting-IP: 6.6.6.6", "Fastly-Client-IP: 6.6.6.6",
		"X-Cluster-Client-IP: 6.6.6.6", "X-Originating-IP: 6.6.6.6", "X-Remote-IP: 6.6.6.6", "X-Remote-Addr: 6.6.6.6",
		"X-Client-IP: 6.6.6.6", "Client-IP: 6.6.6.6", "X-Forwarded: for=6.6.6.6", "WL-Proxy-Client-IP: 6.6.6.6",
		"X-ProxyUser-Ip: 6.6.6.6", "Akamai-Client-IP: 6.6.6.6", "X-Azure-ClientIP: 6.6.6.6",
	}
	// The second variant lists the proxy's own headers in Connection (HDR-04): hop-by-hop
	// removal must not delete what the proxy sets.
	for _, conn := range []string{"close", "close, X-Forwarded-For, X-Request-Id, X-Forwarded-Host, X-Forwarded-Proto"} {
		req := "GET /app/echo HTTP/1.1\r\nHost: portal.example.test\r\nConnection: " + conn + "\r\n" +
			strings.Join(spoofed, "\r\n") + "\r\n\r\n"
		resp := raw(t, addr, req)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got := up.last(t)
		for name, vals := range got.Header {
			for _, v := range vals {
				if strings.Contains(v, "6.6.6.6") || strings.Contains(v, "evil.test") || strings.Contains(v, "alice") ||
					strings.Contains(v, "/public") || v == "spoofed-id" || strings.Contains(v, "acme") {
					t.Errorf("client value reached the upstream: %s: %s", name, v)
				}
			}
			if isManaged(name, nil) && !map[string]bool{"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "X-Request-Id": true}[name] {
				t.Errorf("managed header %s reached the upstream", name)
			}
		}
		if v := got.Header.Values("X-Forwarded-For"); len(v) != 1 || v[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want the peer only", v)
		}
		if v := got.Header.Values("X-Forwarded-Host"); len(v) != 1 || v[0] != "portal.example.test" {
			t.Errorf("X-Forwarded-Host = %q", v)
		}
		if v := got.Header.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != "http" {
			t.Errorf("X-Forwarded-Proto = %q", v)
		}
		if v := got.Header.Values("X-Request-Id"); len(v) != 1 || v[0] != resp.Header.Get("X-Request-Id") {
			t.Errorf("X-Request-Id upstream %q, client saw %q", v, resp.Header.Get("X-Request-Id"))
		}
	}
}

func TestDuplicateAuthorizationAndAbsoluteForm(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "  - {name: hosted, hosts: [portal.example.test], path: /hosted, upstream: "+up.URL+", public: true}\n")), Options{})
	addr := tp.http.Listener.Addr().String()
	resp := raw(t, addr, "GET /app/x HTTP/1.1\r\nHost: portal.example.test\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 400 || decodeProblem(t, resp).Reason != reason.DuplicateAuthorization {
		t.Errorf("two Authorization headers: status %d", resp.StatusCode)
	}
	// Absolute-form: net/http makes the target's host the request's host; it is the one the
	// routes see and the one forwarded, never the Host header's.
	resp = raw(t, addr, "GET http://evil.example/hosted/x HTTP/1.1\r\nHost: portal.example.test\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 404 {
		t.Errorf("absolute-form naming another host: status %d, want 404 (the hosted route is portal.example.test only)", resp.StatusCode)
	}
	resp = raw(t, addr, "GET http://portal.example.test/hosted/../hosted/x?y=1 HTTP/1.1\r\nHost: portal.example.test\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 || up.last(t).RequestURI != "/hosted/x?y=1" || up.last(t).Header.Get("X-Forwarded-Host") != "portal.example.test" {
		t.Errorf("absolute-form for the route's host: status %d", resp.StatusCode)
	}
	if n := up.count(); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
}

func TestTrustedProxyChain(t *testing.T) {
	up := newEcho(t)
	cfg := loadConfig(t, strings.Replace(baseConfig(up.URL, ""), "10.9.0.0/16", "127.0.0.0/8", 1))
	tp := newTestProxy(t, cfg, Options{})
	addr := tp.http.Listener.Addr().String()
	resp := raw(t, addr, "GET /app/x HTTP/1.1\r\nHost: portal.example.test\r\nX-Forwarded-For: 203.0.113.7, 127.0.0.5\r\nX-Forwarded-Proto: https\r\nX-Request-Id: lb-123\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := up.last(t)
	if v := got.Header.Get("X-Forwarded-For"); v != "203.0.113.7, 127.0.0.5, 127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", v)
	}
	if v := got.Header.Get("X-Forwarded-Proto"); v != "https" {
		t.Errorf("X-Forwarded-Proto %q", v)
	}
	if v := got.Header.Get("X-Request-Id"); v != "lb-123" {
		t.Errorf("X-Request-Id %q: a trusted load balancer's id should be kept", v)
	}
	// A garbled chain is not believed.
	raw(t, addr, "GET /app/x HTTP/1.1\r\nHost: portal.example.test\r\nX-Forwarded-For: 203.0.113.7, nonsense\r\nConnection: close\r\n\r\n")
	if v := up.last(t).Header.Get("X-Forwarded-For"); v != "127.0.0.1" {
		t.Errorf("garbled chain: X-Forwarded-For %q", v)
	}
}

func TestUpstreamFailuresArePages(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	cfg := loadConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", metrics_listen: "off"}
tls: {mode: self_signed}
routes:
  - {name: dead, path: /dead, upstream: %s, public: true}
  - name: slow
    path: /slow
    upstream: %s
    public: true
    timeouts: {response_header: 100ms}
`, deadURL, slow.URL))
	tp := newTestProxy(t, cfg, Options{})
	for _, tc := range []struct {
		path   string
		status int
		reason string
	}{
		{"/dead", 502, string(reason.UpstreamUnavailable)},
		{"/slow", 504, string(reason.UpstreamTimeout)},
	} {
		resp, err := http.Get(tp.http.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.status)
		}
		var p problem.Problem
		if err := json.Unmarshal(body, &p); err != nil || string(p.Reason) != tc.reason {
			t.Errorf("%s: body %s", tc.path, body)
		}
		for _, leak := range []string{"dial tcp", "127.0.0.1", "connection refused", "timeout awaiting", "goroutine"} {
			if bytes.Contains(body, []byte(leak)) {
				t.Errorf("%s: body leaks %q: %s", tc.path, leak, body)
			}
		}
	}
}

func TestWebSocketThroughProxy(t *testing.T) {
	upgrader := websocket.Upgrader{}
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			_ = c.WriteMessage(mt, append([]byte("echo:"+r.URL.Path+":"), msg...))
		}
	}))
	defer ws.Close()
	cfg := loadConfig(t, baseConfig(ws.URL, ""))
	for i := range cfg.Routes {
		cfg.Routes[i].WebSocket = true
	}
	tp := newTestProxy(t, cfg, Options{})
	url := "ws" + strings.TrimPrefix(tp.http.URL, "http") + "/app/./socket"
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo:/app/socket:"+msg {
			t.Errorf("got %q", got)
		}
	}
}

func TestOwnEndpoints(t *testing.T) {
	up := newEcho(t)
	failing := true
	var mu sync.Mutex
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "  - {name: all, path: /, upstream: "+up.URL+", public: true}\n")), Options{
		ReadyChecks: map[string]ReadyCheck{"redis": func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if failing {
				return fmt.Errorf("dial tcp 10.1.2.3:6379: secret internal detail")
			}
			return nil
		}},
	})
	resp, err := http.Get(tp.http.URL + "/.portcullis/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, _ = http.Get(tp.http.URL + "/.portcullis/readyz")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || bytes.Contains(body, []byte("10.1.2.3")) || !bytes.Contains(body, []byte(`"redis":"failing"`)) {
		t.Errorf("readyz while failing: %d %s", resp.StatusCode, body)
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	resp, _ = http.Get(tp.http.URL + "/.portcullis/readyz")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("readyz when healthy: %d", resp.StatusCode)
	}
	// The reserved prefix never falls through to the catch-all route.
	for _, p := range []string{"/.portcullis/", "/.portcullis/nope", "/.portcullis/healthz/x", "/.portcullis"} {
		resp, _ := http.Get(tp.http.URL + p)
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
	resp, _ = http.Post(tp.http.URL+"/.portcullis/healthz", "text/plain", nil)
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST healthz: %d", resp.StatusCode)
	}
	if up.count() != 0 {
		t.Errorf("upstream saw %q", up.last(t).RequestURI)
	}
}

func TestReloadSwapsRoutesAtomically(t *testing.T) {
	a, b := newEcho(t), newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(a.URL, "")), Options{})
	get := func() int {
		resp, err := http.Get(tp.http.URL + "/app/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	get()
	if err := tp.srv.Reload(SettingsOf(loadConfig(t, baseConfig(b.URL, "")))); err != nil {
		t.Fatal(err)
	}
	get()
	if a.count() != 1 || b.count() != 1 {
		t.Errorf("before/after reload: a saw %d, b saw %d; want 1 and 1", a.count(), b.count())
	}
}

func TestMetricsCountRoutesAndCodes(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	for _, p := range []string{"/app/x", "/app/y", "/nope", "/admin"} {
		resp, _ := http.Get(tp.http.URL + p)
		resp.Body.Close()
	}
	rec := httptest.NewRecorder()
	tp.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`portcullis_requests_total{code="200",route="app"} 2`,
		`portcullis_requests_total{code="404",route="_none"} 1`,
		`portcullis_requests_total{code="401",route="admin"} 1`,
		`portcullis_request_duration_seconds_count{route="app"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestAccessLogHasNoQuery(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	resp, _ := http.Get(tp.http.URL + "/app/x?code=SECRETCODE")
	resp.Body.Close()
	// The access line is written after the response has gone out; wait for it.
	var logs string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if logs = tp.logs(); strings.Contains(logs, `"msg":"request"`) {
			break
		}
	}
	if !strings.Contains(logs, `"path":"/app/x"`) || !strings.Contains(logs, `"route":"app"`) {
		t.Errorf("access log lacks the request: %s", logs)
	}
	if strings.Contains(logs, "SECRETCODE") {
		t.Errorf("access log leaks the query: %s", logs)
	}
}

// TestOwnCookiesNeverReachThePortal: a portal that logs its Cookie header must not end up
// holding a usable Portcullis session; the portal's own cookies pass untouched.
func TestOwnCookiesNeverReachThePortal(t *testing.T) {
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	addr := tp.http.Listener.Addr().String()
	for _, tc := range []struct{ cookies, want string }{
		{"JSESSIONID=abc; __Host-portcullis=SECRET; theme=dark", "JSESSIONID=abc; theme=dark"},
		{"__Host-portcullis=SECRET", ""},
		{"__host-PORTCULLIS=SECRET;__Host-portcullis-login=SECRET2 ; a=1", "a=1"},
		{"portcullis_pref=1", "portcullis_pref=1"},
	} {
		resp := raw(t, addr, "GET /app/x HTTP/1.1\r\nHost: portal.example.test\r\nCookie: "+tc.cookies+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		got := strings.Join(up.last(t).Header.Values("Cookie"), " | ")
		if got != tc.want || strings.Contains(got, "SECRET") {
			t.Errorf("Cookie %q reached the portal as %q, want %q", tc.cookies, got, tc.want)
		}
	}
}

// TestReloadKeepsProviders: sign-in is read at start, so a reload that names other providers
// (an edited oidc.issuer) leaves the trust rule as sessions know it.
func TestReloadKeepsProviders(t *testing.T) {
	up := newEcho(t)
	cfg := loadConfig(t, baseConfig(up.URL, ""))
	set := SettingsOf(cfg)
	set.Providers = []config.OIDCProvider{{Name: config.DefaultProvider, Issuer: "https://idp.example", Shared: true}}
	s, err := New(set, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	next := SettingsOf(cfg)
	next.Providers = []config.OIDCProvider{{Name: config.DefaultProvider, Issuer: "https://idp.example/other", Shared: true}}
	if err := s.Reload(next); err != nil {
		t.Fatal(err)
	}
	if got := s.state.Load().trust.Load().ByIssuer("https://idp.example"); got != config.DefaultProvider {
		t.Errorf("after reload the start's issuer is %q, want default", got)
	}
	if err := s.Reload(SettingsOf(cfg)); err != nil { // a file without oidc
		t.Fatal(err)
	}
	if s.state.Load().trust.Load() == nil {
		t.Error("a reload without providers switched the trust rule off")
	}
}
