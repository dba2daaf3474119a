package devidp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Test fixtures. The relying party's redirect URI is on a host that does not
// exist: the browser stops at the redirect to it and the test reads the code
// from the Location header, as the RP's callback handler would.
const (
	rpRedirect    = "https://rp.example.test/oauth2/callback"
	rpPostLogout  = "https://rp.example.test/logged-out"
	confidentialC = "portcullis"
	confidentialS = "s3cret-for-tests"
	publicC       = "public-spa"
	// totpSecret is base32 for the bytes "12345678901234567890" (RFC 6238
	// test vector key).
	totpSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
)

var testUsers = []User{
	{Subject: "u-alice", Username: "alice", Password: "alice-pw", Email: "alice@acme.example", EmailVerified: true, Name: "Alice Example", TOTPSecret: totpSecret},
	{Subject: "u-bob", Username: "bob", Password: "bob-pw", Email: "bob@acme.example", EmailVerified: false, Name: "Bob Example"},
}

// testClock is an adjustable clock for Config.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// testbed is a provider served over TLS, seen by a go-oidc relying party.
type testbed struct {
	idp   *Provider
	srv   *httptest.Server
	clock *testClock
	ctx   context.Context // carries the TLS-trusting client for go-oidc and oauth2
	rp    *oidc.Provider
	conf  oauth2.Config
}

// newTestbed starts a provider; mutate may change the config first (its
// Issuer is already set to the server's URL).
func newTestbed(t *testing.T, mutate func(*Config)) *testbed {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	clock := &testClock{t: time.Now()}
	cfg := Config{
		Issuer: srv.URL,
		Clients: []Client{
			{ID: confidentialC, Secret: confidentialS, RedirectURIs: []string{rpRedirect}, PostLogoutRedirectURIs: []string{rpPostLogout}},
			{ID: publicC, RedirectURIs: []string{rpRedirect}},
		},
		Users: testUsers,
		Now:   clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	idp, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.Config.Handler = idp.Handler()
	return attachRP(t, srv, idp, clock, srv.URL)
}

// attachRP sets up the go-oidc relying party for a provider served by srv at
// issuer.
func attachRP(t *testing.T, srv *httptest.Server, idp *Provider, clock *testClock, issuer string) *testbed {
	t.Helper()
	ctx := oidc.ClientContext(context.Background(), srv.Client())
	ctx = context.WithValue(ctx, oauth2.HTTPClient, srv.Client())
	rp, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("oidc.NewProvider: %v", err)
	}
	return &testbed{
		idp: idp, srv: srv, clock: clock, ctx: ctx, rp: rp,
		conf: oauth2.Config{
			ClientID:     confidentialC,
			ClientSecret: confidentialS,
			Endpoint:     rp.Endpoint(),
			RedirectURL:  rpRedirect,
			Scopes:       []string{oidc.ScopeOpenID, "email", "profile"},
		},
	}
}

// browser is a cookie-jar client that trusts the test server and stops at
// the relying party's redirect URI.
func (tb *testbed) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Transport: tb.srv.Client().Transport,
		Jar:       jar,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host == "rp.example.test" {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// flow is one authorization request in progress.
type flow struct {
	verifier, state, nonce string
	browser                *http.Client
	form                   loginForm
}

// loginForm is the login page as a test sees it.
type loginForm struct {
	status   int
	body     string
	action   string
	hidden   url.Values
	hasOTP   bool
	username string // pre-filled value
}

var (
	reAction   = regexp.MustCompile(`<form id="devidp-login" method="post" action="([^"]+)">`)
	reHidden   = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	reUsername = regexp.MustCompile(`name="username"[^>]*value="([^"]*)"`)
)

func parseLoginForm(t *testing.T, resp *http.Response) loginForm {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	f := loginForm{status: resp.StatusCode, body: string(b), hidden: url.Values{}}
	if m := reAction.FindStringSubmatch(f.body); m != nil {
		f.action = html.UnescapeString(m[1])
	}
	for _, m := range reHidden.FindAllStringSubmatch(f.body, -1) {
		f.hidden.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	if m := reUsername.FindStringSubmatch(f.body); m != nil {
		f.username = html.UnescapeString(m[1])
	}
	f.hasOTP = strings.Contains(f.body, `name="otp"`)
	return f
}

func randString(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// start sends the browser to the authorization endpoint with PKCE, state and
// nonce, and returns the login form it lands on.
func (tb *testbed) start(t *testing.T, opts ...oauth2.AuthCodeOption) *flow {
	t.Helper()
	f := &flow{verifier: oauth2.GenerateVerifier(), state: randString(t), nonce: randString(t), browser: tb.browser(t)}
	opts = append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.verifier), oidc.Nonce(f.nonce)}, opts...)
	resp, err := f.browser.Get(tb.conf.AuthCodeURL(f.state, opts...))
	if err != nil {
		t.Fatalf("GET authorize: %v", err)
	}
	f.form = parseLoginForm(t, resp)
	if f.form.status != http.StatusOK || f.form.action == "" {
		t.Fatalf("authorize did not lead to a login form: %d\n%s", f.form.status, f.form.body)
	}
	return f
}

