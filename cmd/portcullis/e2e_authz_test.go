package main

// End-to-end tests of the org-scoped access decision (issue 4) through the real binary: two
// proxy processes sharing one real redis-server, devidp over TLS for sign-in, and a portal
// that reports exactly which headers reached it. Organisations and memberships are seeded
// through the store's change API, as `portcullis admin` would.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

const azActor = "admin|e2e"

// azUsers are the people at the provider. carol2 is a later owner of carol's address.
var azUsers = []devidp.User{
	{Subject: "sub-alice", Username: "alice", Password: "pw-alice", Email: "alice@acme.example", EmailVerified: true},
	{Subject: "sub-bob", Username: "bob", Password: "pw-bob", Email: "bob@acme.example", EmailVerified: true},
	{Subject: "sub-erin", Username: "erin", Password: "pw-erin", Email: "erin@acme.example", EmailVerified: true},
	{Subject: "sub-dave", Username: "dave", Password: "pw-dave", Email: "dave@acme.example", EmailVerified: true},
	{Subject: "sub-carol", Username: "carol", Password: "pw-carol", Email: "carol@acme.example", EmailVerified: true},
	{Subject: "sub-carol2", Username: "carol2", Password: "pw-carol2", Email: "carol@acme.example", EmailVerified: true},
	{Subject: "sub-mallory", Username: "mallory", Password: "pw-mallory", Email: "mallory@acme.example", EmailVerified: true},
}

// azPortal is the portal behind the proxy: it answers every request with what it received,
// as JSON, and counts requests, so a deny can be checked to have left it untouched.
type azPortal struct {
	*httptest.Server
	hits atomic.Int64
}

