package session_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sidOf returns the provider session id stored with the browser's session.
func (e *env) sidOf(user string) []string {
	var out []string
	for _, r := range e.sessionRecords() {
		if r["user"] == e.idpURL+"|"+user {
			out = append(out, r["sid"].(string))
		}
	}
	return out
}

func TestBackchannelLogoutFromDevIdP(t *testing.T) {
	e := newEnv(t, envOpts{})
	a1, a2, bob := e.browser(), e.browser(), e.browser()
	a1.mustSignIn("alice")
	sid1 := e.sidOf("sub-alice")[0]
	a2.mustSignIn("alice")
	bob.mustSignIn("bob")
	alive := func(b *browser) bool { return b.api("/.portcullis/whoami").StatusCode == 200 }
	post := func(tok string) *page {
		return a1.do("POST", e.base+"/.portcullis/backchannel-logout", url.Values{"logout_token": {tok}}, nil)
	}

	// Forgeries against devidp's real published key: refused, nobody signed out.
	jwks := fetchJWKS(t, e)
	now := time.Now()
	claims := map[string]any{"iss": e.idpURL, "aud": clientID, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		"jti": "forged-1", "events": event, "sid": sid1}
	attacker, _ := rsa.GenerateKey(rand.Reader, 2048)
	forged := map[string]string{
		"alg none":               jwt(t, map[string]any{"alg": "none", "kid": jwks.kid}, claims, nil, nil),
		"bad signature":          jwt(t, map[string]any{"alg": "RS256", "kid": jwks.kid}, claims, attacker, nil),
		"HS256 with the JWK":     jwt(t, map[string]any{"alg": "HS256", "kid": jwks.kid}, claims, nil, jwks.raw),
		"HS256 with the modulus": jwt(t, map[string]any{"alg": "HS256", "kid": jwks.kid}, claims, nil, jwks.pub.N.Bytes()),
	}
	for name, secret := range publicKeyForms(jwks.pub, jwks.kid) {
		forged["HS256 with the public key as "+name] = jwt(t, map[string]any{"alg": "HS256", "kid": jwks.kid}, claims, nil, secret)
	}
	for name, tok := range forged {
		if p := post(tok); p.StatusCode != 400 || !strings.Contains(p.body, "invalid_logout_token") {
			t.Errorf("%s: %d %s", name, p.StatusCode, p.body)
		}
	}
	if !alive(a1) || !alive(a2) || !alive(bob) {
		t.Fatal("a forged logout token ended a session")
	}

	// The provider ends one login session (by sid): that session only.
	status, err := e.idp.SendBackchannelLogout(t.Context(), sid1)
	if err != nil || status != 200 {
		t.Fatalf("SendBackchannelLogout(sid): %d %v", status, err)
	}
	if alive(a1) || !alive(a2) || !alive(bob) {
		t.Errorf("after logout by sid: a1 %v a2 %v bob %v", alive(a1), alive(a2), alive(bob))
	}
	// The same token again: a replay, refused.
	tok := *e.bcRecord.Load()
	if p := post(tok); p.StatusCode != 400 {
		t.Errorf("replayed logout token: %d", p.StatusCode)
	}
	if !alive(a2) {
		t.Error("a replay ended a session")
	}
	// The provider ends all of alice's sessions (by sub): bob stays.
	if status, err := e.idp.SendBackchannelLogout(t.Context(), "sub-alice"); err != nil || status != 200 {
		t.Fatalf("SendBackchannelLogout(sub): %d %v", status, err)
	}
	if alive(a2) || !alive(bob) {
		t.Errorf("after logout by sub: a2 %v bob %v", alive(a2), alive(bob))
	}
}

type jwksKey struct {
	kid string
	raw []byte
	pub *rsa.PublicKey
}

func fetchJWKS(t *testing.T, e *env) jwksKey {
	t.Helper()
	c := e.browser().c
	resp, err := c.Get(e.idpURL + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) == 0 || resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d %s", resp.StatusCode, b)
	}
	var k struct{ Kid, N, E string }
	json.Unmarshal(set.Keys[0], &k)
	n, _ := base64.RawURLEncoding.DecodeString(k.N)
	ev, _ := base64.RawURLEncoding.DecodeString(k.E)
	return jwksKey{kid: k.Kid, raw: set.Keys[0], pub: &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(ev).Int64())}}
}