// submit posts the login form. It returns the redirect to the relying party
// (nil if there was none) and the page shown otherwise.
func (f *flow) submit(t *testing.T, username, password, otp string) (*url.URL, loginForm) {
	t.Helper()
	v := url.Values{}
	for k, vs := range f.form.hidden {
		v[k] = vs
	}
	v.Set("username", username)
	v.Set("password", password)
	if otp != "" {
		v.Set("otp", otp)
	}
	resp, err := f.browser.PostForm(f.form.action, v)
	if err != nil {
		t.Fatalf("POST login: %v", err)
	}
	if resp.StatusCode == http.StatusFound {
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatal(err)
		}
		return loc, loginForm{status: resp.StatusCode}
	}
	page := parseLoginForm(t, resp)
	if page.action != "" {
		f.form = page
	}
	return nil, page
}

// code checks the redirect carries our state and returns the code.
func (f *flow) code(t *testing.T, loc *url.URL) string {
	t.Helper()
	if loc == nil {
		t.Fatal("no redirect to the relying party")
	}
	q := loc.Query()
	if got := q.Get("state"); got != f.state {
		t.Fatalf("state = %q, want %q", got, f.state)
	}
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorization error %q: %s", e, q.Get("error_description"))
	}
	c := q.Get("code")
	if c == "" {
		t.Fatalf("no code in %s", loc)
	}
	return c
}

// idClaims is what the tests read from an ID token.
type idClaims struct {
	Iss           string   `json:"iss"`
	Sub           string   `json:"sub"`
	Aud           any      `json:"aud"`
	Exp           int64    `json:"exp"`
	Iat           int64    `json:"iat"`
	AuthTime      *int64   `json:"auth_time"`
	Nonce         string   `json:"nonce"`
	ACR           *string  `json:"acr"`
	AMR           []string `json:"amr"`
	SID           string   `json:"sid"`
	Email         string   `json:"email"`
	EmailVerified *bool    `json:"email_verified"`
	Name          string   `json:"name"`
	raw           map[string]json.RawMessage
}

// exchange redeems the code as the confidential client and returns the raw
// ID token.
func (tb *testbed) exchange(t *testing.T, f *flow, code string) (*oauth2.Token, string) {
	t.Helper()
	tok, err := tb.conf.Exchange(tb.ctx, code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("token response has no id_token")
	}
	return tok, raw
}

// verify checks an ID token as the relying party does, including the nonce.
func (tb *testbed) verify(t *testing.T, f *flow, raw string) idClaims {
	t.Helper()
	idt, err := tb.rp.Verifier(&oidc.Config{ClientID: tb.conf.ClientID}).Verify(tb.ctx, raw)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if idt.Nonce != f.nonce {
		t.Fatalf("nonce = %q, want %q", idt.Nonce, f.nonce)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		// Only tests that force malformed claims get here; they read c.raw.
		t.Logf("ID token claims do not fit idClaims: %v", err)
	}
	if err := idt.Claims(&c.raw); err != nil {
		t.Fatal(err)
	}
	return c
}

// login runs the whole flow for username and returns the verified claims.
func (tb *testbed) login(t *testing.T, username, password, otp string, opts ...oauth2.AuthCodeOption) (idClaims, string) {
	t.Helper()
	f := tb.start(t, opts...)
	loc, page := f.submit(t, username, password, otp)
	if loc == nil {
		t.Fatalf("login as %s failed: %d\n%s", username, page.status, page.body)
	}
	_, raw := tb.exchange(t, f, f.code(t, loc))
	return tb.verify(t, f, raw), raw
}
