package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/freeport"
	"github.com/portcullis-proxy/portcullis/internal/pebbletest"
)

// TestTLSACMEIssuance obtains a real certificate from an in-process Pebble, once per challenge
// type, with the challenge answered by the listeners Run would build: TLS-ALPN-01 by the main
// listener, HTTP-01 by the redirect listener through HTTPHandler. Pebble's VA really connects
// (through its own DNS, which points every name at 127.0.0.1) and checks the response.
func TestTLSACMEIssuance(t *testing.T) {
	for _, tc := range []struct {
		challenge string
		domain    string
	}{
		{acmeChallengeTLSALPN01, "alpn.portcullis.example.com"},
		{acmeChallengeHTTP01, "http.portcullis.example.com"},
	} {
		t.Run(tc.challenge, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			mainLn := tlsListen(t)
			redirLn := tlsListen(t)
			pebble := pebbletest.Start(t, pebbletest.Options{
				HTTPPort:    tlsPort(redirLn),
				TLSALPNPort: tlsPort(mainLn),
			})

			logs := newTLSTestLog(t)
			ts, err := newTLSSetup(t.Context(), config.TLS{
				Mode: config.TLSModeACME,
				ACME: config.ACME{
					Domains:              []string{tc.domain},
					Email:                "ops@portcullis.example.com",
					CA:                   pebble.DirectoryURL,
					CARootFile:           pebble.RootFile,
					Storage:              t.TempDir(),
					Challenges:           []string{tc.challenge},
					AlternateHTTPPort:    tlsPort(redirLn),
					AlternateTLSALPNPort: tlsPort(mainLn),
				},
			}, nil, logs.logger())
			if err != nil {
				t.Fatalf("newTLSSetup: %v", err)
			}
			t.Cleanup(ts.Close)
			if slices.Contains(ts.Config.NextProtos, "acme-tls/1") != (tc.challenge == acmeChallengeTLSALPN01) {
				t.Errorf("NextProtos = %q; acme-tls/1 must be offered exactly when tls-alpn-01 is enabled", ts.Config.NextProtos)
			}

			// Count what reaches our listeners, to show the challenge went where it should.
			var alpnHellos, httpChallenges, httpFallthrough atomic.Int32
			conf := ts.Config.Clone()
			conf.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if slices.Equal(hello.SupportedProtos, []string{"acme-tls/1"}) {
					alpnHellos.Add(1)
				}
				return ts.Config.GetCertificate(hello)
			}
			tlsServe(t, mainLn, conf, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "portal via "+r.Proto)
			}))
			redirect := ts.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
					httpFallthrough.Add(1) // a challenge HTTPHandler did not answer
				}
				http.NotFound(w, r)
			}))
			tlsServe(t, redirLn, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
					httpChallenges.Add(1)
				}
				redirect.ServeHTTP(w, r)
			}))

			roots := pebble.IssuerRoots()
			var state tls.ConnectionState
			deadline := time.Now().Add(20 * time.Second)
			for {
				state, err = tlsHandshake(mainLn.Addr().String(), &tls.Config{
					ServerName: tc.domain,
					RootCAs:    roots,
					NextProtos: []string{"h2", "http/1.1"},
				})
				if err == nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("no verified certificate for %s after %s: %v", tc.domain, time.Since(start), err)
			}
			t.Logf("certificate for %s obtained and served after %s", tc.domain, time.Since(start).Round(time.Millisecond))
			leaf := state.PeerCertificates[0]
			if !slices.Equal(leaf.DNSNames, []string{tc.domain}) {
				t.Errorf("certificate names = %q, want [%s]", leaf.DNSNames, tc.domain)
			}
			if len(state.VerifiedChains) == 0 {
				t.Errorf("no verified chain to Pebble's root")
			}
			if state.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN = %q, want h2", state.NegotiatedProtocol)
			}

			switch tc.challenge {
			case acmeChallengeTLSALPN01:
				if alpnHellos.Load() == 0 {
					t.Errorf("the main listener saw no acme-tls/1 handshake; who answered the challenge?")
				}
				if n := httpChallenges.Load(); n != 0 {
					t.Errorf("http-01 is disabled but the redirect listener saw %d challenge requests", n)
				}
			case acmeChallengeHTTP01:
				if httpChallenges.Load() == 0 {
					t.Errorf("the redirect listener saw no HTTP-01 request; who answered the challenge?")
				}
				if n := alpnHellos.Load(); n != 0 {
					t.Errorf("tls-alpn-01 is disabled but the main listener saw %d acme-tls/1 handshakes", n)
				}
			}
			if n := httpFallthrough.Load(); n != 0 {
				t.Errorf("%d challenge requests fell through HTTPHandler", n)
			}
			// Everything that is not a pending challenge reaches the wrapped handler.
			for _, path := range []string{"/portal", "/.well-known/acme-challenge/unknown-token"} {
				resp, err := http.Get("http://" + redirLn.Addr().String() + path)
				if err != nil {
					t.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					t.Errorf("GET %s on the redirect listener: %d, want the wrapped handler's 404", path, resp.StatusCode)
				}
			}

			// A full request over the obtained certificate, as a browser would make it.
			client := tlsClientTo(mainLn.Addr().String(), &tls.Config{RootCAs: roots})
			resp, err := client.Get("https://" + tc.domain + "/")
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if string(body) != "portal via HTTP/2.0" {
				t.Errorf("body = %q", body)
			}

			// A name outside tls.acme.domains gets no certificate at all: no on-demand
			// issuance, no default certificate, even to a client that verifies nothing.
			_, err = tlsHandshake(mainLn.Addr().String(), &tls.Config{
				ServerName:         "other.portcullis.example.com",
				InsecureSkipVerify: true, // the point is that no certificate is offered
			})
			if err == nil {
				t.Errorf("handshake for a name outside domains succeeded")
			}
			_, err = tlsHandshake(mainLn.Addr().String(), &tls.Config{ServerName: "other.portcullis.example.com", RootCAs: roots})
			if err == nil {
				t.Errorf("verified handshake for a name outside domains succeeded")
			}
		})
	}
}

