// Command bench is Portcullis's load benchmark (issue 8): it measures the real binary beside a
// bare httputil.ReverseProxy in one run, alternating targets, and prints requests/s, p50/p99
// latency, CPU time per request of the proxy process and Redis commands per request, with
// ratios to the bare proxy.
//
// It starts everything itself on loopback and stops by itself:
//
//	go run ./bench -duration 10s
//
// Pieces: an upstream answering 1 KiB, a bare ReverseProxy with pooled upstream connections (a
// child process of this command, so its CPU time is its own), a private redis-server (found
// on PATH or in /usr/bin, like internal/redistest), devidp over TLS, and portcullis built with
// `go build` and run three times: plain HTTP (tls.mode off, as behind a load balancer), TLS
// (self_signed) and plain HTTP with both caches off (authz.cache and session.cache false: every
// request is a cold one, which the budget allows one Redis round trip). A session is created by
// signing in through devidp's login form; the organisation and membership are seeded through
// store.NewOrgs.
//
// Redis is measured from the server's side: round trips are the read events it processed
// (total_reads_processed: one per command, pipeline or script a client sends), commands are
// every command it executed, those a script runs included.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/store"
)

var (
	duration = flag.Duration("duration", 10*time.Second, "measuring time per target, split over the rounds")
	rounds   = flag.Int("rounds", 3, "rounds: every round runs every target once, in turn")
	conns    = flag.Int("c", 64, "concurrent keep-alive clients (32-128 is the budget's setting)")
	warmup   = flag.Duration("warmup", 500*time.Millisecond, "unmeasured load before each measurement")
	maxReq   = flag.Int("max-requests", 5_000_000, "bound on requests per measurement")
	only     = flag.String("only", "", "run only targets whose name contains this")
	accessLg = flag.Bool("access-log", false, "let portcullis write its access log (to a discarded pipe)")
	keep     = flag.Bool("keep", false, "print the working directory and keep it")
	revokes  = flag.Int("revocations", 30, "revocation-delay trials after the load (membership, then session); 0 skips them")
	perfOf   = flag.String("perf", "", "record a `perf` profile of the proxy process during the (last round's) measurement of this target and print its top functions")

	role     = flag.String("role", "", "internal: bare runs the bare reverse proxy")
	listen   = flag.String("listen", "", "internal: bare proxy plain listener")
	tlsAddr  = flag.String("tls-listen", "", "internal: bare proxy TLS listener")
	upstream = flag.String("upstream", "", "internal: bare proxy upstream")
	bufPool  = flag.Bool("buffer-pool", true, "internal: the bare proxy pools its copy buffers")
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

// runBare is the reference: a bare httputil.ReverseProxy with pooled upstream connections and
// pooled copy buffers (as Portcullis has), so the ratios show what Portcullis adds, not what a
// default ReverseProxy wastes.
func runBare() {
	u, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
	}
	if *bufPool {
		rp.BufferPool = &bufferPool{}
	}
	cert, err := selfSigned()
	if err != nil {
		log.Fatal(err)
	}
	errc := make(chan error, 2)
	go func() { errc <- http.ListenAndServe(*listen, rp) }()
	go func() {
		ln, err := tls.Listen("tcp", *tlsAddr, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		if err != nil {
			errc <- err
			return
		}
		errc <- http.Serve(ln, rp)
	}()
	log.Fatal(<-errc)
}

// bufferPool lends ReverseProxy 32 KiB copy buffers instead of allocating one per request.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	buf = buf[:cap(buf)]
	b.p.Put(&buf)
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// child is a process this command started; it is killed when the run ends.
type child struct {
	name string
	cmd  *exec.Cmd
}

var (
	childMu  sync.Mutex
	children []*child
)

func start(name string, cmd *exec.Cmd, out io.Writer) (*child, error) {
	cmd.Stdout, cmd.Stderr = out, out
	// Die with us even if we are killed (Linux).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd}
	childMu.Lock()
	children = append(children, c)
	childMu.Unlock()
	return c, nil
}

func stopChildren() {
	childMu.Lock()
	defer childMu.Unlock()
	for _, c := range children {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
	children = nil
}

// cpu returns the process's user+system CPU time (/proc/<pid>/stat utime and stime).
func cpu(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	// Fields after the command: state is f[0], so utime (14th field) is f[11], stime f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}

// handedOut remembers every address freeAddr returned: a port is only free until a child
// process binds it, and the kernel may offer the same port again in between.
var handedOut = map[string]bool{}

// freeAddr returns a loopback address with a port nothing listens on now and that no earlier
// call returned.
func freeAddr() string {
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		if !handedOut[a] {
			handedOut[a] = true
			return a
		}
	}
}

func waitTCP(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redisStats returns total_commands_processed and total_reads_processed of the server at addr
// (a raw RESP INFO; only store speaks go-redis).
func redisStats(addr string) (cmds, reads int64, err error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n"); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReader(c)
	hdr, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(hdr, "$") {
		return 0, 0, fmt.Errorf("INFO: %q %v", hdr, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(hdr[1:]))
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, 0, err
	}
	found := 0
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			cmds, err = strconv.ParseInt(v, 10, 64)
			found++
		} else if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			reads, err = strconv.ParseInt(v, 10, 64)
			found++
		}
		if err != nil {
			return 0, 0, fmt.Errorf("INFO: %w", err)
		}
	}
	if found != 2 {
		return 0, 0, errors.New("INFO: no total_commands_processed or total_reads_processed")
	}
	return cmds, reads, nil
}

