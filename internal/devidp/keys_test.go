package devidp

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// freshVerifier is a relying party that has not cached any key.
func (tb *testbed) freshVerifier(t *testing.T) *oidc.IDTokenVerifier {
	t.Helper()
	rp, err := oidc.NewProvider(tb.ctx, tb.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return rp.Verifier(&oidc.Config{ClientID: confidentialC})
}

// jwks fetches the published key set.
func (tb *testbed) jwks(t *testing.T) jose.JSONWebKeySet {
	t.Helper()
	var d struct {
		JWKS string `json:"jwks_uri"`
	}
	if err := tb.rp.Claims(&d); err != nil {
		t.Fatal(err)
	}
	resp, err := tb.srv.Client().Get(d.JWKS)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

func kidOf(t *testing.T, raw string) string {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	return jws.Signatures[0].Header.KeyID
}

func TestSigningKeyPublished(t *testing.T) {
	tb := newTestbed(t, nil)
	_, raw := tb.login(t, "bob", "bob-pw", "")
	set := tb.jwks(t)
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys, want 1", len(set.Keys))
	}
	k := set.Keys[0]
	if k.KeyID == "" || k.KeyID != kidOf(t, raw) || k.KeyID != tb.idp.SigningKeyID() || k.Algorithm != "RS256" || k.Use != "sig" || !k.IsPublic() {
		t.Errorf("jwk kid=%q alg=%q use=%q public=%v; token kid %q", k.KeyID, k.Algorithm, k.Use, k.IsPublic(), kidOf(t, raw))
	}
}

func TestRotateKeysDropsOldKey(t *testing.T) {
	tb := newTestbed(t, nil)
	_, oldRaw := tb.login(t, "bob", "bob-pw", "")
	oldKid := tb.idp.SigningKeyID()

	if err := tb.idp.RotateKeys(false); err != nil {
		t.Fatal(err)
	}
	if tb.idp.SigningKeyID() == oldKid {
		t.Fatal("kid did not change")
	}
	if set := tb.jwks(t); len(set.Keys) != 1 || set.Keys[0].KeyID == oldKid {
		t.Fatalf("jwks after rotation: %d keys, first %q", len(set.Keys), set.Keys[0].KeyID)
	}
	_, err := tb.freshVerifier(t).Verify(tb.ctx, oldRaw)
	if err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("token signed by the removed key: err = %v, want a signature failure", err)
	}

	// New tokens are signed with the new key; an RP that cached the old set
	// refetches on the unknown kid.
	_, newRaw := tb.login(t, "bob", "bob-pw", "")
	if kidOf(t, newRaw) != tb.idp.SigningKeyID() {
		t.Errorf("new token kid %q, current %q", kidOf(t, newRaw), tb.idp.SigningKeyID())
	}
}

func TestRotateKeysKeepOld(t *testing.T) {
	tb := newTestbed(t, nil)
	_, oldRaw := tb.login(t, "bob", "bob-pw", "")
	if err := tb.idp.RotateKeys(true); err != nil {
		t.Fatal(err)
	}
	if set := tb.jwks(t); len(set.Keys) != 2 || set.Keys[0].KeyID != tb.idp.SigningKeyID() {
		t.Fatalf("jwks: %d keys, want current first and the old one", len(set.Keys))
	}
	if _, err := tb.freshVerifier(t).Verify(tb.ctx, oldRaw); err != nil {
		t.Fatalf("old token after a graceful rotation: %v", err)
	}
	// A later hard rotation drops every old key.
	if err := tb.idp.RotateKeys(false); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.freshVerifier(t).Verify(tb.ctx, oldRaw); err == nil {
		t.Fatal("old token verified after a hard rotation")
	}
}
