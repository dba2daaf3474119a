package main

// End-to-end tests of forward-auth (#18) behind the ingresses people run: Debian's nginx
// (auth_request) and Caddy (forward_auth), each configured with the snippet in examples/ as it
// is, only its addresses replaced. The real binary decides beside the ingress; sign-in, the
// refusal pages and the portal's requests all go through the ingress, as a browser would.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// ingressBed is one ingress in front of the portal with Portcullis beside it.
type ingressBed struct {
	*azBed
	ingress *azProxy // the ingress's public address; Portcullis's public_url
	pc      *proc
	envoy   string // the ext_authz listener, without an ingress
}

// ingressStart starts an ingress on listen (https, with cert and key) from the example
// rendered by replace, and returns when it serves.
type ingressStart func(t *testing.T, dir, listen, cert, key string, replace func(string) string)

// lookPathOrSkip finds a binary, failing in CI (which installs it) and skipping elsewhere.
func lookPathOrSkip(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run installs %s", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
	return ""
}

// renderExample reads an example and replaces its placeholders; every one must be there, so
// that an example that changes its placeholders fails here instead of going untested.
func renderExample(t *testing.T, path string, pairs ...string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return replacePlaceholders(t, path, string(b), pairs...)
}

// replacePlaceholders replaces each pair's first string by its second in s, the example
// named where; every one must be there.
func replacePlaceholders(t *testing.T, where, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("%s no longer contains %q", where, pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeTestCert(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ingress"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "ingress.pem"), filepath.Join(dir, "ingress.key")
	writeFile(t, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, key, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})))
	return cert, key
}

// waitServing waits until something accepts connections on addr.
func waitServing(t *testing.T, what, addr string, logs func() string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start on %s:\n%s", what, addr, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newIngressBed starts the provider, Redis (seeded as TestE2EAuthz's), the portal, Portcullis
// with forward_auth on a listener of its own and plain HTTP on loopback (the examples'
// set-up), and the ingress. With start nil there is no ingress: Portcullis serves its main
// listener over TLS at the bed's address, and Envoy's ext_authz on envoyListen.
func newIngressBed(t *testing.T, start ingressStart) *ingressBed {
	t.Helper()
	listen, pcListen, faListen := freePort(t), freePort(t), freePort(t)
	base := "https://" + listen
	tlsMode, envoy := `"off"`, ""
	if start == nil {
		pcListen, tlsMode, envoy = listen, "self_signed", ", envoy_listen: "+faListen
		faListen = freePort(t)
	}
	b := &ingressBed{azBed: &azBed{t: t}}
	b.idp = devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis", Secret: "e2e-secret", RedirectURIs: []string{base + "/.portcullis/callback"},
			PostLogoutRedirectURIs: []string{base + "/"}}},
		Users: azUsers,
	})
	dir := t.TempDir()
	b.ca = b.idp.CAFile(t)
	writeFile(t, filepath.Join(dir, "secret"), "e2e-secret\n")
	rs := redistest.Start(t)
	b.redis = rs
	var err error
	if b.st, err = store.New(config.Redis{Address: rs.Addr}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.st.Close() })
	b.aud = store.NewAudit(b.st, 0)
	b.orgs = store.NewOrgs(b.st, b.aud)
	b.seed()
	b.portal = newAZPortal(t)

	cfg := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfg, fmt.Sprintf(`server:
  listen: %[1]s
  public_url: %[2]s
  trusted_proxies: [127.0.0.1/32]
  metrics_listen: "off"
tls: {mode: %[9]s}
forward_auth: {enabled: true, listen: %[3]s%[10]s}
log: {access_log: false}
redis: {address: %[4]s}
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
  - name: portal
    path: /orgs
    upstream: %[8]s
    org: {from: path, path_segment: 2}
  - name: admin
    path: /admin
    case_insensitive: true
    upstream: %[8]s
    org: {from: path, path_segment: 2}
    require: {roles: [admin]}
  - name: billing
    path: /billing
    upstream: %[8]s
    org: {from: path, path_segment: 2}
    step_up: {acr: ["urn:portcullis:acr:mfa"], max_age: 5m}
`, pcListen, base, faListen, rs.Addr, b.idp.URL, filepath.Join(dir, "secret"), b.ca, b.portal.URL, tlsMode, envoy))
	b.pc = startBinary(t, cfg)
	b.pc.waitLog(t, "cache: invalidation subscription active", 10*time.Second)
	b.ingress = &azProxy{name: "ingress", base: base}
	if start == nil {
		b.envoy = strings.TrimPrefix(envoy, ", envoy_listen: ")
		return b
	}

	cert, key := writeTestCert(t, dir)
	portal := strings.TrimPrefix(b.portal.URL, "http://")
	start(t, dir, listen, cert, key, func(example string) string {
		return renderExample(t, example,
			"127.0.0.1:8080", portal, "127.0.0.1:8443", pcListen, "127.0.0.1:9091", faListen)
	})
	return b
}

