package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// Issue 5 end to end: the real binary, devidp with a TOTP second factor, a private
// redis-server, and a portal that counts what reaches it.

const (
	suTOTP     = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	suAdminWWW = `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required", acr_values="urn:portcullis:acr:mfa", max_age=300`
)

var suUsers = []devidp.User{
	{Subject: "sub-alice", Username: "alice", Password: "alice-pw", Email: "alice@fresh.example", EmailVerified: true, Name: "Alice", TOTPSecret: suTOTP},
	// bob has no second factor: the provider can only ever say "password".
	{Subject: "sub-bob", Username: "bob", Password: "bob-pw", Email: "bob@fresh.example", EmailVerified: true, Name: "Bob"},
}

type suBed struct {
	t      *testing.T
	base   string
	idp    *devidptest.Server
	proc   *proc
	aud    *store.Audit
	portal *httptest.Server
	hits   atomic.Int64
}

func newSUBed(t *testing.T) *suBed { t.Helper(); return newSUBedOn(t, oneServer) }

func newSUBedOn(t *testing.T, top topology) *suBed { t.Helper(); return newSUBedWith(t, top, nil) }

// newSUBedWith is newSUBedOn with extra YAML (top-level keys) appended to the configuration.
func newSUBedWith(t *testing.T, top topology, extra func(b *suBed) string) *suBed {
	t.Helper()
	b := &suBed{t: t}
	listen := freePort(t)
	b.base = "https://" + listen
	b.idp = devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis", Secret: "e2e-secret",
			RedirectURIs: []string{b.base + "/.portcullis/callback"}, PostLogoutRedirectURIs: []string{b.base + "/"}}},
		Users: suUsers,
	})
	dir := t.TempDir()
	ca := b.idp.CAFile(t)
	writeFile(t, filepath.Join(dir, "secret"), "e2e-secret\n")
	rs := startE2ERedis(t, top)
	b.portal = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		fmt.Fprintf(w, "portal %s %s", r.Method, r.RequestURI)
	}))
	t.Cleanup(b.portal.Close)

	st, err := store.New(rs.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b.aud = store.NewAudit(st, 0)
	orgs := store.NewOrgs(st, b.aud)
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []string{"acme", "beta"} {
		must(orgs.CreateOrg(ctx, store.Org{ID: o, Name: strings.ToUpper(o)}, "admin|e2e", "e2e"))
	}
	for _, g := range []struct{ org, sub string }{{"acme", "sub-alice"}, {"beta", "sub-alice"}, {"acme", "sub-bob"}} {
		must(orgs.Grant(ctx, store.Membership{Org: g.org, User: store.UserKey(b.idp.URL, g.sub), Kind: store.KindEmployee,
			Roles: []string{"admin"}}, "admin|e2e", "e2e"))
	}

	cfg := fmt.Sprintf(`server:
  listen: %[1]s
  public_url: %[2]s
  metrics_listen: "off"
tls:
  mode: self_signed
log:
  access_log: false
redis:
%[3]s
  read_timeout: 500ms
  dial_timeout: 500ms
oidc:
  issuer: %[4]s
  client_id: portcullis
  client_secret_file: %[5]s
  ca_root_file: %[6]s
routes:
  - name: public
    path: /public
    upstream: %[7]s
    public: true
  - name: admin
    path: /admin
    case_insensitive: true
    upstream: %[7]s
    org: {from: session}
    require: {roles: [admin], verified_email_domain: false}
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 5m, prompt_login: true}
  - name: short
    path: /short
    upstream: %[7]s
    step_up: {acr: ["urn:portcullis:acr:mfa"], max_age: 1m, elevation: 2s}
  - name: hwk
    path: /hwk
    upstream: %[7]s
    step_up: {amr: [hwk], max_age: 5m}
  - name: app
    path: /
    upstream: %[7]s
    org: {from: session}
    require: {verified_email_domain: false}
`, listen, b.base, rs.yaml(), b.idp.URL, filepath.Join(dir, "secret"), ca, b.portal.URL)
	if extra != nil {
		cfg += extra(b)
	}
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfgPath, cfg)
	b.proc = startBinary(t, cfgPath)
	b.proc.waitLog(t, "cache: invalidation subscription active", 10*time.Second)
	return b
}

