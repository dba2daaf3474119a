package session_test

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// These tests need tokens no honest provider issues, so they sign them here: against a stub
// provider whose key the test holds (claim checks), and against devidp's published key used as an
// HMAC secret (algorithm confusion). The happy paths use devidp (see signin_test.go).

var event = map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}

// jwt signs claims with header fields hdr: alg RS256/RS512 with key, HS256 with secret, none.
func jwt(t *testing.T, hdr, claims map[string]any, key *rsa.PrivateKey, secret []byte) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	var sig []byte
	switch hdr["alg"] {
	case "RS256":
		d := sha256.Sum256([]byte(in))
		sig, _ = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	case "RS512":
		d := sha512.Sum512([]byte(in))
		sig, _ = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA512, d[:])
	case "HS256":
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(in))
		sig = m.Sum(nil)
	case "none":
	default:
		t.Fatalf("alg %v", hdr["alg"])
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// stubOP is a minimal provider: discovery and a JWKS with one RSA key the test signs with.
type stubOP struct {
	srv *httptest.Server
	key *rsa.PrivateKey
	iss string
}

func newStubOP(t *testing.T) *stubOP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s := &stubOP{key: key}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]any{
				"issuer": s.iss, "authorization_endpoint": s.iss + "/authorize", "token_endpoint": s.iss + "/token",
				"jwks_uri": s.iss + "/jwks", "id_token_signing_alg_values_supported": []string{"RS256"},
			})
		case "/jwks":
			json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]any{
				"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
				"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
				"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
			}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.srv.Close)
	s.iss = s.srv.URL
	return s
}

