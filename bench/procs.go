package main

// The pieces a run starts: child processes, loopback addresses, and the bed of servers.

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
)

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
	name    string
	base    string // scheme://addr
	pid     int
	metrics string // the metrics listener (with /debug/pprof/), when -pprof asks for it
}

// bed is everything run starts besides the store it seeds with: redis-server, the upstream, the
// two bare proxies, devidp and the three portcullis processes. Its children are stopped by
// stopChildren; close stops the in-process servers.
type bed struct {
	dir  string   // working directory: binary, configurations, CA, client secret, perf data
	logs *os.File // children.log: what redis-server and the bare proxies print

	redisAddr string
	up        *httptest.Server // the upstream: 1 KiB answers

	bare, bareDef              *child // pooled copy buffers, and ReverseProxy's defaults
	bareHTTP, bareTLS, defHTTP string

	idpSrv *httptest.Server // devidp over TLS
	issuer string

	procs []*proxyProc // portcullis-http, portcullis-tls, portcullis-http-nocache
	// barePprof is where the bare proxy serves its profiles, when -pprof asks for them.
	barePprof string
	tlsL      string // address of portcullis-tls, the public_url of every instance
	// apiKey is the API key of acme's machine identity (seedMachine), sent by the targets
	// with key set.
	apiKey string
}

// close stops the servers running in this process, the provider first.
func (b *bed) close() {
	if b.idpSrv != nil {
		b.idpSrv.Close()
	}
	if b.up != nil {
		b.up.Close()
	}
}