// suClient is one browser.
type suClient struct {
	b   *suBed
	c   *http.Client
	jar *cookiejar.Jar
}

func (b *suBed) client() *suClient {
	jar, _ := cookiejar.New(nil)
	return &suClient{b: b, jar: jar, c: &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}}
}

type suPage struct {
	*http.Response
	body string
}

func (p *suPage) reason() string {
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(p.body), &v) == nil && v.Error != "" {
		return v.Error
	}
	if m := regexp.MustCompile(`Reason: <code>([a-z_]+)</code>`).FindStringSubmatch(p.body); m != nil {
		return m[1]
	}
	return ""
}

var suNav = http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}
var suAPI = http.Header{"Accept": {"application/json"}}

func (c *suClient) do(method, target string, form url.Values, hdr http.Header) *suPage {
	c.b.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = c.b.base + target
	}
	resp, body := send(c.b.t, c.c, method, target, form, hdr)
	return &suPage{resp, body}
}

// raw sends a request whose target is written as given (no client normalisation).
func (c *suClient) raw(target string, hdr http.Header) *suPage {
	c.b.t.Helper()
	req, err := http.NewRequest("GET", c.b.base+"/", nil)
	if err != nil {
		c.b.t.Fatal(err)
	}
	req.URL.Opaque = "//" + req.URL.Host + target
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.b.t.Fatalf("GET %s: %v", target, err)
	}
	bb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return &suPage{resp, string(bb)}
}

func (c *suClient) cookie() string {
	u, _ := url.Parse(c.b.base)
	for _, k := range c.jar.Cookies(u) {
		if k.Name == session.CookieName {
			return k.Value
		}
	}
	return ""
}

// follow follows redirects from p like a browser; at the provider's login form it signs in as
// user, with a one-time code when otp is set. It returns the first page that is not a redirect.
func (c *suClient) follow(p *suPage, user, password string, otp bool) *suPage {
	c.b.t.Helper()
	for range 20 {
		switch {
		case p.StatusCode/100 == 3:
			u, _ := p.Request.URL.Parse(p.Header.Get("Location"))
			p = c.do("GET", u.String(), nil, suNav)
		case p.StatusCode == 200 && strings.Contains(p.body, "devidp-login"):
			code := ""
			if otp {
				var err error
				if code, err = devidptest.TOTP(suTOTP, time.Now()); err != nil {
					c.b.t.Fatal(err)
				}
			}
			resp, err := devidptest.Login(context.Background(), c.c, p.Response, user, password, code)
			if err != nil {
				c.b.t.Fatal(err)
			}
			bb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p = &suPage{resp, string(bb)}
		default:
			return p
		}
	}
	c.b.t.Fatal("too many redirects")
	return nil
}

// signIn signs in with the password only and picks org as the organisation to act for.
func (c *suClient) signIn(user, password, org string) {
	c.b.t.Helper()
	p := c.follow(c.do("GET", "/.portcullis/login?rd=/public/x", nil, suNav), user, password, false)
	if p.StatusCode != 200 || !strings.HasPrefix(p.body, "portal GET /public/x") {
		c.b.t.Fatalf("sign-in as %s: %d %s", user, p.StatusCode, p.body)
	}
	c.chooseOrg(org)
}