// startNginx runs nginx with examples/nginx/portcullis.conf included in a minimal main file.
func startNginx(t *testing.T, dir, listen, cert, key string, replace func(string) string) {
	nginx := lookPathOrSkip(t, "nginx", "nginx-light")
	site := replace(filepath.Join("..", "..", "examples", "nginx", "portcullis.conf"))
	site = replacePlaceholders(t, "examples/nginx/portcullis.conf", site,
		"listen 443 ssl default_server;", "listen "+listen+" ssl default_server;",
		"listen 443 ssl;", "listen "+listen+" ssl;",
		"server_name portal.example.com;", "server_name 127.0.0.1;",
		"/etc/ssl/certs/portal.example.com.pem", cert,
		"/etc/ssl/private/portal.example.com.key", key)
	writeFile(t, filepath.Join(dir, "site.conf"), site)
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "nginx-tmp", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the workers read this test's private directory
	}
	main := fmt.Sprintf(`%[2]s
daemon off;
worker_processes 1;
error_log %[1]s/nginx-error.log info;
pid %[1]s/nginx.pid;
events { worker_connections 256; }
http {
    access_log %[1]s/nginx-access.log;
    client_body_temp_path %[1]s/nginx-tmp/body;
    proxy_temp_path %[1]s/nginx-tmp/proxy;
    fastcgi_temp_path %[1]s/nginx-tmp/fastcgi;
    uwsgi_temp_path %[1]s/nginx-tmp/uwsgi;
    scgi_temp_path %[1]s/nginx-tmp/scgi;
    include %[1]s/site.conf;
}
`, dir, user)
	conf := filepath.Join(dir, "nginx.conf")
	writeFile(t, conf, main)
	// A configuration error is reported on stderr before the error log opens: test first.
	if out, err := exec.Command(nginx, "-t", "-q", "-p", dir, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	startIngress(t, "nginx", listen, filepath.Join(dir, "nginx-error.log"), exec.Command(nginx, "-p", dir, "-c", conf))
}

// startCaddy runs caddy with examples/caddy/Caddyfile, its site address replaced by the
// test's (with the test certificate; Caddy would otherwise obtain one) and its admin endpoint
// off.
func startCaddy(t *testing.T, dir, listen, cert, key string, replace func(string) string) {
	caddy := lookPathOrSkip(t, "caddy", "caddy")
	site := replace(filepath.Join("..", "..", "examples", "caddy", "Caddyfile"))
	site = replacePlaceholders(t, "examples/caddy/Caddyfile", site,
		"portal.example.com {", fmt.Sprintf("https://%s {\n\ttls %s %s", listen, cert, key))
	conf := filepath.Join(dir, "Caddyfile")
	writeFile(t, conf, "{\n\tadmin off\n\tauto_https off\n}\n\n"+site)
	cmd := exec.Command(caddy, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	startIngress(t, "caddy", listen, filepath.Join(dir, "caddy.log"), cmd)
}

// writeTemp writes content to dir/name and returns the path.
func writeTemp(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, content)
	return p
}

// startIngress runs cmd with its output in logFile (shown when the test fails) until the
// test ends, and waits for it to listen.
func startIngress(t *testing.T, name, listen, logFile string, cmd *exec.Cmd) {
	t.Helper()
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	t.Cleanup(func() {
		// SIGTERM: nginx's master then stops its workers (a killed master leaves them behind).
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		out.Close()
		if t.Failed() {
			t.Logf("%s log:\n%s", name, logs())
		}
	})
	waitServing(t, name, listen, logs)
}

