package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// With TraceWith, a Redis command is a span of the caller's trace, and its statement (which
// may name a person or a session) is not recorded.
func TestTraceWith(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	st := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t)})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	if err := st.TraceWith(tp); err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(ctxT(t, 5*time.Second), "request")
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	parent.End()
	var cmd *tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name != "request" {
			cmd = &s
		}
	}
	if cmd == nil || cmd.Parent.SpanID() != parent.SpanContext().SpanID() || cmd.SpanContext.TraceID() != parent.SpanContext().TraceID() {
		t.Fatalf("no Redis span under the caller's: %+v", exp.GetSpans())
	}
	// Without a trace in its context (background work), a command is not recorded.
	exp.Reset()
	if err := st.Ping(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Errorf("a command of no trace started one: %+v", spans)
	}
	for _, a := range cmd.Attributes {
		if a.Key == attribute.Key("db.statement") || a.Key == attribute.Key("db.query.text") || strings.HasPrefix(string(a.Key), "code.") {
			t.Errorf("the statement is recorded: %v", a)
		}
	}
}
