// Package pebbletest runs Let's Encrypt's Pebble ACME test server inside the test process, so
// that ACME issuance can be tested for real (accounts, orders, challenge validation, issuance)
// without a Docker container, a network, or a pebble binary on the PATH.
//
// What is real: Pebble's web front end (WFE), certificate authority (CA) and validation
// authority (VA) are the upstream packages, wired the way cmd/pebble wires them. The VA really
// validates challenges: it resolves the identifier through a tiny DNS server started here (it
// answers A 127.0.0.1 for every name, so any test domain points back at the test process) and
// then connects to the HTTP-01 and TLS-ALPN-01 ports the caller names, where the code under
// test must answer. No "always valid" switch is used.
//
// What is test-only: the ACME directory is served over HTTPS with a certificate from a root
// generated per server (Server.RootFile, Server.RootPool), and the VA's random 0–5 s sleep
// before each validation is disabled so tests stay fast.
package pebbletest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Options say where the VA looks for the challenge responses of the code under test.
type Options struct {
	// HTTPPort is the port the VA connects to for HTTP-01 validation (on 127.0.0.1, since
	// every name resolves there). Zero: 80, which the test will not own, so HTTP-01 fails.
	HTTPPort int
	// TLSALPNPort is the port the VA connects to for TLS-ALPN-01 validation. Zero: 443.
	TLSALPNPort int
	// Verbose copies Pebble's own log to the test log as it happens. When false (default), the
	// log is kept and printed only if the test fails.
	Verbose bool
}

// Server is a running in-process Pebble. It is stopped by the test's cleanup.
type Server struct {
	// DirectoryURL is the ACME directory, e.g. https://127.0.0.1:41234/dir.
	DirectoryURL string
	// ManagementURL is the base of Pebble's management interface (roots, intermediates),
	// e.g. https://127.0.0.1:41235; the first issuing root is at ManagementURL + "/roots/0".
	ManagementURL string
	// RootFile is a PEM file holding the root that signs the HTTPS certificate of DirectoryURL
	// and ManagementURL, for the ACME client's trusted roots (config tls.acme.ca_root_file).
	RootFile string
	// RootPool holds the same root as RootFile.
	RootPool *x509.CertPool
	// DNSAddr is the address of the DNS server the VA uses (UDP and TCP on the same port).
	DNSAddr string

	ca *ca.CAImpl
}

// IssuerRoots returns the roots of the chains Pebble issues certificates under, read from the
// CA object. A certificate obtained from this server verifies against this pool. (They differ
// from RootPool, which only covers Pebble's own HTTPS endpoints.)
func (s *Server) IssuerRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	for i := range s.ca.GetNumberOfRootCerts() {
		pool.AddCert(s.ca.GetRootCert(i).Cert)
	}
	return pool
}

// envMu serialises the environment dance in newVA: Pebble reads its knobs from the process
// environment inside va.New, and parallel tests must not see each other's half-restored values.
var envMu sync.Mutex

// Start starts DNS, VA, CA and WFE and returns once the ACME directory answers. Everything is
// shut down in t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	logw := &testLogWriter{t: t, verbose: opts.Verbose}
	t.Cleanup(logw.finish)
	logger := log.New(logw, "pebble ", log.Lmicroseconds)

	dnsAddr := startDNS(t)

	root, rootKey, err := newTestRoot()
	if err != nil {
		t.Fatalf("pebbletest: generate HTTPS root: %v", err)
	}
	leaf, err := newTestLeaf(root, rootKey)
	if err != nil {
		t.Fatalf("pebbletest: generate HTTPS certificate: %v", err)
	}
	rootFile := filepath.Join(t.TempDir(), "pebble-https-root.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), 0o600); err != nil {
		t.Fatalf("pebbletest: write root: %v", err)
	}
	rootPool := x509.NewCertPool()
	rootPool.AddCert(root)

	store := db.NewMemoryStore()
	// ECDSA keeps start-up fast (no RSA key generation); one intermediate, as Let's Encrypt.
	caImpl := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{
		"default": {Description: "The default profile"},
	})
	vaImpl := newVA(logger, opts.HTTPPort, opts.TLSALPNPort, dnsAddr, store)
	wfeImpl := wfe.New(logger, store, vaImpl, caImpl, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	tlsConf := &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12}
	acmeURL := serveHTTPS(t, wfeImpl.Handler(), tlsConf, logger)
	mgmtURL := serveHTTPS(t, wfeImpl.ManagementHandler(), tlsConf, logger)

	s := &Server{
		DirectoryURL:  acmeURL + wfe.DirectoryPath,
		ManagementURL: mgmtURL,
		RootFile:      rootFile,
		RootPool:      rootPool,
		DNSAddr:       dnsAddr,
		ca:            caImpl,
	}
	// The listener is bound before Start returns, so this is a sanity check, not a wait loop.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootPool}}, Timeout: 5 * time.Second}
	resp, err := c.Get(s.DirectoryURL)
	if err != nil {
		t.Fatalf("pebbletest: directory not reachable: %v", err)
	}
	_ = resp.Body.Close()
	c.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pebbletest: directory: status %d", resp.StatusCode)
	}
	return s
}

