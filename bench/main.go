// Command bench is Portcullis's load benchmark (issue 8): it measures the real binary beside a
// bare httputil.ReverseProxy in one run, alternating targets, and prints requests/s, p50/p99
// latency, CPU time per request of the proxy process and Redis commands per request, with
// ratios to the bare proxy.
//
// It starts everything itself on loopback and stops by itself:
//
//	go run ./bench -duration 10s -rounds 5
//
// Pieces: an upstream answering 1 KiB, a bare ReverseProxy with pooled upstream connections (a
// child process of this command, so its CPU time is its own), a private redis-server (found
// on PATH or in /usr/bin, like internal/redistest), devidp over TLS, and portcullis built with
// `go build` and run three times: plain HTTP (tls.mode off, as behind a load balancer), TLS
// (self_signed) and plain HTTP with both caches off (authz.cache and session.cache false: every
// request is a cold one, which the budget allows one Redis round trip). The plain instance also
// answers forward-auth questions (/.portcullis/auth, as Caddy or Traefik asks) about the warm
// authorised request: the decision without the upstream hop. A session is created by
// signing in through devidp's login form; the organisation and membership are seeded through
// store.NewOrgs.
//
// Redis is measured from the server's side: round trips are the read events it processed
// (total_reads_processed: one per command, pipeline or script a client sends), commands are
// every command it executed, those a script runs included.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

var (
	duration = flag.Duration("duration", 10*time.Second, "how long each target is measured in each round (a cell)")
	rounds   = flag.Int("rounds", 3, "rounds: every round runs every target once, in turn")
	conns    = flag.Int("c", 64, "concurrent keep-alive clients (32-128 is the budget's setting)")
	warmup   = flag.Duration("warmup", 500*time.Millisecond, "unmeasured load before each measurement")
	maxReq   = flag.Int("max-requests", 5_000_000, "bound on requests per measurement")
	only     = flag.String("only", "", "run only targets whose name contains this")
	accessLg = flag.Bool("access-log", false, "let portcullis write its access log (to a discarded pipe)")
	keep     = flag.Bool("keep", false, "print the working directory and keep it")
	revokes  = flag.Int("revocations", 30, "revocation-delay trials after the load (membership, then session); 0 skips them")
	perfOf   = flag.String("perf", "", "record a `perf` profile of the proxy process during the (last round's) measurement of this target and print its top functions")
	idle     = flag.Int("idle", 0, "after the load, open this many idle keep-alive TLS connections to the bare proxy and to portcullis and print the memory each takes; 0 skips it")
	pprofOf  = flag.String("pprof", "", "fetch a Go CPU profile of the portcullis process (its /debug/pprof/ on a loopback metrics listener) during the (last round's) measurement of this `target` and print its top functions")

	role     = flag.String("role", "", "internal: bare runs the bare reverse proxy")
	listen   = flag.String("listen", "", "internal: bare proxy plain listener")
	tlsAddr  = flag.String("tls-listen", "", "internal: bare proxy TLS listener")
	upstream = flag.String("upstream", "", "internal: bare proxy upstream")
	bufPool  = flag.Bool("buffer-pool", true, "internal: the bare proxy pools its copy buffers")
	bareProf = flag.String("pprof-listen", "", "internal: where the bare proxy serves /debug/pprof/")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	if *role == "bare" {
		runBare()
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	defer stopChildren()
	dir, err := os.MkdirTemp("", "portcullis-bench")
	if err != nil {
		return err
	}
	if *keep {
		log.Printf("working directory %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logs, err := os.Create(filepath.Join(dir, "children.log"))
	if err != nil {
		return err
	}
	defer logs.Close()

	b := &bed{dir: dir, logs: logs}
	defer b.close()
	if err := b.start(); err != nil {
		return err
	}

	// Seed an organisation and alice's membership, as `portcullis admin` would.
	st, err := store.New(config.Redis{Address: b.redisAddr})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	orgs, user, err := seed(ctx, st, b.issuer)
	if err != nil {
		return err
	}

	// A real session: sign in through the TLS instance and devidp's login form.
	_, c, err := signIn("https://" + b.tlsL)
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	// A valid elevation for acme: the step-up through devidp with the one-time code. It
	// rotates the session id, so the new cookie is the one every target uses.
	cookie, err := stepUp(c, "https://"+b.tlsL, "/admin/acme/x")
	if err != nil {
		return fmt.Errorf("step-up: %w", err)
	}

	if b.apiKey, err = seedMachine(ctx, orgs, user); err != nil {
		return err
	}
	targets := b.targets()
	if err := checkTargets(targets, cookie, b.apiKey); err != nil {
		return err
	}
	per := *duration
	results, byRound, paired, err := measureRounds(targets, cookie, b, per)
	if err != nil {
		return err
	}
	if *rounds > 0 {
		printTable(targets, results, byRound, paired, per)
	}
	if *idle > 0 {
		if err := measureIdle(targets, cookie, *idle); err != nil {
			return err
		}
	}
	if *revokes <= 0 {
		return nil
	}
	return revocations(ctx, b, st, orgs, user, cookie)
}
