package session_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/proxy"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

func TestMain(m *testing.M) { redistest.Main(m) }

const (
	clientID     = "portcullis"
	clientSecret = "s3cret-client"
	otherClient  = "other-app"
)

// clock is the injected clock: wall time plus an offset tests move forward.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }
func (c *clock) set(d time.Duration)     { c.off.Store(int64(d)) }

type devidpClaims = devidp.Claims

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tokenSwap rewrites the id_token of token responses: a man in the middle of our own provider
// connection, to hand the callback an ID token from another flow, issuer or audience.
type tokenSwap struct {
	base http.RoundTripper
	with atomic.Pointer[string]
}

func (s *tokenSwap) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	tok := s.with.Load()
	if err != nil || tok == nil || !strings.HasSuffix(r.URL.Path, "/oauth/token") {
		return resp, err
	}
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if json.Unmarshal(b, &body) == nil && body["id_token"] != nil {
		body["id_token"] = *tok
		b, _ = json.Marshal(body)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// envOpts change the test bed.
type envOpts struct {
	idpDown      bool // the provider is not running when the manager starts
	privateRedis bool // a redis-server of the test's own (it will be stopped)
	swap         bool // talk to the provider through tokenSwap instead of the client from ca_root_file
	session      string
	oidc         string     // further oidc keys (YAML lines indented two spaces)
	routes       string     // further routes (YAML list items), before the catch-all "app"
	audit        audit.Sink // given to the manager and the proxy
}

// env is one test bed: devidp over TLS, a real redis-server, the real proxy.Server with the
// session manager as its gate, and an echo upstream that counts what reaches it.
type env struct {
	t        testing.TB
	idp      *devidp.Provider
	idpURL   string
	idpHTTP  *httptest.Server
	redis    *redistest.Server
	st       *store.Store
	m        *session.Manager
	srv      *httptest.Server
	base     string
	hits     atomic.Int32
	clock    *clock
	swap     *tokenSwap
	logs     *lockedLog
	cfg      *config.Config
	bcRecord atomic.Pointer[string] // the last logout token devidp sent
	caFile   string
	caPool   *x509.CertPool
	// idpFailing makes the running provider answer 503 to everything.
	idpFailing atomic.Bool
	// tokenError makes the token endpoint answer 400 with this OAuth error code.
	tokenError atomic.Pointer[string]
}

var users = []devidp.User{
	{Subject: "sub-alice", Username: "alice", Password: "alice-pw", Email: "alice@fresh.example", EmailVerified: true, Name: "Alice"},
	{Subject: "sub-bob", Username: "bob", Password: "bob-pw", Email: "bob@fresh.example", EmailVerified: true, Name: "Bob"},
	{Subject: "sub-eve", Username: "eve", Password: "eve-pw", Email: "eve@unverified.example", EmailVerified: false},
	{Subject: "sub-carol", Username: "carol", Password: "carol-pw", Email: "carol@fresh.example", EmailVerified: true, Name: "Carol", TOTPSecret: carolTOTP},
}

// carolTOTP is carol's second factor (step-up tests).
const carolTOTP = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{}, logs: &lockedLog{}}

	// The proxy's listener first: its address goes into the provider's client registration.
	e.srv = httptest.NewUnstartedServer(nil)
	e.base = "https://" + e.srv.Listener.Addr().String()

	// The provider: a TLS test server whose certificate the manager trusts via ca_root_file.
	e.idpHTTP = httptest.NewUnstartedServer(nil)
	idpLn := e.idpHTTP.Listener
	e.idpURL = "https://" + idpLn.Addr().String()
	if o.idpDown {
		idpLn.Close() // nothing listens until startIdP
	}
	bcTransport := &recordingTransport{e: e, base: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	idp, err := devidp.New(devidp.Config{
		Issuer: e.idpURL,
		Clients: []devidp.Client{
			{ID: clientID, Secret: clientSecret, RedirectURIs: []string{e.base + config.CallbackPath},
				PostLogoutRedirectURIs: []string{e.base + "/"}, BackchannelLogoutURI: e.base + "/.portcullis/backchannel-logout"},
			{ID: otherClient, Secret: "other-secret", RedirectURIs: []string{e.base + config.CallbackPath}},
		},
		Users:             users,
		BackchannelClient: &http.Client{Transport: bcTransport},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.idp = idp
	e.idpHTTP.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e.idpFailing.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if code := e.tokenError.Load(); code != nil && strings.HasSuffix(r.URL.Path, "/oauth/token") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":%q}`, *code)
			return
		}
		idp.Handler().ServeHTTP(w, r)
	})
	if !o.idpDown {
		e.idpHTTP.StartTLS()
		t.Cleanup(e.idpHTTP.Close)
	}
	// httptest servers share one certificate; write it out as the provider's CA.
	cert := httptestCert(t)
	e.caPool = x509.NewCertPool()
	e.caPool.AddCert(cert)
	e.caFile = filepath.Join(t.TempDir(), "idp-ca.pem")
	if err := os.WriteFile(e.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	if o.privateRedis {
		e.redis = redistest.Start(t)
	} else {
		e.redis = redistest.Shared(t)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		fmt.Fprintf(w, "echo %s %s", r.Method, r.URL.RequestURI())
	}))
	t.Cleanup(up.Close)

	sess := o.session
	if sess == "" {
		sess = "{idle_timeout: 30m, absolute_timeout: 2h, touch_interval: 1m, login_timeout: 5m}"
	}
	yaml := fmt.Sprintf(`server:
  public_url: %[1]s
tls:
  mode: "off"
redis:
  address: %[2]s
  db: %[3]d
  read_timeout: 500ms
  dial_timeout: 500ms
oidc:
  issuer: %[4]s
  client_id: %[5]s
  client_secret: %[6]s
  ca_root_file: %[7]s
  extra_params: {ui_locales: en}
%[11]ssession: %[8]s
routes:
  - name: public
    path: /public
    upstream: %[9]s
    public: true
%[10]s  - name: app
    path: /
    upstream: %[9]s
`, e.base, e.redis.Addr, e.redis.DB(t), e.idpURL, clientID, clientSecret, e.caFile, sess, up.URL, strings.ReplaceAll(o.routes, "UPSTREAM", up.URL), o.oidc)
	cfgPath := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e.cfg = cfg
	e.st, err = store.New(cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })

	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The handoff asks the proxy which hosts it serves; the proxy is built after the manager.
	var served atomic.Pointer[proxy.Server]
	opts := session.Options{Logger: log, Now: e.clock.now, Audit: o.audit, HostAllowed: func(h string) bool {
		px := served.Load()
		return px != nil && px.ServesHost(h)
	}}
	if o.swap {
		e.swap = &tokenSwap{base: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.caPool}}}
		opts.HTTPClient = &http.Client{Transport: e.swap, Timeout: 10 * time.Second}
	}
	e.m, err = session.NewManager(cfg.OIDC, cfg.Session, cfg.Server.PublicBase, e.st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.m.Close)
	px, err := proxy.New(proxy.SettingsOf(cfg), proxy.Options{Logger: log, Gate: e.m, StepUp: e.m, Orgs: e.m, Endpoints: e.m.Endpoints(), Now: e.clock.now, Audit: o.audit})
	if err != nil {
		t.Fatal(err)
	}
	served.Store(px)
	e.srv.Config.Handler = px
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("portcullis log:\n%s", e.logs.String())
		}
	})
	return e
}

