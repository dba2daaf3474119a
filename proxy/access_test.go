package proxy

// Tests of the access layer (access.go, orgs.go and the identity part of forward.go) with a
// fake membership store. Package session has no exported way to put a Session in a request
// context, so the Gate is the real session.Manager, signed in through devidp against a private
// redis-server (sessions only; memberships come from fakeMembers).

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/internal/clientjwt"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// fakeMembers is a Members whose records the test sets directly.
type fakeMembers struct {
	mu      sync.Mutex
	orgs    map[string]*store.Org
	mems    map[string]*store.Membership // org + "\x00" + user
	orgsOf  map[string][]string
	err     error // every call fails with it when set
	lookups int
	keys    map[string]*store.APIKeyOwner // API key index entries, by key id
	clients map[string]*store.ClientOwner // federated client index entries, by issuer + "\x00" + subject
}

func (f *fakeMembers) ClientOwner(_ context.Context, issuer, subject string) (*store.ClientOwner, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.clients[issuer+"\x00"+subject], nil
}

func (f *fakeMembers) APIKeyOwner(_ context.Context, id string) (*store.APIKeyOwner, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.keys[id], nil
}

func newFakeMembers() *fakeMembers {
	return &fakeMembers{orgs: map[string]*store.Org{}, mems: map[string]*store.Membership{}, orgsOf: map[string][]string{},
		keys: map[string]*store.APIKeyOwner{}, clients: map[string]*store.ClientOwner{}}
}

func (f *fakeMembers) Lookup(_ context.Context, org, user string) (*store.Org, *store.Membership, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.err != nil {
		return nil, nil, f.err
	}
	return f.orgs[org], f.mems[org+"\x00"+user], nil
}

// WithPrefetch: the fake reads nothing ahead.
func (f *fakeMembers) WithPrefetch(ctx context.Context, _ string) context.Context { return ctx }

func (f *fakeMembers) OrgsOf(_ context.Context, user string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.orgsOf[user], nil
}

func (f *fakeMembers) set(o *store.Org, m *store.Membership) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if o != nil {
		f.orgs[o.ID] = o
	}
	if m != nil {
		f.mems[m.Org+"\x00"+m.User] = m
		if !slices.Contains(f.orgsOf[m.User], m.Org) {
			f.orgsOf[m.User] = append(f.orgsOf[m.User], m.Org)
		}
	}
}

func (f *fakeMembers) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orgs, f.mems, f.orgsOf, f.err = map[string]*store.Org{}, map[string]*store.Membership{}, map[string][]string{}, nil
	f.keys = map[string]*store.APIKeyOwner{}
	f.clients = map[string]*store.ClientOwner{}
}

func (f *fakeMembers) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// accBed is a Server with the real session gate, fake memberships, an audit recorder, an
// assertion signer and a recording upstream.
type accBed struct {
	t       *testing.T
	srv     *Server
	base    string
	members *fakeMembers
	audit   *audit.Recorder
	signer  *assertion.Signer
	up      *accUpstream
	logMu   sync.Mutex
	logBuf  bytes.Buffer
	issuer  string
	cli     *http.Client
}

type accUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func (u *accUpstream) hits() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *accUpstream) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

type accLog struct{ b *accBed }

func (l accLog) Write(p []byte) (int, error) {
	l.b.logMu.Lock()
	defer l.b.logMu.Unlock()
	return l.b.logBuf.Write(p)
}

func (b *accBed) logs() string {
	b.logMu.Lock()
	defer b.logMu.Unlock()
	return b.logBuf.String()
}

const accAlice = "sub-alice"

