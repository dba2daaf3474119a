// Package assertion signs the short-lived JWT Portcullis hands to a portal with every
// authorised request, so a portal that can verify it need not trust bare headers. Tokens are
// ES256 (the default), EdDSA (Ed25519) or HS256 (a secret shared with the portal); they carry
// a kid, and the public keys (none for HS256) are published as a JWKS.
package assertion

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Claims are what an assertion says about one request. Audience is the route name, so a
// token minted for one route is useless on another.
type Claims struct {
	Subject string   `json:"sub"`
	Email   string   `json:"email,omitempty"`
	Org     string   `json:"org,omitempty"`
	Roles   []string `json:"roles,omitempty"`
	Purpose string   `json:"purpose,omitempty"`
	// PurposeReason is the reason (a ticket id, or free text) the purpose was granted for,
	// and PurposeExpiry when the grant ends (NumericDate; 0 for a grant without an end), so
	// a portal can show "acting for INC-123 until 14:00". An assertion never outlives the
	// grant it carries.
	PurposeReason string `json:"purpose_reason,omitempty"`
	PurposeExpiry int64  `json:"purpose_exp,omitempty"`
	Kind          string `json:"kind,omitempty"`
	// Sponsor, for a machine identity (kind service), is the user key of the person who
	// answers for it.
	Sponsor  string `json:"sponsor,omitempty"`
	ACR      string `json:"acr,omitempty"`
	Audience string `json:"-"`
	// RequestID ties the token to one request (jti).
	RequestID string `json:"-"`
}

// Signer mints assertions. It is safe for concurrent use. A Signer made by NewPending has no
// key until SetKey gives it one: until then it signs nothing (ErrNoKey) and publishes an empty
// key set.
type Signer struct {
	issuer   string
	lifetime time.Duration
	key      atomic.Pointer[signingKey]
}

// signingKey is the key a Signer signs with, and what it publishes of it.
type signingKey struct {
	signer jose.Signer
	jwks   []byte
	kid    string
	alg    string
}

// ErrNoKey is returned by a Signer whose key is not known yet (NewPending): the key lives in
// Redis, which has not answered since the process started.
var ErrNoKey = errors.New("assertion key not loaded yet")

// ReuseFor is the longest a caller may hand out one assertion again for the same claims
// (ReuseWindow). An ECDSA signature per request was a third of a warm request's CPU;
// reusing one for a quarter of its lifetime leaves every token forwarded at least three
// quarters of it.
const ReuseFor = 15 * time.Second

// Lifetime of an assertion unless configured otherwise: long enough for one request to reach
// the portal, short enough that a leaked one is soon worthless.
const Lifetime = 60 * time.Second

// New returns a signer for key (ECDSA P-256 or Ed25519; see SetKey). issuer is the iss claim
// (the public URL).
func New(key crypto.Signer, issuer string, lifetime time.Duration) (*Signer, error) {
	s := NewPending(issuer, lifetime)
	if err := s.SetKey(key); err != nil {
		return nil, err
	}
	return s, nil
}

// NewPending returns a signer without a key yet; SetKey gives it one.
func NewPending(issuer string, lifetime time.Duration) *Signer {
	if lifetime <= 0 {
		lifetime = Lifetime
	}
	return &Signer{issuer: issuer, lifetime: lifetime}
}

// The algorithms a Signer signs with (identity.assertion_alg).
const (
	ES256 = "ES256"
	EdDSA = "EdDSA"
	HS256 = "HS256"
)

// MinSecret is the shortest HS256 secret accepted: as long as the hash (RFC 7518 3.2).
const MinSecret = 32

// SetKey makes key the one s signs with and publishes: an ECDSA P-256 key (ES256) or an
// Ed25519 key (EdDSA).
func (s *Signer) SetKey(key crypto.Signer) error {
	var alg jose.SignatureAlgorithm
	var pub crypto.PublicKey
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k == nil || k.Curve != elliptic.P256() {
			return errors.New("assertion key must be an ECDSA P-256 key or an Ed25519 key")
		}
		alg, pub = jose.ES256, &k.PublicKey
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return errors.New("assertion key: malformed Ed25519 key")
		}
		alg, pub = jose.EdDSA, k.Public()
	default:
		return errors.New("assertion key must be an ECDSA P-256 key or an Ed25519 key")
	}
	jwk := jose.JSONWebKey{Key: pub, Algorithm: string(alg), Use: "sig"}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return fmt.Errorf("assertion key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(tp)[:16]
	jwk.KeyID = kid
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	if err != nil {
		return err
	}
	return s.use(alg, key, kid, jwks)
}

