package proxy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/peer"
)

// tracedBed is a Server with an in-memory span exporter, served as Run serves it (traced).
type tracedBed struct {
	t    *testing.T
	up   *echoUpstream
	exp  *tracetest.InMemoryExporter
	tp   *sdktrace.TracerProvider
	srv  *httptest.Server
	s    *Server
	mu   sync.Mutex
	logs bytes.Buffer
}

func newTracedBed(t *testing.T, trusted string, continueTrusted bool) *tracedBed {
	t.Helper()
	b := &tracedBed{t: t, up: newEcho(t), exp: tracetest.NewInMemoryExporter()}
	b.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(b.exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t.Cleanup(func() { _ = b.tp.Shutdown(context.Background()) })
	cfg := loadConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", metrics_listen: "off", trusted_proxies: [%s]}
tls: {mode: self_signed}
forward_auth: {enabled: true}
routes:
  - {name: pub, path: /pub, upstream: %q, public: true}
`, trusted, b.up.URL))
	s, err := New(SettingsOf(cfg), Options{TracerProvider: b.tp, TraceContinueTrusted: continueTrusted, Logger: slog.New(slog.NewJSONHandler(lockedWriter{&b.mu, &b.logs}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	b.s = s
	b.srv = httptest.NewServer(s.traced(s, "portcullis"))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *tracedBed) get(path string, h http.Header) *http.Response {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.srv.URL+path, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp
}

func (b *tracedBed) span(name string) tracetest.SpanStub {
	b.t.Helper()
	var names []string
	for _, s := range b.exp.GetSpans() {
		if s.Name == name {
			return s
		}
		names = append(names, s.Name)
	}
	b.t.Fatalf("no span %q among %q", name, names)
	return tracetest.SpanStub{}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"

// A client's traceparent is not continued from an untrusted peer (a new trace, linked to
// it); the decision and the request to the portal are spans of the request's trace, and the
// portal gets that trace's traceparent; the access log names the trace.
func TestTracingUntrustedClient(t *testing.T) {
	t.Parallel()
	b := newTracedBed(t, "192.0.2.0/24", true)
	resp := b.get("/pub/x?email=alice%40x.example", http.Header{"Traceparent": {"00-" + clientTrace + "-00f067aa0ba902b7-01"},
		"Tracestate": {"evil=chosen"}, "Baggage": {"user.id=admin"}, "X-Forwarded-For": {"198.51.100.9"}})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	server, decide, upstream := b.span("GET pub"), b.span("portcullis.decide"), b.span("portcullis.upstream")
	tid := server.SpanContext.TraceID()
	if tid.String() == clientTrace {
		t.Error("an untrusted client's trace was continued")
	}
	if len(server.Links) != 1 || server.Links[0].SpanContext.TraceID().String() != clientTrace {
		t.Errorf("the client's trace is not linked: %+v", server.Links)
	}
	for name, s := range map[string]tracetest.SpanStub{"decide": decide, "upstream": upstream} {
		if s.SpanContext.TraceID() != tid || s.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("%s span is not a child of the request's", name)
		}
	}
	if attr(decide, "portcullis.route") != "pub" || attr(decide, "portcullis.allowed") != "true" {
		t.Errorf("decision attributes %v", decide.Attributes)
	}
	// No query string in any span (portals carry addresses and tokens there), and the
	// client is the peer, not the X-Forwarded-For an untrusted client wrote.
	for _, s := range b.exp.GetSpans() {
		for _, a := range s.Attributes {
			if v := a.Value.String(); strings.Contains(v, "alice") || strings.Contains(v, "198.51.100.9") {
				t.Errorf("span %s records %s=%s", s.Name, a.Key, v)
			}
		}
	}
	if h := b.up.last(t).Header; h.Get("Tracestate") != "" || h.Get("Baggage") != "" {
		t.Errorf("the portal got the client's tracestate %q or baggage %q", h.Get("Tracestate"), h.Get("Baggage"))
	}
	tp := b.up.last(t).Header.Get("Traceparent")
	if !strings.Contains(tp, tid.String()) || !strings.Contains(tp, upstream.SpanContext.SpanID().String()) {
		t.Errorf("the portal got traceparent %q, want the upstream span of trace %s", tp, tid)
	}
	b.mu.Lock()
	logs := b.logs.String()
	b.mu.Unlock()
	if !strings.Contains(logs, `"trace_id":"`+tid.String()+`"`) {
		t.Errorf("the access log does not name the trace:\n%s", logs)
	}
}

// From a trusted proxy the trace is continued only when configured (a proxy may pass its
// client's traceparent on); a refusal's decision span carries its reason; a method outside
// HTTP's registry does not name a span.
func TestTracingTrustedAndRefused(t *testing.T) {
	t.Parallel()
	parent := http.Header{"Traceparent": {"00-" + clientTrace + "-00f067aa0ba902b7-01"}}
	{
		b := newTracedBed(t, "127.0.0.1/32", false)
		b.get("/pub/x", parent)
		if s := b.span("GET pub"); s.SpanContext.TraceID().String() == clientTrace || len(s.Links) != 1 {
			t.Errorf("continued without continue_trusted: %s", s.SpanContext.TraceID())
		}
	}
	b := newTracedBed(t, "127.0.0.1/32", true)
	b.get("/pub/x", parent)
	if s := b.span("GET pub"); s.SpanContext.TraceID().String() != clientTrace || s.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("a trusted proxy's trace was not continued: %s", s.SpanContext.TraceID())
	}
	b.exp.Reset()
	req, _ := http.NewRequest("PROPFIND-"+strings.Repeat("A", 40), b.srv.URL+"/pub/x", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
	}
	b.span("_OTHER pub")
	b.exp.Reset()
	if resp := b.get("/nothing-here", nil); resp.StatusCode != 404 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	d := b.span("portcullis.decide")
	if attr(d, "portcullis.reason") != "no_route" || attr(d, "portcullis.allowed") != "false" || d.Status.Description != "no_route" {
		t.Errorf("refusal's decision span %v %v", d.Attributes, d.Status)
	}
	for _, s := range b.exp.GetSpans() {
		if s.Name == "portcullis.upstream" {
			t.Error("a refused request has an upstream span")
		}
	}
}

// Off, nothing is traced: the handler is the Server itself, and no traceparent is made up.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	up := newEcho(t)
	tp := newTestProxy(t, loadConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", metrics_listen: "off"}
tls: {mode: self_signed}
routes:
  - {name: pub, path: /pub, upstream: %q, public: true}
`, up.URL)), Options{})
	if tp.srv.tracer != nil || tp.srv.traced(tp.srv, "x") != http.Handler(tp.srv) {
		t.Fatal("tracing is on without a provider")
	}
	resp, err := http.Get(tp.http.URL + "/pub/x")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if h := up.last(t).Header.Get("Traceparent"); h != "" {
		t.Errorf("traceparent %q sent with tracing off", h)
	}
}

// An ext_authz Check is traced: its span is a new root (the request's traceparent, maybe the
// client's, only linked), and the decision is its child, named for the route.
func TestTracingExtAuthz(t *testing.T) {
	t.Parallel()
	b := newTracedBed(t, "127.0.0.1/32", true)
	s := b.s
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}})
	resp, err := (&extAuthz{s: s}).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "203.0.113.7"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/pub/x", Host: "portal.example.com",
			Scheme: "https", Headers: map[string]string{"traceparent": "00-" + clientTrace + "-00f067aa0ba902b7-01"}}}}})
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check: %v %v", resp, err)
	}
	check, decide := b.span("GET pub"), b.span("portcullis.decide")
	if check.SpanContext.TraceID().String() == clientTrace || len(check.Links) != 1 || check.Links[0].SpanContext.TraceID().String() != clientTrace {
		t.Errorf("the request's traceparent was continued, or not linked: %+v", check)
	}
	if decide.Parent.SpanID() != check.SpanContext.SpanID() {
		t.Error("the decision is not a child of the Check's span")
	}
}
