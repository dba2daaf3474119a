package devidp

import (
	"slices"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2/clientcredentials"
)

// TestClientCredentialsJWT: a machine client gets a signed JWT access token for itself, with
// its audience and claims, that go-oidc verifies against the provider's keys; a wrong secret
// and a client without the grant get nothing.
func TestClientCredentialsJWT(t *testing.T) {
	tb := newTestbed(t, func(c *Config) {
		c.Clients = append(c.Clients, Client{ID: "ops-bot", Secret: "bot-secret", ClientCredentials: true, JWTAccessTokens: true,
			Audience: []string{"portcullis-admin"}, Claims: map[string]any{"roles": []string{"portcullis-operator"}}})
	})
	cc := clientcredentials.Config{ClientID: "ops-bot", ClientSecret: "bot-secret", TokenURL: tb.rp.Endpoint().TokenURL}
	tok, err := cc.Token(tb.ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := tb.rp.Verifier(&oidc.Config{ClientID: "portcullis-admin", Now: tb.clock.Now})
	at, err := v.Verify(tb.ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("verify access token: %v", err)
	}
	var claims struct {
		Roles []string `json:"roles"`
	}
	if err := at.Claims(&claims); err != nil || at.Subject != "ops-bot" || !slices.Contains(claims.Roles, "portcullis-operator") {
		t.Errorf("token sub %q, claims %+v (%v)", at.Subject, claims, err)
	}
	if _, err := tb.rp.Verifier(&oidc.Config{ClientID: "another-api", Now: tb.clock.Now}).Verify(tb.ctx, tok.AccessToken); err == nil {
		t.Error("a token for portcullis-admin verified for another audience")
	}
	bad := cc
	bad.ClientSecret = "nope"
	if _, err := bad.Token(tb.ctx); err == nil {
		t.Error("a wrong secret got a token")
	}
	rp := clientcredentials.Config{ClientID: confidentialC, ClientSecret: confidentialS, TokenURL: cc.TokenURL}
	if _, err := rp.Token(tb.ctx); err == nil {
		t.Error("a client without the grant got a token")
	}
}