// newVA creates the VA with its random pre-validation sleep disabled. Pebble only reads
// PEBBLE_VA_NOSLEEP from the environment in va.New, so the variable is set for the duration
// of that call and restored at once. PEBBLE_VA_ALWAYS_VALID is explicitly cleared: the
// challenge must really be validated.
func newVA(logger *log.Logger, httpPort, tlsPort int, dnsAddr string, store *db.MemoryStore) *va.VAImpl {
	envMu.Lock()
	defer envMu.Unlock()
	restore := setEnv(map[string]string{"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_VA_ALWAYS_VALID": ""})
	defer restore()
	if httpPort == 0 {
		httpPort = 80
	}
	if tlsPort == 0 {
		tlsPort = 443
	}
	return va.New(logger, httpPort, tlsPort, false, dnsAddr, store)
}

// setEnv sets (or, for "", unsets) variables and returns a function restoring the old values.
func setEnv(vars map[string]string) (restore func()) {
	type old struct {
		v  string
		ok bool
	}
	saved := map[string]old{}
	for k, v := range vars {
		ov, ok := os.LookupEnv(k)
		saved[k] = old{ov, ok}
		if v == "" {
			_ = os.Unsetenv(k)
		} else {
			_ = os.Setenv(k, v)
		}
	}
	return func() {
		for k, o := range saved {
			if o.ok {
				_ = os.Setenv(k, o.v)
			} else {
				_ = os.Unsetenv(k)
			}
		}
	}
}

// serveHTTPS serves h on a random loopback port until the test ends and returns its base URL.
func serveHTTPS(t testing.TB, h http.Handler, conf *tls.Config, logger *log.Logger) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pebbletest: listen: %v", err)
	}
	// A clone per server: http.Server adds its ALPN protocols to the config it is given.
	srv := &http.Server{Handler: h, TLSConfig: conf.Clone(), ErrorLog: logger, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Printf("serve %s: %v", ln.Addr(), err)
		}
	}()
	t.Cleanup(func() {
		// Close, not Shutdown: the ACME client's idle HTTP/2 connections would make a
		// graceful drain wait for nothing but its timeout.
		_ = srv.Close()
		<-done
	})
	return "https://" + ln.Addr().String()
}

// newTestRoot makes the CA for Pebble's own HTTPS endpoints.
func newTestRoot() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "pebbletest HTTPS root"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// newTestLeaf makes the HTTPS certificate for 127.0.0.1, ::1 and localhost, signed by root.
func newTestLeaf(root *x509.Certificate, rootKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "pebbletest"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("pebbletest: serial: %v", err))
	}
	return n
}

// testLogWriter sends Pebble's log to the test: live when verbose, else kept and printed only
// if the test failed. Pebble's goroutines may log after the test returned; those lines are
// dropped instead of calling t.Log too late (which would panic).
type testLogWriter struct {
	t       testing.TB
	verbose bool

	mu   sync.Mutex
	buf  []byte
	done bool
}

var _ io.Writer = (*testLogWriter)(nil)

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	if w.verbose {
		w.t.Log(string(trimNewline(p)))
	} else if len(w.buf) < 4<<20 {
		w.buf = append(w.buf, p...)
	}
	return len(p), nil
}

func (w *testLogWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t.Failed() && len(w.buf) > 0 {
		w.t.Logf("pebble log:\n%s", w.buf)
	}
	w.done = true
	w.buf = nil
}

func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}
