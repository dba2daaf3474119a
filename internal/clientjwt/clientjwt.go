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
	"io"
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
	// go-oidc reports the key set's errors as text only: the key set records a failed fetch
	// here, so that an outage is not taken for a bad token.
	var fetchErr error
	tok, err := ver.Verify(context.WithValue(oidc.ClientContext(ctx, is.client), fetchErrKey{}, &fetchErr), raw)
	var expired *oidc.TokenExpiredError
	switch {
	case errors.As(err, &expired):
		return nil, fmt.Errorf("%w: %w", ErrExpired, err)
	case err != nil && fetchErr != nil:
		return nil, fetchErr
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
	keys := &keySet{url: d.JWKS, client: is.client}
	is.verifier = oidc.NewVerifier(is.url, keys, &oidc.Config{ClientID: is.audience, SupportedSigningAlgs: is.algs, Now: is.now})
	return is.verifier, nil
}

// keySet is the issuer's published keys, as go-oidc's verifier asks them to check a
// signature. Unlike oidc.RemoteKeySet, which fetches the key set again whenever a signature
// does not verify, it fetches again only for a key id it does not know, at most every
// refetchEvery: a forged token under a known key id costs no request to the issuer, and a
// flood of made-up key ids costs one per interval. A fetch that fails is ErrUnavailable.
type keySet struct {
	url    string
	client *http.Client

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time
	failed  time.Time // the last fetch that failed, while no keys are known
}

// retryFailedEvery is how soon a fetch that failed, with no keys known, is tried again.
const retryFailedEvery = 5 * time.Second

// fetchErrKey carries, in the context of one verification, where the key set records a fetch
// that failed.
type fetchErrKey struct{}

// refetchEvery bounds how often an unknown key id makes the key set be fetched again (a key
// rotation at the issuer is picked up within it).
const refetchEvery = time.Minute

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, allAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: malformed signature", ErrInvalid)
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := k.keysFor(ctx, kid)
	if err != nil {
		if p, ok := ctx.Value(fetchErrKey{}).(*error); ok {
			*p = err
		}
		return nil, err
	}
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			if payload, err := jws.Verify(&key); err == nil {
				return payload, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: no published key verifies the signature", ErrInvalid)
}

// keysFor returns the keys, fetching them when none is known yet or kid is unknown and the
// last fetch is older than refetchEvery.
func (k *keySet) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	known := false
	for _, key := range k.keys {
		if key.KeyID == kid {
			known = true
		}
	}
	if k.keys != nil && (known || time.Since(k.fetched) < refetchEvery) {
		return k.keys, nil
	}
	if k.keys == nil && !k.failed.IsZero() && time.Since(k.failed) < retryFailedEvery {
		return nil, fmt.Errorf("%w: fetch keys: failed moments ago", ErrUnavailable)
	}
	k.failed = time.Now()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(fctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: fetch keys: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: fetch keys: %s", ErrUnavailable, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("%w: decode keys: %w", ErrUnavailable, err)
	}
	k.keys, k.fetched, k.failed = set.Keys, time.Now(), time.Time{}
	if k.keys == nil {
		k.keys = []jose.JSONWebKey{}
	}
	return k.keys, nil
}

// allAlgorithms are the algorithms a signature is parsed with; which ones are accepted is
// the verifier's SupportedSigningAlgs, checked before the key set is asked.
var allAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// Client is who a verified token names, and the organisations its issuer speaks for.
type Client struct {
	Issuer, Subject string
	Expiry          time.Time
	Orgs            []string
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
	is             *Issuer
	subjectClaim   string
	orgs           []string
	requiredClaims map[string]string
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
		v.issuers[ic.Issuer] = &entry{is: is, subjectClaim: ic.SubjectClaim, orgs: ic.Orgs, requiredClaims: ic.RequiredClaims}
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
	subject, err := e.subject(idt)
	if err != nil {
		return Client{}, err
	}
	c = Client{Issuer: idt.Issuer, Subject: subject, Expiry: idt.Expiry, Orgs: e.orgs}
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

// personMarkers are claims only tokens issued to or for a person carry: an ID token's nonce
// and hashes, the time a person authenticated. A client-credentials token has none.
var personMarkers = []string{"nonce", "at_hash", "c_hash", "auth_time"}

// subject is the client a verified token names, after the checks that tell an
// application's token from a person's.
func (e *entry) subject(idt *oidc.IDToken) (string, error) {
	var claims map[string]json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for _, c := range personMarkers {
		if _, ok := claims[c]; ok {
			return "", fmt.Errorf("%w: a person's token (it carries %s)", ErrInvalid, c)
		}
	}
	for name, want := range e.requiredClaims {
		var got string
		if json.Unmarshal(claims[name], &got) != nil || got != want {
			return "", fmt.Errorf("%w: claim %s is not %q", ErrInvalid, name, want)
		}
	}
	if e.subjectClaim == "" || e.subjectClaim == "sub" {
		return idt.Subject, nil
	}
	var subject string
	if json.Unmarshal(claims[e.subjectClaim], &subject) != nil || subject == "" {
		return "", fmt.Errorf("%w: no %s claim", ErrInvalid, e.subjectClaim)
	}
	if len(e.requiredClaims) == 0 && subject != idt.Subject {
		// A person's token through the client names the client in client_id or azp too.
		return "", fmt.Errorf("%w: sub %q is not the %s %q: not the client's own token", ErrInvalid, idt.Subject, e.subjectClaim, subject)
	}
	return subject, nil
}
