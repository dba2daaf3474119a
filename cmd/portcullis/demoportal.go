package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/demoportal"
)

// cmdDemoPortal serves only the demo legacy portal, for docker/compose.yaml, where it runs as
// its own container behind Portcullis. It trusts the identity headers it receives, exactly
// like the portals Portcullis protects, so it must never be reachable except through the proxy.
func cmdDemoPortal(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo-portal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address to serve the demo portal on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: *listen, Handler: demoportal.New(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(stdout, "demo portal listening on %s\n", *listen)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "portcullis demo-portal:", err)
		return 1
	}
	return 0
}