func newAccBed(t *testing.T) *accBed {
	t.Helper()
	b := &accBed{t: t, members: newFakeMembers(), audit: &audit.Recorder{}}
	b.up = &accUpstream{}
	b.up.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.up.mu.Lock()
		b.up.seen = append(b.up.seen, r.Header.Clone())
		b.up.mu.Unlock()
		fmt.Fprint(w, "portal")
	}))
	t.Cleanup(b.up.Close)

	ts := httptest.NewUnstartedServer(nil)
	b.base = "https://" + ts.Listener.Addr().String()
	idp := devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis", Secret: "unit-secret", RedirectURIs: []string{b.base + config.CallbackPath}},
			{ID: "billing-sync", Secret: "sync-secret", ClientCredentials: true, JWTAccessTokens: true, Audience: []string{"portal-api"}},
			{ID: "elsewhere", Secret: "else-secret", ClientCredentials: true, JWTAccessTokens: true, Audience: []string{"another-api"}}},
		Users: []devidp.User{{Subject: accAlice, Username: "alice", Password: "pw", Email: "alice@acme.example", EmailVerified: true},
			{Subject: "sub-bob", Username: "bob", Password: "pw", Email: "bob@acme.example", EmailVerified: true}},
	})
	b.issuer = idp.URL
	dir := t.TempDir()
	ca := idp.CAFile(t)
	rs := redistest.Start(t)
	yaml := fmt.Sprintf(`server:
  public_url: %[1]s
  metrics_listen: "off"
  trusted_proxies: [127.0.0.1/32]
tls:
  mode: "off"
forward_auth:
  enabled: true
redis:
  address: %[2]s
oidc:
  issuer: %[3]s
  client_id: portcullis
  client_secret: unit-secret
  ca_root_file: %[4]s
client_jwt:
  issuers:
    - {issuer: %[3]s, audience: portal-api, ca_root_file: %[4]s, orgs: [acme]}
routes:
  - name: public
    path: /pub
    upstream: %[5]s
    public: true
  - name: authn
    path: /authn
    upstream: %[5]s
  - name: org
    path: /o
    upstream: %[5]s
    org: {from: path, path_segment: 2}
  - name: admin
    path: /adm
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    require: {roles: [admin, owner]}
  - name: purp
    path: /p
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    require: {purposes: [audit]}
    identity_headers: {purpose_reason: X-Portcullis-Purpose-Reason, purpose_expires: X-Portcullis-Purpose-Expires}
  - name: kind
    path: /k
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    require: {kinds: [partner, reseller]}
  - name: sess
    path: /s
    upstream: %[5]s
    org: {from: session}
  - name: custom
    path: /c
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    identity_headers: {user: X-Remote-Person, org: X-Tenant}
  - name: hdrs
    path: /hdrs
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    identity_forward: headers
  - name: asrt
    path: /asrt
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    identity_forward: assertion
  - name: nada
    path: /nada
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    identity_forward: none
  - name: tenant
    path: /t
    upstream: %[5]s
    org: {from: header, header: X-Tenant-Id}
  - name: methods
    path: /m
    methods: [GET, POST]
    upstream: %[5]s
    org: {from: path, path_segment: 2}
  - name: api
    path: /api
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    require: {roles: [billing]}
    auth: [api_key]
  - name: both
    path: /both
    upstream: %[5]s
    org: {from: session}
    auth: [session, api_key]
  - name: japi
    path: /japi
    upstream: %[5]s
    org: {from: path, path_segment: 2}
    auth: [client_jwt]
  - name: reset
    path: /reset
    upstream: %[5]s
    public: true
    recovery_guard: {identifier: [{from: form, name: email}]}
  - name: reset-put
    path: /account/reset
    upstream: %[5]s
    public: true
    method_override: allow
    recovery_guard: {methods: [PUT], identifier: [{from: query, name: email}]}
`, b.base, rs.Addr, idp.URL, ca, b.up.URL)
	p := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(p)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	st, err := store.New(cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewJSONHandler(accLog{b}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	m, err := session.NewManager(cfg.OIDC, cfg.Session, cfg.Server.PublicBase, st, session.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	key, _, err := assertion.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if b.signer, err = assertion.New(key, b.base, time.Minute); err != nil {
		t.Fatal(err)
	}
	tokens, err := clientjwt.NewVerifier(cfg.ClientJWT, nil)
	if err != nil {
		t.Fatal(err)
	}
	endpoints := m.Endpoints()
	// The console's place (package console serves it): refusals of members link to its form.
	endpoints["console/"] = http.NotFoundHandler()
	b.srv, err = New(SettingsOf(cfg), Options{Logger: log, Gate: m, StepUp: m, Orgs: m, Endpoints: endpoints, Members: b.members, APIKeys: b.members, Clients: b.members, ClientTokens: tokens, Audit: b.audit, Signer: b.signer,
		RefusalInterval: time.Hour}) // flushed by the tests (accCountedRefusals)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = b.srv
	ts.StartTLS()
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", b.logs())
		}
	})
	b.cli = b.signIn("alice")
	return b
}

// TestAccessLayer runs the access-layer tests on one bed: devidp generates an RSA key at
// start, which is slow under the race detector, and sessions are all the bed keeps.
func TestAccessLayer(t *testing.T) {
	b := newAccBed(t)
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *accBed)
	}{
		{"reason codes", accReasonCodes},
		{"no org", accNoOrg},
		{"identity headers", accIdentityHeaders},
		{"store error fails closed", accStoreErrorFailsClosed},
		{"forward-auth", accForwardAuth},
		{"counted refusals", accCountedRefusals},
		{"machine identities", accMachines},
		{"client-credentials tokens", accClientTokens},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.t = t
			b.members.reset()
			tc.f(t, b)
		})
	}
}

func (b *accBed) user(sub string) string { return store.UserKey(b.issuer, sub) }

// signIn returns a cookie-jar client signed in as user.
func (b *accBed) signIn(user string) *http.Client {
	t := b.t
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r := accDo(t, c, "GET", b.base+"/.portcullis/login?rd=/pub/x", nil, accNav)
	for range 20 {
		switch {
		case r.StatusCode/100 == 3:
			u, _ := r.Request.URL.Parse(r.Header.Get("Location"))
			if u.String() == b.base+"/pub/x" {
				return c
			}
			r = accDo(t, c, "GET", u.String(), nil, accNav)
		case r.StatusCode == 200 && strings.Contains(r.body, "devidp-login"):
			resp, err := devidptest.Login(context.Background(), c, r.Response, user, "pw", "")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r = &accResp{resp, string(body)}
		default:
			t.Fatalf("sign-in stuck: %d %s", r.StatusCode, r.body)
		}
	}
	t.Fatal("sign-in: too many redirects")
	return nil
}

type accResp struct {
	*http.Response
	body string
}