// SetSecret makes s sign HS256 with secret, which the portal holds too (at least MinSecret
// bytes). Nothing is published: a portal that can verify an HS256 assertion could also make
// one, so it fits only a portal that is trusted as much as Portcullis.
func (s *Signer) SetSecret(secret []byte) error {
	if len(secret) < MinSecret {
		return fmt.Errorf("assertion secret must be at least %d bytes", MinSecret)
	}
	// A kid that names the secret without revealing it, so a portal can tell a rotation.
	sum := sha256.Sum256(append([]byte("portcullis assertion kid\x00"), secret...))
	return s.use(jose.HS256, slices.Clone(secret), base64.RawURLEncoding.EncodeToString(sum[:])[:16], []byte(`{"keys":[]}`))
}

func (s *Signer) use(alg jose.SignatureAlgorithm, key any, kid string, jwks []byte) error {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	var sk any = jose.JSONWebKey{Key: key, KeyID: kid}
	if alg == jose.HS256 {
		// go-jose writes no kid for a symmetric JSONWebKey; name it in the header.
		sk, opts = key, opts.WithHeader("kid", kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: sk}, opts)
	if err != nil {
		return fmt.Errorf("assertion signer: %w", err)
	}
	s.key.Store(&signingKey{signer: sig, jwks: jwks, kid: kid, alg: string(alg)})
	return nil
}

// Alg is the algorithm s signs with ("" without a key).
func (s *Signer) Alg() string {
	if k := s.key.Load(); k != nil {
		return k.alg
	}
	return ""
}

// Ready reports whether s has its key.
func (s *Signer) Ready() bool { return s.key.Load() != nil }

// Sign returns a compact JWT for c, valid from now for the signer's lifetime, or until the
// purpose grant it carries ends, whichever is first.
func (s *Signer) Sign(c Claims, now time.Time) (string, error) {
	k := s.key.Load()
	if k == nil {
		return "", ErrNoKey
	}
	exp := now.Add(s.lifetime)
	if c.PurposeExpiry > 0 {
		if end := time.Unix(c.PurposeExpiry, 0); end.Before(exp) {
			exp = end
		}
	}
	std := jwt.Claims{
		Issuer:    s.issuer,
		Subject:   c.Subject,
		Audience:  jwt.Audience{c.Audience},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-5 * time.Second)),
		Expiry:    jwt.NewNumericDate(exp),
		ID:        c.RequestID,
	}
	return jwt.Signed(k.signer).Claims(std).Claims(c).Serialize()
}

// ReuseWindow is how long an assertion may be handed out again for the same claims after it
// was signed: ReuseFor, or a quarter of the lifetime when that is shorter, so a reused
// assertion always has three quarters of its lifetime left. A caller that reuses must also
// check KeyID: nothing signed with a replaced key may be handed out again.
func (s *Signer) ReuseWindow() time.Duration { return min(ReuseFor, s.lifetime/4) }

// JWKS is the public key set, as served at /.portcullis/jwks.json (empty without a key).
func (s *Signer) JWKS() []byte {
	if k := s.key.Load(); k != nil {
		return k.jwks
	}
	return []byte(`{"keys":[]}`)
}

// KeyID is the kid of the signing key ("" without one).
func (s *Signer) KeyID() string {
	if k := s.key.Load(); k != nil {
		return k.kid
	}
	return ""
}

// LoadKey reads a PEM file holding an EC P-256 private key (SEC 1 or PKCS #8) or an Ed25519
// private key (PKCS #8).
func LoadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read assertion key: %w", err)
	}
	return ParseKey(b)
}

// ParseKey parses a PEM EC P-256 or Ed25519 private key.
func ParseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("assertion key: no PEM block")
	}
	var key any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("assertion key: unexpected PEM block %q", blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("assertion key: %w", err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return k, nil
		}
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, errors.New("assertion key must be an ECDSA P-256 key or an Ed25519 key")
}

// AlgOf is the algorithm key signs with: ES256 or EdDSA.
func AlgOf(key crypto.Signer) string {
	if _, ok := key.(ed25519.PrivateKey); ok {
		return EdDSA
	}
	return ES256
}

// GenerateEdDSAKey makes a new Ed25519 key and returns it with its PEM (PKCS #8) form, for
// development setups that keep the key in Redis.
func GenerateEdDSAKey() (ed25519.PrivateKey, []byte, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	p, err := pkcs8PEM(key)
	return key, p, err
}

// pkcs8PEM is key's PEM (PKCS #8) form.
func pkcs8PEM(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// GenerateKey makes a new P-256 key and returns it with its PEM (PKCS #8) form, for
// development setups that keep the key in Redis.
func GenerateKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	p, err := pkcs8PEM(key)
	return key, p, err
}