// startIdP starts the provider on the address it was configured with (envOpts.idpDown).
func (e *env) startIdP() {
	e.t.Helper()
	ln, err := net.Listen("tcp", strings.TrimPrefix(e.idpURL, "https://"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.idpHTTP.Listener = ln
	e.idpHTTP.StartTLS()
	e.t.Cleanup(e.idpHTTP.Close)
}

func httptestCert(t testing.TB) *x509.Certificate {
	s := httptest.NewTLSServer(http.NotFoundHandler())
	defer s.Close()
	return s.Certificate()
}

// recordingTransport delivers devidp's back-channel logout requests and remembers the token.
type recordingTransport struct {
	e    *env
	base http.RoundTripper
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if v, err := url.ParseQuery(string(b)); err == nil {
		tok := v.Get("logout_token")
		rt.e.bcRecord.Store(&tok)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return rt.base.RoundTrip(r)
}

// browser is a cookie-jar client that does not follow redirects by itself.
type browser struct {
	e   *env
	c   *http.Client
	jar *cookiejar.Jar
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, jar: jar, c: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.caPool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       15 * time.Second,
	}}
}

type page struct {
	*http.Response
	body string
}

func (p *page) loc() string { return p.Header.Get("Location") }

// do sends a request; nav makes it a browser navigation.
func (b *browser) do(method, target string, body url.Values, hdr http.Header) *page {
	b.e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, target, err)
	}
	bb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(bb))
	return &page{resp, string(bb)}
}

var navHeaders = http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}

func (b *browser) nav(target string) *page { return b.do("GET", b.abs(target), nil, navHeaders) }
func (b *browser) api(target string) *page {
	return b.do("GET", b.abs(target), nil, http.Header{"Accept": {"application/json"}})
}

func (b *browser) abs(target string) string {
	if strings.HasPrefix(target, "/") {
		return b.e.base + target
	}
	return target
}

