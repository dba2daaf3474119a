package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"time"
)

// selfSignedValidity is how long the development certificate lives. Short, because nobody
// should be pinning it for long; long enough that a dev server left running over a holiday
// still starts the next morning (a new one is made at every start anyway).
const selfSignedValidity = 30 * 24 * time.Hour

// newSelfSignedSetup serves a certificate generated at start for development. It is
// self-signed and CA-less (IsCA false, no chain to install): clients must pin it or skip
// verification, which is exactly why it is only for development.
//
// names are tls.self_signed_hosts; when empty, the certificate covers localhost, 127.0.0.1,
// ::1 and the exact route hosts, so `portcullis dev` works for every configured route.
func newSelfSignedSetup(names, routeHosts []string, base *tls.Config, log *slog.Logger) (*tlsSetup, error) {
	if len(names) == 0 {
		names = append([]string{"localhost", "127.0.0.1", "::1"}, routeHosts...)
	}
	cert, err := selfSignedCert(names, time.Now())
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	log.Warn("serving a self-signed certificate generated at start; for development only, never in production",
		tlsCertAttrs(cert.Leaf)...)

	conf := base.Clone()
	// A fixed certificate still goes through GetCertificate, like the other modes, so the
	// listener code has one path.
	conf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil }
	return &tlsSetup{Config: conf, HTTPHandler: identityHandler}, nil
}

// selfSignedCert makes an ECDSA P-256 certificate for names (IP literals become IP SANs,
// wildcard and empty names are skipped, duplicates removed), valid from an hour before now
// (clock skew between the dev machine and a VM or container) for selfSignedValidity.
func selfSignedCert(names []string, now time.Time) (*tls.Certificate, error) {
	var dnsNames []string
	var ips []net.IP
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(strings.ToLower(n))
		n = strings.TrimSuffix(strings.TrimPrefix(n, "["), "]")
		if n == "" || strings.Contains(n, "*") || seen[n] {
			continue
		}
		seen[n] = true
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dnsNames = append(dnsNames, n)
		}
	}
	if len(dnsNames)+len(ips) == 0 {
		return nil, fmt.Errorf("no usable host names in %q", names)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	cn := "Portcullis development certificate"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Portcullis development (self-signed)"}},
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
