package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/freeport"
)

// These tests build the real binary and drive it over real TLS, as an operator would.

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "portcullis-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "portcullis")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build portcullis: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// proc is a running portcullis with its log lines collected.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []map[string]any
	raw  bytes.Buffer
	done chan error
}

func startBinary(t *testing.T, cfgPath string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binPath, "serve", "--config", cfgPath), done: make(chan error, 1)}
	stdout, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = &lockedBuf{mu: &p.mu, b: &p.raw}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.logs = append(p.logs, m)
			}
			p.mu.Unlock()
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			p.mu.Lock()
			t.Logf("portcullis output:\n%s", p.raw.String())
			p.mu.Unlock()
		}
	})
	p.waitLog(t, "portcullis serving", 20*time.Second)
	return p
}

type lockedBuf struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// waitLog waits for a log line whose msg is msg and returns it.
func (p *proc) waitLog(t *testing.T, msg string, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.logs {
			if l["msg"] == msg {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case err := <-p.done:
			t.Fatalf("portcullis exited (%v) before logging %q", err, msg)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %q log line within %v", msg, timeout)
	return nil
}

func (p *proc) countLog(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.logs {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func upstream(t *testing.T, name string) *httptest.Server {
	t.Helper()
	return upstreamWith(t, name, nil)
}

// upstreamWith is upstream calling before (when not nil) with each request before it answers,
// so a test can hold a request in flight.
func upstreamWith(t *testing.T, name string, before func(*http.Request)) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if before != nil {
			before(r)
		}
		w.Header().Set("X-Upstream", name)
		fmt.Fprintf(w, "%s %s %s xff=%s", name, r.Method, r.RequestURI, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(s.Close)
	return s
}

func e2eConfig(listen, redirect, metrics, up string) string {
	return fmt.Sprintf(`# e2e
server:
  listen: %s
  redirect_listen: %s
  metrics_listen: %s
  hsts: {max_age: 1h}
  shutdown_timeout: 5s
tls:
  mode: self_signed
routes:
  - name: app
    hosts: [portal.example.test]
    path: /app
    upstream: %s
    public: true
  - name: admin
    hosts: [portal.example.test]
    path: /admin
    upstream: %s
`, listen, redirect, metrics, up, up)
}

func tlsClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: "portal.example.test"}},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 10 * time.Second,
	}
}

func doGet(t *testing.T, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = "portal.example.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestE2EServeOverTLS(t *testing.T) {
	up := upstream(t, "one")
	listen, redirect, metrics := freePort(t), freePort(t), freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfgPath, e2eConfig(listen, redirect, metrics, up.URL))
	startBinary(t, cfgPath)
	c := tlsClient()

	resp, body := doGet(t, c, "https://"+listen+"/app/./x//y?q=1")
	if resp.StatusCode != 200 || body != "one GET /app/x/y?q=1 xff=127.0.0.1" {
		t.Fatalf("forward: %d %q", resp.StatusCode, body)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("TLS state %+v", resp.TLS)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=3600" {
		t.Errorf("HSTS %q", h)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id")
	}
	// Not public, no sign-in yet: closed.
	if resp, _ := doGet(t, c, "https://"+listen+"/admin/users"); resp.StatusCode != 401 {
		t.Errorf("admin: %d", resp.StatusCode)
	}
	if resp, _ := doGet(t, c, "https://"+listen+"/nothing"); resp.StatusCode != 404 {
		t.Errorf("unrouted: %d", resp.StatusCode)
	}
	// TLS 1.1 is refused.
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}}}
	if _, err := old.Get("https://" + listen + "/app/x"); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	// The plain-HTTP listener redirects to HTTPS for known hosts only.
	resp, _ = doGet(t, c, "http://"+redirect+"/app/x?y=1")
	_, port, _ := net.SplitHostPort(listen)
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://portal.example.test:"+port+"/app/x?y=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequest("GET", "http://"+redirect+"/", nil)
	req.Host = "evil.test"
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 404 {
		t.Errorf("redirect for an unknown host: %v %v", err, resp)
	}
	// Metrics on their own listener.
	resp, body = doGet(t, c, "http://"+metrics+"/metrics")
	if resp.StatusCode != 200 || !strings.Contains(body, `portcullis_requests_total{code="200",route="app"} 1`) {
		t.Errorf("metrics: %d\n%s", resp.StatusCode, body)
	}
}

// TestE2ERawAttackPaths sends request-targets byte for byte over TLS.
func TestE2ERawAttackPaths(t *testing.T) {
	up := upstream(t, "one")
	listen := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfgPath, e2eConfig(listen, freePort(t), freePort(t), up.URL))
	startBinary(t, cfgPath)
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"/app/../admin/users", 401},
		{"/app/%2e%2e/admin/users", 401},
		{"//admin", 401},
		{"/%61dmin", 401},
		{"/admin%2f..", 400},
		{"/app%2F..%2Fadmin", 400},
		{"/app/..;/admin", 400},
		{"/admin#/app/x", 400},
		{"/app/%252e%252e/admin", 400},
		{"/ADMIN", 404},
		{"/app/x", 200},
	} {
		conn, err := tls.Dial("tcp", listen, &tls.Config{InsecureSkipVerify: true, ServerName: "portal.example.test", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: portal.example.test\r\nConnection: close\r\n\r\n", tc.target)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d (%s)", tc.target, resp.StatusCode, tc.want, body)
		}
		if tc.want != 200 && strings.Contains(string(body), "one GET") {
			t.Errorf("%s reached the upstream", tc.target)
		}
	}
}