type azSeen struct {
	Method string              `json:"method"`
	URI    string              `json:"uri"`
	Host   string              `json:"host"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
}

func newAZPortal(t *testing.T) *azPortal {
	p := &azPortal{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Portal", "seen")
		body, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(azSeen{r.Method, r.RequestURI, r.Host, r.Header, string(body)})
	}))
	t.Cleanup(p.Close)
	return p
}

// azProxy is one running portcullis process.
type azProxy struct {
	name string
	base string
	proc *proc
}

// azBed is the whole test bed.
type azBed struct {
	t      *testing.T
	idp    *devidptest.Server
	redis  *redistest.Server // one server; nil behind Sentinel (see rs)
	rs     *e2eRedis
	st     *store.Store
	orgs   *store.Orgs
	aud    *store.Audit
	portal *azPortal
	px     []*azProxy
	cfgs   []string // the configuration file of each process
	ca     string   // the provider's CA file
	users  []devidp.User
}

func (b *azBed) user(sub string) string { return store.UserKey(b.idp.URL, sub) }

func newAZBed(t *testing.T) *azBed { t.Helper(); return newAZBedWith(t, azOptions{}) }

// azOptions extend the bed for a feature's tests.
type azOptions struct {
	// clients are further clients of the provider (machines, operators).
	clients []devidp.Client
	// extra, when set, is YAML appended to the configuration of process i, given the bed
	// (its provider's URL and CA file are known by then).
	extra func(b *azBed, i int) string
	// top is the Redis topology; the zero value is one server.
	top topology
	// users are further people at the provider.
	users []devidp.User
	// ownProvider configures the provider as a customer's own (oidc.providers, named
	// "customer-idp", not shared) rather than the portal's: organisations must list it.
	ownProvider bool
	// oidc are further keys of the default provider (YAML lines indented two spaces).
	oidc string
}

func newAZBedWith(t *testing.T, o azOptions) *azBed {
	t.Helper()
	b := &azBed{t: t, users: append(slices.Clone(azUsers), o.users...)}
	listens := []string{freePort(t), freePort(t)}
	var redirects, logouts []string
	for _, l := range listens {
		redirects = append(redirects, "https://"+l+"/.portcullis/callback", "https://"+l+"/.portcullis/callback/customer-idp")
		logouts = append(logouts, "https://"+l+"/")
	}
	b.idp = devidptest.Start(t, devidp.Config{
		Clients: append([]devidp.Client{{ID: "portcullis", Secret: "e2e-secret", RedirectURIs: redirects, PostLogoutRedirectURIs: logouts}}, o.clients...),
		Users:   b.users,
	})
	dir := t.TempDir()
	ca := b.idp.CAFile(t)
	b.ca = ca
	writeFile(t, filepath.Join(dir, "secret"), "e2e-secret\n")
	b.rs = startE2ERedis(t, o.top)
	b.redis = b.rs.server
	b.portal = newAZPortal(t)

	var err error
	b.st, err = store.New(b.rs.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.st.Close() })
	b.aud = store.NewAudit(b.st, 0)
	b.orgs = store.NewOrgs(b.st, b.aud)
	b.seed()

	for i, l := range listens {
		cfgPath := filepath.Join(dir, fmt.Sprintf("portcullis-%d.yaml", i))
		cfg := azConfig(l, b.rs.yaml(), b.idp.URL, filepath.Join(dir, "secret"), ca, b.portal.URL)
		if o.ownProvider {
			cfg = strings.Replace(cfg, "oidc:\n  issuer: "+b.idp.URL+"\n  client_id: portcullis\n  client_secret_file: "+filepath.Join(dir, "secret")+"\n  ca_root_file: "+ca+"\n",
				"oidc:\n  providers:\n    - name: customer-idp\n      issuer: "+b.idp.URL+"\n      client_id: portcullis\n      client_secret_file: "+filepath.Join(dir, "secret")+"\n      ca_root_file: "+ca+"\n", 1)
		}
		if o.oidc != "" {
			cfg = strings.Replace(cfg, "\nroutes:\n", "\n"+o.oidc+"routes:\n", 1)
		}
		if o.extra != nil {
			cfg += o.extra(b, i)
		}
		writeFile(t, cfgPath, cfg)
		b.cfgs = append(b.cfgs, cfgPath)
		p := startBinary(t, cfgPath)
		p.waitLog(t, "cache: invalidation subscription active", 10*time.Second)
		b.px = append(b.px, &azProxy{name: fmt.Sprintf("proxy%d", i+1), base: "https://" + l, proc: p})
	}
	return b
}

// azConfig is the configuration both processes run; only the listener (and so the public
// URL) differs. The assertion key is generated once and shared through Redis.
func azConfig(listen, redisYAML, issuer, secretFile, caFile, up string) string {
	return fmt.Sprintf(`server:
  listen: %[1]s
  public_url: https://%[1]s
  metrics_listen: "off"
tls:
  mode: self_signed
log:
  access_log: false
redis:
%[2]s
  read_timeout: 500ms
  dial_timeout: 500ms
oidc:
  issuer: %[3]s
  client_id: portcullis
  client_secret_file: %[4]s
  ca_root_file: %[5]s
routes:
  - name: public
    path: /public
    upstream: %[6]s
    public: true
  - name: hostportal
    hosts: ["*.portal.example.test"]
    path: /hp
    upstream: %[6]s
    org: {from: host, host: "{org}.portal.example.test"}
  - name: portal
    path: /orgs
    upstream: %[6]s
    org: {from: path, path_segment: 2}
  - name: admin
    path: /admin
    upstream: %[6]s
    org: {from: path, path_segment: 2}
    require: {roles: [admin]}
  - name: audit
    path: /audit
    upstream: %[6]s
    org: {from: path, path_segment: 2}
    require: {purposes: [audit]}
  - name: partners
    path: /partners
    upstream: %[6]s
    org: {from: path, path_segment: 2}
    require: {kinds: [partner]}
  - name: app
    path: /app
    upstream: %[6]s
    org: {from: session}
    require: {verified_email_domain: false}
`, listen, redisYAML, issuer, secretFile, caFile, up)
}

// seed creates the organisations and memberships every subtest starts from.
func (b *azBed) seed() {
	t, ctx := b.t, context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.orgs.CreateOrg(ctx, store.Org{ID: "acme", Name: "Acme Corp", Contact: "it@acme.example"}, azActor, "e2e"))
	must(b.orgs.AddDomain(ctx, "acme", "acme.example", azActor, "e2e"))
	must(b.orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, azActor, "e2e"))
	must(b.orgs.CreateOrg(ctx, store.Org{ID: "beta", Name: "Beta Ltd"}, azActor, "e2e"))
	long := time.Now().Add(24 * time.Hour)
	must(b.orgs.Grant(ctx, b.aliceMembership(), azActor, "e2e"))
	must(b.orgs.Grant(ctx, store.Membership{Org: "acme", User: b.user("sub-bob"), Kind: store.KindEmployee, Roles: []string{"admin", "user"},
		Grants: []store.Grant{{Purpose: "audit", Reason: "TICKET-1", ExpiresAt: long}}}, azActor, "e2e"))
	must(b.orgs.Grant(ctx, store.Membership{Org: "acme", User: b.user("sub-erin"), Kind: store.KindEmployee, Roles: []string{"user"}}, azActor, "e2e"))
	must(b.orgs.Grant(ctx, store.Membership{Org: "acme", User: b.user("sub-dave"), Kind: store.KindEmployee, Roles: []string{"user"}}, azActor, "e2e"))
	must(b.orgs.Grant(ctx, store.Membership{Org: "beta", User: b.user("sub-dave"), Kind: store.KindPartner, Roles: []string{"viewer"},
		ExpiresAt: time.Now().Add(90 * 24 * time.Hour)}, azActor, "e2e"))
}

// aliceMembership is alice's normal membership: an employee of acme with role user and an
// audit grant that has already expired.
func (b *azBed) aliceMembership() store.Membership {
	return store.Membership{Org: "acme", User: b.user("sub-alice"), Kind: store.KindEmployee, Roles: []string{"user"},
		Grants: []store.Grant{{Purpose: "audit", Reason: "TICKET-0", ExpiresAt: time.Now().Add(-time.Hour)}}}
}

// azClient is one person's browser: a cookie jar shared by both proxies (cookies do not
// depend on the port, so a session made on one process is presented to the other).
type azClient struct {
	b *azBed
	c *http.Client
}

func (b *azBed) newClient() *azClient {
	jar, _ := cookiejar.New(nil)
	return &azClient{b: b, c: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}}
}

type azResp struct {
	status int
	header http.Header
	body   string
	url    *url.URL
	raw    *http.Response
}

// reason is the JSON "error" field of a refusal ("" when the body is not one).
func (r *azResp) reason() string {
	var p struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(r.body), &p)
	return p.Error
}

// seen is what the portal received, or nil when the answer did not come from the portal.
func (r *azResp) seen() *azSeen {
	if r.header.Get("X-Portal") != "seen" {
		return nil
	}
	var s azSeen
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		return nil
	}
	return &s
}

func (c *azClient) do(method, target, host string, form url.Values, hdr http.Header) *azResp {
	c.b.t.Helper()
	r, err := c.try(method, target, host, form, hdr)
	if err != nil {
		c.b.t.Fatalf("%s %s: %v", method, target, err)
	}
	return r
}

func (c *azClient) try(method, target, host string, form url.Values, hdr http.Header) (*azResp, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		return nil, err
	}
	if host != "" {
		// Go's client picks cookies by req.Host, as a browser at that host would. Send the
		// session cookie of the proxy's own address explicitly: this test is about the org
		// taken from the host, not about cookie scope.
		for _, ck := range c.c.Jar.Cookies(req.URL) {
			req.AddCookie(ck)
		}
		req.Host = host
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v // as written: no canonicalisation of spoofed names
	}
	resp, err := c.c.Do(req)
	if err != nil {
		return nil, err
	}
	return readAZResp(resp), nil
}

// readAZResp reads a response whole, keeping its body readable for the caller.
func readAZResp(resp *http.Response) *azResp {
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return &azResp{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL, raw: resp}
}

var (
	azAPI     = http.Header{"Accept": {"application/json"}}
	azBrowser = http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}
)

func (c *azClient) api(px *azProxy, path string) *azResp {
	c.b.t.Helper()
	return c.do("GET", px.base+path, "", nil, azAPI)
}

// signIn signs in as user on px through devidp's login form, as a browser would.
func (c *azClient) signIn(px *azProxy, user string) {
	t := c.b.t
	t.Helper()
	pw, sub := "", ""
	people := c.b.users
	if people == nil {
		people = azUsers // a bed built by hand (the ingress tests)
	}
	for _, u := range people {
		if u.Username == user {
			pw, sub = u.Password, u.Subject
		}
	}
	r := c.do("GET", px.base+"/.portcullis/login?rd=/public/home", "", nil, azBrowser)
	for range 20 {
		switch {
		case r.status/100 == 3:
			u, _ := r.url.Parse(r.header.Get("Location"))
			if u.Host == strings.TrimPrefix(px.base, "https://") && u.Path == "/public/home" {
				if w := c.api(px, "/.portcullis/whoami"); w.status != 200 || !strings.Contains(w.body, `"`+sub+`"`) {
					t.Fatalf("whoami after signing in as %s: %d %s", user, w.status, w.body)
				}
				return
			}
			r = c.do("GET", u.String(), "", nil, azBrowser)
		case r.status == 200 && strings.Contains(r.body, "devidp-login"):
			resp, err := devidptest.Login(context.Background(), c.c, r.raw, user, pw, "")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r = &azResp{status: resp.StatusCode, header: resp.Header, body: string(b), url: resp.Request.URL, raw: resp}
		default:
			t.Fatalf("sign-in as %s stuck at %s: %d %s", user, r.url, r.status, r.body)
		}
	}
	t.Fatalf("sign-in as %s: too many redirects", user)
}

// azCGIValues counts, in what the portal received, the values of every header whose CGI name
// (upper case, non-alphanumerics as "_") is cgi: what a CGI/WSGI/PHP portal would see.
func azCGIValues(h map[string][]string, cgi string) []string {
	var vals []string
	for k, vs := range h {
		if azCGI(k) == cgi {
			vals = append(vals, vs...)
		}
	}
	return vals
}

func azCGI(name string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// azWantIdentity checks each identity header reached the portal exactly once, with the value
// wanted ("" = absent), in every spelling a portal might read.
func azWantIdentity(t *testing.T, where string, s *azSeen, want map[string]string) {
	t.Helper()
	for name, v := range want {
		got := azCGIValues(s.Header, azCGI(name))
		switch {
		case v == "" && len(got) != 0:
			t.Errorf("%s: %s reached the portal: %q", where, name, got)
		case v != "" && (len(got) != 1 || got[0] != v):
			t.Errorf("%s: %s = %q, want exactly [%q]", where, name, got, v)
		}
	}
}

func TestE2EAuthz(t *testing.T) { testAuthz(t, newAZBed(t)) }

// TestE2EAuthzSentinel is TestE2EAuthz behind Redis Sentinel, less the subtests that stop the
// one server; TestE2ESentinelFailover kills the primary instead.
func TestE2EAuthzSentinel(t *testing.T) { testAuthz(t, newAZBedWith(t, azOptions{top: sentinel})) }

func testAuthz(t *testing.T, b *azBed) {
	p1, p2 := b.px[0], b.px[1]
	ctx := context.Background()

	alice := b.newClient()
	alice.signIn(p1, "alice")
	aliceKey := b.user("sub-alice")

	t.Run("member reaches portal with identity and assertion", func(t *testing.T) {
		for _, tc := range []struct {
			name, path, host, route, org, roles, kind string
			c                                         *azClient
		}{
			{name: "path org", c: alice, path: "/orgs/acme/home", route: "portal", org: "acme", roles: "user", kind: "employee"},
			{name: "host org", c: alice, path: "/hp/home", host: "acme.portal.example.test", route: "hostportal", org: "acme", roles: "user", kind: "employee"},
		} {
			for _, px := range b.px {
				r := tc.c.do("GET", px.base+tc.path, tc.host, nil, azAPI)
				s := r.seen()
				if r.status != 200 || s == nil {
					t.Fatalf("%s via %s: %d %s", tc.name, px.name, r.status, r.body)
				}
				if s.URI != tc.path {
					t.Errorf("%s: portal got %q", tc.name, s.URI)
				}
				azWantIdentity(t, tc.name, s, map[string]string{
					"X-Portcullis-User": aliceKey, "X-Portcullis-Email": "alice@acme.example", "X-Portcullis-Org": tc.org,
					"X-Portcullis-Roles": tc.roles, "X-Portcullis-Kind": tc.kind, "X-Portcullis-Purpose": "",
				})
				tok := azCGIValues(s.Header, "X_PORTCULLIS_ASSERTION")
				if len(tok) != 1 {
					t.Fatalf("%s: assertion headers %q", tc.name, tok)
				}
				azVerifyAssertion(t, alice, px, tok[0], tc.route, aliceKey, tc.org, []string{"user"})
			}
		}
		// A purpose route: the purpose that satisfied it is named.
		bob := b.newClient()
		bob.signIn(p2, "bob")
		r := bob.api(p1, "/audit/acme/report")
		s := r.seen()
		if r.status != 200 || s == nil {
			t.Fatalf("bob on the audit route: %d %s", r.status, r.body)
		}
		azWantIdentity(t, "purpose route", s, map[string]string{"X-Portcullis-Purpose": "audit", "X-Portcullis-Roles": "admin,user",
			"X-Portcullis-User": b.user("sub-bob"), "X-Portcullis-Org": "acme"})
		if tok := azCGIValues(s.Header, "X_PORTCULLIS_ASSERTION"); len(tok) == 1 {
			azVerifyAssertion(t, bob, p1, tok[0], "audit", b.user("sub-bob"), "acme", []string{"admin", "user"})
		} else {
			t.Errorf("purpose route: assertion %q", tok)
		}
		if r := bob.api(p2, "/admin/acme/users"); r.status != 200 || r.seen() == nil {
			t.Errorf("bob (admin) on the admin route: %d %s", r.status, r.body)
		}
	})

	t.Run("spoofed identity headers never reach the portal", func(t *testing.T) {
		spoofs := []http.Header{
			{"X-Portcullis-User": {"mallory"}},
			{"x_portcullis_user": {"mallory"}},
			{"X_Portcullis_User": {"mallory"}},
			{"X.Portcullis.Org": {"beta"}},
			{"X-PORTCULLIS-ROLES": {"admin"}},
			{"x-portcullis-kind": {"support"}, "X-Portcullis-Kind": {"service"}},
			{"X-Portcullis-Purpose": {"audit"}},
			{"X-Portcullis-Assertion": {"eyJhbGciOiJub25lIn0.e30."}},
			{"X-Portcullis-Email": {"ceo@acme.example"}},
			{"Connection": {"X-Portcullis-User"}},
			{"Connection": {"close, X-Portcullis-User, X-Portcullis-Org, X-Portcullis-Roles, X-Portcullis-Assertion"}, "X-Portcullis-User": {"mallory"}},
			{"Connection": {"keep-alive, x-portcullis-email, x-portcullis-kind"}},
			{"Connection": {"", "X-Portcullis-User"}},
			{"Connection": {"X-Forwarded-For, X-Request-Id"}, "X_Portcullis_Roles": {"admin"}},
		}
		for i, sp := range spoofs {
			hdr := http.Header{"Accept": {"application/json"}}
			for k, v := range sp {
				hdr[k] = v
			}
			px := b.px[i%2]
			// Org route: replaced by the proxy's values, each exactly once.
			r := alice.do("GET", px.base+"/orgs/acme/x", "", nil, hdr)
			s := r.seen()
			if r.status != 200 || s == nil {
				t.Fatalf("spoof %v on the org route: %d %s", sp, r.status, r.body)
			}
			azWantIdentity(t, fmt.Sprintf("org route %v", sp), s, map[string]string{
				"X-Portcullis-User": aliceKey, "X-Portcullis-Email": "alice@acme.example", "X-Portcullis-Org": "acme",
				"X-Portcullis-Roles": "user", "X-Portcullis-Kind": "employee", "X-Portcullis-Purpose": "",
			})
			if xff, rid := azCGIValues(s.Header, "X_FORWARDED_FOR"), azCGIValues(s.Header, "X_REQUEST_ID"); len(xff) != 1 || xff[0] != "127.0.0.1" ||
				len(rid) != 1 || rid[0] != r.header.Get("X-Request-Id") {
				t.Errorf("spoof %v: X-Forwarded-For %q, X-Request-Id %q", sp, xff, rid)
			}
			if tok := azCGIValues(s.Header, "X_PORTCULLIS_ASSERTION"); len(tok) != 1 || strings.HasPrefix(tok[0], "eyJhbGciOiJub25l") {
				t.Errorf("spoof %v: assertion %q", sp, tok)
			}
			// Public route: absent, signed in or not.
			for _, c := range []*azClient{alice, b.newClient()} {
				r = c.do("GET", px.base+"/public/x", "", nil, hdr)
				s = r.seen()
				if r.status != 200 || s == nil {
					t.Fatalf("spoof %v on the public route: %d %s", sp, r.status, r.body)
				}
				for k := range s.Header {
					if strings.HasPrefix(azCGI(k), "X_PORTCULLIS_") {
						t.Errorf("public route, spoof %v: %s reached the portal: %q", sp, k, s.Header[k])
					}
				}
			}
		}
	})

	t.Run("requirements deny with the reason, JSON and HTML", func(t *testing.T) {
		erin := b.newClient()
		erin.signIn(p1, "erin")
		for _, tc := range []struct {
			c      *azClient
			path   string
			reason string
			names  string // what the HTML page must name
		}{
			{alice, "/admin/acme/users", "role_missing", "admin"},
			{erin, "/audit/acme/report", "purpose_missing", "audit"},
			{alice, "/audit/acme/report", "purpose_expired", "audit"},
			{alice, "/partners/acme/deals", "kind_not_allowed", "partner"},
			{alice, "/orgs/beta/x", "not_member", "beta"},
		} {
			for _, px := range b.px {
				before := b.portal.hits.Load()
				r := tc.c.api(px, tc.path)
				if r.status != 403 || r.reason() != tc.reason || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
					t.Errorf("%s via %s (API): %d %q %s", tc.path, px.name, r.status, r.header.Get("Content-Type"), r.body)
				}
				h := tc.c.do("GET", px.base+tc.path, "", nil, azBrowser)
				if h.status != 403 || !strings.HasPrefix(h.header.Get("Content-Type"), "text/html") ||
					!strings.Contains(h.body, "<code>"+tc.reason+"</code>") || !strings.Contains(h.body, tc.names) {
					t.Errorf("%s via %s (browser): %d %q\n%s", tc.path, px.name, h.status, h.header.Get("Content-Type"), h.body)
				}
				if tc.reason != "not_member" && !strings.Contains(h.body, "it@acme.example") {
					t.Errorf("%s: the page does not say whom to ask:\n%s", tc.path, h.body)
				}
				if n := b.portal.hits.Load() - before; n != 0 {
					t.Errorf("%s: a denied request reached the portal (%d)", tc.path, n)
				}
			}
		}
	})

	t.Run("invitation binds once, at first sign-in", func(t *testing.T) {
		if _, err := b.orgs.Invite(ctx, store.Invitation{Org: "acme", Email: "carol@acme.example", Kind: store.KindEmployee,
			Roles: []string{"user"}}, azActor, "new starter"); err != nil {
			t.Fatal(err)
		}
		carol := b.newClient()
		carol.signIn(p1, "carol")
		r := carol.api(p2, "/orgs/acme/x")
		if s := r.seen(); r.status != 200 || s == nil {
			t.Fatalf("carol after her first sign-in: %d %s", r.status, r.body)
		} else {
			azWantIdentity(t, "carol", s, map[string]string{"X-Portcullis-User": b.user("sub-carol"), "X-Portcullis-Org": "acme"})
		}
		if inv, err := b.st.Invitations(ctx, "carol@acme.example"); err != nil || len(inv) != 0 {
			t.Errorf("invitation left after binding: %v %v", inv, err)
		}
		// A later owner of the same (verified) address inherits nothing.
		carol2 := b.newClient()
		carol2.signIn(p2, "carol2")
		for _, px := range b.px {
			if r := carol2.api(px, "/orgs/acme/x"); r.status != 403 || r.reason() != "not_member" {
				t.Errorf("carol2 via %s: %d %s", px.name, r.status, r.body)
			}
		}
		if orgs, err := b.st.OrgsOf(ctx, b.user("sub-carol2")); err != nil || len(orgs) != 0 {
			t.Errorf("carol2 holds %v (%v)", orgs, err)
		}
	})

	t.Run("org picker", func(t *testing.T) {
		dave := b.newClient()
		dave.signIn(p1, "dave")
		r := dave.do("GET", p2.base+"/app/x?y=1", "", nil, azBrowser)
		if r.status != 302 || r.header.Get("Location") != "/.portcullis/orgs?rd="+url.QueryEscape("/app/x?y=1") {
			t.Fatalf("two memberships, no choice yet: %d %q %s", r.status, r.header.Get("Location"), r.body)
		}
		// An API client is told, not redirected.
		if r := dave.api(p2, "/app/x"); r.status != 403 || r.reason() != "no_org" {
			t.Errorf("API without a chosen org: %d %s", r.status, r.body)
		}
		pg := dave.do("GET", p2.base+"/.portcullis/orgs?rd=/app/x", "", nil, azBrowser)
		if pg.status != 200 || !strings.Contains(pg.body, "Acme Corp") || !strings.Contains(pg.body, "Beta Ltd") {
			t.Fatalf("picker: %d %s", pg.status, pg.body)
		}
		m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(pg.body)
		if m == nil {
			t.Fatalf("picker has no CSRF token: %s", pg.body)
		}
		same := http.Header{"Origin": {p2.base}, "Sec-Fetch-Site": {"same-origin"}}
		if r := dave.do("POST", p2.base+"/.portcullis/orgs", "", url.Values{"org": {"beta"}, "rd": {"/app/x"}}, same); r.status != 403 || !strings.Contains(r.body, "csrf_failed") {
			t.Errorf("POST without the token: %d %s", r.status, r.body)
		}
		if r := dave.do("POST", p2.base+"/.portcullis/orgs", "", url.Values{"org": {"beta"}, "csrf": {"x" + m[1]}}, same); r.status != 403 {
			t.Errorf("POST with a wrong token: %d %s", r.status, r.body)
		}
		if r := dave.do("POST", p2.base+"/.portcullis/orgs", "", url.Values{"org": {"gamma"}, "csrf": {m[1]}}, same); r.status != 403 || !strings.Contains(r.body, "not_member") {
			t.Errorf("POST for an org dave is not in: %d %s", r.status, r.body)
		}
		r = dave.do("POST", p2.base+"/.portcullis/orgs", "", url.Values{"org": {"beta"}, "rd": {"/app/x"}, "csrf": {m[1]}}, same)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/app/x" {
			t.Fatalf("POST with the token: %d %q %s", r.status, r.header.Get("Location"), r.body)
		}
		// The choice lives in the session, so the other process honours it too: at once on
		// the process that made the change, and on the other as soon as the change's
		// announcement reaches its session cache (milliseconds; at the latest the cache TTL).
		for _, px := range b.px {
			r := dave.do("GET", px.base+"/app/x", "", nil, azBrowser)
			for deadline := time.Now().Add(3 * time.Second); r.status == 302 && px != p2 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
				r = dave.do("GET", px.base+"/app/x", "", nil, azBrowser)
			}
			s := r.seen()
			if r.status != 200 || s == nil {
				t.Fatalf("after choosing via %s: %d %s", px.name, r.status, r.body)
			}
			azWantIdentity(t, "dave as beta", s, map[string]string{"X-Portcullis-Org": "beta", "X-Portcullis-Kind": "partner", "X-Portcullis-Roles": "viewer"})
		}
		// One membership: never the picker.
		erin := b.newClient()
		erin.signIn(p2, "erin")
		r = erin.do("GET", p1.base+"/app/x", "", nil, azBrowser)
		if s := r.seen(); r.status != 200 || s == nil {
			t.Fatalf("erin (one membership): %d %q %s", r.status, r.header.Get("Location"), r.body)
		} else {
			azWantIdentity(t, "erin", s, map[string]string{"X-Portcullis-Org": "acme"})
		}
	})

	t.Run("revocation paths across two processes", func(t *testing.T) {
		mallory := b.newClient()
		mallory.signIn(p1, "mallory")
		regrant := func() {
			t.Helper()
			if _, err := b.orgs.Grant(ctx, b.aliceMembership(), azActor, "restore"); err != nil {
				t.Fatal(err)
			}
			azWaitAll(t, b, alice, "/orgs/acme/x", 200, "")
		}
		// due is when a change takes effect, if later than when it returns: a membership's
		// expiry. The wait for the refusal starts at once, and the delay is measured from due.
		var due time.Time
		for _, tc := range []struct {
			name, reason, outsider string
			change, restore        func() error
		}{
			{name: "revoke", reason: "membership_revoked",
				change: func() error { _, err := b.orgs.Revoke(ctx, "acme", aliceKey, azActor, "left"); return err }},
			{name: "expire", reason: "membership_expired",
				change: func() error {
					m := b.aliceMembership()
					m.ExpiresAt = time.Now().Add(700 * time.Millisecond)
					if _, err := b.orgs.Grant(ctx, m, azActor, "temporary"); err != nil {
						return err
					}
					azWaitAll(t, b, alice, "/orgs/acme/x", 200, "")
					due = m.ExpiresAt
					return nil
				}},
			{name: "offboard", reason: "membership_revoked",
				change: func() error {
					orgs, err := b.orgs.Offboard(ctx, aliceKey, azActor, "left the company")
					if err == nil && !slices.Equal(orgs, []string{"acme"}) {
						err = fmt.Errorf("offboard touched %v", orgs)
					}
					return err
				}},
			{name: "org ended", reason: "org_inactive", outsider: "not_member",
				change: func() error {
					_, err := b.orgs.SetOrgStatus(ctx, "acme", store.OrgStatus{Status: store.OrgEnded}, azActor, "contract over")
					return err
				},
				restore: func() error {
					_, err := b.orgs.SetOrgStatus(ctx, "acme", store.OrgStatus{Status: store.OrgActive}, azActor, "renewed")
					return err
				}},
			{name: "domain lapsed", reason: "email_domain_not_verified",
				change: func() error {
					_, err := b.orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainLapsed, azActor, "not renewed")
					return err
				},
				restore: func() error {
					_, err := b.orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, azActor, "renewed")
					return err
				}},
		} {
			azWaitAll(t, b, alice, "/orgs/acme/x", 200, "")
			due = time.Time{}
			if err := tc.change(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			start := time.Now()
			if due.After(start) {
				start = due
			}
			azWaitAll(t, b, alice, "/orgs/acme/x", 403, tc.reason)
			t.Logf("%s: denied by both processes within %v", tc.name, time.Since(start).Round(time.Millisecond))
			if tc.outsider != "" {
				for _, px := range b.px {
					if r := mallory.api(px, "/orgs/acme/x"); r.status != 403 || r.reason() != tc.outsider || strings.Contains(r.body, tc.reason) {
						t.Errorf("%s: outsider via %s sees %d %s", tc.name, px.name, r.status, r.body)
					}
				}
			}
			if tc.restore != nil {
				if err := tc.restore(); err != nil {
					t.Fatal(err)
				}
			}
			regrant()
		}
	})

	t.Run("revocation delay", func(t *testing.T) {
		const trials = 20
		delays := make([][]time.Duration, len(b.px))
		for i := range trials {
			if _, err := b.orgs.Grant(ctx, b.aliceMembership(), azActor, "trial"); err != nil {
				t.Fatal(err)
			}
			azWaitAll(t, b, alice, "/orgs/acme/x", 200, "")
			// Warm both caches, so the revocation has a cached allow to overturn.
			for _, px := range b.px {
				for range 3 {
					if r := alice.api(px, "/orgs/acme/x"); r.status != 200 {
						t.Fatalf("trial %d warm-up via %s: %d %s", i, px.name, r.status, r.body)
					}
				}
			}
			if _, err := b.orgs.Revoke(ctx, "acme", aliceKey, azActor, fmt.Sprintf("trial %d", i)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			var wg sync.WaitGroup
			for j, px := range b.px {
				wg.Go(func() {
					d, err := azUntilDenied(alice, px, "/orgs/acme/x", "membership_revoked", start, 3*time.Second)
					if err != nil {
						t.Errorf("trial %d via %s: %v", i, px.name, err)
						return
					}
					delays[j] = append(delays[j], d)
				})
			}
			wg.Wait()
		}
		for j, px := range b.px {
			ds := slices.Clone(delays[j])
			if len(ds) == 0 {
				continue
			}
			slices.Sort(ds)
			p50, p99 := ds[len(ds)/2], ds[(len(ds)*99+99)/100-1]
			t.Logf("revocation delay via %s over %d trials: p50 %v, p99 %v, max %v", px.name, len(ds), p50, p99, ds[len(ds)-1])
			if p99 >= store.DefaultCacheTTL {
				t.Errorf("%s: revocation took %v, not under the cache TTL %v", px.name, p99, store.DefaultCacheTTL)
			}
		}
		if _, err := b.orgs.Grant(ctx, b.aliceMembership(), azActor, "restore"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("audit stream", func(t *testing.T) {
		evs, _, err := b.aud.Tail(ctx, "0", 100000, 0)
		if err != nil {
			t.Fatal(err)
		}
		var denied, revoked, bound bool
		for _, e := range evs {
			switch {
			case e.Type == audit.AccessDenied && e.Reason == "membership_revoked" && e.User == aliceKey && e.Org == "acme" && e.Route == "portal" && e.RequestID != "":
				denied = true
			case e.Type == audit.MembershipRevoked && e.User == aliceKey && e.Org == "acme" && e.Actor == azActor && len(e.Before) > 0 && len(e.After) > 0:
				revoked = true
			case e.Type == audit.InvitationBound && e.User == b.user("sub-carol") && e.Org == "acme":
				bound = true
			}
			if e.Type == audit.AccessDenied && e.Reason == "" {
				t.Errorf("access.denied without a reason: %+v", e)
			}
		}
		if !denied || !revoked || !bound {
			t.Errorf("audit stream: access.denied(membership_revoked) %v, membership.revoked %v, invitation.bound %v (%d events)", denied, revoked, bound, len(evs))
		}
		// Secrets never reach the stream.
		raw, _ := json.Marshal(evs)
		if bytes.Contains(raw, []byte("e2e-secret")) || bytes.Contains(raw, []byte("eyJ")) {
			t.Error("a secret reached the audit stream")
		}
	})

	// A denial answered from the caches while Redis refuses the append keeps its audit event
	// (#17): the append is retried until Redis takes it.
	t.Run("a denial's event survives a failing append", func(t *testing.T) {
		if b.redis == nil {
			t.Skip("needs the one server to take away")
		}
		px := b.px[0]
		if r := alice.api(px, "/admin/acme/users"); r.status != 403 { // warms the caches
			t.Fatalf("before: %d %s", r.status, r.body)
		}
		rc := b.redis.Client(t)
		if err := rc.Do(t.Context(), "ACL", "SETUSER", "default", "-xadd").Err(); err != nil {
			t.Fatal(err)
		}
		r := alice.api(px, "/admin/acme/users")
		px.proc.waitLog(t, "audit append failed; queued for a retry", 5*time.Second)
		if err := rc.Do(t.Context(), "ACL", "SETUSER", "default", "+xadd").Err(); err != nil {
			t.Fatal(err)
		}
		if r.status != 403 || r.reason() != "role_missing" {
			t.Fatalf("answered from the caches while Redis hung: %d %s", r.status, r.body)
		}
		id := r.header.Get("X-Request-Id")
		deadline := time.Now().Add(15 * time.Second)
		for {
			evs, _, err := b.aud.Tail(t.Context(), "0", 100000, 0)
			if err == nil && slices.ContainsFunc(evs, func(e audit.Event) bool { return e.Type == audit.AccessDenied && e.RequestID == id }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the denial %s never reached the audit stream", id)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	// Last: it stops Redis.
	t.Run("redis stopped fails closed", func(t *testing.T) {
		if b.redis == nil {
			t.Skip("needs the one server to take away")
		}
		if r := alice.api(p1, "/orgs/acme/x"); r.status != 200 {
			t.Fatalf("before the outage: %d %s", r.status, r.body)
		}
		b.redis.Stop()
		// Each process empties its session cache when the subscription breaks (README,
		// Performance); wait for that rather than race it.
		for _, px := range b.px {
			px.proc.waitLog(t, store.SessionSubscriptionLost, 2*time.Second)
		}
		before := b.portal.hits.Load()
		var wg sync.WaitGroup
		for _, px := range b.px {
			wg.Go(func() {
				for _, path := range []string{"/orgs/acme/x", "/app/x"} {
					start := time.Now()
					r, err := alice.try("GET", px.base+path, "", nil, azAPI)
					if err != nil {
						t.Errorf("%s via %s: %v", path, px.name, err)
						continue
					}
					if r.status != 503 || r.reason() != "store_unavailable" {
						t.Errorf("%s via %s with Redis stopped: %d %s", path, px.name, r.status, r.body)
					}
					if d := time.Since(start); d > 3*time.Second {
						t.Errorf("%s: the 503 took %v", path, d)
					}
					if strings.Contains(r.body, "connection refused") || strings.Contains(r.body, "redis") {
						t.Errorf("%s: internals in the body: %s", path, r.body)
					}
				}
				if r, err := alice.try("GET", px.base+"/hp/x", "acme.portal.example.test", nil, azBrowser); err != nil || r.status != 503 {
					t.Errorf("host org route via %s (browser) with Redis stopped: %v %v", px.name, err, r)
				}
				if r, err := alice.try("GET", px.base+"/public/x", "", nil, azAPI); err != nil || r.status != 200 || r.seen() == nil {
					t.Errorf("public route via %s with Redis stopped: %v %v", px.name, err, r)
				}
			})
		}
		wg.Wait()
		// Only the public requests reached the portal.
		if n := b.portal.hits.Load() - before; n != int64(len(b.px)) {
			t.Errorf("%d requests reached the portal during the outage, want %d (public only)", n, len(b.px))
		}
	})
}

// azWaitAll polls path on every proxy until each answers status (and, for a refusal, reason),
// for at most the cache TTL and a margin.
func azWaitAll(t *testing.T, b *azBed, c *azClient, path string, status int, reason string) {
	t.Helper()
	for _, px := range b.px {
		deadline := time.Now().Add(store.DefaultCacheTTL + 2*time.Second)
		for {
			r := c.api(px, path)
			if r.status == status && (reason == "" || r.reason() == reason) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s via %s: %d %s, want %d %s", path, px.name, r.status, r.body, status, reason)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// azUntilDenied polls path on px until it is refused with reason and returns the time since
// start. Anything but that refusal or a 200 is an error.
func azUntilDenied(c *azClient, px *azProxy, path, reason string, start time.Time, limit time.Duration) (time.Duration, error) {
	for {
		r, err := c.try("GET", px.base+path, "", nil, azAPI)
		if err != nil {
			return 0, err
		}
		switch {
		case r.status == 403 && r.reason() == reason:
			return time.Since(start), nil
		case r.status != 200:
			return 0, fmt.Errorf("unexpected %d %s", r.status, r.body)
		case time.Since(start) > limit:
			return 0, fmt.Errorf("still allowed after %v", limit)
		}
		time.Sleep(time.Millisecond)
	}
}

// azVerifyAssertion checks an assertion against the keys px publishes at /.portcullis/jwks.json.
func azVerifyAssertion(t *testing.T, c *azClient, px *azProxy, tok, route, sub, org string, roles []string) {
	t.Helper()
	r := c.do("GET", px.base+"/.portcullis/jwks.json", "", nil, nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/jwk-set+json") {
		t.Fatalf("jwks: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(r.body), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v %s", err, r.body)
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("jwks publishes a private key")
		}
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("assertion does not parse as ES256: %v", err)
	}
	if len(parsed.Headers) != 1 || parsed.Headers[0].KeyID == "" {
		t.Fatalf("assertion headers %+v", parsed.Headers)
	}
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not in the published key set", parsed.Headers[0].KeyID)
	}
	var std jwt.Claims
	var own struct {
		Org   string   `json:"org"`
		Roles []string `json:"roles"`
		Email string   `json:"email"`
	}
	if err := parsed.Claims(keys[0].Key, &std, &own); err != nil {
		t.Fatalf("assertion signature: %v", err)
	}
	if err := std.Validate(jwt.Expected{Issuer: px.base, Subject: sub, AnyAudience: jwt.Audience{route}, Time: time.Now()}); err != nil {
		t.Errorf("assertion claims (iss %q sub %q aud %q): %v", std.Issuer, std.Subject, std.Audience, err)
	}
	if std.Expiry == nil || std.IssuedAt == nil {
		t.Fatalf("assertion without exp or iat: %+v", std)
	}
	if life := std.Expiry.Time().Sub(std.IssuedAt.Time()); life <= 0 || life > 60*time.Second {
		t.Errorf("assertion lifetime %v", life)
	}
	if until := time.Until(std.Expiry.Time()); until > 61*time.Second {
		t.Errorf("assertion expires in %v", until)
	}
	if own.Org != org || !slices.Equal(own.Roles, roles) {
		t.Errorf("assertion org %q roles %q, want %q %q", own.Org, own.Roles, org, roles)
	}
}
