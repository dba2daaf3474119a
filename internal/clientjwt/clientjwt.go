// Package clientjwt verifies client-credentials access tokens: signed JWTs from a trusted
// issuer (a customer's own IdP, or the platform's for operators), checked with go-oidc against
// the keys the issuer's discovery document publishes: signature, issuer, audience, expiry
// and an algorithm allow-list (never none or HMAC). Issuer is one issuer, discovered at its
// first token and again at most every 30 seconds while it cannot be reached; Verifier is a
// set of them, picked by a token's iss (verified afterwards like everything else), with a
// cache of the tokens it verified, until they expire, so a warm request verifies nothing.
package clientjwt

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/portcullis-proxy/portcullis/config"
)

// Errors of Verify. Anything else does not happen.
var (
	// ErrInvalid: the token is not one of a trusted issuer, for this audience, signed with an
	// allowed algorithm by the issuer's key.
	ErrInvalid = errors.New("invalid client token")
	// ErrExpired: a valid token whose exp has passed.
	ErrExpired = errors.New("client token expired")
	// ErrUnavailable: the issuer's discovery document or keys could not be fetched, so the
	// token could not be checked (an outage, not a bad token).
	ErrUnavailable = errors.New("token issuer unavailable")
)

// retryEvery is how often an issuer that could not be discovered is tried again.
const retryEvery = 30 * time.Second

// Issuer verifies the tokens of one issuer.
type Issuer struct {
	url, audience string
	algs          []string
	client        *http.Client
	now           func() time.Time

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
	tried    time.Time
}

// NewIssuer prepares the verifier of the issuer at url for tokens whose aud holds audience,
// signed with one of algs, trusting caFile's certificates (none: the system's) for its HTTPS
// endpoints; what names the setting goes into errors. now is the clock (nil: time.Now).
func NewIssuer(url, audience string, algs []string, caFile, what string, now func() time.Time) (*Issuer, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s.ca_root_file: %w", what, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s.ca_root_file %s: no PEM certificates", what, caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	for _, a := range algs {
		if a == "none" || len(a) > 1 && a[:2] == "HS" {
			return nil, fmt.Errorf("%s: algorithm %s is never accepted", what, a)
		}
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{url: url, audience: audience, algs: algs, now: now,
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
}

// Verify checks raw against the issuer and returns it. Errors wrap ErrInvalid, ErrExpired or
// ErrUnavailable.
func (is *Issuer) Verify(ctx context.Context, raw string) (*oidc.IDToken, error) {
	ver, err := is.current(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := ver.Verify(oidc.ClientContext(ctx, is.client), raw)
	var expired *oidc.TokenExpiredError
	switch {
	case errors.As(err, &expired):
		return nil, fmt.Errorf("%w: %w", ErrExpired, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return tok, nil
}

// current is the verifier, discovering the issuer when it is not known yet.
func (is *Issuer) current(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if is.verifier != nil {
		return is.verifier, nil
	}
	if !is.tried.IsZero() && time.Since(is.tried) < retryEvery {
		return nil, ErrUnavailable
	}
	is.tried = time.Now()
	dctx, cancel := context.WithTimeout(oidc.ClientContext(context.WithoutCancel(ctx), is.client), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, is.url)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var d struct {
		JWKS string `json:"jwks_uri"`
	}
	_ = p.Claims(&d)
	// The key set fetches lazily (and again for a key it does not know), beyond this call's
	// context.
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), is.client), d.JWKS)
	is.verifier = oidc.NewVerifier(is.url, keys, &oidc.Config{ClientID: is.audience, SupportedSigningAlgs: is.algs, Now: is.now})
	return is.verifier, nil
}

// Client is who a verified token names.
type Client struct {
	Issuer, Subject string
	Expiry          time.Time
}

// Verifier verifies the tokens of the configured issuers (config.ClientJWT).
type Verifier struct {
	issuers map[string]*entry
	algs    []jose.SignatureAlgorithm // every issuer's, for reading a token's iss
	now     func() time.Time

	mu       sync.Mutex
	verified map[[sha256.Size]byte]Client
}

type entry struct {
	is           *Issuer
	subjectClaim string
}

// maxVerified bounds the cache of verified tokens; past it, expired ones are dropped, and
// if that is not enough, all.
const maxVerified = 10000

// NewVerifier prepares the issuers of c (none: every token is invalid). now is the clock
// (nil: time.Now).
func NewVerifier(c config.ClientJWT, now func() time.Time) (*Verifier, error) {
	if now == nil {
		now = time.Now
	}
	v := &Verifier{issuers: map[string]*entry{}, now: now, verified: map[[sha256.Size]byte]Client{}}
	seen := map[string]bool{}
	for i, ic := range c.Issuers {
		is, err := NewIssuer(ic.Issuer, ic.Audience, ic.Algorithms, ic.CARootFile, fmt.Sprintf("client_jwt.issuers[%d]", i), now)
		if err != nil {
			return nil, err
		}
		v.issuers[ic.Issuer] = &entry{is: is, subjectClaim: ic.SubjectClaim}
		for _, a := range ic.Algorithms {
			if !seen[a] {
				seen[a] = true
				v.algs = append(v.algs, jose.SignatureAlgorithm(a))
			}
		}
	}
	return v, nil
}

// Verify returns the client raw names. The token's iss only picks which issuer checks it;
// that issuer then verifies everything, iss included. A token verified before answers from
// the cache until it expires.
func (v *Verifier) Verify(ctx context.Context, raw string) (Client, error) {
	sum := sha256.Sum256([]byte(raw))
	now := v.now()
	v.mu.Lock()
	c, ok := v.verified[sum]
	v.mu.Unlock()
	if ok {
		if !now.Before(c.Expiry) {
			return Client{}, ErrExpired
		}
		return c, nil
	}
	if len(v.algs) == 0 {
		return Client{}, ErrInvalid
	}
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		return Client{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Client{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	e := v.issuers[unverified.Issuer]
	if e == nil {
		return Client{}, fmt.Errorf("%w: issuer %q is not trusted", ErrInvalid, unverified.Issuer)
	}
	idt, err := e.is.Verify(ctx, raw)
	if err != nil {
		return Client{}, err
	}
	subject := idt.Subject
	if e.subjectClaim != "" && e.subjectClaim != "sub" {
		var claims map[string]json.RawMessage
		if err := idt.Claims(&claims); err != nil {
			return Client{}, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		subject = ""
		_ = json.Unmarshal(claims[e.subjectClaim], &subject)
	}
	if subject == "" {
		return Client{}, fmt.Errorf("%w: no %s claim", ErrInvalid, e.subjectClaim)
	}
	c = Client{Issuer: idt.Issuer, Subject: subject, Expiry: idt.Expiry}
	v.mu.Lock()
	if len(v.verified) >= maxVerified {
		for k, old := range v.verified {
			if !now.Before(old.Expiry) {
				delete(v.verified, k)
			}
		}
		if len(v.verified) >= maxVerified {
			clear(v.verified)
		}
	}
	v.verified[sum] = c
	v.mu.Unlock()
	return c, nil
}