func (c *suClient) chooseOrg(org string) {
	c.b.t.Helper()
	p := c.do("GET", "/.portcullis/orgs", nil, suAPI)
	var v struct {
		CSRF string `json:"csrf"`
	}
	if p.StatusCode != 200 || json.Unmarshal([]byte(p.body), &v) != nil {
		c.b.t.Fatalf("org picker: %d %s", p.StatusCode, p.body)
	}
	p = c.do("POST", "/.portcullis/orgs", url.Values{"csrf": {v.CSRF}, "org": {org}, "rd": {"/"}},
		http.Header{"Origin": {c.b.base}, "Sec-Fetch-Site": {"same-origin"}})
	if p.StatusCode != http.StatusSeeOther {
		c.b.t.Fatalf("choose %s: %d %s", org, p.StatusCode, p.body)
	}
}

var suTicket = regexp.MustCompile(`<form id="portcullis-step-up" method="post" action="/.portcullis/step-up">\s*<input type="hidden" name="ticket" value="([^"]+)">`)

// interstitial asks for path as a browser and expects the step-up page; it returns the ticket.
func (c *suClient) interstitial(path string) string {
	c.b.t.Helper()
	p := c.do("GET", path, nil, suNav)
	m := suTicket.FindStringSubmatch(p.body)
	if p.StatusCode != http.StatusUnauthorized || m == nil || p.reason() != "step_up_required" {
		c.b.t.Fatalf("%s: want the step-up interstitial, got %d %s", path, p.StatusCode, p.body)
	}
	return html.UnescapeString(m[1])
}

// startStepUp posts the interstitial's form and returns the redirect to the provider.
func (c *suClient) startStepUp(ticket string) *suPage {
	c.b.t.Helper()
	p := c.do("POST", "/.portcullis/step-up", url.Values{"ticket": {ticket}},
		http.Header{"Origin": {c.b.base}, "Sec-Fetch-Site": {"same-origin"}, "Accept": {"text/html"}})
	if p.StatusCode != http.StatusSeeOther || !strings.HasPrefix(p.Header.Get("Location"), c.b.idp.URL+"/") {
		c.b.t.Fatalf("start step-up: %d %q %s", p.StatusCode, p.Header.Get("Location"), p.body)
	}
	return p
}

// stepUp goes from the interstitial of path through the provider and returns the callback's
// final answer (after following the redirect back, if any).
func (c *suClient) stepUp(path, user, password string, otp bool) *suPage {
	c.b.t.Helper()
	return c.follow(c.startStepUp(c.interstitial(path)), user, password, otp)
}

// toCallback runs a step-up of path at the provider and returns the callback URL, unvisited.
func (c *suClient) toCallback(path string) string {
	c.b.t.Helper()
	p := c.startStepUp(c.interstitial(path))
	for range 10 {
		switch {
		case p.StatusCode/100 == 3:
			u, _ := p.Request.URL.Parse(p.Header.Get("Location"))
			if strings.HasPrefix(u.String(), c.b.base+"/.portcullis/callback") {
				return u.String()
			}
			p = c.do("GET", u.String(), nil, suNav)
		case strings.Contains(p.body, "devidp-login"):
			code, _ := devidptest.TOTP(suTOTP, time.Now())
			resp, err := devidptest.Login(context.Background(), c.c, p.Response, "alice", "alice-pw", code)
			if err != nil {
				c.b.t.Fatal(err)
			}
			bb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p = &suPage{resp, string(bb)}
		default:
			c.b.t.Fatalf("step-up stuck: %d %s", p.StatusCode, p.body)
		}
	}
	c.b.t.Fatal("too many redirects")
	return ""
}

