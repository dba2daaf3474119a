package assertion

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/portcullis-proxy/portcullis/config"
)

func TestSignVerifiesAgainstJWKS(t *testing.T) {
	key, pemBytes, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseKey(pemBytes); err != nil {
		t.Fatalf("round trip of the generated PEM: %v", err)
	}
	s, err := New(key, "https://portal.example.com", 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	tok, err := s.Sign(Claims{Subject: "iss|sub", Email: "a@acme.com", Org: "acme", Roles: []string{"admin"}, Audience: "billing", RequestID: "r1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0].KeyID != s.KeyID() || !set.Keys[0].IsPublic() {
		t.Fatalf("JWKS %s", s.JWKS())
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Headers[0].KeyID != s.KeyID() {
		t.Errorf("kid %q", parsed.Headers[0].KeyID)
	}
	var std jwt.Claims
	var c Claims
	if err := parsed.Claims(set.Keys[0].Key, &std, &c); err != nil {
		t.Fatal(err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: "https://portal.example.com", AnyAudience: jwt.Audience{"billing"}, Time: now.Add(59 * time.Second)}, 0); err != nil {
		t.Errorf("validate: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Time: now.Add(61 * time.Second)}, 0); err == nil {
		t.Error("assertion still valid after 60s")
	}
	if err := std.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{"admin"}, Time: now}, 0); err == nil {
		t.Error("assertion for route billing accepted for route admin")
	}
	if c.Org != "acme" || c.Subject != "iss|sub" || len(c.Roles) != 1 || std.ID != "r1" {
		t.Errorf("claims %+v %+v", c, std)
	}
	if strings.Contains(string(s.JWKS()), `"d"`) {
		t.Error("JWKS contains the private part")
	}
}

// TestAssertionCarriesThePurposeGrant: the grant's reason and end travel signed, and the
// assertion expires no later than the grant.
func TestAssertionCarriesThePurposeGrant(t *testing.T) {
	key, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(key, "https://portal.example.com", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		end     time.Time
		wantExp time.Time
	}{
		{"grant ends after the lifetime", now.Add(time.Hour), now.Add(time.Minute)},
		{"grant ends first", now.Add(20 * time.Second), now.Add(20 * time.Second)},
		{"grant without an end", time.Time{}, now.Add(time.Minute)},
	} {
		var exp int64
		if !c.end.IsZero() {
			exp = c.end.Unix()
		}
		tok, err := s.Sign(Claims{Subject: "iss|sue", Org: "acme", Purpose: "support", PurposeReason: "INC-123 \"quoted\" ünïcode", PurposeExpiry: exp, Audience: "cases"}, now)
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var std jwt.Claims
		var got Claims
		var raw map[string]any
		if err := parsed.Claims(&key.PublicKey, &std, &got, &raw); err != nil {
			t.Fatal(err)
		}
		if got.Purpose != "support" || got.PurposeReason != "INC-123 \"quoted\" ünïcode" || got.PurposeExpiry != exp {
			t.Errorf("%s: claims %+v", c.name, got)
		}
		if _, ok := raw["purpose_exp"]; ok == (exp == 0) {
			t.Errorf("%s: purpose_exp present %v, want %v", c.name, ok, exp != 0)
		}
		if !std.Expiry.Time().Equal(c.wantExp) {
			t.Errorf("%s: exp %v, want %v", c.name, std.Expiry.Time(), c.wantExp)
		}
	}
}

func TestParseKeyRefusesOtherKeys(t *testing.T) {
	for _, in := range []string{"", "not pem", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"} {
		if _, err := ParseKey([]byte(in)); err == nil {
			t.Errorf("ParseKey(%q) accepted", in)
		}
	}
	if _, err := New(nil, "x", 0); err == nil {
		t.Error("New(nil) accepted")
	}
}

// TestReuseWindow: an assertion is reused for at most ReuseFor, and never for more than a
// quarter of its lifetime (a 10 s lifetime with a 15 s reuse would hand out expired tokens).
func TestReuseWindow(t *testing.T) {
	key, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for lifetime, want := range map[time.Duration]time.Duration{0: ReuseFor, 10 * time.Minute: ReuseFor, 20 * time.Second: 5 * time.Second, time.Second: 250 * time.Millisecond} {
		s, err := New(key, "https://portal.example.com", lifetime)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.ReuseWindow(); got != want {
			t.Errorf("lifetime %v: reuse window %v, want %v", lifetime, got, want)
		}
	}
}

// TestPendingSigner: a signer whose key is not known yet signs nothing and publishes no key;
// once given one, it signs with it; another key has another id.
func TestPendingSigner(t *testing.T) {
	s := NewPending("https://portal.example.com", 0)
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	c := Claims{Subject: "iss|alice", Audience: "billing"}
	if _, err := s.Sign(c, now); err != ErrNoKey || s.Ready() || s.KeyID() != "" || string(s.JWKS()) != `{"keys":[]}` {
		t.Fatalf("pending: %v ready %v kid %q jwks %s", err, s.Ready(), s.KeyID(), s.JWKS())
	}
	key, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetKey(key); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(c, now)
	if err != nil || !s.Ready() || s.KeyID() == "" {
		t.Fatalf("after SetKey: %v", err)
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var std jwt.Claims
	if err := parsed.Claims(&key.PublicKey, &std); err != nil {
		t.Errorf("not signed with the key given: %v", err)
	}
	other, _, _ := GenerateKey()
	kid := s.KeyID()
	_ = s.SetKey(other)
	if s.KeyID() == kid {
		t.Error("a new key kept the old key's id: reusers could not tell its assertions apart")
	}
}

// TestConfigAgrees: the configuration accepts exactly the algorithms and secrets a Signer does.
func TestConfigAgrees(t *testing.T) {
	if !slices.Equal(config.AssertionAlgs, []string{ES256, EdDSA, HS256}) || config.MinAssertionSecret != MinSecret {
		t.Errorf("config: %v, %d; assertion: %v, %d", config.AssertionAlgs, config.MinAssertionSecret, []string{ES256, EdDSA, HS256}, MinSecret)
	}
}

// TestAlgorithms: each algorithm signs assertions that verify with what it publishes (the
// JWKS; the shared secret for HS256), and with nothing else: not as another algorithm, not
// with another key or secret.
func TestAlgorithms(t *testing.T) {
	now := time.Now()
	c := Claims{Subject: "iss|alice", Org: "acme", Roles: []string{"admin"}, Audience: "billing"}
	ec, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ed, edPEM, err := GenerateEdDSAKey()
	if err != nil {
		t.Fatal(err)
	}
	if k, err := ParseKey(edPEM); err != nil || AlgOf(k) != EdDSA {
		t.Fatalf("Ed25519 PEM: %v %v", k, err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	hs := NewPending("https://portal.example.com", time.Minute)
	if err := hs.SetSecret(secret); err != nil {
		t.Fatal(err)
	}
	if err := NewPending("x", 0).SetSecret(secret[:31]); err == nil {
		t.Error("a 31-byte secret was accepted")
	}
	for _, tc := range []struct {
		alg    string
		signer func() *Signer
		verify any
		wrong  any
	}{
		{ES256, func() *Signer { s, _ := New(ec, "https://portal.example.com", time.Minute); return s }, &ec.PublicKey, ed.Public()},
		{EdDSA, func() *Signer { s, _ := New(ed, "https://portal.example.com", time.Minute); return s }, ed.Public(), &ec.PublicKey},
		{HS256, func() *Signer { return hs }, secret, []byte("another secret, 32 bytes or more")},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			s := tc.signer()
			if s.Alg() != tc.alg {
				t.Fatalf("Alg %q", s.Alg())
			}
			tok, err := s.Sign(c, now)
			if err != nil {
				t.Fatal(err)
			}
			all := []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA, jose.HS256}
			p, err := jwt.ParseSigned(tok, all)
			if err != nil {
				t.Fatal(err)
			}
			if h := p.Headers[0]; h.Algorithm != tc.alg || h.KeyID != s.KeyID() || s.KeyID() == "" {
				t.Errorf("header alg %q kid %q (signer's %q)", h.Algorithm, h.KeyID, s.KeyID())
			}
			var std jwt.Claims
			var own Claims
			if err := p.Claims(tc.verify, &std, &own); err != nil || std.Subject != "iss|alice" || own.Org != "acme" {
				t.Errorf("verify: %v %+v %+v", err, std, own)
			}
			if err := p.Claims(tc.wrong, &std); err == nil {
				t.Error("verified with another key")
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(s.JWKS(), &set); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.alg == HS256 && len(set.Keys) != 0:
				t.Errorf("HS256 published %s", s.JWKS())
			case tc.alg != HS256 && (len(set.Keys) != 1 || set.Keys[0].Algorithm != tc.alg || !set.Keys[0].IsPublic() || set.Keys[0].KeyID != s.KeyID()):
				t.Errorf("JWKS %s", s.JWKS())
			case tc.alg != HS256:
				if err := p.Claims(set.Keys[0].Key, &std); err != nil {
					t.Errorf("not verifiable with the published key: %v", err)
				}
			}
			// Only the algorithm a portal expects: a verifier accepting just another one
			// refuses the token.
			for _, other := range all {
				if string(other) == tc.alg {
					continue
				}
				if _, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{other}); err == nil {
					t.Errorf("parsed as %s", other)
				}
			}
		})
	}
}