func (r *accResp) problem() (reason, message, hint string) {
	var p struct{ Error, Message, Hint string }
	_ = json.Unmarshal([]byte(r.body), &p)
	return p.Error, p.Message, p.Hint
}

var (
	accAPI = http.Header{"Accept": {"application/json"}}
	accNav = http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}}
)

func accDo(t *testing.T, c *http.Client, method, target string, form url.Values, hdr http.Header) *accResp {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return &accResp{resp, string(b)}
}

func (b *accBed) get(path string, hdr http.Header) *accResp {
	b.t.Helper()
	return accDo(b.t, b.cli, "GET", b.base+path, nil, hdr)
}

func (b *accBed) metrics() string {
	rec := httptest.NewRecorder()
	b.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func acmeOrg() *store.Org {
	return &store.Org{ID: "acme", Name: "Acme Corp", Status: store.OrgActive, Contact: "it@acme.example",
		Domains: []store.Domain{{Name: "acme.example", Status: store.DomainVerified}}}
}

func (b *accBed) aliceIn(org string) *store.Membership {
	return &store.Membership{Org: org, User: b.user(accAlice), Kind: store.KindEmployee, Roles: []string{"user"}, Status: store.MembershipActive}
}

// accReasonCodes maps every decision to its status, JSON error, HTML page, audit event
// and metric, and checks that outsiders learn no more than not_member.
func accReasonCodes(t *testing.T, b *accBed) {
	past, future := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	type setup func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership)
	for _, tc := range []struct {
		name   string
		path   string
		setup  setup
		reason string // the precise reason (audit, log, metric)
		shown  string // what the person is told
	}{
		{"allowed", "/o/acme/x", nil, "", ""},
		{"org unknown", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) { return nil, nil }, "org_unknown", "not_member"},
		{"org suspended, member", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.Status = store.OrgSuspended
			return o, m
		}, "org_inactive", "org_inactive"},
		{"org ended, outsider", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.Status = store.OrgEnded
			return o, nil
		}, "org_inactive", "not_member"},
		{"org merged", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.MergedInto = "bigco"
			return o, m
		}, "org_inactive", "org_inactive"},
		{"contract over", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.ContractEnd = past
			return o, m
		}, "org_inactive", "org_inactive"},
		{"not a member", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) { return o, nil }, "not_member", "not_member"},
		// alice signed in through the shared provider; acme lists only a provider of its own.
		{"provider not trusted", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.Providers = []string{"acme-entra"}
			return o, m
		}, "provider_not_trusted", "provider_not_trusted"},
		{"shared provider listed", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.Providers = []string{"acme-entra", "default"}
			return o, m
		}, "", ""},
		{"revoked", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.Status = store.MembershipRevoked
			return o, m
		}, "membership_revoked", "membership_revoked"},
		{"suspended", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.Status = store.MembershipSuspended
			return o, m
		}, "membership_suspended", "membership_suspended"},
		{"expired", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.ExpiresAt = past
			return o, m
		}, "membership_expired", "membership_expired"},
		{"review overdue", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.ReviewBy = past
			return o, m
		}, "review_overdue", "review_overdue"},
		{"domain lapsed", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.Domains[0].Status = store.DomainLapsed
			return o, m
		}, "email_domain_not_verified", "email_domain_not_verified"},
		{"domain not the org's", "/o/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			o.Domains[0].Name = "acme.test"
			return o, m
		}, "email_domain_not_verified", "email_domain_not_verified"},
		{"kind", "/k/acme/x", nil, "kind_not_allowed", "kind_not_allowed"},
		{"role", "/adm/acme/x", nil, "role_missing", "role_missing"},
		{"purpose missing", "/p/acme/x", nil, "purpose_missing", "purpose_missing"},
		{"purpose expired", "/p/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.Grants = []store.Grant{{Purpose: "audit", ExpiresAt: past}, {Purpose: "other", ExpiresAt: future}}
			return o, m
		}, "purpose_expired", "purpose_expired"},
		{"purpose live", "/p/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.Grants = []store.Grant{{Purpose: "audit", ExpiresAt: future}}
			return o, m
		}, "", ""},
		{"role held", "/adm/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.Roles = []string{"owner"}
			return o, m
		}, "", ""},
		{"kind held", "/k/acme/x", func(o *store.Org, m *store.Membership) (*store.Org, *store.Membership) {
			m.Kind = store.KindReseller
			m.ExpiresAt = time.Now().Add(30 * 24 * time.Hour) // resellers' memberships end (lifecycle policy)
			return o, m
		}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := b.t
			b.t = t
			defer func() { b.t = prev }()
			b.members.reset()
			o, m := acmeOrg(), b.aliceIn("acme")
			if tc.setup != nil {
				o, m = tc.setup(o, m)
			}
			b.members.set(o, m)
			hits, events := b.up.hits(), len(b.audit.Events())
			r := b.get(tc.path, accAPI)
			if tc.reason == "" {
				if r.StatusCode != 200 || r.body != "portal" || b.up.hits() != hits+1 {
					t.Fatalf("allowed: %d %s", r.StatusCode, r.body)
				}
				if n := len(b.audit.Events()); n != events {
					t.Errorf("an allowed request was audited as %+v", b.audit.Events()[events:])
				}
				return
			}
			reason, msg, hint := r.problem()
			if r.StatusCode != 403 || reason != tc.shown || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Errorf("API: %d %q %s, want 403 %s", r.StatusCode, r.Header.Get("Content-Type"), r.body, tc.shown)
			}
			h := b.get(tc.path, accNav)
			if h.StatusCode != 403 || !strings.HasPrefix(h.Header.Get("Content-Type"), "text/html") || !strings.Contains(h.body, "<code>"+tc.shown+"</code>") {
				t.Errorf("browser: %d %q\n%s", h.StatusCode, h.Header.Get("Content-Type"), h.body)
			}
			if b.up.hits() != hits {
				t.Errorf("a denied request reached the upstream")
			}
			if tc.shown == "not_member" {
				// An outsider learns nothing about the org: no precise reason, no contact,
				// nothing of its state.
				for _, leak := range []string{tc.reason, "it@acme.example", "bigco", "ended", "inactive"} {
					if tc.reason != "not_member" && (strings.Contains(r.body, leak) || strings.Contains(h.body, leak)) {
						t.Errorf("the outsider's page reveals %q:\n%s\n%s", leak, r.body, h.body)
					}
				}
				if hint != "" {
					t.Errorf("outsider gets a hint: %q", hint)
				}
			} else {
				if hint != "To get access, ask it@acme.example." || !strings.Contains(h.body, "it@acme.example") {
					t.Errorf("member's page does not say whom to ask: hint %q", hint)
				}
				if msg == "" || msg == "You do not have access to this page." {
					t.Errorf("no specific message for %s: %q", tc.reason, msg)
				}
			}
			// What is missing is named.
			for _, want := range map[string][]string{"role_missing": {"admin", "owner"}, "purpose_missing": {"audit"},
				"purpose_expired": {"audit"}, "kind_not_allowed": {"partner", "reseller"}, "email_domain_not_verified": {"acme.example"}}[tc.shown] {
				if !strings.Contains(msg, want) || !strings.Contains(h.body, want) {
					t.Errorf("%s: the page does not name %q: %q", tc.shown, want, msg)
				}
			}
			// A member lacking a role or a purpose is offered to request it, with what is
			// missing and the way back; nobody else is.
			form := "/.portcullis/console/request?"
			switch tc.shown {
			case "role_missing", "purpose_missing", "purpose_expired":
				want := map[string]string{"role_missing": "role=admin&amp;role=owner", "purpose_missing": "purpose=audit",
					"purpose_expired": "purpose=audit"}[tc.shown]
				if !strings.Contains(h.body, `href="`+form) || !strings.Contains(h.body, "org=acme") || !strings.Contains(h.body, want) ||
					!strings.Contains(h.body, "rd="+url.QueryEscape(tc.path)) || !strings.Contains(h.body, "Request access") {
					t.Errorf("%s: the page does not offer to request %s:\n%s", tc.shown, want, h.body)
				}
			default:
				if strings.Contains(h.body, form) {
					t.Errorf("%s: the page offers a request form:\n%s", tc.shown, h.body)
				}
			}
			// Audited with the precise reason (twice: API and browser), logged and counted.
			evs := b.audit.Events()[events:]
			if len(evs) != 2 {
				t.Fatalf("audit events %+v", evs)
			}
			route := strings.Split(tc.path, "/")[1]
			route = map[string]string{"o": "org", "k": "kind", "adm": "admin", "p": "purp"}[route]
			for _, e := range evs {
				if e.Type != audit.AccessDenied || e.Reason != tc.reason || e.Org != "acme" || e.User != b.user(accAlice) || e.Route != route || e.RequestID == "" ||
					e.Detail["email"] != "alice@acme.example" {
					t.Errorf("audit event %+v", e)
				}
			}
			if !strings.Contains(b.metrics(), fmt.Sprintf(`portcullis_access_denied_total{reason=%q,route=%q}`, tc.reason, route)) {
				t.Errorf("no metric for %s on %s", tc.reason, route)
			}
			if !strings.Contains(b.logs(), `"reason":"`+tc.reason+`"`) {
				t.Errorf("no log line with reason %s", tc.reason)
			}
		})
	}

	// An unknown org and a known one the person is not in look the same from outside.
	b.members.reset()
	b.members.set(&store.Org{ID: "known", Status: store.OrgEnded, Contact: "boss@known.example"}, nil)
	norm := func(s, org string) string {
		s = regexp.MustCompile(`"request_id":"[^"]*"`).ReplaceAllString(s, "")
		return strings.ReplaceAll(s, org, "ORG")
	}
	known, unknown := b.get("/o/known/x", accAPI), b.get("/o/zzzz/x", accAPI)
	if norm(known.body, "known") != norm(unknown.body, "zzzz") || known.StatusCode != unknown.StatusCode {
		t.Errorf("a known org's page differs from an unknown one's:\n%s\n%s", known.body, unknown.body)
	}
}