func findRedis() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("redis-server not found (apt-get install redis-server)")
}

type proxyProc struct {
	name string
	base string // scheme://addr
	pid  int
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

	// Build the real binary.
	bin := filepath.Join(dir, "portcullis")
	log.Printf("building portcullis")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/portcullis").CombinedOutput(); err != nil {
		return fmt.Errorf("go build (run from the repository root): %v\n%s", err, out)
	}

	// Redis.
	redisBin, err := findRedis()
	if err != nil {
		return err
	}
	redisAddr := freeAddr()
	_, port, _ := net.SplitHostPort(redisAddr)
	if _, err := start("redis-server", exec.Command(redisBin, "--port", port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir), logs); err != nil {
		return err
	}
	if err := waitTCP(redisAddr, 5*time.Second); err != nil {
		return err
	}

	// Upstream: 1 KiB answers.
	body := []byte(strings.Repeat("x", 1024))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	defer up.Close()

	// Bare reverse proxy, in its own process.
	bareHTTP, bareTLS := freeAddr(), freeAddr()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bare, err := start("bare", exec.Command(self, "-role", "bare", "-listen", bareHTTP, "-tls-listen", bareTLS, "-upstream", up.URL), logs)
	if err != nil {
		return err
	}
	// The same with ReverseProxy's defaults (a fresh 32 KiB copy buffer per request), the
	// baseline the scale figures describe; shown for reference, not used for ratios.
	defHTTP := freeAddr()
	bareDef, err := start("bare-default", exec.Command(self, "-role", "bare", "-buffer-pool=false", "-listen", defHTTP, "-tls-listen", freeAddr(), "-upstream", up.URL), logs)
	if err != nil {
		return err
	}

	// devidp, and the three portcullis processes.
	plain, tlsL, nocache := freeAddr(), freeAddr(), freeAddr()
	idpSrv := httptest.NewUnstartedServer(nil)
	issuer := "https://" + idpSrv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Config{
		Issuer: issuer,
		Clients: []devidp.Client{{ID: "portcullis", Secret: "bench-secret",
			RedirectURIs: []string{"https://" + tlsL + config.CallbackPath}}},
		Users: []devidp.User{{Subject: "sub-alice", Username: "alice", Password: "alice-pw",
			Email: "alice@acme.example", EmailVerified: true, Name: "Alice", TOTPSecret: totpSecret}},
	})
	if err != nil {
		return err
	}
	idpSrv.Config.Handler = idp.Handler()
	idpSrv.StartTLS()
	defer idpSrv.Close()
	ca := filepath.Join(dir, "idp-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idpSrv.Certificate().Raw}), 0o600); err != nil {
		return err
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("bench-secret\n"), 0o600); err != nil {
		return err
	}
	var procs []*proxyProc
	for _, p := range []struct {
		name, addr, mode, scheme string
		caches                   bool
	}{
		{"portcullis-http", plain, "off", "http", true},
		{"portcullis-tls", tlsL, "self_signed", "https", true},
		{"portcullis-http-nocache", nocache, "off", "http", false},
	} {
		cfg := fmt.Sprintf(`server:
  listen: %[1]s
  public_url: https://%[10]s
  metrics_listen: "off"
tls:
  mode: %[2]s
log:
  access_log: %[9]v
redis:
  address: %[3]s
authz:
  cache: %[4]v
session:
  cache: %[4]v
oidc:
  issuer: %[5]s
  client_id: portcullis
  client_secret_file: %[6]s
  ca_root_file: %[7]s
routes:
  - name: public
    path: /public
    upstream: %[8]s
    public: true
  - name: orgs
    path: /orgs
    upstream: %[8]s
    org: {from: path, path_segment: 2}
  - name: admin
    path: /admin
    upstream: %[8]s
    org: {from: path, path_segment: 2}
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 10m, elevation: 10m}
`, p.addr, p.mode, redisAddr, p.caches, issuer, secret, ca, up.URL, *accessLg, tlsL)
		path := filepath.Join(dir, p.name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return err
		}
		c, err := start(p.name, exec.Command(bin, "serve", "--config", path), io.Discard)
		if err != nil {
			return err
		}
		procs = append(procs, &proxyProc{name: p.name, base: p.scheme + "://" + p.addr, pid: c.cmd.Process.Pid})
	}
	for _, a := range []string{bareHTTP, defHTTP, bareTLS, plain, tlsL, nocache} {
		if err := waitTCP(a, 20*time.Second); err != nil {
			return err
		}
	}

	// Seed an organisation and alice's membership, as `portcullis admin` would.
	st, err := store.New(config.Redis{Address: redisAddr})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	orgs := store.NewOrgs(st, store.NewAudit(st, 0))
	user := store.UserKey(issuer, "sub-alice")
	if _, err := orgs.CreateOrg(ctx, store.Org{ID: "acme", Name: "Acme Corp"}, "admin|bench", "bench"); err != nil {
		return fmt.Errorf("seed org: %w", err)
	}
	if _, err := orgs.AddDomain(ctx, "acme", "acme.example", "admin|bench", "bench"); err != nil {
		return fmt.Errorf("seed domain: %w", err)
	}
	if _, err := orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, "admin|bench", "bench"); err != nil {
		return fmt.Errorf("seed domain: %w", err)
	}
	if _, err := orgs.Grant(ctx, store.Membership{Org: "acme", User: user, Kind: store.KindEmployee, Roles: []string{"user"}}, "admin|bench", "bench"); err != nil {
		return fmt.Errorf("seed membership: %w", err)
	}

	// A real session: sign in through the TLS instance and devidp's login form.
	_, c, err := signIn("https://" + tlsL)
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	// A valid elevation for acme: the step-up through devidp with the one-time code. It
	// rotates the session id, so the new cookie is the one every target uses.
	cookie, err := stepUp(c, "https://"+tlsL, "/admin/acme/x")
	if err != nil {
		return fmt.Errorf("step-up: %w", err)
	}

	type target struct {
		name, base, path string
		pid              int
		auth             bool
		bareRef          string // the bare target this one is compared with
	}
	targets := []target{
		{"bare http", "http://" + bareHTTP, "/x", bare.cmd.Process.Pid, false, ""},
		{"bare http (no buffer pool)", "http://" + defHTTP, "/x", bareDef.cmd.Process.Pid, false, "bare http"},
		{"public http", procs[0].base, "/public/x", procs[0].pid, false, "bare http"},
		{"authz warm http", procs[0].base, "/orgs/acme/x", procs[0].pid, true, "bare http"},
		{"step-up warm http", procs[0].base, "/admin/acme/x", procs[0].pid, true, "bare http"},
		{"authz cold http (caches off)", procs[2].base, "/orgs/acme/x", procs[2].pid, true, "bare http"},
		{"bare tls", "https://" + bareTLS, "/x", bare.cmd.Process.Pid, false, ""},
		{"public tls", procs[1].base, "/public/x", procs[1].pid, false, "bare tls"},
		{"authz warm tls", procs[1].base, "/orgs/acme/x", procs[1].pid, true, "bare tls"},
	}
	// Every target must answer 200 before anything is measured.
	for _, tg := range targets {
		c := newClient(1)
		req, _ := http.NewRequest("GET", tg.base+tg.path, nil)
		if tg.auth {
			req.Header.Set("Cookie", cookie)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("%s: %w", tg.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(b) != 1024 {
			return fmt.Errorf("%s: %d %s", tg.name, resp.StatusCode, b)
		}
	}

	per := *duration / time.Duration(*rounds)
	results := map[string]*result{}
	byRound := map[string][]*result{} // each round's result, for the per-round ratios
	log.Printf("%d rounds × %d targets × %v, %d connections", *rounds, len(targets), per, *conns)
	for r := range *rounds {
		for _, tg := range targets {
			if *only != "" && !strings.Contains(tg.name, *only) && !strings.HasPrefix(tg.name, "bare") {
				continue
			}
			hdr := http.Header{"Accept": {"application/json"}}
			if tg.auth {
				hdr.Set("Cookie", cookie)
			}
			var prof *exec.Cmd
			if *perfOf == tg.name && r == *rounds-1 {
				prof = exec.Command("perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(tg.pid), "-o", filepath.Join(dir, "perf.data"),
					"--", "sleep", strconv.FormatFloat((per+*warmup).Seconds(), 'f', 1, 64))
				prof.Stdout, prof.Stderr = logs, logs
				if err := prof.Start(); err != nil {
					return fmt.Errorf("perf: %w", err)
				}
			}
			res, err := measure(tg.base+tg.path, hdr, tg.pid, redisAddr, per)
			if prof != nil {
				_ = prof.Wait()
				out, _ := exec.Command("perf", "report", "-i", filepath.Join(dir, "perf.data"), "--stdio", "--children",
					"--percent-limit", "2", "-g", "none", "--sort", "symbol").CombinedOutput()
				fmt.Printf("perf profile of %s (time in each function and its callees):\n", tg.name)
				for line := range strings.Lines(string(out)) {
					if strings.Contains(line, "portcullis") || strings.Contains(line, "net/http") || strings.Contains(line, "runtime.gcBgMarkWorker") ||
						strings.Contains(line, "crypto") || strings.Contains(line, "syscall") || strings.Contains(line, "encoding/json") {
						fmt.Print(strings.Join(strings.Fields(line)[:4], " "), "\n")
					}
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			log.Printf("round %d %-28s %8.0f req/s  %6.1f µs CPU/req  %.2f redis round trips/req  %.2f cmds/req  errors %d",
				r+1, tg.name, res.rps(), res.cpuPerReq(), res.tripsPerReq(), res.redisPerReq(), res.errors)
			byRound[tg.name] = append(byRound[tg.name], res.summary())
			if prev := results[tg.name]; prev != nil {
				prev.add(res)
			} else {
				results[tg.name] = res
			}
		}
	}

	fmt.Printf("\n%d connections, 1 KiB responses, keep-alive, loopback, %d rounds × %v per target (alternating)\n\n", *conns, *rounds, per)
	fmt.Printf("| %-28s | %9s | %8s | %8s | %11s | %9s | %9s | %8s | %8s | %12s |\n", "target", "req/s", "p50", "p99", "CPU/req", "redis/req", "cmds/req", "rps/bare", "CPU/bare", "CPU/bare med")
	fmt.Printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 30), strings.Repeat("-", 11), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 13), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 14))
	for _, tg := range targets {
		res := results[tg.name]
		if res == nil {
			continue
		}
		rr, cr, med := "1.00", "1.00", "1.00"
		if ref := results[tg.bareRef]; ref != nil {
			rr = fmt.Sprintf("%.2f", res.rps()/ref.rps())
			cr = fmt.Sprintf("%.2f", res.cpuPerReq()/ref.cpuPerReq())
			med = fmt.Sprintf("%.2f", medianRatio(byRound[tg.name], byRound[tg.bareRef]))
		}
		fmt.Printf("| %-28s | %9.0f | %8s | %8s | %8.1f µs | %9.2f | %9.2f | %8s | %8s | %12s |\n", tg.name, res.rps(),
			fmtDur(res.pct(0.50)), fmtDur(res.pct(0.99)), res.cpuPerReq(), res.tripsPerReq(), res.redisPerReq(), rr, cr, med)
	}
	fmt.Printf("\nredis/req: Redis round trips per request (read events at the server); cmds/req: commands it ran, a script's own included.\n")
	fmt.Printf("CPU/bare med: the median over rounds of each round's CPU/req ratio to the bare proxy measured in that round (robust to a noisy neighbour slowing one round).\n")
	if *revokes <= 0 {
		return nil
	}
	// Revocation delay: the three portcullis processes, warm, each polled until it denies.
	var urls []string
	for _, p := range procs {
		urls = append(urls, p.base+"/orgs/acme/x")
	}
	mem := store.Membership{Org: "acme", User: user, Kind: store.KindEmployee, Roles: []string{"user"}}
	memDelays, err := revocationDelays(*revokes, urls, func() (string, error) { return cookie, nil },
		func() error {
			_, err := orgs.Revoke(ctx, "acme", user, "admin|bench", "bench")
			return err
		},
		func() error {
			_, err := orgs.Grant(ctx, mem, "admin|bench", "bench")
			return err
		})
	if err != nil {
		return fmt.Errorf("membership revocation: %w", err)
	}
	n := max(*revokes/3, 5) // each trial signs in again through devidp
	sessDelays, err := revocationDelays(n, urls, func() (string, error) {
		ck, _, err := signIn("https://" + tlsL)
		return ck, err
	}, func() error {
		_, err := st.RevokeUser(ctx, user) // what `portcullis admin person offboard` does to sessions
		return err
	}, func() error { return nil })
	if err != nil {
		return fmt.Errorf("session revocation: %w", err)
	}
	fmt.Printf("\nRevocation delay (pub/sub working), from the change in Redis to each of %d processes denying, all caches warm:\n\n", len(urls))
	fmt.Printf("| %-32s | %6s | %8s | %8s | %8s |\n", "change", "trials", "p50", "p99", "max")
	fmt.Printf("|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 34), strings.Repeat("-", 8), strings.Repeat("-", 10), strings.Repeat("-", 10), strings.Repeat("-", 10))
	for _, d := range []struct {
		name string
		r    *result
	}{{"membership revoked (403)", memDelays}, {"sessions revoked (401)", sessDelays}} {
		fmt.Printf("| %-32s | %6d | %8s | %8s | %8s |\n", d.name, len(d.r.latencies)/len(urls), fmtMs(d.r.pct(0.5)), fmtMs(d.r.pct(0.99)), fmtMs(d.r.pct(1)))
	}
	return nil
}

