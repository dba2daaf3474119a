package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// handoffBed is the real binary serving a sign-in host (login.portal.test) and organisation
// hosts ({org}.portal.test), all resolved to its listener by the client.
type handoffBed struct {
	t         *testing.T
	port      string
	idp       *devidptest.Server
	c         *http.Client
	proc      *proc
	mu        sync.Mutex
	locations []string
}

func newHandoffBed(t *testing.T) *handoffBed {
	t.Helper()
	listen := freePort(t)
	_, port, _ := net.SplitHostPort(listen)
	signIn := "https://login.portal.test:" + port
	idp := devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis", Secret: "e2e-secret",
			RedirectURIs: []string{signIn + "/.portcullis/callback"}, PostLogoutRedirectURIs: []string{signIn + "/"}}},
		Users: []devidp.User{{Subject: "sub-alice", Username: "alice", Password: "alice-pw",
			Email: "alice@fresh.example", EmailVerified: true, Name: "Alice"}},
	})
	dir := t.TempDir()
	ca := idp.CAFile(t)
	rs := redistest.Start(t)
	up := upstream(t, "portal")
	cfg := fmt.Sprintf(`server:
  listen: %[1]s
  public_url: %[2]s
  metrics_listen: "off"
tls:
  mode: self_signed
  self_signed_hosts: [login.portal.test, acme.portal.test, beta.portal.test]
redis:
  address: %[3]s
  read_timeout: 500ms
  dial_timeout: 500ms
oidc:
  issuer: %[4]s
  client_id: portcullis
  client_secret_file: %[5]s
  ca_root_file: %[6]s
routes:
  - name: orgportal
    hosts: ["*.portal.test"]
    path: /hp
    upstream: %[7]s
    org: {from: host, host: "{org}.portal.test"}
    require: {verified_email_domain: false}
  - name: home
    hosts: [login.portal.test]
    path: /
    upstream: %[7]s
`, listen, signIn, rs.Addr, idp.URL, filepath.Join(dir, "secret"), ca, up.URL)
	writeFile(t, filepath.Join(dir, "secret"), "e2e-secret\n")
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfgPath, cfg)

	// alice is an employee of acme, and of nothing else.
	st, err := store.New(config.Redis{Address: rs.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	orgs := store.NewOrgs(st, store.NewAudit(st, 1000))
	ctx := context.Background()
	if _, err := orgs.CreateOrg(ctx, store.Org{ID: "acme", Name: "Acme"}, "e2e", "e2e"); err != nil {
		t.Fatal(err)
	}
	if _, err := orgs.CreateOrg(ctx, store.Org{ID: "beta", Name: "Beta"}, "e2e", "e2e"); err != nil {
		t.Fatal(err)
	}
	if _, err := orgs.Grant(ctx, store.Membership{Org: "acme", User: store.UserKey(idp.URL, "sub-alice"), Kind: store.KindEmployee,
		Roles: []string{"user"}}, "e2e", "e2e"); err != nil {
		t.Fatal(err)
	}

	b := &handoffBed{t: t, port: port, idp: idp, proc: startBinary(t, cfgPath)}
	jar, _ := cookiejar.New(nil)
	b.c = &http.Client{
		Jar:           jar,
		Transport:     locationRecorder{b: b, base: portalTransport(listen)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	return b
}

// portalTransport is a browser's transport for the test beds serving *.portal.test on
// listen: those names resolve to it, as DNS would answer, and the self-signed proxy and the
// httptest providers are trusted, as by a person who accepted both.
func portalTransport(listen string) *http.Transport {
	var d net.Dialer
	return &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(addr); strings.HasSuffix(h, ".portal.test") {
				addr = listen
			}
			return d.DialContext(ctx, network, addr)
		},
	}
}

type locationRecorder struct {
	b    *handoffBed
	base http.RoundTripper
}

func (l locationRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := l.base.RoundTrip(r)
	if err == nil && resp.Header.Get("Location") != "" {
		l.b.mu.Lock()
		l.b.locations = append(l.b.locations, resp.Header.Get("Location"))
		l.b.mu.Unlock()
	}
	return resp, err
}

func (b *handoffBed) origin(host string) string { return "https://" + host + ".portal.test:" + b.port }

func (b *handoffBed) do(method, target string, form url.Values, hdr http.Header) *e2ePage {
	b.t.Helper()
	resp, body := send(b.t, b.c, method, target, form, hdr)
	return &e2ePage{resp, body}
}

var (
	e2eHandoffCode   = regexp.MustCompile(`name="code" value="([^"]+)"`)
	e2eHandoffAction = regexp.MustCompile(`<form id="portcullis-handoff" method="post" action="([^"]+)"`)
)

// browse follows redirects from target like a browser: it signs in at the provider as alice
// when asked (reporting whether it was), and submits the handoff form as its script would.
func (b *handoffBed) browse(target string) (p *e2ePage, idpLogin bool, codes []string) {
	b.t.Helper()
	p = b.do("GET", target, nil, browserHeaders)
	for range 30 {
		switch {
		case p.StatusCode/100 == 3:
			u, _ := p.Request.URL.Parse(p.Header.Get("Location"))
			p = b.do("GET", u.String(), nil, browserHeaders)
		case p.StatusCode == 200 && strings.Contains(p.body, "devidp-login"):
			idpLogin = true
			resp, err := devidptest.Login(context.Background(), b.c, p.Response, "alice", "alice-pw", "")
			if err != nil {
				b.t.Fatal(err)
			}
			bb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p = &e2ePage{resp, string(bb)}
		case p.StatusCode == 200 && e2eHandoffCode.MatchString(p.body):
			code := e2eHandoffCode.FindStringSubmatch(p.body)[1]
			action := e2eHandoffAction.FindStringSubmatch(p.body)[1]
			codes = append(codes, code)
			p = b.do("POST", action, url.Values{"code": {code}}, http.Header{"Origin": {b.origin("login")},
				"Sec-Fetch-Site": {"same-site"}, "Accept": {"text/html"}})
		default:
			return p, idpLogin, codes
		}
	}
	b.t.Fatal("too many redirects")
	return nil, false, nil
}

func (b *handoffBed) whoami(host string) int {
	b.t.Helper()
	return b.do("GET", b.origin(host)+"/.portcullis/whoami", nil, http.Header{"Accept": {"application/json"}}).StatusCode
}

func TestE2EHandoffToOrganisationHosts(t *testing.T) {
	b := newHandoffBed(t)
	// A browser on acme's host signs in at the provider through the sign-in host and lands on
	// the page it asked for, with the organisation taken from the host.
	p, idp, codes := b.browse(b.origin("acme") + "/hp/reports?q=1")
	if p.StatusCode != 200 || !strings.HasPrefix(p.body, "portal GET /hp/reports?q=1") || !idp || len(codes) != 1 {
		t.Fatalf("acme: %d %q (provider login %v, codes %d)", p.StatusCode, p.body, idp, len(codes))
	}
	for _, host := range []string{"acme", "login"} {
		if s := b.whoami(host); s != 200 {
			t.Errorf("whoami on %s: %d", host, s)
		}
	}
	// beta's host: a session without the provider (single sign-on); alice is no member there.
	p, idp, more := b.browse(b.origin("beta") + "/hp/x")
	if p.StatusCode != http.StatusForbidden || !strings.Contains(p.body, "not_member") || idp || len(more) != 1 {
		t.Fatalf("beta: %d %q (provider login %v)", p.StatusCode, p.body, idp)
	}
	codes = append(codes, more...)
	// A replayed code does nothing.
	r := b.do("POST", b.origin("acme")+"/.portcullis/handoff", url.Values{"code": {codes[0]}}, http.Header{"Accept": {"application/json"}})
	if r.StatusCode != 400 || !strings.Contains(r.body, "handoff_invalid") {
		t.Errorf("replayed code: %d %s", r.StatusCode, r.body)
	}

	// Signing out on acme's host ends the sign-in host's and beta's sessions too.
	lp := b.do("GET", b.origin("acme")+"/.portcullis/logout", nil, browserHeaders)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(lp.body)
	if m == nil {
		t.Fatalf("logout page: %d %s", lp.StatusCode, lp.body)
	}
	lp = b.do("POST", b.origin("acme")+"/.portcullis/logout", url.Values{"csrf": {m[1]}},
		http.Header{"Origin": {b.origin("acme")}, "Sec-Fetch-Site": {"same-origin"}})
	if lp.StatusCode != 200 && lp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d %s", lp.StatusCode, lp.body)
	}
	for _, host := range []string{"acme", "beta", "login"} {
		if s := b.whoami(host); s != 401 {
			t.Errorf("whoami on %s after sign-out on acme: %d", host, s)
		}
	}

	// No code and no session id in any Location (security case invariant 5).
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.locations {
		for _, c := range codes {
			if strings.Contains(l, c) {
				t.Errorf("a handoff code in Location %q", l)
			}
		}
		if strings.Contains(l, "__Host-portcullis") {
			t.Errorf("a cookie in Location %q", l)
		}
	}
	b.proc.mu.Lock()
	logs := b.proc.raw.String()
	b.proc.mu.Unlock()
	for _, c := range codes {
		if strings.Contains(logs, c) {
			t.Error("a handoff code reached the log")
		}
	}
}
