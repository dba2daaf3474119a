// Package tracing builds Portcullis's OpenTelemetry tracer provider from the tracing section:
// spans batched and exported over OTLP/HTTP, sampled by trace id unless the request continues
// a trace the proxy accepted (otelhttp decides which: see proxy's use of it). Nothing here
// sets OpenTelemetry's globals; the provider and the propagator are passed to what uses them.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/portcullis-proxy/portcullis/config"
)

// Propagator is the one trace context format Portcullis reads and writes: W3C traceparent
// and tracestate.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// New returns the tracer provider of c, or nil when tracing is off. Shut it down to flush
// the spans still batched.
func New(c config.Tracing, version string) (*sdktrace.TracerProvider, error) {
	if !c.Enabled {
		return nil, nil
	}
	endpoint, err := tracesURL(c.Endpoint)
	if err != nil {
		return nil, err
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(endpoint), otlptracehttp.WithTimeout(10 * time.Second)}
	if len(c.Headers) > 0 {
		h := make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			h[k] = v.Reveal()
		}
		opts = append(opts, otlptracehttp.WithHeaders(h))
	}
	// New does not connect: the collector may start after Portcullis; exports retry.
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", c.ServiceName), attribute.String("service.version", version))
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.Ratio()))),
	), nil
}

// tracesURL is the OTLP/HTTP traces endpoint of a collector's base URL: its /v1/traces,
// unless the URL names it already.
func tracesURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("tracing: endpoint %q is not an absolute URL", base)
	}
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	return u.String(), nil
}