func TestE2ENginxForwardAuth(t *testing.T) {
	t.Parallel()
	testIngress(t, newIngressBed(t, startNginx))
}

func TestE2ECaddyForwardAuth(t *testing.T) {
	t.Parallel()
	testIngress(t, newIngressBed(t, startCaddy))
}

// testIngress is what a portal behind either ingress must see: the same decisions as behind
// Portcullis the proxy, with the refusal pages a browser or an API client expects.
func testIngress(t *testing.T, b *ingressBed) {
	in := b.ingress
	hits := func() int64 { return b.portal.hits.Load() }
	// refused checks an answer is Portcullis's refusal with code (its JSON error, or its page
	// naming the code) and that the portal saw nothing of it.
	refused := func(t *testing.T, what string, r *azResp, status int, code string, before int64) {
		t.Helper()
		if r.status != status || r.header.Get("X-Portcullis-Reason") != code ||
			(r.reason() != code && !strings.Contains(r.body, code)) || r.seen() != nil {
			t.Errorf("%s: %d reason %q, want %d %s: %.400s", what, r.status, r.header.Get("X-Portcullis-Reason"), status, code, r.body)
		}
		if hits() != before {
			t.Errorf("%s: the portal was reached", what)
		}
		if r.header.Get("X-Portcullis-Assertion") != "" || r.header.Get("X-Portcullis-Upstream-Cookie") != "" {
			t.Errorf("%s: the client got the answer's headers: %v", what, r.header)
		}
	}

	t.Run("signed out", func(t *testing.T) {
		c, before := b.newClient(), hits()
		r := c.do("GET", in.base+"/orgs/acme/home?tab=1", "", nil, azBrowser)
		loc, _ := url.Parse(r.header.Get("Location"))
		if r.status != http.StatusFound || loc == nil || loc.Scheme+"://"+loc.Host != in.base || loc.Path != "/.portcullis/login" ||
			loc.Query().Get("rd") != "/orgs/acme/home?tab=1" {
			t.Errorf("a browser signed out: %d Location %q, want a sign-in redirect on %s", r.status, r.header.Get("Location"), in.base)
		}
		if r.header.Get("X-Portcullis-Reason") != "no_session" {
			t.Errorf("a browser signed out: X-Portcullis-Reason %q", r.header.Get("X-Portcullis-Reason"))
		}
		refused(t, "an API client signed out", c.do("GET", in.base+"/orgs/acme/home", "", nil, azAPI), http.StatusUnauthorized, "no_session", before)
		if hits() != before {
			t.Error("the portal was reached signed out")
		}
	})

	alice := b.newClient()
	alice.signIn(in, "alice")
	aliceKey := b.user("sub-alice")
	alice.c.Jar.SetCookies(&url.URL{Scheme: "https", Host: strings.TrimPrefix(in.base, "https://"), Path: "/"},
		[]*http.Cookie{{Name: "portal_prefs", Value: "dark", Path: "/"}})

	t.Run("member with identity, assertion and the portal's cookies only", func(t *testing.T) {
		spoof := http.Header{"Accept": {"application/json"}, "X-Portcullis-User": {"idp|mallory"}, "X-Portcullis-Org": {"beta"},
			"X-Portcullis-Roles": {"admin"}, "X-Portcullis-Kind": {"partner"}, "X-Portcullis-Assertion": {"eyJhbGciOiJub25lIn0.e30."}}
		// The client's identity headers: refused (nginx passes them to the question), or
		// removed before the question and replaced by the answer's (the Caddyfile).
		r := alice.do("GET", in.base+"/orgs/acme/home?tab=1", "", nil, spoof)
		if r.seen() == nil && (r.status != http.StatusBadRequest || r.reason() != "forward_auth_request") {
			t.Errorf("spoofed identity headers: %d %.200s", r.status, r.body)
		}
		if r.seen() == nil {
			r = alice.do("GET", in.base+"/orgs/acme/home?tab=1", "", nil, azAPI)
		}
		s := r.seen()
		if r.status != 200 || s == nil {
			t.Fatalf("alice: %d %s", r.status, r.body)
		}
		if s.URI != "/orgs/acme/home?tab=1" || s.Host != strings.TrimPrefix(in.base, "https://") {
			t.Errorf("the portal got %s on host %s", s.URI, s.Host)
		}
		azWantIdentity(t, "alice", s, map[string]string{"X-Portcullis-User": aliceKey, "X-Portcullis-Email": "alice@acme.example",
			"X-Portcullis-Org": "acme", "X-Portcullis-Roles": "user", "X-Portcullis-Kind": "employee"})
		ingressNoValue(t, "alice", s, "X-Portcullis-Purpose")
		tok := azCGIValues(s.Header, "X_PORTCULLIS_ASSERTION")
		if len(tok) != 1 {
			t.Fatalf("assertion headers %q", tok)
		}
		azVerifyAssertion(t, alice, in, tok[0], "portal", aliceKey, "acme", []string{"user"})
		cookies := strings.Join(s.Header["Cookie"], "; ")
		if strings.Contains(cookies, "portcullis") || strings.Contains(cookies, "stolen") || !strings.Contains(cookies, "portal_prefs=dark") {
			t.Errorf("the portal got Cookie %q", cookies)
		}
		if len(s.Header["X-Portcullis-Upstream-Cookie"]) != 0 {
			t.Errorf("the portal got X-Portcullis-Upstream-Cookie %q", s.Header["X-Portcullis-Upstream-Cookie"])
		}
	})

	t.Run("a large Cookie header reaches the portal", func(t *testing.T) {
		// The answer repeats the portal's cookies and carries the assertion: more than the
		// 4k an ingress buffers for response headers by default.
		jarURL := &url.URL{Scheme: "https", Host: strings.TrimPrefix(in.base, "https://"), Path: "/"}
		var cs []*http.Cookie
		for i := range 6 {
			cs = append(cs, &http.Cookie{Name: fmt.Sprintf("portal_big%d", i), Value: strings.Repeat("v", 1000), Path: "/"})
		}
		alice.c.Jar.SetCookies(jarURL, cs)
		t.Cleanup(func() {
			for _, c := range cs {
				c.MaxAge = -1
			}
			alice.c.Jar.SetCookies(jarURL, cs)
		})
		r := alice.do("GET", in.base+"/orgs/acme/home", "", nil, azAPI)
		s := r.seen()
		if r.status != 200 || s == nil {
			t.Fatalf("a 6 KiB Cookie: %d %.300s", r.status, r.body)
		}
		if c := strings.Join(s.Header["Cookie"], "; "); !strings.Contains(c, "portal_big5="+strings.Repeat("v", 1000)) {
			t.Errorf("the portal's cookies were cut: %d bytes", len(c))
		}
	})

	t.Run("a body goes to the portal untouched", func(t *testing.T) {
		body := strings.Repeat("x", 256<<10)
		req, _ := http.NewRequest("PUT", in.base+"/orgs/acme/files/report.bin", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := alice.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := readAZResp(resp)
		if s := r.seen(); r.status != 200 || s == nil || s.Method != "PUT" || s.Body != body {
			t.Errorf("an upload: %d %.200s", r.status, r.body)
		}
	})

	t.Run("refusals are Portcullis's pages", func(t *testing.T) {
		before := hits()
		refused(t, "another org", alice.do("GET", in.base+"/orgs/beta/home", "", nil, azAPI), http.StatusForbidden, "not_member", before)
		page := alice.do("GET", in.base+"/orgs/beta/home", "", nil, azBrowser)
		refused(t, "another org, as a page", page, http.StatusForbidden, "not_member", before)
		if !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
			t.Errorf("a browser's refusal is %q", page.header.Get("Content-Type"))
		}
		refused(t, "a role she lacks", alice.do("GET", in.base+"/admin/acme/users", "", nil, azAPI), http.StatusForbidden, "role_missing", before)
		stepUp := alice.do("GET", in.base+"/billing/acme/invoices", "", nil, azAPI)
		refused(t, "step-up", stepUp, http.StatusUnauthorized, "step_up_required", before)
		if ch := stepUp.header.Get("WWW-Authenticate"); !strings.Contains(ch, "insufficient_user_authentication") {
			t.Errorf("step-up challenge %q", ch)
		}
	})

	t.Run("the described request is the one forwarded", func(t *testing.T) {
		before := hits()
		// A path the ingress forwards as it is and Portcullis would have normalised.
		for _, p := range []string{"/orgs/acme/%2e%2e/beta/home", "/orgs/acme/x/..%2f..%2fbeta/home", "/orgs/acme//home", "/orgs/acme;x=1/home"} {
			r := alice.do("GET", in.base+p, "", nil, azAPI)
			if r.status == 200 || r.seen() != nil {
				t.Errorf("%s: %d %.200s", p, r.status, r.body)
			}
		}
		if hits() != before {
			t.Errorf("a path Portcullis would normalise reached the portal")
		}
		// Case: a route for a portal that ignores it (case_insensitive) decides /ADMIN as
		// /admin; any other refuses a path no route matches, never lets it through.
		refused(t, "ADMIN", alice.do("GET", in.base+"/ADMIN/acme/users", "", nil, azAPI), http.StatusForbidden, "role_missing", before)
		refused(t, "Admin", alice.do("GET", in.base+"/Admin/acme/users", "", nil, azAPI), http.StatusForbidden, "role_missing", before)
		refused(t, "ORGS", alice.do("GET", in.base+"/ORGS/beta/home", "", nil, azAPI), http.StatusNotFound, "no_route", before)
		// The other convention's headers, from the client, never name the request decided.
		for _, h := range []http.Header{
			{"X-Forwarded-Uri": {"/orgs/acme/home"}, "X-Forwarded-Method": {"GET"}},
			{"X-Original-Uri": {"/orgs/acme/home"}, "X-Original-Method": {"GET"}},
			{"X-Forwarded-Host": {"acme.portal.example.test"}},
		} {
			h.Set("Accept", "application/json")
			if r := alice.do("GET", in.base+"/orgs/beta/home", "", nil, h); r.status == 200 || r.seen() != nil {
				t.Errorf("beta with %v: %d %.200s", h, r.status, r.body)
			}
		}
		if hits() != before {
			t.Errorf("a request for another org reached the portal")
		}
		// A Host the ingress does not route by never reaches the portal under it.
		if r := b.newClient().do("GET", in.base+"/orgs/acme/home", "open.example.test", nil, azAPI); r.seen() != nil {
			t.Errorf("another Host: %d %.200s", r.status, r.body)
		}
		if hits() != before {
			t.Errorf("a request under another Host reached the portal")
		}
	})

	t.Run("identity headers in other spellings", func(t *testing.T) {
		for _, name := range []string{"X_Portcullis_Org", "X.Portcullis.Org", "x-portcullis-org"} {
			r := alice.do("GET", in.base+"/orgs/acme/home", "", nil, http.Header{"Accept": {"application/json"}, name: {"beta"}})
			s := r.seen()
			switch {
			case s != nil:
				// The ingress dropped it (nginx drops names with "_" or "."), or replaced it.
				if got := azCGIValues(s.Header, "X_PORTCULLIS_ORG"); r.status != 200 || len(got) != 1 || got[0] != "acme" {
					t.Errorf("%s: the portal got X-Portcullis-Org %q", name, got)
				}
			case r.status != http.StatusBadRequest || r.reason() != "forward_auth_request":
				t.Errorf("%s: %d %.200s", name, r.status, r.body)
			}
		}
	})

	t.Run("headers only the proxy may set are refused, not passed on", func(t *testing.T) {
		// The proxy strips these; the ingress would forward them to the portal, which may
		// take X-Remote-User for the person or True-Client-IP for the address.
		before := hits()
		for name, v := range map[string]string{
			"X-Remote-User": "mallory", "Remote-User": "mallory", "X-Forwarded-User": "mallory",
			"X-Auth-Request-User": "mallory", "X-Webauth-User": "mallory", "True-Client-Ip": "198.51.100.9",
			"X-Real-Ip": "198.51.100.9", "Forwarded": "for=198.51.100.9", "X-Portcullis-Upstream-Cookie": "session=stolen",
			"X-Portcullis-Admin": "1",
		} {
			r := alice.do("GET", in.base+"/orgs/acme/home", "", nil, http.Header{"Accept": {"application/json"}, name: {v}})
			switch s := r.seen(); {
			case s != nil:
				// The ingress dropped it itself (the Caddyfile removes X-Portcullis-*).
				if got := azCGIValues(s.Header, strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); r.status != 200 || len(got) != 0 {
					t.Errorf("%s: the portal got %q", name, got)
				}
				before++
			case r.status != http.StatusBadRequest || r.reason() != "forward_auth_request":
				t.Errorf("%s: %d %s %.200s", name, r.status, r.reason(), r.body)
			}
		}
		if hits() != before {
			t.Errorf("a refused request reached the portal")
		}
	})

	t.Run("the ingress's own headers reach the portal as the ingress's", func(t *testing.T) {
		// Portcullis sees the question, whose forwarding headers the ingress set; the portal
		// must get the ingress's too, never the client's (a forged X-Forwarded-Host poisons
		// reset links, a forged X-Forwarded-Uri is another path to a portal that reads it).
		host := strings.TrimPrefix(in.base, "https://")
		for name, v := range map[string]string{
			"X-Forwarded-Host": "evil.example", "X-Forwarded-Uri": "/admin/acme/users", "X-Forwarded-Method": "DELETE",
			"X-Original-Uri": "/admin/acme/users", "X-Original-Method": "DELETE", "X-Request-Id": "spoofed-id",
			"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "gopher",
		} {
			r := alice.do("GET", in.base+"/orgs/acme/home", "", nil, http.Header{"Accept": {"application/json"}, name: {v}})
			s := r.seen()
			if s == nil {
				if r.status != http.StatusBadRequest || r.reason() != "forward_auth_request" {
					t.Errorf("%s: %d %s %.200s", name, r.status, r.reason(), r.body)
				}
				continue
			}
			for _, got := range azCGIValues(s.Header, strings.ToUpper(strings.ReplaceAll(name, "-", "_"))) {
				if strings.Contains(got, v) {
					t.Errorf("%s: the portal got the client's %q", name, got)
				}
			}
			if fh := azCGIValues(s.Header, "X_FORWARDED_HOST"); len(fh) > 1 || len(fh) == 1 && fh[0] != host {
				t.Errorf("%s: the portal got X-Forwarded-Host %q", name, fh)
			}
		}
	})

	t.Run("public route: no identity, whatever the client sends", func(t *testing.T) {
		anon := b.newClient()
		r := anon.do("GET", in.base+"/public/home", "", nil, http.Header{"X-Portcullis-User": {"idp|mallory"}, "X-Portcullis-Org": {"acme"}})
		if r.seen() == nil && r.reason() == "forward_auth_request" {
			r = anon.do("GET", in.base+"/public/home", "", nil, nil) // refused, not passed on: nginx
		}
		s := r.seen()
		if r.status != 200 || s == nil {
			t.Fatalf("public: %d %s", r.status, r.body)
		}
		for _, h := range []string{"X-Portcullis-User", "X-Portcullis-Org", "X-Portcullis-Email", "X-Portcullis-Roles", "X-Portcullis-Assertion"} {
			ingressNoValue(t, "public", s, h)
		}
	})

	t.Run("a revocation refuses within moments", func(t *testing.T) {
		ctx := t.Context()
		if _, err := b.orgs.Revoke(ctx, "acme", aliceKey, azActor, "left the company"); err != nil {
			t.Fatal(err)
		}
		// The caches are invalidated over pub/sub: asynchronous, within milliseconds.
		r := alice.do("GET", in.base+"/orgs/acme/home", "", nil, azAPI)
		for deadline := time.Now().Add(2 * time.Second); r.status == 200 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			r = alice.do("GET", in.base+"/orgs/acme/home", "", nil, azAPI)
		}
		before := hits()
		refused(t, "after revocation", alice.do("GET", in.base+"/orgs/acme/home", "", nil, azAPI), http.StatusForbidden, "membership_revoked", before)
	})
}

// ingressNoValue checks the portal got no value for an identity header, in any spelling: the
// ingress either left it out or sent it empty.
func ingressNoValue(t *testing.T, where string, s *azSeen, name string) {
	t.Helper()
	for _, v := range azCGIValues(s.Header, azCGI(name)) {
		if v != "" {
			t.Errorf("%s: the portal got %s %q", where, name, v)
		}
	}
}
