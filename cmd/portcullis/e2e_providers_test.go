package main

// End-to-end tests of several OpenID Providers (issue 16) through the real binary: two
// instances of the project's provider (devidp, on zitadel/oidc), each on its own issuer and
// keys, one for each customer. acme's provider speaks only for domains acme has verified
// (verified_domains_only); beta's is lax and will call any address verified, which is the
// provider the tests attack through.

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
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// pvBed is the binary serving login.portal.test (sign-in) and {org}.portal.test, with the
// providers of acme (idpA) and beta (idpB).
type pvBed struct {
	t          *testing.T
	listen     string
	port       string
	idpA, idpB *devidptest.Server
	st         *store.Store
	orgs       *store.Orgs
	proc       *proc
}

var (
	pvUsersA = []devidp.User{
		{Subject: "sub-alice", Username: "alice", Password: "pw-alice", Email: "alice@acme.example", EmailVerified: true},
		{Subject: "sub-carol", Username: "carol", Password: "pw-carol", Email: "carol@acme.example", EmailVerified: true},
		// eve's account at acme's provider has an address at beta's domain.
		{Subject: "sub-eve", Username: "eve", Password: "pw-eve", Email: "eve@beta.example", EmailVerified: true},
	}
	pvUsersB = []devidp.User{
		{Subject: "sub-bob", Username: "bob", Password: "pw-bob", Email: "bob@beta.example", EmailVerified: true},
		// mallory's provider vouches for an address at acme's domain, which acme has
		// invited and whose owner has not signed in yet.
		{Subject: "sub-mallory", Username: "mallory", Password: "pw-mallory", Email: "carol@acme.example", EmailVerified: true},
		// and for alice's address, under another subject.
		{Subject: "sub-alice", Username: "alice-b", Password: "pw-alice-b", Email: "alice@acme.example", EmailVerified: true},
	}
)

func newPVBed(t *testing.T) *pvBed {
	t.Helper()
	b := &pvBed{t: t, listen: freePort(t)}
	_, b.port, _ = net.SplitHostPort(b.listen)
	signIn := "https://login.portal.test:" + b.port
	// The providers' back-channel logout reaches the proxy under the sign-in host's name.
	var d net.Dialer
	backchannel := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, b.listen)
		},
	}}
	// Each provider knows its own callback (oidc.providers' are /.portcullis/callback/NAME).
	client := func(name string) devidp.Client {
		return devidp.Client{ID: "portcullis", Secret: "e2e-secret", RedirectURIs: []string{signIn + "/.portcullis/callback/" + name},
			PostLogoutRedirectURIs: []string{signIn + "/"}, BackchannelLogoutURI: signIn + "/.portcullis/backchannel-logout"}
	}
	b.idpA = devidptest.Start(t, devidp.Config{Clients: []devidp.Client{client("acme-idp")}, Users: pvUsersA, BackchannelClient: backchannel})
	b.idpB = devidptest.Start(t, devidp.Config{Clients: []devidp.Client{client("beta-idp")}, Users: pvUsersB, BackchannelClient: backchannel})
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "secret"), "e2e-secret\n")
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
  providers:
    - name: acme-idp
      display_name: Acme sign-in
      issuer: %[4]s
      client_id: portcullis
      client_secret_file: %[6]s
      ca_root_file: %[7]s
      verified_domains_only: true
    - name: beta-idp
      display_name: Beta sign-in
      issuer: %[5]s
      client_id: portcullis
      client_secret_file: %[6]s
      ca_root_file: %[8]s
routes:
  - name: orgportal
    hosts: ["*.portal.test"]
    path: /hp
    upstream: %[9]s
    org: {from: host, host: "{org}.portal.test"}
  - name: by-path
    hosts: [login.portal.test]
    path: /orgs
    upstream: %[9]s
    org: {from: path, path_segment: 2}
  - name: home
    hosts: [login.portal.test]
    path: /
    upstream: %[9]s