// TestTLSACMEThroughRun is the same issuance driven by Server.Run from a configuration file:
// it checks the wiring in Run (the main listener gets Config, the redirect listener gets
// HTTPHandler) and the ordering ManageAsync relies on (Run binds its listeners before the
// first challenge arrives). Ports are reserved up front because Pebble's VA must know them.
func TestTLSACMEThroughRun(t *testing.T) {
	for _, tc := range []struct {
		challenge string
		domain    string
	}{
		{acmeChallengeTLSALPN01, "run-alpn.portcullis.example.com"},
		{acmeChallengeHTTP01, "run-http.portcullis.example.com"},
	} {
		t.Run(tc.challenge, func(t *testing.T) {
			t.Parallel()
			mainPort, redirPort, adminPort := tlsFreePort(t), tlsFreePort(t), tlsFreePort(t)
			pebble := pebbletest.Start(t, pebbletest.Options{HTTPPort: redirPort, TLSALPNPort: mainPort})
			upstream := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "legacy portal")
			})}
			upLn := tlsListen(t)
			go func() { _ = upstream.Serve(upLn) }()
			t.Cleanup(func() { _ = upstream.Close() })

			yaml := fmt.Sprintf(`
server:
  listen: 127.0.0.1:%d
  redirect_listen: 127.0.0.1:%d
  metrics_listen: "off"
tls:
  mode: acme
  acme:
    domains: [%s]
    email: ops@portcullis.example.com
    ca: %s
    ca_root_file: %s
    storage: %s
    challenges: [%s]
    alt_http_port: %d
    alt_tls_alpn_port: %d
redis: {address: "127.0.0.1:1"}   # needed by admin_api's validation; not used here
admin_api: {listen: "127.0.0.1:%[11]d"}
routes:
  - name: portal
    hosts: [%[3]s]
    upstream: http://%[10]s
    public: true
`, mainPort, redirPort, tc.domain, pebble.DirectoryURL, pebble.RootFile, t.TempDir(), tc.challenge,
				redirPort, mainPort, upLn.Addr(), adminPort)
			cfgFile := filepath.Join(t.TempDir(), "portcullis.yaml")
			if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := config.Load(cfgFile)
			if err != nil {
				t.Fatalf("config: %v", err)
			}
			admin := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "admin") })
			srv, err := New(SettingsOf(cfg), Options{Logger: newTLSTestLog(t).logger(), Admin: admin})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			// runDone is closed once Run has returned and runErr holds its result, so the
			// loop below and the Cleanup can both look without one taking it from the other
			// (a receive in the loop left the Cleanup waiting forever after an early end).
			var runErr error
			runDone := make(chan struct{})
			go func() { runErr = srv.Run(ctx, nil); close(runDone) }()
			t.Cleanup(func() {
				cancel()
				select {
				case <-runDone:
					if runErr != nil {
						t.Errorf("Run: %v", runErr)
					}
				case <-time.After(30 * time.Second):
					t.Errorf("Run did not return within 30s of its context's end")
				}
			})

			client := tlsClientTo(fmt.Sprintf("127.0.0.1:%d", mainPort), &tls.Config{RootCAs: pebble.IssuerRoots()})
			t.Cleanup(client.CloseIdleConnections) // before Run's drain, which would wait for it
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp, err := client.Get("https://" + tc.domain + "/")
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusOK || string(body) != "legacy portal" {
						t.Fatalf("GET: %d %q", resp.StatusCode, body)
					}
					break
				}
				select {
				case <-runDone:
					t.Fatalf("Run ended early: %v", runErr)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("no verified HTTPS through Run: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// The admin API, asked by address (no server name): the domain's certificate,
			// not a failed handshake.
			cs, err := tlsHandshake(fmt.Sprintf("127.0.0.1:%d", adminPort), &tls.Config{InsecureSkipVerify: true}) // checked below
			if err != nil {
				t.Fatalf("admin API by address: %v", err)
			}
			if certs := cs.PeerCertificates; len(certs) == 0 || !slices.Contains(certs[0].DNSNames, tc.domain) {
				t.Errorf("admin API by address: certificate for %v", certs[0].DNSNames)
			}
		})
	}
}