func (b *suBed) events(typ audit.Type) []audit.Event {
	b.t.Helper()
	evs, _, err := b.aud.Tail(context.Background(), "0", 1000, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []audit.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (b *suBed) hasEvent(typ audit.Type, reason, user string) bool {
	for _, e := range b.events(typ) {
		if e.Reason == reason && e.User == user {
			return true
		}
	}
	return false
}

func TestE2EStepUp(t *testing.T) { testStepUp(t, newSUBed(t)) }

// TestE2EStepUpSentinel is TestE2EStepUp behind Redis Sentinel.
func TestE2EStepUpSentinel(t *testing.T) { testStepUp(t, newSUBedOn(t, sentinel)) }

func testStepUp(t *testing.T, b *suBed) {
	alice, bob := store.UserKey(b.idp.URL, "sub-alice"), store.UserKey(b.idp.URL, "sub-bob")

	t.Run("challenge then second factor", func(t *testing.T) {
		c := b.client()
		c.signIn("alice", "alice-pw", "acme")
		if p := c.do("GET", "/app/home", nil, suNav); p.StatusCode != 200 {
			t.Fatalf("plain route: %d %s", p.StatusCode, p.body)
		}
		hits := b.hits.Load()
		// A browser navigation gets the interstitial: which route, which organisation, a button.
		p := c.do("GET", "/admin/users", nil, suNav)
		if p.StatusCode != 401 || !strings.Contains(p.body, "<code>admin</code>") || !strings.Contains(p.body, "<code>acme</code>") ||
			suTicket.FindStringSubmatch(p.body) == nil || strings.Contains(p.body, "repeat the action") {
			t.Fatalf("interstitial: %d %s", p.StatusCode, p.body)
		}
		// An API client gets exactly the RFC 9470 challenge and a JSON body.
		p = c.do("GET", "/admin/users", nil, suAPI)
		if got := p.Header.Values("WWW-Authenticate"); p.StatusCode != 401 || len(got) != 1 || got[0] != suAdminWWW {
			t.Fatalf("API challenge: %d %q", p.StatusCode, got)
		}
		var body map[string]any
		if json.Unmarshal([]byte(p.body), &body) != nil || body["error"] != "step_up_required" || body["max_age"] != float64(300) ||
			body["acr_values"] != devidp.ACRMFA || body["org"] != "acme" || !strings.HasPrefix(p.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("API body: %s", p.body)
		}
		// A non-GET browser request is not replayed: the interstitial says to repeat it.
		p = c.do("POST", "/admin/users", url.Values{"x": {"1"}}, suNav)
		if p.StatusCode != 401 || !strings.Contains(p.body, "repeat the action") || !strings.Contains(p.body, "POST") {
			t.Fatalf("POST interstitial: %d %s", p.StatusCode, p.body)
		}
		if b.hits.Load() != hits {
			t.Fatal("the portal was reached without elevation")
		}
		// The button: an authorisation request with acr_values, max_age, login_hint, prompt=login.
		start := c.startStepUp(c.interstitial("/admin/users?tab=2"))
		loc, _ := url.Parse(start.Header.Get("Location"))
		q := loc.Query()
		if q.Get("acr_values") != devidp.ACRMFA || q.Get("max_age") != "300" || q.Get("login_hint") != "alice@fresh.example" ||
			q.Get("prompt") != "login" || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
			t.Fatalf("authorize URL: %s", loc)
		}
		// Without the ticket, from another origin, or with a changed ticket: refused.
		for _, f := range []struct {
			form url.Values
			hdr  http.Header
			want int
		}{
			{url.Values{}, http.Header{"Origin": {b.base}}, 403},
			{url.Values{"ticket": {"x.y"}}, http.Header{"Origin": {b.base}}, 403},
			{url.Values{"ticket": {c.interstitial("/admin/x")}}, http.Header{"Origin": {"https://evil.test"}}, 403},
		} {
			if p := c.do("POST", "/.portcullis/step-up", f.form, f.hdr); p.StatusCode != f.want {
				t.Errorf("step-up start %v: %d %s", f.form, p.StatusCode, p.body)
			}
		}
		if p := c.do("GET", "/.portcullis/step-up", nil, suNav); p.StatusCode != 405 {
			t.Errorf("GET step-up: %d", p.StatusCode)
		}
		before := c.cookie()
		p = c.follow(start, "alice", "alice-pw", true)
		if p.StatusCode != 200 || p.body != "portal GET /admin/users?tab=2" {
			t.Fatalf("after step-up: %d %s", p.StatusCode, p.body)
		}
		// The session id was rotated; the old one is gone.
		if after := c.cookie(); after == before || after == "" {
			t.Fatal("session id not rotated at step-up")
		}
		old := b.client()
		if p := old.do("GET", "/app/home", nil, http.Header{"Accept": {"application/json"}, "Cookie": {session.CookieName + "=" + before}}); p.StatusCode != 401 {
			t.Errorf("old session id after step-up: %d", p.StatusCode)
		}
		if !b.hasEvent(audit.StepUpGranted, "", alice) {
			t.Error("no stepup.granted audit event")
		}
		// Case and encoding tricks reach the same (elevated) route, never another one.
		for _, path := range []string{"/Admin/users", "/ADMIN/users", "/admin/", "/%61dmin/users"} {
			if p := c.raw(path, suAPI); p.StatusCode != 200 || !strings.HasPrefix(p.body, "portal GET ") {
				t.Errorf("elevated %s: %d %s", path, p.StatusCode, p.body)
			}
		}
	})

	t.Run("path tricks without elevation", func(t *testing.T) {
		c := b.client()
		c.signIn("alice", "alice-pw", "acme")
		hits := b.hits.Load()
		for _, path := range []string{"/admin/users", "/Admin/users", "/ADMIN", "/admin/", "/%61dmin/users", "/%41dmin/users",
			"//admin/users", "/./admin/users", "/public/../admin/users", "/admin;x/users", "/admin;x", "/admin%2Fusers", "/admin/users?stepup=1"} {
			p := c.raw(path, suAPI)
			switch {
			case p.StatusCode == 400:
			case p.StatusCode == 401 && p.Header.Get("WWW-Authenticate") == suAdminWWW:
			default:
				t.Errorf("%s: %d %s %q", path, p.StatusCode, p.body, p.Header.Get("WWW-Authenticate"))
			}
		}
		if p := c.raw("/admin;x", suAPI); p.StatusCode != 400 {
			t.Errorf("/admin;x: %d, want 400", p.StatusCode)
		}
		if b.hits.Load() != hits {
			t.Fatal("a path trick reached the portal")
		}
	})

	t.Run("client-sent signals do not count", func(t *testing.T) {
		c := b.client()
		c.signIn("alice", "alice-pw", "acme")
		hits := b.hits.Load()
		cookie := session.CookieName + "=" + c.cookie()
		for _, h := range []http.Header{
			{"X-Step-Up": {"done"}}, {"X-Auth-Acr": {devidp.ACRMFA}}, {"X-Portcullis-Elevation": {"acme"}},
			{"Cookie": {cookie + "; stepped_up=true"}}, {"Cookie": {cookie + "; __Host-portcullis-stepup=1"}},
			{"Authorization": {"Bearer " + strings.Repeat("a", 40)}},
		} {
			h.Set("Accept", "application/json")
			if h.Get("Cookie") == "" {
				h.Set("Cookie", cookie)
			}
			p := b.client().do("GET", "/admin/users", nil, h)
			if p.StatusCode != 401 || p.Header.Get("WWW-Authenticate") != suAdminWWW {
				t.Errorf("with %v: %d %s", h, p.StatusCode, p.body)
			}
		}
		for _, q := range []string{"?stepup=1", "?acr=" + url.QueryEscape(devidp.ACRMFA), "?elevated=true"} {
			if p := c.do("GET", "/admin/users"+q, nil, suAPI); p.StatusCode != 401 {
				t.Errorf("with %s: %d", q, p.StatusCode)
			}
		}
		if b.hits.Load() != hits {
			t.Fatal("a client signal reached the portal")
		}
	})

	refused := func(t *testing.T, p *suPage, reason string) {
		t.Helper()
		if p.StatusCode != 403 || p.reason() != reason || p.Header.Get("Location") != "" {
			t.Fatalf("want a %s refusal page, got %d %s", reason, p.StatusCode, p.body)
		}
	}

	t.Run("weaker acr refused", func(t *testing.T) {
		// bob has no second factor: the provider answers with the password acr.
		c := b.client()
		c.signIn("bob", "bob-pw", "acme")
		before := c.cookie()
		p := c.stepUp("/admin/users", "bob", "bob-pw", false)
		refused(t, p, "step_up_acr_insufficient")
		if !strings.Contains(p.body, `href="/admin/users"`) {
			t.Errorf("refusal page has no way back: %s", p.body)
		}
		if c.cookie() != before {
			t.Error("session id changed on a refusal")
		}
		if p := c.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 401 {
			t.Errorf("after refusal: %d", p.StatusCode)
		}
		if !b.hasEvent(audit.StepUpRefused, "step_up_acr_insufficient", bob) {
			t.Error("no stepup.refused audit event")
		}
		// A provider that ignores acr_values (forced claims) for a TOTP user: refused too.
		a := b.client()
		a.signIn("alice", "alice-pw", "acme")
		b.idp.IdP.ForceClaims("alice", func(c *devidp.Claims) { c.ACR = devidp.ACRPassword })
		refused(t, a.stepUp("/admin/users", "alice", "alice-pw", true), "step_up_acr_insufficient")
		// A malformed acr (an array) never counts.
		b.idp.IdP.ForceClaims("alice", func(c *devidp.Claims) {
			c.ACR, c.Extra = "", map[string]any{"acr": []string{devidp.ACRMFA}}
		})
		if p := a.stepUp("/admin/users", "alice", "alice-pw", true); p.StatusCode != 400 || p.reason() != "sign_in_failed" || p.Header.Get("Location") != "" {
			t.Fatalf("array acr: %d %s", p.StatusCode, p.body)
		}
		if p := a.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 401 {
			t.Errorf("after malformed acr: %d", p.StatusCode)
		}
	})

	t.Run("missing amr refused", func(t *testing.T) {
		c := b.client()
		c.signIn("alice", "alice-pw", "acme")
		b.idp.IdP.ForceClaims("alice", func(c *devidp.Claims) { c.AMR = []string{"pwd", "mfa"} })
		refused(t, c.stepUp("/admin/users", "alice", "alice-pw", true), "step_up_amr_missing")
		// A route demanding a method the provider never gives (hwk) is never satisfied.
		refused(t, c.stepUp("/hwk/x", "alice", "alice-pw", true), "step_up_amr_missing")
		if p := c.do("GET", "/hwk/x", nil, suAPI); p.StatusCode != 401 ||
			p.Header.Get("WWW-Authenticate") != `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required", max_age=300` {
			t.Errorf("hwk challenge: %d %q", p.StatusCode, p.Header.Get("WWW-Authenticate"))
		}
		if !b.hasEvent(audit.StepUpRefused, "step_up_amr_missing", alice) {
			t.Error("no stepup.refused audit event")
		}
	})

	t.Run("old auth_time refused", func(t *testing.T) {
		c := b.client()
		c.signIn("alice", "alice-pw", "acme")
		// An authentication from before the step-up began (and older than max_age).
		b.idp.IdP.SetAuthTimeOffset(-10 * time.Minute)
		p := c.stepUp("/admin/users", "alice", "alice-pw", true)
		b.idp.IdP.SetAuthTimeOffset(0)
		refused(t, p, "step_up_stale_auth")
		// Only slightly before the step-up began: still refused.
		b.idp.IdP.SetAuthTimeOffset(-3 * time.Second)
		p = c.stepUp("/admin/users", "alice", "alice-pw", true)
		b.idp.IdP.SetAuthTimeOffset(0)
		refused(t, p, "step_up_stale_auth")
		// No auth_time at all.
		b.idp.IdP.ForceClaims("alice", func(c *devidp.Claims) { c.AuthTime = time.Time{} })
		refused(t, c.stepUp("/admin/users", "alice", "alice-pw", true), "step_up_stale_auth")
		if p := c.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 401 {
			t.Errorf("after refusals: %d", p.StatusCode)
		}
		// Afterwards a proper step-up works: no state was left behind.
		if p := c.stepUp("/admin/users", "alice", "alice-pw", true); p.StatusCode != 200 {
			t.Fatalf("fresh step-up: %d %s", p.StatusCode, p.body)
		}
	})

	t.Run("elevation expires", func(t *testing.T) {
		c := b.client()
		c.signIn("alice", "alice-pw", "acme")
		p := c.stepUp("/short/x", "alice", "alice-pw", true)
		granted := time.Now()
		if p.StatusCode != 200 || p.body != "portal GET /short/x" {
			t.Fatalf("step-up: %d %s", p.StatusCode, p.body)
		}
		// elevation: 2s. Poll until it ends; it must end on time and stay ended.
		var ended time.Duration
		for {
			p := c.do("GET", "/short/x", nil, suAPI)
			if p.StatusCode == 401 {
				ended = time.Since(granted)
				break
			}
			if time.Since(granted) > 5*time.Second {
				t.Fatal("elevation did not expire")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if ended < 1500*time.Millisecond {
			t.Errorf("elevation ended after %v, want about 2s", ended)
		}
		if p := c.do("GET", "/short/x", nil, suAPI); p.StatusCode != 401 {
			t.Errorf("after expiry: %d", p.StatusCode)
		}
	})

	t.Run("elevation bound to session and org", func(t *testing.T) {
		a, bb := b.client(), b.client()
		a.signIn("alice", "alice-pw", "acme")
		bb.signIn("alice", "alice-pw", "acme")
		// SU-05 (2): A's step-up callback replayed into B: 400, and B is not elevated.
		cb := a.toCallback("/admin/users")
		// B holds its own login cookie; replay with A's login cookie too, so only the session differs.
		u, _ := url.Parse(b.base)
		for _, k := range a.jar.Cookies(u) {
			if k.Name == session.LoginCookieName {
				bb.jar.SetCookies(u, []*http.Cookie{{Name: k.Name, Value: k.Value, Path: "/"}})
			}
		}
		if p := bb.do("GET", cb, nil, suNav); p.StatusCode != 400 || p.reason() != "step_up_session_mismatch" {
			t.Fatalf("replayed callback: %d %s", p.StatusCode, p.body)
		}
		if !b.hasEvent(audit.StepUpRefused, "step_up_session_mismatch", alice) {
			t.Error("no stepup.refused audit event for the replay")
		}
		// (3) A steps up; B stays without elevation.
		if p := a.stepUp("/admin/users", "alice", "alice-pw", true); p.StatusCode != 200 {
			t.Fatalf("A step-up: %d %s", p.StatusCode, p.body)
		}
		if p := bb.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 401 {
			t.Errorf("B after A's step-up: %d", p.StatusCode)
		}
		// Another org: switching drops the elevation, and switching back does not restore it.
		a.chooseOrg("beta")
		if p := a.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 401 || !strings.Contains(p.body, `"org":"beta"`) {
			t.Errorf("after switching to beta: %d %s", p.StatusCode, p.body)
		}
		a.chooseOrg("acme")
		if p := a.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 401 {
			t.Errorf("after switching back to acme: %d", p.StatusCode)
		}
		// An elevation for beta is for beta only.
		a.chooseOrg("beta")
		if p := a.stepUp("/admin/users", "alice", "alice-pw", true); p.StatusCode != 200 {
			t.Fatalf("step-up for beta: %d %s", p.StatusCode, p.body)
		}
		// Signing out ends it: a new sign-in starts without elevation.
		a.signIn("alice", "alice-pw", "beta")
		if p := a.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 401 {
			t.Errorf("new session after step-up: %d", p.StatusCode)
		}
	})

	// Nothing secret in the log.
	b.proc.mu.Lock()
	logs := b.proc.raw.String()
	b.proc.mu.Unlock()
	if strings.Contains(logs, "e2e-secret") || strings.Contains(logs, "eyJ") {
		t.Error("a secret reached the log")
	}
}