// toCallback follows redirects from start, logs in at the provider as user, and returns the
// callback URL the provider sends the browser to, without visiting it.
func (b *browser) toCallback(start, user string) *url.URL {
	b.e.t.Helper()
	p := b.nav(start)
	for range 20 {
		switch {
		case p.StatusCode/100 == 3:
			u, err := p.Request.URL.Parse(p.loc())
			if err != nil {
				b.e.t.Fatal(err)
			}
			if strings.HasPrefix(u.String(), b.e.base+config.CallbackPath) {
				return u
			}
			p = b.do("GET", u.String(), nil, navHeaders)
		case p.StatusCode == 200 && strings.Contains(p.body, "devidp-login"):
			resp, err := devidptest.Login(context.Background(), b.c, p.Response, user, passwordOf(user), "")
			if err != nil {
				b.e.t.Fatal(err)
			}
			bb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			resp.Body = io.NopCloser(bytes.NewReader(bb))
			p = &page{resp, string(bb)}
		default:
			b.e.t.Fatalf("sign-in stuck at %s: %d %s", p.Request.URL, p.StatusCode, p.body)
		}
	}
	b.e.t.Fatal("too many redirects")
	return nil
}

func passwordOf(user string) string {
	for _, u := range users {
		if u.Username == user {
			return u.Password
		}
	}
	return "wrong"
}

// signIn does the whole sign-in from start and returns the callback's answer.
func (b *browser) signIn(start, user string) *page {
	b.e.t.Helper()
	return b.nav(b.toCallback(start, user).String())
}

// mustSignIn signs in and checks the session works.
func (b *browser) mustSignIn(user string) {
	b.e.t.Helper()
	p := b.signIn("/.portcullis/login?rd=/app/home", user)
	if p.StatusCode != http.StatusFound || p.loc() != "/app/home" {
		b.e.t.Fatalf("callback: %d %q %s", p.StatusCode, p.loc(), p.body)
	}
	if w := b.api("/.portcullis/whoami"); w.StatusCode != 200 {
		b.e.t.Fatalf("whoami after sign-in: %d %s", w.StatusCode, w.body)
	}
}

// sessionCookie returns the browser's session cookie value, "" when none.
func (b *browser) sessionCookie() string {
	u, _ := url.Parse(b.e.base)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == session.CookieName {
			return c.Value
		}
	}
	return ""
}

// withCookie sends a request carrying exactly the Cookie header given, from no browser.
func (e *env) withCookie(path, cookieHeader string, hdr http.Header) *page {
	e.t.Helper()
	b := e.browser()
	h := http.Header{"Cookie": {cookieHeader}}
	for k, v := range hdr {
		h[k] = v
	}
	return b.do("GET", e.base+path, nil, h)
}

// whoamiWith reports the status of whoami for a cookie value.
func (e *env) whoamiWith(v string) int {
	e.t.Helper()
	return e.withCookie("/.portcullis/whoami", session.CookieName+"="+v, http.Header{"Accept": {"application/json"}}).StatusCode
}

// directIDToken runs a code flow against the provider as client id (not through Portcullis)
// and returns the ID token it issues, for substitution attacks.
func (e *env) directIDToken(client, secret, user, nonce string) string {
	e.t.Helper()
	oc := oauth2.Config{ClientID: client, ClientSecret: secret, RedirectURL: e.base + config.CallbackPath,
		Endpoint: oauth2.Endpoint{AuthURL: e.idpURL + "/authorize", TokenURL: e.idpURL + "/oauth/token"},
		Scopes:   []string{"openid", "email", "profile"}}
	v := oauth2.GenerateVerifier()
	b := e.browser()
	p := b.do("GET", oc.AuthCodeURL("st", oauth2.SetAuthURLParam("nonce", nonce), oauth2.S256ChallengeOption(v)), nil, nil)
	var cb *url.URL
	for range 20 {
		if p.StatusCode/100 == 3 {
			u, _ := p.Request.URL.Parse(p.loc())
			if strings.HasPrefix(u.String(), e.base) {
				cb = u
				break
			}
			p = b.do("GET", u.String(), nil, nil)
			continue
		}
		resp, err := devidptest.Login(context.Background(), b.c, p.Response, user, passwordOf(user), "")
		if err != nil {
			e.t.Fatalf("direct login: %v", err)
		}
		bb, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(bb))
		p = &page{resp, string(bb)}
	}
	if cb == nil {
		e.t.Fatal("direct flow did not reach the redirect URI")
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.caPool}}})
	tok, err := oc.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		e.t.Fatalf("direct exchange: %v", err)
	}
	return tok.Extra("id_token").(string)
}

// sessionRecord reads the one session record in Redis as JSON.
func (e *env) sessionRecords() []map[string]any {
	e.t.Helper()
	rdb := e.redis.Client(e.t)
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*:sess").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []map[string]any
	for _, k := range keys {
		var m map[string]any
		b, _ := rdb.Get(ctx, k).Bytes()
		_ = json.Unmarshal(b, &m)
		out = append(out, m)
	}
	return out
}