// TestTLSACMEUnansweredChallenge shows the validation is real: with HTTP-01 the only
// challenge and a redirect listener that does not use HTTPHandler, Pebble's VA gets a 404,
// the authorization fails and no certificate is ever served.
func TestTLSACMEUnansweredChallenge(t *testing.T) {
	t.Parallel()
	const domain = "unanswered.portcullis.example.com"
	mainLn := tlsListen(t)
	redirLn := tlsListen(t)
	pebble := pebbletest.Start(t, pebbletest.Options{HTTPPort: tlsPort(redirLn), TLSALPNPort: tlsPort(mainLn)})
	logs := newTLSTestLog(t)
	ts, err := newTLSSetup(t.Context(), config.TLS{
		Mode: config.TLSModeACME,
		ACME: config.ACME{
			Domains:           []string{domain},
			CA:                pebble.DirectoryURL,
			CARootFile:        pebble.RootFile,
			Storage:           t.TempDir(),
			Challenges:        []string{acmeChallengeHTTP01},
			AlternateHTTPPort: tlsPort(redirLn),
		},
	}, nil, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	tlsServe(t, mainLn, ts.Config, http.NotFoundHandler())
	var challenges atomic.Int32
	tlsServe(t, redirLn, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		challenges.Add(1)
		http.NotFound(w, r) // deliberately not ts.HTTPHandler
	}))

	logs.waitFor(t, "challenge failed", 1)
	if challenges.Load() == 0 {
		t.Errorf("the VA never asked the redirect listener")
	}
	if _, err := tlsHandshake(mainLn.Addr().String(), &tls.Config{ServerName: domain, InsecureSkipVerify: true}); err == nil {
		t.Errorf("a certificate is served although the challenge failed")
	}
}