// start builds portcullis, starts every piece and waits until each listener answers.
func (b *bed) start() error {
	// Build the real binary.
	bin := filepath.Join(b.dir, "portcullis")
	log.Printf("building portcullis")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/portcullis").CombinedOutput(); err != nil {
		return fmt.Errorf("go build (run from the repository root): %v\n%s", err, out)
	}

	// Redis.
	redisBin, err := findRedis()
	if err != nil {
		return err
	}
	b.redisAddr = freeAddr()
	_, port, _ := net.SplitHostPort(b.redisAddr)
	if _, err := start("redis-server", exec.Command(redisBin, "--port", port, "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", b.dir), b.logs); err != nil {
		return err
	}
	if err := waitTCP(b.redisAddr, 5*time.Second); err != nil {
		return err
	}

	// Upstream: 1 KiB answers.
	body := []byte(strings.Repeat("x", 1024))
	b.up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))

	// Bare reverse proxy, in its own process.
	b.bareHTTP, b.bareTLS = freeAddr(), freeAddr()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-role", "bare", "-listen", b.bareHTTP, "-tls-listen", b.bareTLS, "-upstream", b.up.URL}
	if *pprofOf != "" {
		b.barePprof = freeAddr()
		args = append(args, "-pprof-listen", b.barePprof)
	}
	b.bare, err = start("bare", exec.Command(self, args...), b.logs)
	if err != nil {
		return err
	}
	// The same with ReverseProxy's defaults (a fresh 32 KiB copy buffer per request), the
	// baseline the scale figures describe; shown for reference, not used for ratios.
	b.defHTTP = freeAddr()
	b.bareDef, err = start("bare-default", exec.Command(self, "-role", "bare", "-buffer-pool=false", "-listen", b.defHTTP, "-tls-listen", freeAddr(), "-upstream", b.up.URL), b.logs)
	if err != nil {
		return err
	}

	// devidp, and the three portcullis processes.
	plain, tlsL, nocache := freeAddr(), freeAddr(), freeAddr()
	b.tlsL = tlsL
	ca, err := b.startIdP()
	if err != nil {
		return err
	}
	if err := b.startPortcullis(bin, ca, plain, nocache); err != nil {
		return err
	}
	for _, a := range []string{b.bareHTTP, b.defHTTP, b.bareTLS, plain, b.tlsL, nocache} {
		if err := waitTCP(a, 20*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// startIdP starts devidp over TLS with the bench's client and alice, and writes its certificate
// for the proxies' oidc.ca_root_file, whose path it returns.
func (b *bed) startIdP() (string, error) {
	b.idpSrv = httptest.NewUnstartedServer(nil)
	b.issuer = "https://" + b.idpSrv.Listener.Addr().String()
	idp, err := devidp.New(devidp.Config{
		Issuer: b.issuer,
		Clients: []devidp.Client{{ID: "portcullis", Secret: "bench-secret",
			RedirectURIs: []string{"https://" + b.tlsL + config.CallbackPath}}},
		Users: []devidp.User{{Subject: "sub-alice", Username: "alice", Password: "alice-pw",
			Email: "alice@acme.example", EmailVerified: true, Name: "Alice", TOTPSecret: totpSecret}},
	})
	if err != nil {
		return "", err
	}
	b.idpSrv.Config.Handler = idp.Handler()
	b.idpSrv.StartTLS()
	ca := filepath.Join(b.dir, "idp-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.idpSrv.Certificate().Raw}), 0o600); err != nil {
		return "", err
	}
	return ca, nil
}

// startPortcullis starts the three portcullis processes (plain HTTP on plain, TLS on b.tlsL,
// plain HTTP with both caches off on nocache), trusting the provider's certificate in ca.
func (b *bed) startPortcullis(bin, ca, plain, nocache string) error {
	secret := filepath.Join(b.dir, "secret")
	if err := os.WriteFile(secret, []byte("bench-secret\n"), 0o600); err != nil {
		return err
	}
	for _, p := range []struct {
		name, addr, mode, scheme string
		caches                   bool
	}{
		{"portcullis-http", plain, "off", "http", true},
		{"portcullis-tls", b.tlsL, "self_signed", "https", true},
		{"portcullis-http-nocache", nocache, "off", "http", false},
	} {
		metrics := "off"
		if *pprofOf != "" {
			metrics = freeAddr()
		}
		cfg := fmt.Sprintf(`server:
  listen: %[1]s
  public_url: https://%[10]s
  metrics_listen: %[11]q
  pprof: %[12]v
  trusted_proxies: [127.0.0.1/32]
forward_auth:
  enabled: true
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
  - name: orgs-headers
    path: /headers
    upstream: %[8]s
    org: {from: path, path_segment: 2}
    identity_forward: headers
  - name: orgs-assertion
    path: /assertion
    upstream: %[8]s
    org: {from: path, path_segment: 2}
    identity_forward: assertion
  - name: api
    path: /api
    upstream: %[8]s
    org: {from: path, path_segment: 2}
    auth: [api_key]
  - name: admin
    path: /admin
    upstream: %[8]s
    org: {from: path, path_segment: 2}
    # Longer than a run (5 rounds of 15 cells of 10 s take a quarter of an hour): the warm
    # step-up is measured, not its expiry.
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 3h, elevation: 3h}
`, p.addr, p.mode, b.redisAddr, p.caches, b.issuer, secret, ca, b.up.URL, *accessLg, b.tlsL, metrics, metrics != "off")
		path := filepath.Join(b.dir, p.name+".yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return err
		}
		c, err := start(p.name, exec.Command(bin, "serve", "--config", path), io.Discard)
		if err != nil {
			return err
		}
		pp := &proxyProc{name: p.name, base: p.scheme + "://" + p.addr, pid: c.cmd.Process.Pid}
		if metrics != "off" {
			pp.metrics = metrics
		}
		b.procs = append(b.procs, pp)
	}
	return nil
}

// target is one URL measured: a bare proxy or a portcullis process on one route.
type target struct {
	name, base, path string
	pid              int
	auth             bool
	bareRef          string      // the bare target this one is compared with
	question         http.Header // a forward-auth question's headers: the answer has no body
	// key: the request carries the machine's API key instead of the session cookie.
	key bool
	// metrics is the process's metrics listener, where -pprof fetches profiles ("": none).
	metrics string
}

// headers are the request headers of a target: the cookie or the API key, and the question.
func (tg *target) headers(cookie, apiKey string) http.Header {
	hdr := http.Header{"Accept": {"application/json"}}
	switch {
	case tg.key:
		hdr.Set("Authorization", "Bearer "+apiKey)
	case tg.auth:
		hdr.Set("Cookie", cookie)
	}
	for k, v := range tg.question {
		hdr[k] = v
	}
	return hdr
}

// forwardAuthQuestion asks /.portcullis/auth about GET uri, as Caddy or Traefik would.
func forwardAuthQuestion(host, uri string) http.Header {
	return http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {uri}, "X-Forwarded-Host": {host},
		"X-Forwarded-Proto": {"https"}, "X-Forwarded-For": {"203.0.113.7"}}
}

// targets lists what is measured, in the order of each round and of the table.
func (b *bed) targets() []target {
	procs := b.procs
	ts := []target{
		{"bare http", "http://" + b.bareHTTP, "/x", b.bare.cmd.Process.Pid, false, "", nil, false, ""},
		{"bare http (no buffer pool)", "http://" + b.defHTTP, "/x", b.bareDef.cmd.Process.Pid, false, "bare http", nil, false, ""},
		{"public http", procs[0].base, "/public/x", procs[0].pid, false, "bare http", nil, false, ""},
		{"authz warm http", procs[0].base, "/orgs/acme/x", procs[0].pid, true, "bare http", nil, false, ""},
		// The same with identity_forward: what a portal that reads only headers, or only
		// verifies the assertion, needs.
		{"authz warm http, headers", procs[0].base, "/headers/acme/x", procs[0].pid, true, "bare http", nil, false, ""},
		{"authz warm http, assertion", procs[0].base, "/assertion/acme/x", procs[0].pid, true, "bare http", nil, false, ""},
		// A machine identity's API key on the same kind of route: it should cost what the
		// cookie does.
		{"api key warm http", procs[0].base, "/api/acme/x", procs[0].pid, true, "bare http", nil, true, ""},
		{"step-up warm http", procs[0].base, "/admin/acme/x", procs[0].pid, true, "bare http", nil, false, ""},
		{"authz cold http (caches off)", procs[2].base, "/orgs/acme/x", procs[2].pid, true, "bare http", nil, false, ""},
		// The key's index entry, then the machine's and its sponsor's memberships at once.
		{"api key cold (caches off)", procs[2].base, "/api/acme/x", procs[2].pid, true, "bare http", nil, true, ""},
		// The same decision asked by an ingress: no upstream hop, so its ratio is to the bare
		// proxy's whole request, and beside "authz warm http" the cost of the decision alone.
		{"forward-auth warm http", procs[0].base, "/.portcullis/auth", procs[0].pid, true, "bare http", forwardAuthQuestion(b.tlsL, "/orgs/acme/x"), false, ""},
		{"bare tls", "https://" + b.bareTLS, "/x", b.bare.cmd.Process.Pid, false, "", nil, false, ""},
		{"public tls", procs[1].base, "/public/x", procs[1].pid, false, "bare tls", nil, false, ""},
		{"authz warm tls", procs[1].base, "/orgs/acme/x", procs[1].pid, true, "bare tls", nil, false, ""},
		{"authz warm tls, headers", procs[1].base, "/headers/acme/x", procs[1].pid, true, "bare tls", nil, false, ""},
	}
	for i := range ts {
		for _, p := range procs {
			if p.pid == ts[i].pid {
				ts[i].metrics = p.metrics
			}
		}
		if ts[i].pid == b.bare.cmd.Process.Pid {
			ts[i].metrics = b.barePprof
		}
	}
	return ts
}