// accNoOrg: without an organisation, browsers on a session-chosen route go to the
// picker; API clients and other sources get 403 no_org.
func accNoOrg(t *testing.T, b *accBed) {
	hits := b.up.hits()
	alice := b.user(accAlice)
	b.members.set(acmeOrg(), b.aliceIn("acme"))
	b.members.set(&store.Org{ID: "beta", Name: "Beta Ltd", Status: store.OrgActive,
		Domains: []store.Domain{{Name: "acme.example", Status: store.DomainVerified}}}, &store.Membership{Org: "beta", User: alice,
		Kind: store.KindPartner, Roles: []string{"viewer"}, Status: store.MembershipActive, ExpiresAt: time.Now().Add(30 * 24 * time.Hour)})

	// Two memberships, no choice: browser → picker, with the way back.
	r := b.get("/s/page?q=1", accNav)
	if r.StatusCode != 302 || r.Header.Get("Location") != "/.portcullis/orgs?rd="+url.QueryEscape("/s/page?q=1") {
		t.Fatalf("browser without a chosen org: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	r = b.get("/s/page", accAPI)
	if reason, _, _ := r.problem(); r.StatusCode != 403 || reason != "no_org" {
		t.Errorf("API without a chosen org: %d %s", r.StatusCode, r.body)
	}
	// A browser POST is not redirected (that would lose the body); the page links the picker.
	p := accDo(t, b.cli, "POST", b.base+"/s/page", url.Values{"a": {"1"}}, accNav)
	if p.StatusCode != 403 || !strings.Contains(p.body, "<code>no_org</code>") || !strings.Contains(p.body, `href="/.portcullis/orgs?rd=%2fs%2fpage"`) && !strings.Contains(p.body, `href="/.portcullis/orgs?rd=%2Fs%2Fpage"`) {
		t.Errorf("browser POST without a chosen org: %d\n%s", p.StatusCode, p.body)
	}
	// A path source with no valid org: 403 no_org, never the picker.
	for _, path := range []string{"/o/ACME/x", "/o", "/o/a.b/x", "/o/" + strings.Repeat("a", 64) + "/x"} {
		r := b.get(path, accNav)
		if r.StatusCode != 403 || !strings.Contains(r.body, "<code>no_org</code>") {
			t.Errorf("%s: %d %q", path, r.StatusCode, r.Header.Get("Location"))
		}
	}
	// A header source, from a trusted proxy (this bed trusts 127.0.0.1): sent once, it
	// names the org; sent twice it names none, whichever value the portal would read.
	if r := b.get("/t/x", http.Header{"Accept": {"application/json"}, "X-Tenant-Id": {"acme"}}); r.StatusCode != 200 {
		t.Errorf("org from a header: %d %s", r.StatusCode, r.body)
	}
	hits++
	for name, h := range map[string]http.Header{
		"twice":          {"X-Tenant-Id": {"beta", "acme"}},
		"the same twice": {"X-Tenant-Id": {"acme", "acme"}},
		"absent":         {},
		// A CGI portal folds both into HTTP_X_TENANT_ID, and may take beta.
		"in two spellings": {"X-Tenant-Id": {"acme"}, "X_tenant_id": {"beta"}},
	} {
		h["Accept"] = []string{"application/json"}
		if r := b.get("/t/x", h); r.StatusCode != 403 || !strings.Contains(r.body, "no_org") {
			t.Errorf("org header %s: %d %s", name, r.StatusCode, r.body)
		}
	}
	if n := b.up.hits() - hits; n != 0 {
		t.Fatalf("%d requests reached the upstream", n)
	}

	// The picker lists live memberships only, and a chosen org takes effect.
	b.members.set(&store.Org{ID: "gone", Name: "Gone Inc", Status: store.OrgEnded}, &store.Membership{Org: "gone", User: alice,
		Kind: store.KindEmployee, Status: store.MembershipActive})
	pg := b.get("/.portcullis/orgs", accNav)
	if pg.StatusCode != 200 || !strings.Contains(pg.body, "Acme Corp") || !strings.Contains(pg.body, "Beta Ltd") || strings.Contains(pg.body, "Gone Inc") {
		t.Fatalf("picker: %d\n%s", pg.StatusCode, pg.body)
	}
	var js struct {
		Orgs []struct{ ID string }
		CSRF string
	}
	if r := b.get("/.portcullis/orgs", accAPI); json.Unmarshal([]byte(r.body), &js) != nil || len(js.Orgs) != 2 || js.CSRF == "" {
		t.Fatalf("picker JSON: %s", r.body)
	}
	post := func(form url.Values, hdr http.Header) *accResp {
		return accDo(t, b.cli, "POST", b.base+"/.portcullis/orgs", form, hdr)
	}
	if r := post(url.Values{"org": {"beta"}}, nil); r.StatusCode != 403 || !strings.Contains(r.body, "csrf_failed") {
		t.Errorf("POST without a token: %d %s", r.StatusCode, r.body)
	}
	if r := post(url.Values{"org": {"beta"}, "csrf": {js.CSRF}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}); r.StatusCode != 403 {
		t.Errorf("cross-site POST: %d %s", r.StatusCode, r.body)
	}
	if r := post(url.Values{"org": {"gone"}, "csrf": {js.CSRF}}, nil); r.StatusCode != 403 || !strings.Contains(r.body, "not_member") {
		t.Errorf("POST for an ended org: %d %s", r.StatusCode, r.body)
	}
	if r := post(url.Values{"org": {"beta"}, "csrf": {js.CSRF}, "rd": {"//evil.test/x"}}, nil); r.StatusCode != 303 || r.Header.Get("Location") != "/" {
		t.Errorf("POST with an off-site return: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := b.get("/s/page", accAPI); r.StatusCode != 200 || b.up.last().Get("X-Portcullis-Org") != "beta" {
		t.Errorf("after choosing beta: %d %s %v", r.StatusCode, r.body, b.up.last())
	}

	// One membership: never the picker.
	bob := b.signIn("bob")
	b.members.set(acmeOrg(), &store.Membership{Org: "acme", User: b.user("sub-bob"), Kind: store.KindEmployee, Status: store.MembershipActive})
	if r := accDo(t, bob, "GET", b.base+"/s/page", nil, accNav); r.StatusCode != 200 || b.up.last().Get("X-Portcullis-Org") != "acme" {
		t.Errorf("one membership: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	// None at all: nothing to pick; refused as not_member (browser too: no picker to show).
	b.members.reset()
	for _, hdr := range []http.Header{accAPI, accNav} {
		if r := accDo(t, bob, "GET", b.base+"/s/page", nil, hdr); r.StatusCode != 403 || !strings.Contains(r.body, "not_member") {
			t.Errorf("no membership: %d %s", r.StatusCode, r.body)
		}
	}
	if pg := accDo(t, bob, "GET", b.base+"/.portcullis/orgs", nil, accNav); pg.StatusCode != 200 || !strings.Contains(pg.body, "no active membership") {
		t.Errorf("picker without memberships: %d %s", pg.StatusCode, pg.body)
	}
}

// accIdentityHeaders: on an admitted request every identity header is the proxy's,
// exactly once, whatever the client sent; the assertion verifies.
func accIdentityHeaders(t *testing.T, b *accBed) {
	alice := b.user(accAlice)
	m := b.aliceIn("acme")
	m.Roles = []string{"admin", "user"}
	grantEnd := time.Now().Add(time.Hour).Truncate(time.Second)
	// Two live grants of the purpose: the one lasting longest is the one the portal is told.
	m.Grants = []store.Grant{{Purpose: "audit", Reason: "INC-1", ExpiresAt: grantEnd.Add(-time.Minute)},
		{Purpose: "audit", Reason: "INC-123 für\r\nX-Admin: 1 %", ExpiresAt: grantEnd}}
	b.members.set(acmeOrg(), m)
	spoof := http.Header{
		"X-Portcullis-Purpose-Reason":  {"forged"},
		"X-Portcullis-Purpose-Expires": {"2099-01-01T00:00:00Z"},
		"Accept":                       {"application/json"},
		"X-Portcullis-User":            {"mallory"},
		"x_portcullis_user":            {"mallory"},
		"X.Portcullis.Org":             {"beta"},
		"X-PORTCULLIS-ROLES":           {"root"},
		"X-Portcullis-Kind":            {"support", "service"},
		"X-Portcullis-Purpose":         {"everything"},
		"X-Portcullis-Assertion":       {"forged"},
		"X~Portcullis~Email":           {"ceo@acme.example"},
		"X-Remote-Person":              {"mallory"},
		"X_Tenant":                     {"beta"},
		"Connection":                   {"X-Portcullis-User, X-Portcullis-Org, X-Portcullis-Assertion"},
	}
	cgiVals := func(h http.Header, name string) []string {
		var out []string
		for k, v := range h {
			if cgiName(k) == cgiName(name) {
				out = append(out, v...)
			}
		}
		return out
	}
	check := func(route string, want map[string]string) http.Header {
		t.Helper()
		h := b.up.last()
		for name, v := range want {
			got := cgiVals(h, name)
			if v == "" && len(got) != 0 || v != "" && (len(got) != 1 || got[0] != v) {
				t.Errorf("%s: %s = %q, want %q", route, name, got, v)
			}
		}
		return h
	}

	if r := accDo(t, b.cli, "GET", b.base+"/p/acme/x", nil, spoof); r.StatusCode != 200 {
		t.Fatalf("purpose route: %d %s", r.StatusCode, r.body)
	}
	h := check("purp", map[string]string{"X-Portcullis-User": alice, "X-Portcullis-Email": "alice@acme.example",
		"X-Portcullis-Org": "acme", "X-Portcullis-Roles": "admin,user", "X-Portcullis-Kind": "employee",
		"X-Portcullis-Purpose": "audit", "X-Remote-Person": "", "X-Tenant": "",
		"X-Portcullis-Purpose-Reason": "INC-123 f%C3%BCr%0D%0AX-Admin: 1 %25", "X-Portcullis-Purpose-Expires": grantEnd.UTC().Format(time.RFC3339)})
	toks := cgiVals(h, "X-Portcullis-Assertion")
	if len(toks) != 1 {
		t.Fatalf("assertions %q", toks)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b.signer.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.ParseSigned(toks[0], []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var std jwt.Claims
	var own assertion.Claims
	if keys := set.Key(tok.Headers[0].KeyID); len(keys) != 1 {
		t.Fatalf("kid %q not published", tok.Headers[0].KeyID)
	} else if err := tok.Claims(keys[0].Key, &std, &own); err != nil {
		t.Fatal(err)
	}
	if err := std.Validate(jwt.Expected{Issuer: b.base, Subject: alice, AnyAudience: jwt.Audience{"purp"}, Time: time.Now()}); err != nil {
		t.Errorf("assertion: %v", err)
	}
	if own.Org != "acme" || own.Purpose != "audit" || own.Kind != "employee" || strings.Join(own.Roles, ",") != "admin,user" ||
		own.PurposeReason != "INC-123 für\r\nX-Admin: 1 %" || own.PurposeExpiry != grantEnd.Unix() ||
		std.ID != "" || std.Expiry.Time().Sub(std.IssuedAt.Time()) != time.Minute {
		t.Errorf("assertion claims %+v %+v", std, own)
	}

	// A route with its own header names: those carry the identity, and the defaults too are
	// still stripped (every configured name is, on every route).
	if r := accDo(t, b.cli, "GET", b.base+"/c/acme/x", nil, spoof); r.StatusCode != 200 {
		t.Fatalf("custom route: %d %s", r.StatusCode, r.body)
	}
	check("custom", map[string]string{"X-Remote-Person": alice, "X-Tenant": "acme", "X-Portcullis-User": "",
		"X-Portcullis-Org": "", "X-Portcullis-Email": "alice@acme.example", "X-Portcullis-Purpose": "",
		"X-Portcullis-Purpose-Reason": "", "X-Portcullis-Purpose-Expires": ""})

	// identity_forward: the headers without the assertion; the assertion alone; nothing. The
	// client's spoofed identity is stripped in each.
	none := map[string]string{"X-Portcullis-User": "", "X-Portcullis-Email": "", "X-Portcullis-Org": "", "X-Portcullis-Roles": "",
		"X-Portcullis-Kind": "", "X-Portcullis-Purpose": "", "X-Portcullis-Assertion": "", "X-Remote-Person": "", "X-Tenant": ""}
	if r := accDo(t, b.cli, "GET", b.base+"/hdrs/acme/x", nil, spoof); r.StatusCode != 200 {
		t.Fatalf("headers route: %d %s", r.StatusCode, r.body)
	}
	check("hdrs", map[string]string{"X-Portcullis-User": alice, "X-Portcullis-Email": "alice@acme.example",
		"X-Portcullis-Org": "acme", "X-Portcullis-Roles": "admin,user", "X-Portcullis-Kind": "employee",
		"X-Portcullis-Assertion": "", "X-Remote-Person": "", "X-Tenant": ""})
	if r := accDo(t, b.cli, "GET", b.base+"/asrt/acme/x", nil, spoof); r.StatusCode != 200 {
		t.Fatalf("assertion route: %d %s", r.StatusCode, r.body)
	}
	only := maps.Clone(none)
	delete(only, "X-Portcullis-Assertion")
	h = check("asrt", only)
	if toks := cgiVals(h, "X-Portcullis-Assertion"); len(toks) != 1 {
		t.Errorf("assertion route: assertions %q", toks)
	} else if tok, err := jwt.ParseSigned(toks[0], []jose.SignatureAlgorithm{jose.ES256}); err != nil {
		t.Error(err)
	} else {
		var std jwt.Claims
		var own assertion.Claims
		if err := tok.Claims(set.Keys[0].Key, &std, &own); err != nil {
			t.Error(err)
		} else if std.Subject != alice || own.Email != "alice@acme.example" || own.Org != "acme" || strings.Join(own.Roles, ",") != "admin,user" ||
			own.Kind != "employee" || len(std.Audience) != 1 || std.Audience[0] != "asrt" {
			t.Errorf("assertion route: claims %+v %+v", std, own)
		}
	}
	if r := accDo(t, b.cli, "GET", b.base+"/nada/acme/x", nil, spoof); r.StatusCode != 200 {
		t.Fatalf("none route: %d %s", r.StatusCode, r.body)
	}
	check("nada", none)

	// Session only: who, but no org, roles, kind or purpose.
	if r := accDo(t, b.cli, "GET", b.base+"/authn/x", nil, spoof); r.StatusCode != 200 {
		t.Fatalf("authn route: %d %s", r.StatusCode, r.body)
	}
	check("authn", map[string]string{"X-Portcullis-User": alice, "X-Portcullis-Email": "alice@acme.example", "X-Portcullis-Org": "",
		"X-Portcullis-Roles": "", "X-Portcullis-Kind": "", "X-Portcullis-Purpose": ""})
	if n := len(cgiVals(b.up.last(), "X-Portcullis-Assertion")); n != 1 {
		t.Errorf("authn route: %d assertions", n)
	}

	// Public: nothing of ours at all.
	if r := accDo(t, b.cli, "GET", b.base+"/pub/x", nil, spoof); r.StatusCode != 200 {
		t.Fatalf("public route: %d %s", r.StatusCode, r.body)
	}
	for k, v := range b.up.last() {
		if strings.HasPrefix(cgiName(k), "X_PORTCULLIS_") || cgiName(k) == "X_REMOTE_PERSON" || cgiName(k) == "X_TENANT" {
			t.Errorf("public route: %s: %q reached the upstream", k, v)
		}
	}
}

// accStoreErrorFailsClosed: when the membership store cannot answer, every org-scoped
// route and the picker answer 503 store_unavailable, log the outage and forward nothing;
// routes that need no membership keep working.
func accStoreErrorFailsClosed(t *testing.T, b *accBed) {
	b.members.set(acmeOrg(), b.aliceIn("acme"))
	logged := strings.Count(b.logs(), "membership store unavailable; refusing (fail closed)")
	hits := b.up.hits()
	b.members.fail(fmt.Errorf("redis lookup 10.0.0.7:6379: %w: dial tcp: connection refused", store.ErrUnavailable))
	for _, tc := range []struct{ path, route string }{
		{"/o/acme/x", "org"}, {"/adm/acme/x", "admin"}, {"/s/x", "sess"}, {"/.portcullis/orgs", "_orgs"},
	} {
		for _, hdr := range []http.Header{accAPI, accNav} {
			r := b.get(tc.path, hdr)
			if r.StatusCode != 503 || !strings.Contains(r.body, "store_unavailable") {
				t.Errorf("%s: %d %s", tc.path, r.StatusCode, r.body)
			}
			for _, leak := range []string{"10.0.0.7", "connection refused", "redis", "dial tcp"} {
				if strings.Contains(r.body, leak) {
					t.Errorf("%s: the page reveals %q", tc.path, leak)
				}
			}
		}
		if !strings.Contains(b.metrics(), fmt.Sprintf(`portcullis_access_denied_total{reason="store_unavailable",route=%q} 2`, tc.route)) {
			t.Errorf("%s: store_unavailable not counted", tc.route)
		}
	}
	if n := b.up.hits() - hits; n != 0 {
		t.Errorf("%d requests reached the upstream while the store was down", n)
	}
	if n := strings.Count(b.logs(), "membership store unavailable; refusing (fail closed)") - logged; n != 8 {
		t.Errorf("%d outage log lines, want 8", n)
	}
	if r := b.get("/authn/x", accAPI); r.StatusCode != 200 {
		t.Errorf("session-only route: %d", r.StatusCode)
	}
	if r := b.get("/pub/x", accAPI); r.StatusCode != 200 {
		t.Errorf("public route: %d", r.StatusCode)
	}

	// Any error, not just ErrUnavailable, fails closed (a record that does not decode).
	b.members.fail(errors.New("lookup org acme: decode: unexpected end of JSON input"))
	if r := b.get("/o/acme/x", accAPI); r.StatusCode != 503 || strings.Contains(r.body, "JSON") {
		t.Errorf("undecodable record: %d %s", r.StatusCode, r.body)
	}
	b.members.fail(nil)
	if r := b.get("/o/acme/x", accAPI); r.StatusCode != 200 {
		t.Errorf("after recovery: %d %s", r.StatusCode, r.body)
	}

	// No membership store at all: closed too.
	srv, err := New(b.srv.state.Load().set, Options{Gate: b.srv.opts.Gate, Signer: b.signer})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/o/acme/x", nil)
	for _, c := range b.cli.Jar.Cookies(mustURL(t, b.base)) {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "store_unavailable") {
		t.Errorf("no membership store: %d %s", rec.Code, rec.Body.String())
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// accCountedRefusals: no_session and store_unavailable refusals become one event per reason
// and route and interval, with the count and sample request ids; allowed requests and
// refusals audited one by one are not counted.
func accCountedRefusals(t *testing.T, b *accBed) {
	ctx := context.Background()
	b.srv.flushRefusals(ctx) // what earlier tests left
	before := len(b.audit.Events())
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var ids []string
	for _, h := range []http.Header{accAPI, accAPI, accNav} {
		r := accDo(t, anon, "GET", b.base+"/o/acme/x", nil, h)
		if r.StatusCode != 401 && r.StatusCode != 302 {
			t.Fatalf("anonymous: %d", r.StatusCode)
		}
		ids = append(ids, r.Header.Get("X-Request-Id"))
	}
	b.members.set(acmeOrg(), b.aliceIn("acme"))
	if r := b.get("/o/acme/x", accAPI); r.StatusCode != 200 {
		t.Fatalf("alice: %d", r.StatusCode)
	}
	b.members.fail(fmt.Errorf("redis: %w", store.ErrUnavailable))
	if r := b.get("/o/acme/x", accAPI); r.StatusCode != 503 {
		t.Fatalf("store down: %d", r.StatusCode)
	}
	b.members.reset()
	if n := len(b.audit.Events()); n != before {
		t.Fatalf("counted refusals were recorded one by one: %+v", b.audit.Events()[before:])
	}
	b.srv.flushRefusals(ctx)
	got := map[string]audit.Event{}
	for _, ev := range b.audit.Events()[before:] {
		if ev.Type != audit.RefusalsCounted {
			t.Errorf("unexpected event %+v", ev)
		}
		got[ev.Reason+" "+ev.Route] = ev
	}
	ns, su := got["no_session org"], got["store_unavailable org"]
	if len(got) != 2 || ns.Detail["count"] != "3" || su.Detail["count"] != "1" {
		t.Fatalf("counted refusals %+v", got)
	}
	if ns.Detail["sample_request_ids"] != strings.Join(ids, ",") || ns.Detail["since"] == "" || ns.Detail["until"] == "" {
		t.Errorf("no_session event detail %v, want the request ids %v", ns.Detail, ids)
	}
	// The next interval starts empty.
	b.srv.flushRefusals(ctx)
	if n := len(b.audit.Events()); n != before+2 {
		t.Errorf("an empty interval was recorded: %+v", b.audit.Events()[before+2:])
	}
}
