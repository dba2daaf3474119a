package clientjwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// TestVerifier: a client-credentials token of the trusted issuer, for the audience, names its
// client; every way of forging or misusing one is refused: another key, alg none, an HMAC
// signed with the issuer's public key, another audience, an expired token, another issuer.
func TestVerifier(t *testing.T) {
	idp := devidptest.Start(t, devidp.Config{Clients: []devidp.Client{
		{ID: "billing-sync", Secret: "s1", ClientCredentials: true, JWTAccessTokens: true, Audience: []string{"portal-api"},
			Claims: map[string]any{"client_id": "billing-sync"}},
		{ID: "elsewhere", Secret: "s2", ClientCredentials: true, JWTAccessTokens: true, Audience: []string{"another-api"}},
	}})
	ctx := context.Background()
	var disc struct {
		TokenEndpoint string `json:"token_endpoint"`
		JWKSURI       string `json:"jwks_uri"`
	}
	if resp, err := idp.HTTP.Client().Get(idp.URL + "/.well-known/openid-configuration"); err != nil || json.NewDecoder(resp.Body).Decode(&disc) != nil {
		t.Fatalf("discovery: %v", err)
	}
	token := func(id, secret string) string {
		t.Helper()
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: disc.TokenEndpoint}
		tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, idp.HTTP.Client()))
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	var clock atomic.Pointer[time.Time]
	now := func() time.Time {
		if c := clock.Load(); c != nil {
			return *c
		}
		return time.Now()
	}
	cfg := config.ClientJWT{Issuers: []config.ClientIssuer{{Issuer: idp.URL, Audience: "portal-api", Algorithms: []string{"RS256", "ES256"},
		SubjectClaim: "sub", CARootFile: idp.CAFile(t), Orgs: []string{"acme"}}}}
	v, err := NewVerifier(cfg, now)
	if err != nil {
		t.Fatal(err)
	}

	good := token("billing-sync", "s1")
	c, err := v.Verify(ctx, good)
	if err != nil || c.Issuer != idp.URL || c.Subject != "billing-sync" || c.Expiry.Before(time.Now()) {
		t.Fatalf("a good token: %+v %v", c, err)
	}
	if c2, err := v.Verify(ctx, good); err != nil || c2.Subject != c.Subject || c2.Expiry != c.Expiry {
		t.Errorf("the same token again: %+v %v", c2, err)
	}

	// The issuer's published key, for the attacks that use it.
	resp, err := idp.HTTP.Client().Get(disc.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("the issuer's keys: %v %s", err, raw)
	}
	kid := set.Keys[0].KeyID
	claims := func(iss, aud string) map[string]any {
		return map[string]any{"iss": iss, "sub": "billing-sync", "aud": aud, "exp": time.Now().Add(5 * time.Minute).Unix(),
			"iat": time.Now().Unix()}
	}
	sign := func(alg jose.SignatureAlgorithm, key any, c map[string]any) string {
		t.Helper()
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid).WithType("JWT"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(s).Claims(c).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := base64.RawURLEncoding.EncodeToString
	cj, _ := json.Marshal(claims(idp.URL, "portal-api"))
	pub, _ := set.Keys[0].Public().MarshalJSON()
	for name, tok := range map[string]string{
		"signed by another RSA key, the issuer's kid": sign(jose.RS256, rsaKey, claims(idp.URL, "portal-api")),
		"signed by another EC key":                    sign(jose.ES256, ecKey, claims(idp.URL, "portal-api")),
		"alg none":                                    b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(cj) + ".",
		"HS256 keyed with the issuer's public key":    sign(jose.HS256, pub, claims(idp.URL, "portal-api")),
		"another audience":                            token("elsewhere", "s2"),
		"another issuer":                              sign(jose.RS256, rsaKey, claims("https://idp.evil.example", "portal-api")),
		"a tampered payload":                          strings.Join([]string{strings.Split(good, ".")[0], b64([]byte(`{"iss":"` + idp.URL + `","sub":"admin","aud":"portal-api","exp":9999999999}`)), strings.Split(good, ".")[2]}, "."),
		"not a JWT":                                   "pc_abc",
	} {
		if c, err := v.Verify(ctx, tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %+v %v, want ErrInvalid", name, c, err)
		}
	}

	// Expired: the clock moves past the token's exp (the cache does not outlive it either).
	later := time.Now().Add(10 * time.Minute)
	clock.Store(&later)
	if _, err := v.Verify(ctx, good); !errors.Is(err, ErrExpired) {
		t.Errorf("a cached token past its exp: %v", err)
	}
	if _, err := v.Verify(ctx, token("billing-sync", "s1")); !errors.Is(err, ErrExpired) {
		t.Errorf("a new token past its exp: %v", err)
	}
	clock.Store(nil)

	// Another subject claim: client_id.
	cfg.Issuers[0].SubjectClaim = "client_id"
	v2, _ := NewVerifier(cfg, nil)
	if c, err := v2.Verify(ctx, good); err != nil || c.Subject != "billing-sync" {
		t.Errorf("subject_claim client_id: %+v %v", c, err)
	}
	// No issuer configured: nothing is valid.
	none, _ := NewVerifier(config.ClientJWT{}, nil)
	if _, err := none.Verify(ctx, good); !errors.Is(err, ErrInvalid) {
		t.Errorf("no issuers: %v", err)
	}
}