func (s *stubOP) manager(t *testing.T) (*session.Manager, *store.Store) {
	t.Helper()
	srv := redistest.Shared(t)
	st, err := store.New(config.Redis{Address: srv.Addr, DB: srv.DB(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ru, _ := url.Parse("https://portal.example.test/.portcullis/callback")
	iu, _ := url.Parse(s.iss)
	m, err := session.NewManager(config.OIDC{
		Issuer: s.iss, IssuerURL: iu, ClientID: clientID, RedirectURI: ru, Scopes: []string{"openid"},
		SigningAlgs: []string{"RS256"}, ClockSkew: config.Duration(30 * time.Second),
	}, config.Session{IdleTimeout: config.Duration(time.Hour), AbsoluteTimeout: config.Duration(2 * time.Hour),
		TouchInterval: config.Duration(time.Minute), LoginTimeout: config.Duration(time.Minute)},
		nil, st, session.Options{HTTPClient: s.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m, st
}

// publicKeyForms are the byte strings an attacker may try as an HMAC secret: the provider's RSA
// public key as PEM (PKIX and PKCS#1) and as its JWK JSON.
func publicKeyForms(pub *rsa.PublicKey, kid string) map[string][]byte {
	pkix, _ := x509.MarshalPKIXPublicKey(pub)
	jwk, _ := json.Marshal(map[string]any{"kty": "RSA", "kid": kid, "n": base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes())})
	return map[string][]byte{
		"pem":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"pkcs1":  pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}),
		"jwk":    jwk,
		"empty":  {},
		"n only": pub.N.Bytes(),
	}
}

func TestBackchannelLogoutTokenChecks(t *testing.T) {
	op := newStubOP(t)
	m, _ := op.manager(t)
	h := m.Endpoints()["backchannel-logout"]
	attacker, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	base := func() map[string]any {
		return map[string]any{"iss": op.iss, "aud": clientID, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
			"jti": fmt.Sprintf("jti-%d", time.Now().UnixNano()), "events": event, "sid": "sid-1", "sub": "sub-1"}
	}
	with := func(f func(map[string]any)) map[string]any { c := base(); f(c); return c }
	rs := map[string]any{"alg": "RS256", "kid": "k1", "typ": "logout+jwt"}
	post := func(tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/.portcullis/backchannel-logout", strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	valid := jwt(t, rs, base(), op.key, nil)
	cases := []struct {
		name string
		tok  string
	}{
		{"no events", jwt(t, rs, with(func(c map[string]any) { delete(c, "events") }), op.key, nil)},
		{"another event", jwt(t, rs, with(func(c map[string]any) { c["events"] = map[string]any{"urn:other": map[string]any{}} }), op.key, nil)},
		{"event not an object", jwt(t, rs, with(func(c map[string]any) {
			c["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout": true}
		}), op.key, nil)},
		{"nonce", jwt(t, rs, with(func(c map[string]any) { c["nonce"] = "n" }), op.key, nil)},
		{"empty nonce", jwt(t, rs, with(func(c map[string]any) { c["nonce"] = "" }), op.key, nil)},
		{"no iat", jwt(t, rs, with(func(c map[string]any) { delete(c, "iat") }), op.key, nil)},
		{"iat in the future", jwt(t, rs, with(func(c map[string]any) { c["iat"] = now.Add(10 * time.Minute).Unix() }), op.key, nil)},
		{"no jti", jwt(t, rs, with(func(c map[string]any) { delete(c, "jti") }), op.key, nil)},
		{"neither sub nor sid", jwt(t, rs, with(func(c map[string]any) { delete(c, "sub"); delete(c, "sid") }), op.key, nil)},
		{"another audience", jwt(t, rs, with(func(c map[string]any) { c["aud"] = "someone-else" }), op.key, nil)},
		{"another issuer", jwt(t, rs, with(func(c map[string]any) { c["iss"] = "https://idp.rogue.test" }), op.key, nil)},
		{"expired", jwt(t, rs, with(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }), op.key, nil)},
		{"alg none", jwt(t, map[string]any{"alg": "none", "kid": "k1"}, base(), nil, nil)},
		{"RS512 not allowed", jwt(t, map[string]any{"alg": "RS512", "kid": "k1"}, base(), op.key, nil)},
		{"attacker key, provider kid", jwt(t, rs, base(), attacker, nil)},
		{"attacker key in jku", jwt(t, map[string]any{"alg": "RS256", "kid": "k1", "jku": "https://evil.test/jwks.json"}, base(), attacker, nil)},
		{"attacker key embedded as jwk", jwt(t, map[string]any{"alg": "RS256", "jwk": map[string]any{"kty": "RSA",
			"n": base64.RawURLEncoding.EncodeToString(attacker.N.Bytes()), "e": "AQAB"}}, base(), attacker, nil)},
		{"signature stripped", valid[:strings.LastIndexByte(valid, '.')+1]},
		{"not a JWT", "abc"},
		{"empty", ""},
	}
	for name, secret := range publicKeyForms(&op.key.PublicKey, "k1") {
		cases = append(cases, struct{ name, tok string }{"HS256 keyed with the public key as " + name,
			jwt(t, map[string]any{"alg": "HS256", "kid": "k1"}, base(), nil, secret)})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := post(tc.tok)
			if w.Code != 400 || !strings.Contains(w.Body.String(), string(reason.InvalidLogoutToken)) ||
				w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("%d %v %s", w.Code, w.Header(), w.Body)
			}
		})
	}
	if w := post(valid); w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("valid token: %d %s", w.Code, w.Body)
	}
	if w := post(valid); w.Code != 400 {
		t.Errorf("replayed jti: %d", w.Code)
	}
	r := httptest.NewRequest("GET", "/.portcullis/backchannel-logout?logout_token="+valid, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
}

