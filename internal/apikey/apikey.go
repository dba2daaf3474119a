// Package apikey is the format of Portcullis's API keys, the bearer credentials of machine
// identities: "pc_<id>_<secret>", the id 16 and the secret 52 characters of lower-case base32
// (80 and 260 random bits). The id is public: it names the key in listings, audit events and
// the key index. Only the SHA-256 of the whole key (Hash) is ever stored. The package is a
// leaf: the store writes keys, the decision and the proxy read them.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"
)

// Prefix starts every API key, so that secret scanners can match them
// (pc_[a-z2-7]{16}_[a-z2-7]{52}).
const Prefix = "pc_"

const (
	idLen     = 16
	secretLen = 52
	keyLen    = len(Prefix) + idLen + 1 + secretLen
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// New draws a key: its public id and the whole key, shown once.
func New() (id, key string) {
	var idb [10]byte
	var secret [32]byte
	_, _ = rand.Read(idb[:])
	_, _ = rand.Read(secret[:])
	id = strings.ToLower(b32.EncodeToString(idb[:]))
	return id, Prefix + id + "_" + strings.ToLower(b32.EncodeToString(secret[:]))
}

// Parse splits a key into its public id and checks its shape, without allocating; false for
// anything else.
func Parse(s string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(s, Prefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return "", false
	}
	for i := 0; i < len(rest); i++ {
		if i != idLen && !base32Char(rest[i]) {
			return "", false
		}
	}
	return rest[:idLen], true
}

// ValidID reports whether id has the shape of a key's public id.
func ValidID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !base32Char(id[i]) {
			return false
		}
	}
	return true
}

func base32Char(c byte) bool { return 'a' <= c && c <= 'z' || '2' <= c && c <= '7' }

// domain separates API key hashes from every other hash Portcullis makes.
const domain = "portcullis/api-key\x00"

// Hash is the SHA-256 of the whole key, hex-encoded, as the key index keeps it.
func Hash(key string) string {
	sum := sum(key)
	return hex.EncodeToString(sum[:])
}

// sum hashes key on the stack (the request path compares with it).
func sum(key string) [sha256.Size]byte {
	var buf [len(domain) + keyLen]byte
	n := copy(buf[:], domain)
	if len(key) > len(buf)-n {
		// Not a key of ours (Parse refuses it first); hash it anyway, off the fast path.
		return sha256.Sum256([]byte(domain + key))
	}
	n += copy(buf[n:], key)
	return sha256.Sum256(buf[:n])
}

// Match reports whether key hashes to stored (an index entry's hash). The comparison takes
// the same time wherever the two differ: the hashes are compared in full, and a key that is
// right up to its last byte has a hash no closer to stored than any other. It does not
// allocate.
func Match(key, stored string) bool {
	s := sum(key)
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], s[:])
	if len(stored) != len(hx) {
		return false
	}
	var v byte
	for i := range hx {
		v |= hx[i] ^ stored[i]
	}
	return v == 0
}
