package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/netip"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/portcullis-proxy/portcullis/internal/tracing"
)

// Tracing (Options.TracerProvider; nil: off, and nothing below runs). Each listener that
// serves requests is wrapped in otelhttp's handler, whose span is the request's; the
// decision is a child span, the Redis commands are the store's (store.TraceWith), and the
// request to the portal is a client span (upstreamTracer), which sends the portal the
// traceparent. An incoming traceparent starts a new trace that links to it, so a client can
// neither join a trace nor choose to be sampled; it is continued only from
// server.trusted_proxies and only with Options.TraceContinueTrusted (the proxies in front
// set it themselves).

// traced wraps h, the handler of a listener, in the request span when tracing is on.
func (s *Server) traced(h http.Handler, operation string) http.Handler {
	tp := s.opts.TracerProvider
	if tp == nil {
		return h
	}
	return otelhttp.NewHandler(h, operation,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(tracing.Propagator),
		otelhttp.WithPublicEndpointFn(func(r *http.Request) bool {
			// A trusted proxy may well pass its client's traceparent on (nginx's
			// auth_request does): continued only when the operator says the proxies in
			// front set it themselves (tracing.continue_trusted).
			return !s.opts.TraceContinueTrusted || !isTrustedPeer(r, s.state.Load().trusted)
		}),
	)
}

// tracedTransport is rt with the client span and traceparent when tracing is on. Not
// otelhttp's transport: that records the full URL, query string included, where portals
// carry addresses, reset tokens and session ids; this span has the path only.
func (s *Server) tracedTransport(rt http.RoundTripper) http.RoundTripper {
	tp := s.opts.TracerProvider
	if tp == nil {
		return rt
	}
	return &upstreamTracer{next: rt, tracer: tp.Tracer("github.com/portcullis-proxy/portcullis/proxy")}
}

// upstreamTracer records the request to the portal as a client span and sends the portal its
// traceparent (replacing any the client sent).
type upstreamTracer struct {
	next   http.RoundTripper
	tracer trace.Tracer
}

func (u *upstreamTracer) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx, sp := u.tracer.Start(r.Context(), "portcullis.upstream", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", spanMethod(r.Method)), attribute.String("server.address", r.URL.Host),
			attribute.String("url.path", r.URL.Path)))
	defer sp.End()
	r = r.WithContext(ctx)
	// The trace context the portal gets is Portcullis's: never the client's tracestate or
	// baggage beside it (a portal's SDK would take the baggage as part of this trace).
	r.Header.Del("Traceparent")
	r.Header.Del("Tracestate")
	r.Header.Del("Baggage")
	tracing.Propagator.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := u.next.RoundTrip(r)
	if err != nil {
		sp.SetStatus(codes.Error, "upstream unreachable")
		return nil, err
	}
	sp.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		sp.SetStatus(codes.Error, resp.Status)
	}
	return resp, nil
}

// startDecision starts the decision's span when the request's span records.
func (ex *exchange) startDecision() {
	if ex.s.tracer == nil {
		return
	}
	if trace.SpanFromContext(ex.r.Context()).IsRecording() {
		_, ex.decision = ex.s.tracer.Start(ex.r.Context(), "portcullis.decide")
	}
}

// nameRequestSpan names the request's span for its route (otelhttp names it for the
// listener) and records the client decided for: otelhttp's client.address comes from
// X-Forwarded-For, whoever sent it.
func (ex *exchange) nameRequestSpan(client netip.Addr) {
	sp := trace.SpanFromContext(ex.r.Context())
	if !sp.IsRecording() {
		return
	}
	sp.SetName(spanMethod(ex.r.Method) + " " + ex.routeLabel)
	sp.SetAttributes(attribute.String("portcullis.route", ex.routeLabel), attribute.String("portcullis.request_id", ex.requestID),
		attribute.String("client.address", client.String()))
}

// endDecision ends the decision's span, if any and not ended yet, with its outcome: err is
// the refusal, nil an allowed request.
func (ex *exchange) endDecision(err error) {
	sp := ex.decision
	if sp == nil {
		return
	}
	ex.decision = nil
	attrs := []attribute.KeyValue{attribute.String("portcullis.route", ex.routeLabel)}
	if ex.orgKnown {
		attrs = append(attrs, attribute.String("portcullis.org", ex.org))
	}
	if code := reasonOf(err); code != "" {
		attrs = append(attrs, attribute.String("portcullis.reason", code))
		sp.SetStatus(codes.Error, code)
	}
	attrs = append(attrs, attribute.Bool("portcullis.allowed", err == nil))
	sp.SetAttributes(attrs...)
	sp.End()
}

// reasonOf is the reason code of a refusal, "" when err carries none.
func reasonOf(err error) string {
	var (
		rej rejection
		den *denial
		rec *recoveryRefusal
	)
	switch {
	case err == nil:
	case errors.As(err, &rej):
		return string(rej.code)
	case errors.As(err, &den):
		return string(den.code)
	case errors.As(err, &rec):
		return string(rec.code)
	}
	return ""
}

// traceID is the request's trace id for its access-log line, "" when it has none.
func traceID(r *http.Request) string {
	if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() && sc.IsSampled() {
		return sc.TraceID().String() // a trace the backend receives
	}
	return ""
}

// startCheckSpan starts the span of an ext_authz Check, the request span of the question it
// becomes. The traceparent among the request's headers may be the client's (Envoy passes it
// on unless its own tracing replaces it), so it is linked, never continued.
func (s *Server) startCheckSpan(ctx context.Context, req *authv3.CheckRequest) (context.Context, trace.Span) {
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithNewRoot()}
	h := http.Header{}
	for k, v := range req.GetAttributes().GetRequest().GetHttp().GetHeaders() {
		if k == "traceparent" || k == "tracestate" {
			h.Set(k, v)
		}
	}
	if sc := trace.SpanContextFromContext(tracing.Propagator.Extract(context.Background(), propagation.HeaderCarrier(h))); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return s.tracer.Start(ctx, "portcullis.ext_authz", opts...)
}

// spanMethod is method for span names and attributes: a method outside HTTP's registry is
// _OTHER (as otelhttp records it), so a client cannot mint span names of its own.
func spanMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "_OTHER"
}
