package tracing

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
)

func TestTracesURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:4318":                   "http://127.0.0.1:4318/v1/traces",
		"http://127.0.0.1:4318/":                  "http://127.0.0.1:4318/v1/traces",
		"https://otlp.example.com/otlp":           "https://otlp.example.com/otlp/v1/traces",
		"https://otlp.example.com/otlp/v1/traces": "https://otlp.example.com/otlp/v1/traces",
	} {
		if got, err := tracesURL(in); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := tracesURL("not a url"); err == nil {
		t.Error("a relative endpoint was accepted")
	}
}

func TestNew(t *testing.T) {
	if tp, err := New(config.Tracing{}, "v"); tp != nil || err != nil {
		t.Errorf("off: %v, %v", tp, err)
	}
	half := 0.5
	tp, err := New(config.Tracing{Enabled: true, Endpoint: "http://127.0.0.1:4318", ServiceName: "p", SampleRatio: &half,
		Headers: map[string]config.Secret{"Authorization": "Bearer x"}}, "v")
	if err != nil || tp == nil {
		t.Fatalf("on: %v, %v", tp, err)
	}
	if got := tp.Tracer("t"); got == nil {
		t.Error("no tracer")
	}
	_ = tp.Shutdown(t.Context())
}