func TestIDTokenForgeries(t *testing.T) {
	op := newStubOP(t)
	m, _ := op.manager(t)
	now := time.Now()
	base := func() map[string]any {
		return map[string]any{"iss": op.iss, "aud": clientID, "sub": "s", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"nonce": "n", "email": "a@x.example", "email_verified": true}
	}
	with := func(f func(map[string]any)) map[string]any { c := base(); f(c); return c }
	rs := map[string]any{"alg": "RS256", "kid": "k1"}
	if err := m.VerifyIDToken(t.Context(), jwt(t, rs, base(), op.key, nil), "n"); err != nil {
		t.Fatalf("the control token is refused: %v", err)
	}
	multi := with(func(c map[string]any) { c["aud"] = []string{clientID, "other-client"}; c["azp"] = clientID })
	if err := m.VerifyIDToken(t.Context(), jwt(t, rs, multi, op.key, nil), "n"); err != nil {
		t.Errorf("several audiences with azp = us: %v", err)
	}
	cases := map[string]string{
		"alg none":                   jwt(t, map[string]any{"alg": "none", "kid": "k1"}, base(), nil, nil),
		"RS512 not configured":       jwt(t, map[string]any{"alg": "RS512", "kid": "k1"}, base(), op.key, nil),
		"crit unknown":               jwt(t, map[string]any{"alg": "RS256", "kid": "k1", "crit": []string{"x-unknown"}, "x-unknown": 1}, base(), op.key, nil),
		"other audience":             jwt(t, rs, with(func(c map[string]any) { c["aud"] = "other-client" }), op.key, nil),
		"no audience":                jwt(t, rs, with(func(c map[string]any) { delete(c, "aud") }), op.key, nil),
		"several audiences, no azp":  jwt(t, rs, with(func(c map[string]any) { c["aud"] = []string{clientID, "other-client"} }), op.key, nil),
		"several audiences, foreign": jwt(t, rs, with(func(c map[string]any) { c["aud"] = []string{clientID, "o"}; c["azp"] = "o" }), op.key, nil),
		"azp foreign":                jwt(t, rs, with(func(c map[string]any) { c["azp"] = "other-client" }), op.key, nil),
		"issuer with trailing slash": jwt(t, rs, with(func(c map[string]any) { c["iss"] = op.iss + "/" }), op.key, nil),
		"no nonce":                   jwt(t, rs, with(func(c map[string]any) { delete(c, "nonce") }), op.key, nil),
		"other nonce":                jwt(t, rs, with(func(c map[string]any) { c["nonce"] = "m" }), op.key, nil),
		"no sub":                     jwt(t, rs, with(func(c map[string]any) { delete(c, "sub") }), op.key, nil),
		"email not verified":         jwt(t, rs, with(func(c map[string]any) { c["email_verified"] = false }), op.key, nil),
		"email_verified odd":         jwt(t, rs, with(func(c map[string]any) { c["email_verified"] = "yes" }), op.key, nil),
		"expired beyond skew":        jwt(t, rs, with(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), op.key, nil),
		"amr with a number":          jwt(t, rs, with(func(c map[string]any) { c["amr"] = []any{"pwd", 1} }), op.key, nil),
	}
	for name, secret := range publicKeyForms(&op.key.PublicKey, "k1") {
		cases["HS256 with the public key as "+name] = jwt(t, map[string]any{"alg": "HS256", "kid": "k1"}, base(), nil, secret)
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if err := m.VerifyIDToken(t.Context(), tok, "n"); err == nil {
				t.Error("accepted")
			}
		})
	}
	// Within the skew, an expired token still passes (clock tolerance is the configured 30s).
	if err := m.VerifyIDToken(t.Context(), jwt(t, rs, with(func(c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() }), op.key, nil), "n"); err != nil {
		t.Errorf("expired within skew: %v", err)
	}
}

func TestRotatedOutKey(t *testing.T) {
	e := newEnv(t, envOpts{swap: true})
	old := e.directIDToken(clientID, clientSecret, "alice", "n1")
	if err := e.m.VerifyIDToken(t.Context(), old, "n1"); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	if err := e.idp.RotateKeys(false); err != nil {
		t.Fatal(err)
	}
	// The key set is rebuilt after at most 15 minutes: then the withdrawn key is forgotten.
	e.clock.advance(16 * time.Minute)
	if err := e.m.VerifyIDToken(t.Context(), old, "n1"); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("token of a withdrawn key: %v", err)
	}
	// Through the whole callback: the token endpoint's answer is replaced by the old token.
	e.swap.with.Store(&old)
	b := e.browser()
	refused(t, e, b, b.signIn("/.portcullis/login", "alice"), 400, string(reason.SignInFailed))
	e.swap.with.Store(nil)
	logHas(t, e, "failed to verify signature")
	// Sign-in keeps working with the new key.
	e.browser().mustSignIn("alice")
}

func TestNewManagerChecksTheCAFile(t *testing.T) {
	dir := t.TempDir()
	notPEM := dir + "/ca.txt"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ru, _ := url.Parse("https://portal.example.test/.portcullis/callback")
	for _, ca := range []string{dir + "/missing.pem", notPEM} {
		_, err := session.NewManager(config.OIDC{Issuer: "https://127.0.0.1:1", ClientID: clientID, RedirectURI: ru, CARootFile: ca},
			config.Session{}, nil, (*store.Store)(nil), session.Options{})
		if err == nil {
			t.Errorf("CA file %s accepted", ca)
		}
	}
}