// TestTLSFilesReload rotates the certificate files the way operators and tools do and checks
// the next handshakes follow, while broken replacements leave the served certificate alone.
func TestTLSFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	c1 := tlsWritePair(t, certFile, keyFile, "one.example.com")

	logs := newTLSTestLog(t)
	ts, err := newTLSSetup(t.Context(), config.TLS{Mode: config.TLSModeFiles, CertFile: certFile, KeyFile: keyFile}, nil, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	if !logs.has("loaded TLS certificate", "one.example.com") {
		t.Errorf("initial load not logged with its names")
	}
	ln := tlsListen(t)
	tlsServe(t, ln, ts.Config, http.NotFoundHandler())
	addr := ln.Addr().String()
	tlsWaitServes(t, addr, c1)

	// Replace both files by write-to-temp + rename, key first: for a moment the pair on disk
	// does not match, which must not break anything.
	c2 := tlsRenamePair(t, certFile, keyFile, "two.example.com")
	tlsWaitServes(t, addr, c2)
	if !logs.has("loaded TLS certificate", "two.example.com") {
		t.Errorf("reload not logged with the new names")
	}

	// Garbage in the certificate file: logged, old certificate kept.
	errsBefore := logs.count("cannot be loaded")
	tlsRename(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	logs.waitFor(t, "cannot be loaded", errsBefore+1)
	tlsCheckServes(t, addr, c2)

	// A valid certificate whose key is not the one on disk: same.
	errsBefore = logs.count("cannot be loaded")
	other, _ := tlsPairPEM(t, "three.example.com")
	tlsRename(t, certFile, other)
	logs.waitFor(t, "cannot be loaded", errsBefore+1)
	tlsCheckServes(t, addr, c2)

	// Fixed again: served.
	c4 := tlsRenamePair(t, certFile, keyFile, "four.example.com")
	tlsWaitServes(t, addr, c4)
}

// TestTLSFilesKubernetesSecret rotates the files the way the kubelet updates a secret
// volume: the names are symlinks through "..data", and a rotation renames a new "..data"
// symlink over the old one. Neither tls.crt nor tls.key is touched, so only a watch on the
// directory (plus stat following symlinks) can notice.
func TestTLSFilesKubernetesSecret(t *testing.T) {
	dir := t.TempDir()
	writeVersion := func(name, host string) *x509.Certificate {
		vdir := filepath.Join(dir, name)
		if err := os.Mkdir(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		return tlsWritePair(t, filepath.Join(vdir, "tls.crt"), filepath.Join(vdir, "tls.key"), host)
	}
	c1 := writeVersion("..2026_01", "v1.example.com")
	for _, link := range [][2]string{{"..2026_01", "..data"}, {"..data/tls.crt", "tls.crt"}, {"..data/tls.key", "tls.key"}} {
		if err := os.Symlink(link[0], filepath.Join(dir, link[1])); err != nil {
			t.Fatal(err)
		}
	}
	ts, err := newTLSSetup(t.Context(), config.TLS{Mode: config.TLSModeFiles,
		CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}, nil, newTLSTestLog(t).logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	ln := tlsListen(t)
	tlsServe(t, ln, ts.Config, http.NotFoundHandler())
	tlsWaitServes(t, ln.Addr().String(), c1)

	c2 := writeVersion("..2026_02", "v2.example.com")
	if err := os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01")); err != nil {
		t.Fatal(err)
	}
	tlsWaitServes(t, ln.Addr().String(), c2)
}

// TestTLSFilesPollFallback checks the size/mtime re-check alone (no fsnotify), as on file
// systems that deliver no events.
func TestTLSFilesPollFallback(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	c1 := tlsWritePair(t, certFile, keyFile, "poll1.example.com")
	r, err := newCertReloader(certFile, keyFile, newTLSTestLog(t).logger(), 20*time.Millisecond, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	if got, _ := r.getCertificate(nil); !got.Leaf.Equal(c1) {
		t.Fatalf("initial certificate not served")
	}
	c2 := tlsRenamePair(t, certFile, keyFile, "poll2.example.com")
	deadline := time.Now().Add(10 * time.Second) // an upper bound for loaded CI machines; normally milliseconds
	for {
		if got, _ := r.getCertificate(nil); got.Leaf.Equal(c2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("poll did not pick up the new pair")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTLSSelfSigned checks the development certificate and the protocol policy every mode
// shares (it is the cheapest mode to test the policy with).
func TestTLSSelfSigned(t *testing.T) {
	logs := newTLSTestLog(t)
	ts, err := newTLSSetup(t.Context(), config.TLS{Mode: config.TLSModeSelfSigned}, []string{"portal.example.com", "portal.example.com"}, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	cert, err := ts.Config.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	fp := tlsFingerprint(leaf.Raw)
	if !logs.has("for development only", fp) {
		t.Errorf("no development warning with the fingerprint %s", fp)
	}
	var sans []string
	sans = append(sans, leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		sans = append(sans, ip.String())
	}
	slices.Sort(sans)
	if want := []string{"127.0.0.1", "::1", "localhost", "portal.example.com"}; !slices.Equal(sans, want) {
		t.Errorf("SANs = %q, want %q", sans, want)
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm = %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	if leaf.IsCA {
		t.Errorf("development certificate is a CA")
	}
	if life := time.Until(leaf.NotAfter); life < 29*24*time.Hour || life > 31*24*time.Hour {
		t.Errorf("valid for another %s, want about 30 days", life)
	}

	ln := tlsListen(t)
	tlsServe(t, ln, ts.Config, http.NotFoundHandler())
	addr := ln.Addr().String()
	pinned := x509.NewCertPool()
	pinned.AddCert(leaf)

	for _, tc := range []struct {
		name   string
		client *tls.Config
		ok     bool
		// why, for refusals that must come from the server's policy rather than from the
		// client's verification: the alert the server sent.
		why string
	}{
		{"pinned localhost", &tls.Config{ServerName: "localhost", RootCAs: pinned}, true, ""},
		{"pinned route host", &tls.Config{ServerName: "portal.example.com", RootCAs: pinned}, true, ""},
		{"pinned IP", &tls.Config{ServerName: "127.0.0.1", RootCAs: pinned}, true, ""},
		{"pinned other name", &tls.Config{ServerName: "evil.example.com", RootCAs: pinned}, false, ""},
		{"unpinned", &tls.Config{ServerName: "localhost", RootCAs: x509.NewCertPool()}, false, ""},
		{"TLS 1.1 client", &tls.Config{ServerName: "localhost", RootCAs: pinned,
			MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false, "protocol version not supported"},
		{"TLS 1.2 CBC only", &tls.Config{ServerName: "localhost", RootCAs: pinned, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false, "handshake failure"},
		{"TLS 1.2 without ECDHE", &tls.Config{ServerName: "localhost", RootCAs: pinned, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}}, false, "handshake failure"},
		{"TLS 1.2 AEAD", &tls.Config{ServerName: "localhost", RootCAs: pinned, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true, ""},
		{"TLS 1.3", &tls.Config{ServerName: "localhost", RootCAs: pinned, MinVersion: tls.VersionTLS13}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, err := tlsHandshake(addr, tc.client)
			if tc.ok && err != nil {
				t.Fatalf("handshake failed: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatalf("handshake succeeded (version %x, suite %s), want refusal",
					state.Version, tls.CipherSuiteName(state.CipherSuite))
			}
			if tc.why != "" && !strings.Contains(err.Error(), tc.why) {
				t.Errorf("refused with %q, want the server's %q", err, tc.why)
			}
			if tc.ok && !state.PeerCertificates[0].Equal(leaf) {
				t.Errorf("served another certificate")
			}
		})
	}

	// ALPN: h2 preferred, http/1.1 offered, nothing ACME outside mode acme.
	if !slices.Equal(ts.Config.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos = %q", ts.Config.NextProtos)
	}
	state, err := tlsHandshake(addr, &tls.Config{ServerName: "localhost", RootCAs: pinned, NextProtos: []string{"http/1.1"}})
	if err != nil || state.NegotiatedProtocol != "http/1.1" {
		t.Errorf("http/1.1-only client: proto %q, err %v", state.NegotiatedProtocol, err)
	}
}

// TestTLSMinVersion13 refuses TLS 1.2 when tls.min_version is 1.3; explicit
// self_signed_hosts replace the defaults.
func TestTLSMinVersion13(t *testing.T) {
	ts, err := newTLSSetup(t.Context(), config.TLS{Mode: config.TLSModeSelfSigned, MinVersion: "1.3",
		SelfSignedHosts: []string{"dev.example.com"}}, []string{"ignored.example.com"}, newTLSTestLog(t).logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	cert, _ := ts.Config.GetCertificate(&tls.ClientHelloInfo{})
	if !slices.Equal(cert.Leaf.DNSNames, []string{"dev.example.com"}) || len(cert.Leaf.IPAddresses) != 0 {
		t.Errorf("names = %q %v, want only dev.example.com", cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	}
	ln := tlsListen(t)
	tlsServe(t, ln, ts.Config, http.NotFoundHandler())
	if _, err := tlsHandshake(ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Errorf("TLS 1.2 accepted with min_version 1.3")
	}
	if _, err := tlsHandshake(ln.Addr().String(), &tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Errorf("TLS 1.3: %v", err)
	}
}

func TestTLSOff(t *testing.T) {
	logs := newTLSTestLog(t)
	ts, err := newTLSSetup(t.Context(), config.TLS{Mode: config.TLSModeOff}, nil, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	if ts.Config != nil {
		t.Errorf("Config = %v, want nil", ts.Config)
	}
	h := http.NotFoundHandler()
	if fmt.Sprintf("%p", ts.HTTPHandler(h)) != fmt.Sprintf("%p", h) {
		t.Errorf("HTTPHandler is not the identity in mode off")
	}
	if !logs.has("TLS is off; only run this behind a TLS-terminating load balancer", "level=WARN") {
		t.Errorf("no warning logged")
	}
}

// TestTLSSetupErrors: configuration mistakes fail at start, each naming its key.
func TestTLSSetupErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	acme := func(f func(*config.ACME)) config.TLS {
		c := config.TLS{Mode: config.TLSModeACME, ACME: config.ACME{Domains: []string{"a.example.com"},
			CA: "https://127.0.0.1:1/dir", Storage: dir}}
		f(&c.ACME)
		return c
	}
	for _, tc := range []struct {
		name string
		c    config.TLS
		want string
	}{
		{"no mode", config.TLS{}, "tls.mode is required"},
		{"unknown mode", config.TLS{Mode: "auto"}, `tls.mode "auto"`},
		{"bad min_version", config.TLS{Mode: config.TLSModeSelfSigned, MinVersion: "1.1"}, "tls.min_version"},
		{"files missing", config.TLS{Mode: config.TLSModeFiles, CertFile: filepath.Join(dir, "nope.crt"), KeyFile: filepath.Join(dir, "nope.key")}, "nope.crt"},
		{"files not PEM", config.TLS{Mode: config.TLSModeFiles, CertFile: notPEM, KeyFile: notPEM}, "load certificate pair"},
		{"files unset", config.TLS{Mode: config.TLSModeFiles}, "cert_file and key_file"},
		{"acme no domains", acme(func(a *config.ACME) { a.Domains = nil }), "tls.acme.domains"},
		{"acme bad challenge", acme(func(a *config.ACME) { a.Challenges = []string{"dns-01"} }), `"dns-01"`},
		{"acme ca_root_file missing", acme(func(a *config.ACME) { a.CARootFile = filepath.Join(dir, "nope.pem") }), "tls.acme.ca_root_file"},
		{"acme ca_root_file not PEM", acme(func(a *config.ACME) { a.CARootFile = notPEM }), "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := newTLSSetup(t.Context(), tc.c, nil, newTLSTestLog(t).logger())
			if err == nil {
				ts.Close()
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestTLSZapBridge: certmagic's zap lines arrive in slog with their fields, logger name and
// level, and the slog level filter applies.
func TestTLSZapBridge(t *testing.T) {
	logs := newTLSTestLog(t)
	zl := zapToSlog(logs.logger().Handler()).Named("obtain").With(zap.String("identifier", "a.example.com"))
	zl.Debug("hidden below info")
	zl.Info("certificate obtained successfully", zap.Int("attempt", 2))
	zl.Error("could not get certificate", zap.Error(errors.New("boom")), zap.Duration("retry_in", time.Minute))
	if logs.has("hidden below info") {
		t.Errorf("debug line passed an info-level handler")
	}
	if !logs.has("level=INFO", `msg="certificate obtained successfully"`, "identifier=a.example.com", "logger=obtain", "attempt=2") {
		t.Errorf("info line missing or incomplete")
	}
	if !logs.has("level=ERROR", "error=boom", "retry_in=1m0s") {
		t.Errorf("error line missing or incomplete")
	}
}

// --- helpers (prefixed tls: package proxy has other test files) ---

func tlsListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func tlsPort(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// tlsFreePort reserves a loopback port by binding and releasing it, for code that binds by
// address itself (Run). Another process could take it in between; on a test machine that is
// rare enough, and the failure would be a clear "address in use".
func tlsFreePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsServe serves h on ln until the test ends, with TLS when conf is not nil, the way Run
// does (ServeTLS with empty file names, certificates from conf).
func tlsServe(t *testing.T, ln net.Listener, conf *tls.Config, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, TLSConfig: conf, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if conf != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// tlsHandshake completes one handshake with addr and returns its state.
func tlsHandshake(addr string, conf *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: conf}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// tlsClientTo is an HTTPS client that connects to addr whatever the URL's host, like a
// resolver pointing the name at the test listener.
func tlsClientTo(addr string, conf *tls.Config) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   conf,
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

// tlsPairPEM makes a fresh certificate for host and returns it and its key as PEM.
func tlsPairPEM(t *testing.T, host string) (certPEM, keyPEM []byte) {
	t.Helper()
	cert, err := selfSignedCert([]string{host}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// tlsWritePair writes a fresh pair in place and returns the certificate.
func tlsWritePair(t *testing.T, certFile, keyFile, host string) *x509.Certificate {
	t.Helper()
	c, k := tlsPairPEM(t, host)
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return tlsParsePEM(t, c)
}

// tlsRenamePair replaces a pair by write-to-temp and rename, key first.
func tlsRenamePair(t *testing.T, certFile, keyFile, host string) *x509.Certificate {
	t.Helper()
	c, k := tlsPairPEM(t, host)
	tlsRename(t, keyFile, k)
	tlsRename(t, certFile, c)
	return tlsParsePEM(t, c)
}

// tlsRename replaces path with data atomically, as editors and `kubectl cp`-style tools do.
func tlsRename(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

func tlsParsePEM(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsServed is the certificate addr serves now.
func tlsServed(addr string) (*x509.Certificate, error) {
	st, err := tlsHandshake(addr, &tls.Config{InsecureSkipVerify: true}) // identity checked by the caller
	if err != nil {
		return nil, err
	}
	return st.PeerCertificates[0], nil
}

// tlsWaitServes polls handshakes until addr serves want; reloads are asynchronous.
func tlsWaitServes(t *testing.T, addr string, want *x509.Certificate) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // an upper bound for loaded CI machines; normally milliseconds
	for {
		got, err := tlsServed(addr)
		if err == nil && got.Equal(want) {
			return
		}
		if time.Now().After(deadline) {
			var name string
			if got != nil {
				name = strings.Join(got.DNSNames, ",")
			}
			t.Fatalf("still serving %q (err %v), want %q", name, err, want.DNSNames)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tlsCheckServes(t *testing.T, addr string, want *x509.Certificate) {
	t.Helper()
	got, err := tlsServed(addr)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if !got.Equal(want) {
		t.Fatalf("serving %q, want %q", got.DNSNames, want.DNSNames)
	}
}

// tlsTestLog is a slog handler that writes to the test log and keeps the lines for
// assertions. Lines logged after the test ended (certmagic goroutines) are dropped rather
// than sent to t.Log, which would panic.
type tlsTestLog struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
	done  bool
}

func newTLSTestLog(t *testing.T) *tlsTestLog {
	l := &tlsTestLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *tlsTestLog) logger() *slog.Logger {
	return slog.New(&tlsTestHandler{log: l})
}

func (l *tlsTestLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return
	}
	l.lines = append(l.lines, line)
	l.t.Log(line)
}

// count returns how many lines contain every one of subs.
func (l *tlsTestLog) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if tlsContainsAll(line, subs) {
			n++
		}
	}
	return n
}

func (l *tlsTestLog) has(subs ...string) bool { return l.count(subs...) > 0 }

func (l *tlsTestLog) waitFor(t *testing.T, sub string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // an upper bound for loaded CI machines; normally milliseconds
	for l.count(sub) < n {
		if time.Now().After(deadline) {
			t.Fatalf("log line %q not seen %d times", sub, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tlsContainsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

type tlsTestHandler struct {
	log   *tlsTestLog
	attrs string
}

func (h *tlsTestHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *tlsTestHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("level=" + r.Level.String() + " msg=" + strconv.Quote(r.Message) + h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.log.add(b.String())
	return nil
}

func (h *tlsTestHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	s := h.attrs
	for _, a := range attrs {
		s += fmt.Sprintf(" %s=%v", a.Key, a.Value)
	}
	return &tlsTestHandler{log: h.log, attrs: s}
}

func (h *tlsTestHandler) WithGroup(string) slog.Handler { return h }
