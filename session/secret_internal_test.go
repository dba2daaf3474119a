package session

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// TestHandleIsSHA256: the allocation-free handle is base64url(SHA-256(secret)) for every
// length, on both sides of its stack buffer.
func TestHandleIsSHA256(t *testing.T) {
	for _, n := range []int{0, 1, 42, 43, 63, 64, 65, 1000} {
		s := strings.Repeat("x", n)
		sum := sha256.Sum256([]byte(s))
		if got, want := handle(s), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
			t.Errorf("handle(%d bytes) = %q, want %q", n, got, want)
		}
	}
	secret := newSecret()
	if n := testing.AllocsPerRun(100, func() { _ = handle(secret) }); n > 1 {
		t.Errorf("handle allocates %v times, want only its result", n)
	}
}

// FuzzValidSecret: validSecret accepts exactly the 43-character strings that decode as
// unpadded base64url with no line breaks (which the decoder would skip).
func FuzzValidSecret(f *testing.F) {
	f.Add(newSecret())
	f.Add(strings.Repeat("A", 42) + "=")
	f.Add(strings.Repeat("A", 42) + "\n")
	f.Add(strings.Repeat("+", 43))
	f.Fuzz(func(t *testing.T, v string) {
		_, err := base64.RawURLEncoding.DecodeString(v)
		want := len(v) == 43 && err == nil && !strings.ContainsAny(v, "\r\n")
		if got := validSecret(v); got != want {
			t.Errorf("validSecret(%q) = %v, want %v", v, got, want)
		}
	})
}