// TestVerifierIssuerDown: an issuer that cannot be discovered is an outage, not a bad token,
// and is not asked again at every request.
func TestVerifierIssuerDown(t *testing.T) {
	v, err := NewVerifier(config.ClientJWT{Issuers: []config.ClientIssuer{{Issuer: "https://127.0.0.1:1", Audience: "portal-api",
		Algorithms: []string{"RS256"}, SubjectClaim: "sub"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, nil)
	tok, _ := jwt.Signed(s).Claims(map[string]any{"iss": "https://127.0.0.1:1", "sub": "x", "aud": "portal-api", "exp": time.Now().Add(time.Minute).Unix()}).Serialize()
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, ErrUnavailable) {
			t.Errorf("issuer down: %v", err)
		}
	}
	if _, err := NewIssuer("https://x", "a", []string{"HS256"}, "", "t", nil); err == nil {
		t.Error("an HMAC algorithm was accepted")
	}
}

// testIssuer is a minimal issuer: discovery and a key set, one RSA key, counting key set
// fetches; it signs what a test asks.
type testIssuer struct {
	*httptest.Server
	key     *rsa.PrivateKey
	fetches atomic.Int64
	down    atomic.Bool
}

func newTestIssuer(t *testing.T) *testIssuer {
	ti := &testIssuer{}
	ti.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	mux := http.NewServeMux()
	ti.Server = httptest.NewServer(mux)
	t.Cleanup(ti.Close)
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": ti.URL, "jwks_uri": ti.URL + "/keys", "authorization_endpoint": ti.URL + "/auth",
			"token_endpoint": ti.URL + "/token", "response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		ti.fetches.Add(1)
		if ti.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ti.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	return ti
}

func (ti *testIssuer) sign(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (ti *testIssuer) claims(extra map[string]any) map[string]any {
	c := map[string]any{"iss": ti.URL, "sub": "sync-client", "aud": "portal-api", "exp": time.Now().Add(5 * time.Minute).Unix(), "iat": time.Now().Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// TestVerifierPersonTokens: a person's token of the same issuer and audience is not a client's:
// an ID token's markers refuse it, and with subject_claim client_id or azp a token whose sub is
// someone else than that client is refused unless required claims say what an app token is.
func TestVerifierPersonTokens(t *testing.T) {
	ti := newTestIssuer(t)
	mk := func(claim string, required map[string]string) *Verifier {
		v, err := NewVerifier(config.ClientJWT{Issuers: []config.ClientIssuer{{Issuer: ti.URL, Audience: "portal-api", Algorithms: []string{"RS256"},
			SubjectClaim: claim, Orgs: []string{"acme"}, RequiredClaims: required}}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ctx := context.Background()
	sub := mk("sub", nil)
	if c, err := sub.Verify(ctx, ti.sign(t, ti.key, "k1", ti.claims(nil))); err != nil || c.Subject != "sync-client" || len(c.Orgs) != 1 {
		t.Fatalf("a client's token: %+v %v", c, err)
	}
	for _, m := range personMarkers {
		if _, err := sub.Verify(ctx, ti.sign(t, ti.key, "k1", ti.claims(map[string]any{m: "x"}))); !errors.Is(err, ErrInvalid) {
			t.Errorf("a token with %s: %v", m, err)
		}
	}
	cid := mk("client_id", nil)
	if _, err := cid.Verify(ctx, ti.sign(t, ti.key, "k1", ti.claims(map[string]any{"sub": "alice", "client_id": "sync-client"}))); !errors.Is(err, ErrInvalid) {
		t.Errorf("a person's token through the client, as the client: %v", err)
	}
	if c, err := cid.Verify(ctx, ti.sign(t, ti.key, "k1", ti.claims(map[string]any{"client_id": "sync-client"}))); err != nil || c.Subject != "sync-client" {
		t.Errorf("the client's own token by client_id: %+v %v", c, err)
	}
	app := mk("azp", map[string]string{"idtyp": "app"})
	if c, err := app.Verify(ctx, ti.sign(t, ti.key, "k1", ti.claims(map[string]any{"sub": "sp-object-id", "azp": "app-id", "idtyp": "app"}))); err != nil || c.Subject != "app-id" {
		t.Errorf("an app token marked by a required claim: %+v %v", c, err)
	}
	for _, idtyp := range []any{"user", nil, 1} {
		extra := map[string]any{"azp": "app-id"}
		if idtyp != nil {
			extra["idtyp"] = idtyp
		}
		if _, err := app.Verify(ctx, ti.sign(t, ti.key, "k1", ti.claims(extra))); !errors.Is(err, ErrInvalid) {
			t.Errorf("idtyp %v: %v", idtyp, err)
		}
	}
}

// TestKeySetFetches: forged tokens cost the issuer no request under a known key id and one
// per interval under made-up ones; an issuer whose keys cannot be fetched is an outage.
func TestKeySetFetches(t *testing.T) {
	ti := newTestIssuer(t)
	v, err := NewVerifier(config.ClientJWT{Issuers: []config.ClientIssuer{{Issuer: ti.URL, Audience: "portal-api", Algorithms: []string{"RS256"},
		SubjectClaim: "sub", Orgs: []string{"acme"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Verify(ctx, ti.sign(t, ti.key, "k1", ti.claims(nil))); err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	before := ti.fetches.Load()
	for i := range 20 {
		kid := "k1"
		if i%2 == 1 {
			kid = "made-up-" + string(rune('a'+i))
		}
		if _, err := v.Verify(ctx, ti.sign(t, other, kid, ti.claims(map[string]any{"jti": i}))); !errors.Is(err, ErrInvalid) {
			t.Errorf("forged token %d: %v", i, err)
		}
	}
	if n := ti.fetches.Load() - before; n > 1 {
		t.Errorf("20 forged tokens fetched the key set %d times, want at most once", n)
	}

	// Keys that cannot be fetched: an outage, not a bad token.
	ti2 := newTestIssuer(t)
	ti2.down.Store(true)
	v2, _ := NewVerifier(config.ClientJWT{Issuers: []config.ClientIssuer{{Issuer: ti2.URL, Audience: "portal-api", Algorithms: []string{"RS256"},
		SubjectClaim: "sub", Orgs: []string{"acme"}}}}, nil)
	if _, err := v2.Verify(ctx, ti2.sign(t, ti2.key, "k1", ti2.claims(nil))); !errors.Is(err, ErrUnavailable) {
		t.Errorf("keys down: %v", err)
	}
}
