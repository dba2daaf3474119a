package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP collector's traces endpoint: it keeps what it is sent.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	service []string
	auth    []string
	got     chan struct{}
}

func startOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	rc := &otlpReceiver{got: make(chan struct{}, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP/HTTP traces export", http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		rc.auth = append(rc.auth, r.Header.Get("Authorization"))
		for _, rs := range req.GetResourceSpans() {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.GetKey() == "service.name" {
					rc.service = append(rc.service, a.GetValue().GetStringValue())
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				rc.spans = append(rc.spans, ss.GetSpans()...)
			}
		}
		rc.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
		rc.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return rc, srv.URL
}

// TestE2ETracing runs the binary with tracing on, exporting to an OTLP/HTTP receiver: the
// request, its decision and its request to the portal are spans of one trace, exported with
// the configured service name and headers (flushed at shutdown), and the portal receives the
// trace's traceparent.
func TestE2ETracing(t *testing.T) {
	t.Parallel()
	rc, endpoint := startOTLPReceiver(t)
	var mu sync.Mutex
	var traceparent string
	up := upstreamWith(t, "one", func(r *http.Request) {
		mu.Lock()
		traceparent = r.Header.Get("Traceparent")
		mu.Unlock()
	})
	listen := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfgPath, e2eConfig(listen, freePort(t), "off", up.URL)+`tracing:
  enabled: true
  endpoint: `+endpoint+`
  service_name: portal-gate
  headers: {Authorization: "Bearer collector-key"}
`)
	p := startBinary(t, cfgPath)
	req, _ := http.NewRequest("GET", "https://"+listen+"/app/x", nil)
	req.Host = "portal.example.test"
	resp, err := tlsClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// SIGTERM flushes the batch.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-rc.got:
	case <-time.After(15 * time.Second):
		t.Fatal("no export reached the receiver")
	}
	p.waitLog(t, "stopped", 10*time.Second)

	rc.mu.Lock()
	defer rc.mu.Unlock()
	byName := map[string]*tracepb.Span{}
	for _, s := range rc.spans {
		byName[s.GetName()] = s
	}
	server, decide, upstream := byName["GET app"], byName["portcullis.decide"], byName["portcullis.upstream"]
	if server == nil || decide == nil || upstream == nil {
		t.Fatalf("spans %v", keysOf(byName))
	}
	if string(decide.GetTraceId()) != string(server.GetTraceId()) || string(decide.GetParentSpanId()) != string(server.GetSpanId()) ||
		string(upstream.GetParentSpanId()) != string(server.GetSpanId()) {
		t.Error("the decision and the upstream request are not children of the request's span")
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(traceparent, hex.EncodeToString(server.GetTraceId())) {
		t.Errorf("the portal got traceparent %q, not of trace %s", traceparent, hex.EncodeToString(server.GetTraceId()))
	}
	if len(rc.service) == 0 || rc.service[0] != "portal-gate" || rc.auth[0] != "Bearer collector-key" {
		t.Errorf("service %q, authorization %q", rc.service, rc.auth)
	}
}

func keysOf(m map[string]*tracepb.Span) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