func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// revocationDelays runs trials: a fresh cookie (session), every URL answering 200 several
// times (warm caches), then revoke, timed until each URL answers something else; restore
// undoes it. The delays of every URL and trial are in the result's latencies.
func revocationDelays(trials int, urls []string, session func() (string, error), revoke, restore func() error) (*result, error) {
	c := newClient(len(urls) * 2)
	defer c.CloseIdleConnections()
	status := func(u, cookie string) (int, error) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", cookie)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	res := &result{}
	for range trials {
		cookie, err := session()
		if err != nil {
			return nil, err
		}
		for _, u := range urls {
			deadline := time.Now().Add(10 * time.Second)
			for ok := 0; ok < 3; {
				code, err := status(u, cookie)
				if err != nil {
					return nil, err
				}
				if code == 200 {
					ok++
				} else if time.Now().After(deadline) {
					return nil, fmt.Errorf("%s: %d before the revocation", u, code)
				}
			}
		}
		var wg sync.WaitGroup
		delays := make([]time.Duration, len(urls))
		errs := make([]error, len(urls))
		start := make(chan struct{})
		var t0 time.Time
		for i, u := range urls {
			wg.Go(func() {
				<-start
				for {
					code, err := status(u, cookie)
					if err != nil {
						errs[i] = err
						return
					}
					if code != 200 {
						delays[i] = time.Since(t0)
						return
					}
					if time.Since(t0) > 10*time.Second {
						errs[i] = fmt.Errorf("%s still admits 10s after the revocation", u)
						return
					}
				}
			})
		}
		t0 = time.Now()
		err = revoke()
		close(start)
		wg.Wait()
		if err := errors.Join(append(errs, err)...); err != nil {
			return nil, err
		}
		res.latencies = append(res.latencies, delays...)
		if err := restore(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

const totpSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

// signIn signs alice in through the proxy at base and returns the Cookie header to send and
// the browser-like client holding it.
func signIn(base string) (string, *http.Client, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	get := func(u string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		return c.Do(req)
	}
	resp, err := get(base + "/.portcullis/login?rd=/public/")
	cookie, err := follow(c, base, resp, err, "")
	return cookie, c, err
}

// follow follows redirects like a browser from resp, fills in devidp's login form as alice (with
// the one-time code when otp), visits the callback and returns the session cookie.
func follow(c *http.Client, base string, resp *http.Response, err error, otp string) (string, error) {
	get := func(u string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		return c.Do(req)
	}
	for range 20 {
		if err != nil {
			return "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 3:
			u, perr := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if perr != nil {
				return "", perr
			}
			if strings.HasPrefix(u.String(), base+config.CallbackPath) {
				if resp, err = get(u.String()); err != nil {
					return "", err
				}
				resp.Body.Close()
				pu, _ := url.Parse(base)
				for _, ck := range c.Jar.Cookies(pu) {
					if ck.Name == "__Host-portcullis" {
						return ck.Name + "=" + ck.Value, nil
					}
				}
				return "", fmt.Errorf("no session cookie after the callback (%d)", resp.StatusCode)
			}
			resp, err = get(u.String())
		case resp.StatusCode == 200 && strings.Contains(string(b), "devidp-login"):
			resp.Body = io.NopCloser(strings.NewReader(string(b)))
			code := ""
			if otp != "" {
				if code, err = devidptest.TOTP(otp, time.Now()); err != nil {
					return "", err
				}
			}
			resp, err = devidptest.Login(context.Background(), c, resp, "alice", "alice-pw", code)
		default:
			return "", fmt.Errorf("sign-in stuck at %s: %d %s", resp.Request.URL, resp.StatusCode, b)
		}
	}
	return "", errors.New("too many redirects")
}

// stepUp earns alice an elevation for path: the interstitial's ticket, posted to
// /.portcullis/step-up, devidp with the one-time code, and the callback.
func stepUp(c *http.Client, base, path string) (string, error) {
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="ticket" value="([^"]+)"`).FindStringSubmatch(string(b))
	if resp.StatusCode != http.StatusUnauthorized || m == nil {
		return "", fmt.Errorf("%s: want the step-up interstitial, got %d %s", path, resp.StatusCode, b)
	}
	req, _ = http.NewRequest("POST", base+"/.portcullis/step-up", strings.NewReader(url.Values{"ticket": {html.UnescapeString(m[1])}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Accept", "text/html")
	resp, err = c.Do(req)
	return follow(c, base, resp, err, totpSecret)
}

func newClient(n int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}},
		MaxIdleConns:        n,
		MaxIdleConnsPerHost: n,
		MaxConnsPerHost:     n,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}, Timeout: 10 * time.Second}
}