func TestE2EReload(t *testing.T) {
	one, two := upstream(t, "one"), upstream(t, "two")
	listen := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfgPath, e2eConfig(listen, freePort(t), "off", one.URL))
	p := startBinary(t, cfgPath)
	c := tlsClient()
	url := "https://" + listen + "/app/x"
	if _, body := doGet(t, c, url); !strings.HasPrefix(body, "one ") {
		t.Fatalf("before reload: %q", body)
	}

	// A file change with a valid configuration is picked up by itself.
	writeFile(t, cfgPath, strings.Replace(e2eConfig(listen, "", "off", two.URL), "  redirect_listen: \n", "", 1))
	waitBody(t, c, url, "two ")
	if p.countLog("configuration reloaded") < 1 {
		t.Error("no reload logged")
	}

	// An invalid file is rejected with its position, and the running configuration stays.
	bad := strings.Replace(e2eConfig(listen, "", "off", one.URL), "  redirect_listen: \n", "", 1)
	bad = strings.Replace(bad, "    public: true\n", "    public: true\n    upstrem: x\n", 1)
	writeFile(t, cfgPath, bad)
	line := p.waitLog(t, "configuration error", 10*time.Second)
	if msg, _ := line["error"].(string); !strings.Contains(msg, cfgPath+":") || !strings.Contains(msg, "routes[0].upstrem") {
		t.Errorf("error line %q lacks file position or key", msg)
	}
	if _, body := doGet(t, c, url); !strings.HasPrefix(body, "two ") {
		t.Errorf("after a bad reload: %q", body)
	}

	// SIGHUP reloads too.
	writeFile(t, cfgPath+".next", strings.Replace(e2eConfig(listen, "", "off", one.URL), "  redirect_listen: \n", "", 1))
	if err := os.Rename(cfgPath+".next", cfgPath); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	waitBody(t, c, url, "one ")
}

