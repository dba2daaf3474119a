package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// TestNewSignerAlgorithms: the signer signs with identity.assertion_alg, from the key file, the
// shared secret, or a development key in Redis of that algorithm; a key file of another
// algorithm is refused at start, naming the key.
func TestNewSignerAlgorithms(t *testing.T) {
	dir := t.TempDir()
	_, ecPEM, _ := assertion.GenerateKey()
	_, edPEM, _ := assertion.GenerateEdDSAKey()
	ecFile, edFile := filepath.Join(dir, "ec.pem"), filepath.Join(dir, "ed.pem")
	if err := os.WriteFile(ecFile, ecPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edFile, edPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	st, err := store.New(config.Redis{Address: rs.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		id   config.Identity
		alg  string
		err  string
	}{
		{"ES256 file", config.Identity{AssertionAlg: "ES256", AssertionKeyFile: ecFile}, "ES256", ""},
		{"EdDSA file", config.Identity{AssertionAlg: "EdDSA", AssertionKeyFile: edFile}, "EdDSA", ""},
		{"HS256", config.Identity{AssertionAlg: "HS256", AssertionSecret: "0123456789abcdef0123456789abcdef"}, "HS256", ""},
		{"ES256 from Redis", config.Identity{AssertionAlg: "ES256"}, "ES256", ""},
		{"EdDSA from Redis", config.Identity{AssertionAlg: "EdDSA"}, "EdDSA", ""},
		{"an ES256 key for EdDSA", config.Identity{AssertionAlg: "EdDSA", AssertionKeyFile: ecFile}, "", "identity.assertion_key_file " + ecFile + " holds a key for ES256; identity.assertion_alg is EdDSA"},
		{"an EdDSA key for ES256", config.Identity{AssertionAlg: "ES256", AssertionKeyFile: edFile}, "", "holds a key for EdDSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSigner(ctx, &config.Config{Identity: tc.id}, st, slog.New(slog.DiscardHandler))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Alg() != tc.alg {
				t.Errorf("alg %q", s.Alg())
			}
			if _, err := s.Sign(assertion.Claims{Subject: "iss|alice", Audience: "a"}, time.Now()); err != nil {
				t.Error(err)
			}
		})
	}
	// Each algorithm's development key is its own: the EdDSA one did not replace the ES256
	// one every replica signs with.
	a, _ := st.AssertionKey(ctx, "ES256", nil)
	b, _ := st.AssertionKey(ctx, "EdDSA", nil)
	ka, err1 := assertion.ParseKey(a)
	kb, err2 := assertion.ParseKey(b)
	if err1 != nil || err2 != nil || assertion.AlgOf(ka) != "ES256" || assertion.AlgOf(kb) != "EdDSA" {
		t.Errorf("development keys: %v %v", err1, err2)
	}
}
