package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