`, b.listen, signIn, rs.Addr, b.idpA.URL, b.idpB.URL, filepath.Join(dir, "secret"), b.idpA.CAFile(t), b.idpB.CAFile(t), up.URL)
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfgPath, cfg)

	var err error
	if b.st, err = store.New(config.Redis{Address: rs.Addr}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.st.Close() })
	b.orgs = store.NewOrgs(b.st, store.NewAudit(b.st, 1000))
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []struct{ id, domain, provider string }{{"acme", "acme.example", "acme-idp"}, {"beta", "beta.example", "beta-idp"}} {
		must(b.orgs.CreateOrg(ctx, store.Org{ID: o.id, Name: o.id}, "e2e", "e2e"))
		must(b.orgs.AddDomain(ctx, o.id, o.domain, "e2e", "e2e"))
		must(b.orgs.SetDomainStatus(ctx, o.id, o.domain, store.DomainVerified, "e2e", "e2e"))
		must(b.orgs.SetOrgProviders(ctx, o.id, []string{o.provider}, "e2e", "e2e"))
	}
	must(b.orgs.Grant(ctx, store.Membership{Org: "acme", User: store.UserKey(b.idpA.URL, "sub-alice"), Kind: store.KindEmployee, Roles: []string{"user"}}, "e2e", "e2e"))
	must(b.orgs.Grant(ctx, store.Membership{Org: "beta", User: store.UserKey(b.idpB.URL, "sub-bob"), Kind: store.KindEmployee, Roles: []string{"user"}}, "e2e", "e2e"))
	must(b.orgs.Invite(ctx, store.Invitation{Org: "acme", Email: "carol@acme.example", Kind: store.KindEmployee}, "e2e", "e2e"))
	b.proc = startBinary(t, cfgPath)
	// Both were discovered before the listener opened.
	if n := b.proc.countLog("identity provider discovered"); n != 2 {
		t.Fatalf("%d providers discovered, want 2", n)
	}
	return b
}

func (b *pvBed) origin(host string) string { return "https://" + host + ".portal.test:" + b.port }

// pvBrowser is one person's browser, resolving the portal's names to the proxy.
type pvBrowser struct {
	b         *pvBed
	c         *http.Client
	locations []string
}

func (b *pvBed) browser() *pvBrowser {
	br := &pvBrowser{b: b}
	jar, _ := cookiejar.New(nil)
	br.c = &http.Client{
		Jar:           jar,
		Transport:     portalTransport(b.listen),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	return br
}

func (br *pvBrowser) do(method, target string, form url.Values, hdr http.Header) *e2ePage {
	br.b.t.Helper()
	resp, body := send(br.b.t, br.c, method, target, form, hdr)
	if l := resp.Header.Get("Location"); l != "" {
		br.locations = append(br.locations, l)
	}
	return &e2ePage{resp, body}
}

// submitEmail posts the sign-in page's address form (and a provider choice, when not "").
func (br *pvBrowser) submitEmail(email, provider, rd string) *e2ePage {
	br.b.t.Helper()
	form := url.Values{"email": {email}, "rd": {rd}}
	if provider != "" {
		form.Set("provider", provider)
	}
	return br.do("POST", br.b.origin("login")+"/.portcullis/login", form, http.Header{"Origin": {br.b.origin("login")},
		"Sec-Fetch-Site": {"same-origin"}, "Accept": {"text/html"}})
}

// follow follows p like a browser: redirects, the provider's login form (as user, password),
// and the handoff form. It returns the first other page.
func (br *pvBrowser) follow(p *e2ePage, user, password string) *e2ePage {
	t := br.b.t
	t.Helper()
	for range 30 {
		switch {
		case p.StatusCode/100 == 3:
			u, _ := p.Request.URL.Parse(p.Header.Get("Location"))
			p = br.do("GET", u.String(), nil, browserHeaders)
		case p.StatusCode == 200 && strings.Contains(p.body, "devidp-login"):
			resp, err := devidptest.Login(context.Background(), br.c, p.Response, user, password, "")
			if err != nil {
				t.Fatal(err)
			}
			if l := resp.Header.Get("Location"); l != "" {
				br.locations = append(br.locations, l)
			}
			bb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p = &e2ePage{resp, string(bb)}
		case p.StatusCode == 200 && e2eHandoffCode.MatchString(p.body):
			code := e2eHandoffCode.FindStringSubmatch(p.body)[1]
			action := e2eHandoffAction.FindStringSubmatch(p.body)[1]
			p = br.do("POST", action, url.Values{"code": {code}}, http.Header{"Origin": {br.b.origin("login")},
				"Sec-Fetch-Site": {"same-site"}, "Accept": {"text/html"}})
		default:
			return p
		}
	}
	t.Fatal("too many redirects")
	return nil
}

// sentTo reports whether the browser was sent to an authorisation endpoint of the provider
// at issuer, and with which login_hint.
func (br *pvBrowser) sentTo(issuer string) (bool, string) {
	for _, l := range br.locations {
		if strings.HasPrefix(l, issuer+"/") && strings.Contains(l, "client_id=portcullis") {
			u, _ := url.Parse(l)
			return true, u.Query().Get("login_hint")
		}
	}
	return false, ""
}

var pvReason = regexp.MustCompile(`<code>([a-z_]+)</code>`)

// reasonOf is the reason code a refusal page shows.
func reasonOf(p *e2ePage) string {
	if m := pvReason.FindStringSubmatch(p.body); m != nil {
		return m[1]
	}
	return ""
}

func TestE2ESeveralProviders(t *testing.T) {
	b := newPVBed(t)
	t.Parallel()

	t.Run("the sign-in page asks for the address and sends it to its organisation's provider", func(t *testing.T) {
		br := b.browser()
		p := br.do("GET", b.origin("login")+"/.portcullis/login?rd=/orgs/acme/reports", nil, browserHeaders)
		if p.StatusCode != 200 || !strings.Contains(p.body, `name="email"`) {
			t.Fatalf("sign-in page: %d %s", p.StatusCode, p.body)
		}
		p = br.follow(br.submitEmail("Alice@Acme.Example", "", "/orgs/acme/reports"), "alice", "pw-alice")
		if p.StatusCode != 200 || !strings.HasPrefix(p.body, "portal GET /orgs/acme/reports") {
			t.Fatalf("alice at acme: %d %q", p.StatusCode, p.body)
		}
		if to, hint := br.sentTo(b.idpA.URL); !to || hint != "Alice@Acme.Example" {
			t.Errorf("alice sent to acme's provider %v with login_hint %q", to, hint)
		}
		if to, _ := br.sentTo(b.idpB.URL); to {
			t.Error("alice was sent to beta's provider")
		}
		// Her session is of acme's provider: beta's pages are not hers.
		if p := br.do("GET", b.origin("login")+"/orgs/beta/x", nil, browserHeaders); p.StatusCode != 403 {
			t.Errorf("alice at beta: %d", p.StatusCode)
		}
	})

	t.Run("an organisation host goes straight to its provider", func(t *testing.T) {
		br := b.browser()
		p := br.follow(br.do("GET", b.origin("beta")+"/hp/home", nil, browserHeaders), "bob", "pw-bob")
		if p.StatusCode != 200 || !strings.HasPrefix(p.body, "portal GET /hp/home") {
			t.Fatalf("bob at beta's host: %d %q", p.StatusCode, p.body)
		}
		if to, _ := br.sentTo(b.idpB.URL); !to {
			t.Errorf("bob was not sent to beta's provider: %q", br.locations)
		}
		for _, l := range br.locations {
			if strings.Contains(l, "/.portcullis/login") && strings.Contains(l, "login.portal.test") {
				t.Errorf("bob was shown the sign-in page: %s", l)
			}
		}
		// acme's host, with bob's session handed over, refuses him: not his provider and
		// not his organisation.
		if p := br.follow(br.do("GET", b.origin("acme")+"/hp/home", nil, browserHeaders), "bob", "pw-bob"); p.StatusCode != 403 {
			t.Errorf("bob at acme's host: %d %s", p.StatusCode, p.body)
		}
	})

	t.Run("a lax provider's token for an address at acme's domain reaches nothing of acme's", func(t *testing.T) {
		// The address form never offers beta's provider for acme's domain…
		br := b.browser()
		if p := br.submitEmail("carol@acme.example", "beta-idp", "/hp/home"); p.StatusCode != 403 || reasonOf(p) != "provider_unknown" {
			t.Errorf("choosing beta's provider for acme's domain: %d %q", p.StatusCode, reasonOf(p))
		}
		// …but mallory signs in at beta's provider anyway (beta's host), with an account
		// that provider says is carol@acme.example, whom acme has invited.
		p := br.follow(br.do("GET", b.origin("beta")+"/hp/home", nil, browserHeaders), "mallory", "pw-mallory")
		if p.StatusCode != 403 || reasonOf(p) != "not_member" {
			t.Fatalf("mallory at beta: %d %q", p.StatusCode, reasonOf(p))
		}
		if p := br.follow(br.do("GET", b.origin("acme")+"/hp/home", nil, browserHeaders), "mallory", "pw-mallory"); p.StatusCode != 403 || reasonOf(p) != "not_member" {
			t.Errorf("mallory at acme's host: %d %q", p.StatusCode, reasonOf(p))
		}
		// alice's subject at beta's provider is another person than alice.
		br2 := b.browser()
		if p := br2.follow(br2.do("GET", b.origin("beta")+"/hp/home", nil, browserHeaders), "alice-b", "pw-alice-b"); p.StatusCode != 403 {
			t.Fatalf("alice-b at beta: %d", p.StatusCode)
		}
		if p := br2.do("GET", b.origin("login")+"/orgs/acme/x", nil, browserHeaders); p.StatusCode != 403 {
			t.Errorf("alice-b at acme: %d %s", p.StatusCode, p.body)
		}
		// The invitation waited for carol, who signs in at acme's provider and takes it.
		invs, err := b.st.OrgInvitations(context.Background(), "acme")
		if err != nil || len(invs) != 1 {
			t.Fatalf("acme's invitations after mallory: %v %v", invs, err)
		}
		// Nor does mallory's sign-in make carol's address look like hers (or shared), which
		// would block carol's account recovery.
		if _, err := b.st.PersonByEmail(context.Background(), "carol@acme.example"); err == nil {
			t.Error("the lax provider's sign-in recorded carol's address")
		}
		carol := b.browser()
		p = carol.follow(carol.submitEmail("carol@acme.example", "", "/orgs/acme/x"), "carol", "pw-carol")
		if p.StatusCode != 200 || !strings.HasPrefix(p.body, "portal GET /orgs/acme/x") {
			t.Fatalf("carol at acme: %d %q", p.StatusCode, p.body)
		}
		if rec, err := b.st.PersonByEmail(context.Background(), "carol@acme.example"); err != nil || rec.Shared || rec.User != store.UserKey(b.idpA.URL, "sub-carol") {
			t.Errorf("carol's address after her sign-in: %+v %v", rec, err)
		}
	})

	t.Run("acme's provider may not sign in an address at beta's domain", func(t *testing.T) {
		br := b.browser()
		if p := br.submitEmail("eve@beta.example", "acme-idp", "/"); p.StatusCode != 403 || reasonOf(p) != "provider_unknown" {
			t.Errorf("choosing acme's provider for beta's domain: %d %q", p.StatusCode, reasonOf(p))
		}
		// Through acme's host, eve reaches acme's provider, which signs her in as
		// eve@beta.example: verified_domains_only refuses the session.
		p := br.follow(br.do("GET", b.origin("acme")+"/hp/home", nil, browserHeaders), "eve", "pw-eve")
		if p.StatusCode != 403 || reasonOf(p) != "provider_domain_refused" {
			t.Fatalf("eve through acme's provider: %d %q", p.StatusCode, reasonOf(p))
		}
		if p := br.do("GET", b.origin("login")+"/.portcullis/whoami", nil, http.Header{"Accept": {"application/json"}}); p.StatusCode != 401 {
			t.Errorf("eve has a session: %d", p.StatusCode)
		}
	})

	t.Run("an address at no verified domain is refused, not guessed", func(t *testing.T) {
		br := b.browser()
		for _, email := range []string{"someone@unknown.example", "x@acme.example.evil"} {
			if p := br.submitEmail(email, "", "/"); p.StatusCode != 403 || reasonOf(p) != "provider_unknown" {
				t.Errorf("%s: %d %q", email, p.StatusCode, reasonOf(p))
			}
		}
		if p := br.submitEmail("not an address", "", "/"); p.StatusCode != 400 || !strings.Contains(p.body, `role="alert"`) {
			t.Errorf("malformed address: %d %s", p.StatusCode, p.body)
		}
		// From another site, the form is refused.
		p := br.do("POST", b.origin("login")+"/.portcullis/login", url.Values{"email": {"alice@acme.example"}},
			http.Header{"Origin": {"https://evil.test"}, "Accept": {"text/html"}})
		if p.StatusCode != 403 || reasonOf(p) != "csrf_failed" {
			t.Errorf("cross-site address form: %d %q", p.StatusCode, reasonOf(p))
		}
		if len(br.locations) != 0 {
			t.Errorf("refusals redirected: %q", br.locations)
		}
	})

	t.Run("an authorisation response at or naming the other provider is refused", func(t *testing.T) {
		br := b.browser()
		p := br.submitEmail("alice@acme.example", "", "/")
		loc, _ := url.Parse(p.Header.Get("Location"))
		if p.StatusCode != 303 || !strings.HasPrefix(loc.String(), b.idpA.URL) {
			t.Fatalf("not sent to acme's provider: %d %s", p.StatusCode, loc)
		}
		if ru := loc.Query().Get("redirect_uri"); ru != b.origin("login")+"/.portcullis/callback/acme-idp" {
			t.Errorf("redirect_uri %q: not acme's provider's own callback", ru)
		}
		state := loc.Query().Get("state")
		// A response at beta's provider's callback for a sign-in that went to acme's
		// (RFC 9700 §4.4.2), and one at acme's callback naming beta's issuer (RFC 9207).
		for _, cb := range []string{
			b.origin("login") + "/.portcullis/callback/beta-idp?" + url.Values{"state": {state}, "code": {"x"}}.Encode(),
			b.origin("login") + "/.portcullis/callback/acme-idp?" + url.Values{"state": {state}, "code": {"x"}, "iss": {b.idpB.URL}}.Encode(),
		} {
			if p := br.do("GET", cb, nil, browserHeaders); p.StatusCode != 400 || reasonOf(p) != "provider_mix_up" {
				t.Errorf("mixed-up response %s: %d %q", cb, p.StatusCode, reasonOf(p))
			}
		}
	})

	t.Run("back-channel logout from one provider ends its person's sessions only", func(t *testing.T) {
		bob, alice := b.browser(), b.browser()
		if p := bob.follow(bob.submitEmail("bob@beta.example", "", "/orgs/beta/x"), "bob", "pw-bob"); p.StatusCode != 200 {
			t.Fatalf("bob: %d", p.StatusCode)
		}
		if p := alice.follow(alice.submitEmail("alice@acme.example", "", "/orgs/acme/x"), "alice", "pw-alice"); p.StatusCode != 200 {
			t.Fatalf("alice: %d", p.StatusCode)
		}
		// beta's provider ends every session of its sub-bob; acme's sub-alice is another
		// person even where a subject repeats across providers.
		if status, err := b.idpB.IdP.SendBackchannelLogout(context.Background(), "sub-bob"); err != nil || status != 200 {
			t.Fatalf("back-channel logout: %d %v", status, err)
		}
		api := http.Header{"Accept": {"application/json"}}
		if p := bob.do("GET", b.origin("login")+"/.portcullis/whoami", nil, api); p.StatusCode != 401 {
			t.Errorf("bob after his provider's logout: %d", p.StatusCode)
		}
		if p := alice.do("GET", b.origin("login")+"/.portcullis/whoami", nil, api); p.StatusCode != 200 {
			t.Errorf("alice after beta's logout: %d", p.StatusCode)
		}
	})
}
