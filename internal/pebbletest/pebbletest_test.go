package pebbletest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestStart(t *testing.T) {
	_, hadNoSleep := os.LookupEnv("PEBBLE_VA_NOSLEEP")
	s := Start(t, Options{HTTPPort: 5002, TLSALPNPort: 5001})
	if _, has := os.LookupEnv("PEBBLE_VA_NOSLEEP"); has != hadNoSleep {
		t.Errorf("PEBBLE_VA_NOSLEEP left changed in the environment")
	}

	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.RootPool}},
		Timeout:   5 * time.Second,
	}
	t.Cleanup(client.CloseIdleConnections)

	// The directory answers over HTTPS verified against RootFile's root.
	resp, err := client.Get(s.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	var dir map[string]any
	err = json.NewDecoder(resp.Body).Decode(&dir)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"newAccount", "newOrder", "newNonce"} {
		if _, ok := dir[k].(string); !ok {
			t.Errorf("directory has no %s: %v", k, dir)
		}
	}
	pemBytes, err := os.ReadFile(s.RootFile)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(pemBytes); b == nil || b.Type != "CERTIFICATE" {
		t.Errorf("RootFile is not a PEM certificate")
	}

	// The management interface serves the issuing root that IssuerRoots holds.
	resp, err = client.Get(s.ManagementURL + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	b, _ := pem.Decode(body)
	if b == nil {
		t.Fatalf("/roots/0: no PEM in %q", body)
	}
	root, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !root.Equal(s.ca.GetRootCert(0).Cert) {
		t.Errorf("/roots/0 is not the CA's root")
	}
	if _, err := root.Verify(x509.VerifyOptions{Roots: s.IssuerRoots()}); err != nil {
		t.Errorf("root does not verify against IssuerRoots: %v", err)
	}
}

func TestDNS(t *testing.T) {
	addr := startDNS(t)
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}

		q := new(dns.Msg)
		q.SetQuestion("anything.portcullis.example.com.", dns.TypeA)
		in, _, err := c.Exchange(q, addr)
		if err != nil {
			t.Fatalf("%s A: %v", network, err)
		}
		if len(in.Answer) != 1 || !in.Answer[0].(*dns.A).A.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("%s A: answer %v, want 127.0.0.1", network, in.Answer)
		}

		q = new(dns.Msg)
		q.SetQuestion("anything.portcullis.example.com.", dns.TypeAAAA)
		in, _, err = c.Exchange(q, addr)
		if err != nil {
			t.Fatalf("%s AAAA: %v", network, err)
		}
		if in.Rcode != dns.RcodeSuccess || len(in.Answer) != 0 {
			t.Errorf("%s AAAA: rcode %d answer %v, want empty NOERROR", network, in.Rcode, in.Answer)
		}
	}
}
