package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// rsaBits is the size of generated signing keys: the smallest RSA size still
// generally accepted, so start-up and RotateKeys stay fast.
const rsaBits = 2048

// signingKey is an RS256 private key with its kid. It implements
// op.SigningKey.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func newSigningKey() (*signingKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	return &signingKey{id: randomID(12), key: k}, nil
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

// publicKey is the JWKS entry of a signing key. It implements op.Key.
type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

// signer signs JWTs of the given "typ" header with k, naming it by kid.
func (k *signingKey) signer(typ string) (jose.Signer, error) {
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	return jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: k.key, KeyID: k.id, Algorithm: string(jose.RS256), Use: "sig"},
	}, opts)
}

// keyring holds the current signing key and, after a rotation that kept
// them, older keys that are still published for verification only. Guarded
// by storage.mu.
type keyring struct {
	current *signingKey
	retired []*signingKey
}

// publicKeys lists what the JWKS endpoint serves: the current key first.
func (r *keyring) publicKeys() []op.Key {
	keys := []op.Key{publicKey{r.current}}
	for _, k := range r.retired {
		keys = append(keys, publicKey{k})
	}
	return keys
}

// RotateKeys generates a new signing key and makes it current. With keepOld
// the previous keys stay in the JWKS, so tokens they signed still verify (a
// graceful rotation); without it they are removed at once, so a relying party
// that refreshes its key set can no longer verify anything they signed (a
// compromised-key rotation).
func (p *Provider) RotateKeys(keepOld bool) error {
	k, err := newSigningKey()
	if err != nil {
		return fmt.Errorf("devidp: rotate keys: %w", err)
	}
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	if keepOld {
		p.st.keys.retired = append([]*signingKey{p.st.keys.current}, p.st.keys.retired...)
	} else {
		p.st.keys.retired = nil
	}
	p.st.keys.current = k
	p.log.Info("devidp: signing key rotated", "kid", k.id, "kept_old", keepOld)
	return nil
}

// SigningKeyID returns the kid of the current signing key.
func (p *Provider) SigningKeyID() string {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.keys.current.id
}

// randomID returns n random bytes, base64url-encoded: ids for keys, auth
// requests, sessions and tokens, and CSRF tokens.
func randomID(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("devidp: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
