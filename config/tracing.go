package config

import (
	"fmt"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Tracing exports OpenTelemetry traces of requests over OTLP/HTTP: a span per request
// (otelhttp), one for the decision, the Redis commands and the request to the portal, which
// receives the W3C traceparent. Off by default; off, nothing is instrumented.
type Tracing struct {
	// Enabled exports traces. Default false.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the OTLP/HTTP collector's base URL; spans are posted to its /v1/traces.
	// https, or http for a loopback host (a collector beside Portcullis). Default
	// "http://127.0.0.1:4318".
	Endpoint string `yaml:"endpoint"`
	// ServiceName is the service.name resource attribute. Default "portcullis".
	ServiceName string `yaml:"service_name"`
	// SampleRatio is the share of traces recorded, from 0 to 1. Default 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ContinueTrusted continues the trace of a traceparent from server.trusted_proxies (and
	// follows its sampling choice): only for proxies that set traceparent themselves, since
	// one that passes its client's on (nginx's auth_request does) would let any client join
	// a trace or be sampled. Default false: every incoming traceparent starts a new trace
	// linked to it.
	ContinueTrusted bool `yaml:"continue_trusted"`
	// Headers are sent with every export (an API key for a hosted collector).
	Headers map[string]Secret `yaml:"headers"`
}

// Ratio is the sample ratio in force.
func (t *Tracing) Ratio() float64 {
	if t.SampleRatio == nil {
		return 1
	}
	return *t.SampleRatio
}

// tracing checks the tracing section.
func (v *validator) tracing(c *Config) {
	t := &c.Tracing
	if !t.Enabled {
		return
	}
	v.endpointURL("tracing.endpoint", t.Endpoint)
	if r := t.Ratio(); r < 0 || r > 1 {
		v.errorf("tracing.sample_ratio", "%s: must be from 0 to 1", v.show("tracing.sample_ratio", fmt.Sprint(r)))
	}
	for k := range t.Headers {
		if !syntax.Token(k) {
			v.errorf("tracing.headers", "%q is not a header name", k)
		}
	}
}
