package main

// End-to-end test of machine identities (issue 15) through the real binary: two processes on
// one Redis, the admin API on the first, `portcullis admin machine|key` against it, and API
// keys on an org-scoped API route.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/store"
	"golang.org/x/oauth2/clientcredentials"
)

func TestE2EMachines(t *testing.T) {
	t.Parallel()
	adminListen := freePort(t)
	tunnel, _ := echoTunnel(t)
	b := newAZBedWith(t, azOptions{clients: []devidp.Client{
		// Acme's own IdP, for its integrations (here the same provider as the people's).
		{ID: "acme-sync", Secret: "sync-secret", ClientCredentials: true, JWTAccessTokens: true, Audience: []string{"portal-api"}},
		{ID: "acme-short", Secret: "short-secret", ClientCredentials: true, JWTAccessTokens: true, Audience: []string{"portal-api"},
			AccessTokenLifetime: 2 * time.Second},
		{ID: "elsewhere", Secret: "else-secret", ClientCredentials: true, JWTAccessTokens: true, Audience: []string{"another-api"}},
	}, extra: func(b *azBed, i int) string {
		// Continues the route list: the integration API takes API keys only, and so does
		// its event stream (a WebSocket).
		s := fmt.Sprintf(`  - name: api
    path: /api
    upstream: %s
    org: {from: path, path_segment: 2}
    require: {roles: [user]}
    auth: [api_key]
  - name: api-events
    path: /events
    upstream: %s
    websocket: true
    org: {from: path, path_segment: 2}
    auth: [api_key]
  - name: japi
    path: /japi
    upstream: %s
    org: {from: path, path_segment: 2}
    auth: [client_jwt]
  - name: jevents
    path: /jevents
    upstream: %s
    websocket: true
    org: {from: path, path_segment: 2}
    auth: [client_jwt]
client_jwt:
  issuers:
    - {issuer: %s, audience: portal-api, ca_root_file: %s, orgs: [acme]}
`, b.portal.URL, tunnel.URL, b.portal.URL, tunnel.URL, b.idp.URL, b.ca)
		if i == 0 {
			s += "admin_api:\n  listen: " + adminListen + "\n"
		}
		return s
	}})
	p1, p2 := b.px[0], b.px[1]
	p1.proc.waitLog(t, "portcullis serving", 10*time.Second)
	api := &govAPI{t: t, base: "https://" + adminListen, c: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	erinKey := b.user("sub-erin")

	// The CLI, as an operator would run it: the first token by break-glass, then the API.
	cli := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		code := run(append([]string{"admin"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, errOut := cli("token", "create", "--break-glass", "--config", b.cfgs[0], "--actor", "olga", "--name", "e2e",
		"--owner", "ops|olga", "--operator", "--lifetime", "1d", "--reason", "install", "--json")
	var made struct{ Token string }
	if code != 0 || json.Unmarshal([]byte(out), &made) != nil || made.Token == "" {
		t.Fatalf("token create: %d %s %s", code, out, errOut)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, made.Token+"\n")
	viaAPI := func(args ...string) (int, string, string) {
		t.Helper()
		return cli(append(args, "--server", api.base, "--token-file", tokenFile, "--insecure-skip-verify")...)
	}

	code, out, errOut = viaAPI("machine", "create", "acme", "billing-export", "--name", "Billing export", "--sponsor", erinKey,
		"--role", "user", "--expires", "30d", "--reason", "nightly invoice export (INT-7)")
	if code != 0 || !strings.Contains(out, "acme/billing-export") || !strings.Contains(out, "sponsor="+erinKey) {
		t.Fatalf("machine create: %d %s %s", code, out, errOut)
	}
	// A role the sponsor lacks is refused, naming why.
	if code, _, errOut := viaAPI("machine", "create", "acme", "admin-sync", "--name", "x", "--sponsor", erinKey,
		"--role", "admin", "--expires", "30d", "--reason", "x"); code == 0 || !strings.Contains(errOut, "sponsor does not hold") {
		t.Errorf("a machine with more than its sponsor: %d %s", code, errOut)
	}
	// Break-glass can revoke, not create.
	if code, _, errOut := cli("key", "create", "acme", "billing-export", "--break-glass", "--config", b.cfgs[0], "--reason", "x"); code == 0 || !strings.Contains(errOut, "through the admin API") {
		t.Errorf("break-glass key create: %d %s", code, errOut)
	}
	newKey := func(args ...string) (string, string) {
		t.Helper()
		code, out, errOut := viaAPI(append(args, "--json")...)
		var k struct {
			Key    string
			Record store.APIKey
		}
		if code != 0 || json.Unmarshal([]byte(out), &k) != nil {
			t.Fatalf("%v: %d %s %s", args, code, out, errOut)
		}
		return k.Key, k.Record.ID
	}
	key1, id1 := newKey("key", "create", "acme", "billing-export", "--reason", "first key")

	c := b.newClient()
	call := func(px *azProxy, path, key string, hdr http.Header) *azResp {
		t.Helper()
		h := http.Header{"Accept": {"application/json"}}
		for k, v := range hdr {
			h[k] = v
		}
		if key != "" {
			h.Set("Authorization", "Bearer "+key)
		}
		return c.do("GET", px.base+path, "", nil, h)
	}
	// waitAll polls until every process answers path with the key as wanted.
	// waitAll polls until every process answers path with the key as wanted, for at most the
	// invalidation backstop and a margin beyond within (what has to happen first: an overlap
	// running out, say).
	waitWithin := func(within time.Duration, path, key string, status int, code string) {
		t.Helper()
		for _, px := range b.px {
			deadline := time.Now().Add(within + store.DefaultCacheTTL + 2*time.Second)
			for {
				r := call(px, path, key, nil)
				if r.status == status && (code == "" || r.reason() == code) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s via %s: %d %s, want %d %s", path, px.name, r.status, r.body, status, code)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	waitAll := func(path, key string, status int, code string) { t.Helper(); waitWithin(0, path, key, status, code) }

	t.Run("the key reaches the org's API as the machine, naming its sponsor", func(t *testing.T) {
		for _, px := range b.px {
			r := call(px, "/api/acme/invoices?month=2026-11", key1, nil)
			s := r.seen()
			if r.status != 200 || s == nil {
				t.Fatalf("via %s: %d %s", px.name, r.status, r.body)
			}
			azWantIdentity(t, px.name, s, map[string]string{"X-Portcullis-User": store.MachineUser("acme", "billing-export"),
				"X-Portcullis-Kind": "service", "X-Portcullis-Sponsor": erinKey, "X-Portcullis-Org": "acme", "X-Portcullis-Roles": "user",
				"X-Portcullis-Email": "", "Authorization": ""})
			if s.URI != "/api/acme/invoices?month=2026-11" {
				t.Errorf("portal got %s", s.URI)
			}
		}
	})

	t.Run("the key is refused where it does not belong", func(t *testing.T) {
		hits := b.portal.hits.Load()
		for _, tc := range []struct {
			path, key string
			hdr       http.Header
			status    int
			code      string
		}{
			{"/orgs/acme/home", key1, nil, 401, "credential_not_accepted"},             // a route for people
			{"/api/beta/invoices", key1, nil, 403, "not_member"},                       // another organisation
			{"/api/acme/invoices?api_key=" + key1, "", nil, 401, "credential_missing"}, // a query string
			{"/api/acme/invoices", "", http.Header{"Cookie": {"api_key=" + key1}}, 401, "credential_missing"},
			{"/api/acme/invoices", key1[:len(key1)-2] + "aa", nil, 401, "credential_invalid"},
		} {
			r := call(p2, tc.path, tc.key, tc.hdr)
			if r.status != tc.status || r.reason() != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.path, r.status, r.body, tc.status, tc.code)
			}
			if tc.status == 401 && tc.code != "credential_missing" && tc.code != "credential_not_accepted" &&
				!strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("%s: challenge %q", tc.path, r.header.Get("WWW-Authenticate"))
			}
		}
		// A key beside a session is refused: one request, one principal.
		alice := b.newClient()
		alice.signIn(p1, "alice")
		if r := alice.do("GET", p1.base+"/api/acme/invoices", "", nil, http.Header{"Accept": {"application/json"}, "Authorization": {"Bearer " + key1}}); r.status != 400 || r.reason() != "credential_mixed" {
			t.Errorf("key with a session: %d %s", r.status, r.body)
		}
		if n := b.portal.hits.Load(); n != hits {
			t.Errorf("%d refused requests reached the portal", n-hits)
		}
	})

	t.Run("rotation keeps the old key for the overlap only; revocation ends a key on every replica", func(t *testing.T) {
		const overlap = 3 * time.Second
		key2, id2 := newKey("key", "rotate", "acme", "billing-export", id1, "--overlap", overlap.String(), "--reason", "rotation")
		rotated := time.Now()
		if r := call(p2, "/api/acme/invoices", key1, nil); r.status != 200 && time.Since(rotated) < overlap {
			t.Errorf("the old key within the overlap: %d %s", r.status, r.body)
		}
		waitAll("/api/acme/invoices", key2, 200, "")
		waitWithin(overlap, "/api/acme/invoices", key1, 401, "credential_expired")
		if code, _, errOut := viaAPI("key", "revoke", "acme", "billing-export", id2, "--reason", "leaked in a CI log"); code != 0 {
			t.Fatalf("key revoke: %s", errOut)
		}
		waitAll("/api/acme/invoices", key2, 401, "credential_revoked")
	})

	t.Run("a client-credentials token of the customer's IdP is the machine its client is bound to", func(t *testing.T) {
		ctx := oidc.ClientContext(context.Background(), b.idp.HTTP.Client())
		p, err := oidc.NewProvider(ctx, b.idp.URL)
		if err != nil {
			t.Fatal(err)
		}
		token := func(id, secret string) string {
			t.Helper()
			tok, err := (&clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: p.Endpoint().TokenURL}).Token(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return tok.AccessToken
		}
		good := token("acme-sync", "sync-secret")
		// Not bound yet: a valid token names no machine.
		if r := call(p1, "/japi/acme/x", good, nil); r.status != 401 || r.reason() != "credential_invalid" {
			t.Errorf("an unbound client: %d %s", r.status, r.body)
		}
		for _, sub := range []string{"acme-sync", "acme-short"} {
			if code, _, errOut := viaAPI("machine", "bind", "acme", "billing-export", "--issuer", b.idp.URL, "--subject", sub, "--reason", "acme's IdP client"); code != 0 {
				t.Fatalf("bind %s: %s", sub, errOut)
			}
		}
		if code, _, errOut := viaAPI("machine", "bind", "acme", "billing-export", "--issuer", "https://idp.elsewhere.example", "--subject", "x", "--reason", "x"); code == 0 || !strings.Contains(errOut, "client_jwt.issuers") {
			t.Errorf("bind for an untrusted issuer: %d %s", code, errOut)
		}
		waitAll("/japi/acme/x", good, 200, "")
		for _, px := range b.px {
			s := call(px, "/japi/acme/x", good, nil).seen()
			azWantIdentity(t, px.name, s, map[string]string{"X-Portcullis-User": store.MachineUser("acme", "billing-export"),
				"X-Portcullis-Kind": "service", "X-Portcullis-Sponsor": erinKey, "Authorization": ""})
		}

		// Forged and misused tokens.
		var set jose.JSONWebKeySet
		resp, err := b.idp.HTTP.Client().Get(jwksURL(t, p))
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		claims := map[string]any{"iss": b.idp.URL, "sub": "acme-sync", "aud": "portal-api", "exp": time.Now().Add(5 * time.Minute).Unix(), "iat": time.Now().Unix()}
		sign := func(alg jose.SignatureAlgorithm, key any) string {
			t.Helper()
			s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", set.Keys[0].KeyID).WithType("JWT"))
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.Signed(s).Claims(claims).Serialize()
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		other, _ := rsa.GenerateKey(rand.Reader, 2048)
		pub, _ := set.Keys[0].Public().MarshalJSON()
		cj, _ := json.Marshal(claims)
		b64 := base64.RawURLEncoding.EncodeToString
		for name, tok := range map[string]string{
			"another key":                  sign(jose.RS256, other),
			"alg none":                     b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(cj) + ".",
			"HS256 with the issuer's key":  sign(jose.HS256, pub),
			"another audience":             token("elsewhere", "else-secret"),
			"the key of the right machine": key1,
		} {
			r := call(p2, "/japi/acme/x", tok, nil)
			if r.status != 401 || r.reason() != "credential_invalid" && !(name == "the key of the right machine" && r.reason() == "credential_not_accepted") {
				t.Errorf("%s: %d %s", name, r.status, r.body)
			}
		}
		// An expired token: acme-short's live two seconds; a tunnel opened with one closes then.
		short := token("acme-short", "short-secret")
		conn, br := dialTunnel(t, p1, "/jevents/acme/feed", short)
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(store.DefaultCacheTTL + 3*time.Second))
		var ne net.Error
		if _, err := br.ReadString('\n'); err == nil || errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("a tunnel outlived its token: %v", err)
		}
		waitWithin(2*time.Second, "/japi/acme/x", short, 401, "credential_expired")
		// Unbinding ends the client's tokens on every replica.
		if code, _, errOut := viaAPI("machine", "unbind", "acme", "billing-export", "--issuer", b.idp.URL, "--subject", "acme-sync", "--reason", "client rotated"); code != 0 {
			t.Fatalf("unbind: %s", errOut)
		}
		waitAll("/japi/acme/x", good, 401, "credential_invalid")
	})

	t.Run("offboarding the sponsor ends the machine's access on every replica, open tunnels too", func(t *testing.T) {
		key3, _ := newKey("key", "create", "acme", "billing-export", "--reason", "after the leak")
		waitAll("/api/acme/invoices", key3, 200, "")
		conn, br := dialTunnel(t, p2, "/events/acme/feed", key3)
		defer conn.Close()
		if code, out, errOut := viaAPI("event", "offboarded", erinKey, "--reason", "erin left the company"); code != 0 {
			t.Fatalf("offboard: %s %s", out, errOut)
		}
		start := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(store.DefaultCacheTTL + 3*time.Second))
		if _, err := br.ReadString('\n'); err == nil {
			t.Error("the tunnel is still open after the sponsor's offboarding")
		} else if d := time.Since(start); d > store.DefaultCacheTTL+2*time.Second {
			t.Errorf("the tunnel closed %v after the offboarding", d)
		}
		// The machine is suspended and its keys revoked in the same change.
		waitAll("/api/acme/invoices", key3, 401, "credential_revoked")
		code, out, _ := viaAPI("machine", "list", "acme")
		if code != 0 || !strings.Contains(out, "acme/billing-export  suspended") || strings.Contains(out, " live ") {
			t.Errorf("machine list after offboarding: %s", out)
		}
		evs, _, err := b.aud.Tail(t.Context(), "0", 10000, 0)
		if err != nil {
			t.Fatal(err)
		}
		var suspended, created int
		for _, e := range evs {
			switch e.Type {
			case audit.MachineSuspended:
				suspended++
				if e.Detail["sponsor"] != erinKey && e.Operation == "" {
					t.Errorf("suspension event %+v", e)
				}
			case audit.APIKeyCreated, audit.APIKeyRotated:
				created++
				if e.Actor != "ops|olga" || strings.Contains(string(e.After), key3[len(key3)-52:]) {
					t.Errorf("key event %+v", e)
				}
			}
		}
		if suspended != 1 || created != 3 {
			t.Errorf("%d machine.suspended, %d key creations in the audit trail", suspended, created)
		}
	})
}

// jwksURL is the provider's published key set.
func jwksURL(t *testing.T, p *oidc.Provider) string {
	var d struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := p.Claims(&d); err != nil || d.JWKS == "" {
		t.Fatalf("jwks_uri: %v", err)
	}
	return d.JWKS
}

// dialTunnel opens a WebSocket on px's path with a bearer credential and checks that it echoes.
func dialTunnel(t *testing.T, px *azProxy, path, credential string) (net.Conn, *bufio.Reader) {
	t.Helper()
	host := strings.TrimPrefix(px.base, "https://")
	conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, host, credential)
	br := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		conn.Close()
		t.Fatalf("websocket on %s: %v %v", path, resp, err)
	}
	if _, err := io.WriteString(conn, "ping\n"); err != nil {
		t.Fatal(err)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	return conn, br
}
