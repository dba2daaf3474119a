package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"

	"github.com/portcullis-proxy/portcullis/config"
)

// ACME challenge names as written in tls.acme.challenges.
const (
	acmeChallengeHTTP01    = "http-01"
	acmeChallengeTLSALPN01 = "tls-alpn-01"
)

// acmeDefaultStorage is used when tls.acme.storage is empty (config normally fills it).
const acmeDefaultStorage = "./portcullis-acme"

// newACMESetup obtains and renews certificates for c.Domains with certmagic.
//
// It uses a certmagic Config and Cache of its own, never certmagic.Default or the
// package-level helpers, so two setups in one process (tests, a reload) do not share
// certificates, issuers or loggers. (certmagic still keeps some process-wide bookkeeping of
// its own: the table of challenges in progress, keyed by domain, and its solver listeners,
// keyed by address. So two live setups must not solve challenges for the same domain at the
// same time; tests use a distinct domain each.)
//
// On-demand issuance stays off: only the configured domains are ever requested. With it on,
// anyone able to send a ClientHello with an arbitrary SNI could make us spend CA rate limits.
// A handshake for any other name fails (there is no default certificate).
//
// Challenges are answered by Portcullis's own listeners: TLS-ALPN-01 by the main listener
// (Config offers acme-tls/1 and GetCertificate serves the challenge certificate), HTTP-01 by
// the redirect listener through HTTPHandler. AlternateTLSALPNPort and AlternateHTTPPort tell
// certmagic which ports those are when they are not 443 and 80: its solvers find the port
// already bound and leave the answering to us.
func newACMESetup(ctx context.Context, c config.ACME, base *tls.Config, log *slog.Logger) (*tlsSetup, error) {
	if len(c.Domains) == 0 {
		return nil, errors.New("tls.acme.domains: at least one domain is required in mode acme")
	}
	domains := make([]string, 0, len(c.Domains))
	for _, d := range c.Domains {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" || !certmagic.SubjectQualifiesForCert(d) {
			return nil, fmt.Errorf("tls.acme.domains: %q cannot have a certificate", d)
		}
		domains = append(domains, d)
	}

	var http01, tlsALPN01 bool
	challenges := c.Challenges
	if len(challenges) == 0 {
		challenges = []string{acmeChallengeHTTP01, acmeChallengeTLSALPN01}
	}
	for _, ch := range challenges {
		switch strings.ToLower(ch) {
		case acmeChallengeHTTP01:
			http01 = true
		case acmeChallengeTLSALPN01:
			tlsALPN01 = true
		default:
			return nil, fmt.Errorf("tls.acme.challenges: %q: must be http-01 or tls-alpn-01", ch)
		}
	}

	var roots *x509.CertPool
	if c.CARootFile != "" {
		pemBytes, err := os.ReadFile(c.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_root_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("tls.acme.ca_root_file %s: no PEM certificate in it", c.CARootFile)
		}
	}
	ca := c.CA
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	storage := c.Storage
	if storage == "" {
		storage = acmeDefaultStorage
	}

	zl := zapToSlog(log.With(slog.String("subsystem", "certmagic")).Handler())

	// The cache asks, for each certificate it maintains, which Config manages it; there is
	// only ours. It is published through an atomic pointer because the cache's maintenance
	// goroutine starts before certmagic.New returns the Config.
	var magicPtr atomic.Pointer[certmagic.Config]
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) {
			if m := magicPtr.Load(); m != nil {
				return m, nil
			}
			return nil, errors.New("certmagic config not ready")
		},
		Logger: zl,
	})
	magic := certmagic.New(cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: storage},
		Logger:  zl,
	})
	// certmagic.New fills unset fields from the package-level Default; make sure nothing
	// set there elsewhere in the process turns on-demand issuance on for us.
	magic.OnDemand = nil
	issuer := certmagic.NewACMEIssuer(magic, certmagic.ACMEIssuer{
		CA:                      ca,
		Email:                   c.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    !http01,
		DisableTLSALPNChallenge: !tlsALPN01,
		AltHTTPPort:             c.AlternateHTTPPort,
		AltTLSALPNPort:          c.AlternateTLSALPNPort,
		TrustedRoots:            roots,
		Logger:                  zl,
	})
	magic.Issuers = []certmagic.Issuer{issuer}
	magicPtr.Store(magic)

	mctx, cancel := context.WithCancel(ctx)
	// ManageAsync, not ManageSync: Run binds the listeners only after newTLSSetup returns,
	// and those listeners are what answer the challenges (TLS-ALPN-01 on the main listener,
	// HTTP-01 on the redirect listener), so a synchronous first issuance could never be
	// validated through them. Async also keeps a slow or unreachable CA from blocking start-up
	// (certmagic retries with backoff and logs each failure); certificates already in storage
	// are loaded within milliseconds, and until a name has one its handshakes fail.
	//
	// Ordering: the first challenge is presented only after several round trips to the CA
	// (directory, account, order, authorization), by which time Run has bound its listeners,
	// so certmagic's solvers find the ports taken and leave the answering to them. Should a
	// solver ever win that race it binds the port itself for the challenge, and Run's listen
	// on that port fails with an error at start instead of misbehaving silently. When no
	// redirect listener is configured, that is also how HTTP-01 still works: certmagic
	// serves it on port 80 (or alt_http_port) for the duration of the challenge.
	if err := magic.ManageAsync(mctx, domains); err != nil {
		cancel()
		cache.Stop()
		return nil, fmt.Errorf("acme: manage %s: %w", strings.Join(domains, ","), err)
	}
	log.Info("ACME certificate management started",
		slog.String("ca", ca), slog.Any("domains", domains), slog.String("storage", storage),
		slog.Bool("http_01", http01), slog.Bool("tls_alpn_01", tlsALPN01))

	conf := base.Clone()
	conf.GetCertificate = magic.GetCertificate
	if tlsALPN01 {
		// Last, so it is never chosen over h2 or http/1.1; the CA offers it alone.
		conf.NextProtos = append(conf.NextProtos, acmez.ACMETLS1Protocol)
	}
	return &tlsSetup{
		Config:      conf,
		HTTPHandler: issuer.HTTPChallengeHandler,
		DefaultName: domains[0],
		closers:     []func(){func() { cancel(); cache.Stop() }},
	}, nil
}