// medianRatio is the median over rounds of a's CPU per request over b's in the same round.
func medianRatio(a, b []*result) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		rs = append(rs, a[i].cpuPerReq()/b[i].cpuPerReq())
	}
	if len(rs) == 0 {
		return 0
	}
	slices.Sort(rs)
	if len(rs)%2 == 1 {
		return rs[len(rs)/2]
	}
	return (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
}

// summary is a copy of r without its latencies, kept per round.
func (r *result) summary() *result {
	c := *r
	c.latencies = nil
	return &c
}

type result struct {
	n, errors  int64
	elapsed    time.Duration
	cpu        time.Duration
	redisCmds  int64
	redisReads int64
	latencies  []time.Duration
	sortedOnce bool
}

func (r *result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }
func (r *result) cpuPerReq() float64 {
	return float64(r.cpu) / float64(time.Microsecond) / float64(max(r.n, 1))
}
func (r *result) redisPerReq() float64 { return float64(r.redisCmds) / float64(max(r.n, 1)) }
func (r *result) tripsPerReq() float64 { return float64(r.redisReads) / float64(max(r.n, 1)) }
func (r *result) add(o *result) {
	r.n += o.n
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.cpu += o.cpu
	r.redisCmds += o.redisCmds
	r.redisReads += o.redisReads
	r.latencies = append(r.latencies, o.latencies...)
	r.sortedOnce = false
}
func (r *result) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	if !r.sortedOnce {
		slices.Sort(r.latencies)
		r.sortedOnce = true
	}
	return r.latencies[min(int(float64(len(r.latencies))*p), len(r.latencies)-1)]
}