func waitBody(t *testing.T, c *http.Client, url, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var body string
	for time.Now().Before(deadline) {
		_, body = doGet(t, c, url)
		if strings.HasPrefix(body, prefix) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("body never started with %q; last %q", prefix, body)
}

func TestE2EGracefulShutdown(t *testing.T) {
	// The upstream holds /app/slow until the test has seen the shutdown begin.
	arrived, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	up := upstreamWith(t, "one", func(r *http.Request) {
		if r.URL.Path == "/app/slow" {
			close(arrived)
			<-release
		}
	})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before up.Close, which waits for it
	listen := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfgPath, e2eConfig(listen, freePort(t), "off", up.URL))
	p := startBinary(t, cfgPath)
	c := tlsClient()
	got := make(chan string, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "https://"+listen+"/app/slow", nil)
		req.Host = "portal.example.test"
		resp, err := c.Do(req)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	select {
	case <-arrived:
	case body := <-got:
		t.Fatalf("slow request ended before reaching the upstream: %q", body)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	// The request is still in flight when the listener closes; then the upstream answers.
	p.waitLog(t, "shutting down", 10*time.Second)
	waitRefused(t, listen, 10*time.Second)
	releaseOnce.Do(func() { close(release) })
	if body := <-got; !strings.HasPrefix(body, "one GET /app/slow") {
		t.Errorf("in-flight request during shutdown: %q", body)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
}

// waitRefused polls addr until it refuses connections (its listener is closed).
func waitRefused(t *testing.T, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepted connections %v after the shutdown began", addr, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestE2ECheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, e2eConfig("127.0.0.1:8443", "", "off", "http://127.0.0.1:9000"))
	out, err := exec.Command(binPath, "check", "--config", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid: 2 routes") {
		t.Errorf("check good: %v %s", err, out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, `server:
  listen: nonsense
tls:
  mode: maybe
routes:
  - name: a
    upstream: ftp://x
  - name: a
    path: admin
    upstream: http://127.0.0.1:9000
    timeouts: {dial: soon}
`)
	cmd := exec.Command(binPath, "check", "--config", bad)
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("check bad: exit %d (%v)\n%s", cmd.ProcessState.ExitCode(), err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 5 {
		t.Errorf("want every error reported, got:\n%s", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, bad+":") {
			t.Errorf("line without FILE:LINE:COL: %q", l)
		}
	}
	for _, want := range []string{"server.listen", "tls.mode", "routes[0].upstream", "routes[1].name", "routes[1].path", "routes[1].timeouts.dial"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no error for %s in:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binPath, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "portcullis ") || !strings.Contains(string(out), "go: go1.") {
		t.Errorf("version: %v %s", err, out)
	}
}

func TestDevRefusesNonLoopback(t *testing.T) {
	out, err := exec.Command(binPath, "dev", "--listen", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--insecure-listen-anywhere") {
		t.Errorf("dev on 0.0.0.0: %v %s", err, out)
	}
}

// TestE2EOversizedRequests covers DOS-01: oversized requests are refused quickly and never
// forwarded.
func TestE2EOversizedRequests(t *testing.T) {
	var hits sync.Map
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.RequestURI, true)
	}))
	defer up.Close()
	listen := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfgPath, e2eConfig(listen, freePort(t), "off", up.URL))
	startBinary(t, cfgPath)
	many := strings.Repeat("X-A: b\r\n", 10000)
	for _, tc := range []struct {
		name, req string
		want      int
	}{
		{"100KiB header", "GET /app/a HTTP/1.1\r\nHost: portal.example.test\r\nX-Big: " + strings.Repeat("a", 100<<10) + "\r\n\r\n", 431},
		{"10000 headers", "GET /app/b HTTP/1.1\r\nHost: portal.example.test\r\n" + many + "\r\n", 431},
		{"64KiB cookie", "GET /app/c HTTP/1.1\r\nHost: portal.example.test\r\nCookie: a=" + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431},
		{"16KiB target", "GET /app/d?" + strings.Repeat("q", 16<<10) + " HTTP/1.1\r\nHost: portal.example.test\r\n\r\n", 414},
	} {
		conn, err := tls.Dial("tcp", listen, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		go func() { _, _ = io.WriteString(conn, tc.req) }()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		conn.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	hits.Range(func(k, _ any) bool {
		t.Errorf("upstream reached with %.40s", k)
		return true
	})
}

// TestE2ESlowHeadersAreCut covers DOS-03 (slowloris): a client that never finishes its
// headers is disconnected at read_header_timeout, while others are served.
func TestE2ESlowHeadersAreCut(t *testing.T) {
	up := upstream(t, "one")
	listen := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfgPath, strings.Replace(e2eConfig(listen, freePort(t), "off", up.URL),
		"  shutdown_timeout: 5s\n", "  shutdown_timeout: 5s\n  read_header_timeout: 300ms\n", 1))
	startBinary(t, cfgPath)
	var slow []net.Conn
	for range 20 {
		conn, err := tls.Dial("tcp", listen, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET /app/x HTTP/1.1\r\nHost: portal.example.test\r\nX-Slow: ")
		slow = append(slow, conn)
	}
	// A well-behaved client is served meanwhile.
	if _, body := doGet(t, tlsClient(), "https://"+listen+"/app/x"); !strings.HasPrefix(body, "one ") {
		t.Errorf("normal client: %q", body)
	}
	for i, conn := range slow {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		// The server either answers 408 or just closes; it must not wait for us.
		b := make([]byte, 512)
		for {
			_, err := conn.Read(b)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("slow connection %d was still open after 10s", i)
				}
				break
			}
		}
	}
}

func TestDemoPortalCommand(t *testing.T) {
	addr := freePort(t)
	cmd := exec.Command(binPath, "demo-portal", "--listen", addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/password/reset")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), "Forgot password") {
				t.Errorf("demo portal: %d %s", resp.StatusCode, body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo portal never answered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestComposeConfigIsValid(t *testing.T) {
	cmd := exec.Command(binPath, "check", "--config", "../../docker/portcullis.yaml")
	cmd.Env = append(os.Environ(), "OIDC_CLIENT_SECRET=x")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("docker/portcullis.yaml: %v\n%s", err, out)
	}
}

// TestE2EPprof: Go's profiles are on the loopback metrics listener when server.pprof asks
// for them, and nowhere otherwise; a pprof on a metrics listener reachable from outside is
// refused by check.
func TestE2EPprof(t *testing.T) {
	t.Parallel()
	up := upstream(t, "portal")
	dir := t.TempDir()
	for _, on := range []bool{true, false} {
		listen, metrics := freePort(t), freePort(t)
		cfg := filepath.Join(dir, fmt.Sprintf("pprof-%v.yaml", on))
		writeFile(t, cfg, strings.Replace(e2eConfig(listen, "", metrics, up.URL), "  shutdown_timeout: 5s\n",
			fmt.Sprintf("  shutdown_timeout: 5s\n  pprof: %v\n", on), 1))
		startBinary(t, cfg)
		resp, err := http.Get("http://" + metrics + "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if on != (resp.StatusCode == 200 && strings.Contains(string(body), "heap profile")) {
			t.Errorf("pprof %v: %d %.80s", on, resp.StatusCode, body)
		}
	}
	open := filepath.Join(dir, "open.yaml")
	writeFile(t, open, strings.Replace(e2eConfig("127.0.0.1:0", "", "0.0.0.0:9090", up.URL), "  shutdown_timeout: 5s\n", "  shutdown_timeout: 5s\n  pprof: true\n", 1))
	if out, err := exec.Command(binPath, "check", "--config", open).CombinedOutput(); err == nil || !strings.Contains(string(out), "server.pprof") {
		t.Errorf("pprof on 0.0.0.0: %v %s", err, out)
	}
}
