package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/portcullis-proxy/portcullis/config"
)

// tlsSetup is what the listeners need from the TLS configuration. It is built once per Run
// by newTLSSetup and released with Close.
type tlsSetup struct {
	// Config is the server TLS config for the main listener; nil in mode off, where the main
	// listener speaks plain HTTP. Certificates come from Config.GetCertificate, never from
	// Config.Certificates, so that a reloaded (files) or renewed (acme) certificate is served
	// by the next handshake without restarting the listener.
	Config *tls.Config
	// HTTPHandler wraps the handler of the plain-HTTP redirect listener so that it answers
	// ACME HTTP-01 challenges before anything else sees the request. Outside mode acme it
	// returns the handler unchanged; in mode acme with http-01 disabled the wrapper passes
	// every request through.
	HTTPHandler func(http.Handler) http.Handler
	// DefaultName is the certificate name for a handshake that names none (a client that
	// connects by IP address), on listeners that are not the portal's (the admin API); ""
	// where the certificate does not depend on the name.
	DefaultName string

	// closers release, in reverse order, what the mode started: the certificate file watcher
	// (files) or certmagic's maintenance goroutine and pending issuance (acme).
	closers []func()
}

// Close stops the background work of the TLS setup (file watching, certificate renewal). It
// waits for that work to stop, except certmagic issuance already in flight, which is only
// cancelled. Safe to call on a nil *tlsSetup and more than once.
func (t *tlsSetup) Close() {
	if t == nil {
		return
	}
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
	t.closers = nil
}

// identityHandler is HTTPHandler for modes without HTTP-01 challenges.
func identityHandler(h http.Handler) http.Handler { return h }

// newTLSSetup builds the TLS side of the listeners for c.Mode. hosts are the exact route host
// names, used only for the default names of the self-signed development certificate. ctx
// bounds start-up work and, in mode acme, certificate management: cancelling it stops
// issuance and renewal just as Close does.
//
// Every mode fails early: a missing or invalid certificate file, an unreadable ca_root_file,
// an unknown challenge type or min_version is an error here, not at the first handshake.
func newTLSSetup(ctx context.Context, c config.TLS, hosts []string, log *slog.Logger) (*tlsSetup, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("component", "tls"))

	if c.Mode == config.TLSModeOff {
		log.Warn("TLS is off; only run this behind a TLS-terminating load balancer")
		return &tlsSetup{HTTPHandler: identityHandler}, nil
	}

	base, err := tlsBaseConfig(c.MinVersion)
	if err != nil {
		return nil, err
	}
	switch c.Mode {
	case config.TLSModeACME:
		return newACMESetup(ctx, c.ACME, base, log)
	case config.TLSModeFiles:
		return newFilesSetup(c.CertFile, c.KeyFile, base, log)
	case config.TLSModeSelfSigned:
		return newSelfSignedSetup(c.SelfSignedHosts, hosts, base, log)
	case "":
		return nil, fmt.Errorf("tls.mode is required (acme, files, self_signed or off)")
	default:
		return nil, fmt.Errorf("tls.mode %q: must be acme, files, self_signed or off", c.Mode)
	}
}

// tlsCipherSuites are the TLS 1.2 suites offered: ECDHE only (forward secrecy) and AEAD only
// (no CBC, whose padding oracles keep coming back: Lucky13, POODLE-style variants). TLS 1.3
// suites are not configurable in Go and are all AEAD already. Every browser and HTTP client
// of the last decade speaks one of these.
var tlsCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsBaseConfig is the part of the server config every mode shares: protocol floor, cipher
// suites and ALPN. The mode adds GetCertificate (and, for acme, the acme-tls/1 protocol).
func tlsBaseConfig(minVersion string) (*tls.Config, error) {
	var mv uint16
	switch minVersion {
	case "", "1.2":
		mv = tls.VersionTLS12
	case "1.3":
		mv = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("tls.min_version %q: must be 1.2 or 1.3", minVersion)
	}
	return &tls.Config{
		MinVersion:   mv,
		CipherSuites: tlsCipherSuites,
		// h2 first: http.Server serves HTTP/2 on a TLS listener only when it is negotiated.
		NextProtos: []string{"h2", "http/1.1"},
	}, nil
}

// tlsCertAttrs describes a certificate for the log: what an operator checks after a rotation.
func tlsCertAttrs(leaf *x509.Certificate) []any {
	sans := make([]string, 0, len(leaf.DNSNames)+len(leaf.IPAddresses))
	sans = append(sans, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		sans = append(sans, ip.String())
	}
	return []any{
		slog.String("subject", leaf.Subject.String()),
		slog.String("sans", strings.Join(sans, ",")),
		slog.String("issuer", leaf.Issuer.String()),
		slog.Time("not_after", leaf.NotAfter),
		slog.String("sha256", tlsFingerprint(leaf.Raw)),
	}
}

// tlsFingerprint is the SHA-256 of a DER certificate in the colon-separated upper-case hex
// that `openssl x509 -fingerprint -sha256` and browsers show, so it can be compared by eye.
func tlsFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// withDefaultName makes conf, a listener's own copy, answer a handshake without a server
// name as one for name (ACME keeps a certificate per name and has none for an IP address, so
// such a handshake would fail with an internal error); nothing changes when name is "".
func withDefaultName(conf *tls.Config, name string) *tls.Config {
	if conf == nil || name == "" || conf.GetCertificate == nil {
		return conf
	}
	get := conf.GetCertificate
	conf.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if h.ServerName == "" {
			named := *h
			named.ServerName = name
			h = &named
		}
		return get(h)
	}
	return conf
}