// measure runs *conns keep-alive clients against u for d (after a warm-up), bounded by
// *maxReq requests, and reads the proxy's CPU time and Redis's command count around it.
func measure(u string, hdr http.Header, pid int, redisAddr string, d time.Duration) (*result, error) {
	c := newClient(*conns)
	defer c.CloseIdleConnections()
	loop := func(until time.Time, count *atomic.Int64, lat [][]time.Duration) int64 {
		var errs atomic.Int64
		var wg sync.WaitGroup
		for w := range *conns {
			wg.Go(func() {
				req, _ := http.NewRequest("GET", u, nil)
				req.Header = hdr
				for time.Now().Before(until) && count.Add(1) <= int64(*maxReq) {
					t0 := time.Now()
					resp, err := c.Do(req)
					if err != nil {
						errs.Add(1)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						errs.Add(1)
						continue
					}
					if lat != nil {
						lat[w] = append(lat[w], time.Since(t0))
					}
				}
			})
		}
		wg.Wait()
		return errs.Load()
	}
	var warm atomic.Int64
	loop(time.Now().Add(*warmup), &warm, nil)

	lat := make([][]time.Duration, *conns)
	for i := range lat {
		lat[i] = make([]time.Duration, 0, 4096)
	}
	cmd0, reads0, err := redisStats(redisAddr)
	if err != nil {
		return nil, err
	}
	cpu0, err := cpu(pid)
	if err != nil {
		return nil, err
	}
	var count atomic.Int64
	t0 := time.Now()
	errs := loop(t0.Add(d), &count, lat)
	elapsed := time.Since(t0)
	cpu1, err := cpu(pid)
	if err != nil {
		return nil, err
	}
	cmd1, reads1, err := redisStats(redisAddr)
	if err != nil {
		return nil, err
	}
	// -1: our own INFO (the first connection's close may count one more read; noise).
	res := &result{errors: errs, elapsed: elapsed, cpu: cpu1 - cpu0, redisCmds: cmd1 - cmd0 - 1, redisReads: reads1 - reads0 - 1}
	for _, l := range lat {
		res.latencies = append(res.latencies, l...)
	}
	res.n = int64(len(res.latencies))
	return res, nil
}
