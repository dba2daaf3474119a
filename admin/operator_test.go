package admin

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// TestOperatorJWT: an access token of the operators' identity provider, for the API's
// audience and carrying the operator role, makes its bearer an operator, recorded as such in
// the events of its changes; a token without the role, for another audience, or from another
// provider does not; a provider that cannot be reached is an outage (503), not a refusal.
func TestOperatorJWT(t *testing.T) {
	b := newBed(t)
	ops := func(id string, aud string, roles any) devidp.Client {
		return devidp.Client{ID: id, Secret: id + "-secret", ClientCredentials: true, JWTAccessTokens: true,
			Audience: []string{aud}, Claims: map[string]any{"roles": roles}}
	}
	idp := devidptest.Start(t, devidp.Config{Clients: []devidp.Client{
		ops("ops-bot", "portcullis-admin", []string{"portcullis-operator"}),
		ops("spaced-bot", "portcullis-admin", "reader portcullis-operator"),
		ops("reader-bot", "portcullis-admin", []string{"reader"}),
		ops("portal-bot", "portal", []string{"portcullis-operator"}),
	}})
	other := devidptest.Start(t, devidp.Config{Clients: []devidp.Client{ops("ops-bot", "portcullis-admin", []string{"portcullis-operator"})}})
	token := func(s *devidptest.Server, id string) string {
		t.Helper()
		cc := clientcredentials.Config{ClientID: id, ClientSecret: id + "-secret", TokenURL: tokenURL(t, s)}
		tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, s.HTTP.Client()))
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	v, err := NewOperatorVerifier(config.OperatorTokens{Issuer: idp.URL, Audience: "portcullis-admin", RoleClaim: "roles",
		Role: "portcullis-operator", CARootFile: idp.CAFile(t)})
	if err != nil {
		t.Fatal(err)
	}
	b.api.ops = v

	a := b.call(token(idp, "ops-bot"), "GET", "/api/v1/whoami", nil)
	b.want(a, 200, "")
	if a.body["operator"] != true || a.body["name"] != idp.URL+"|ops-bot" || a.body["via"] != "jwt "+idp.URL {
		t.Errorf("whoami %s", a.raw)
	}
	b.want(b.call(token(idp, "spaced-bot"), "GET", "/api/v1/orgs", nil), 200, "")
	b.want(b.call(token(idp, "reader-bot"), "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	b.want(b.call(token(idp, "portal-bot"), "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	b.want(b.call(token(other, "ops-bot"), "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
	// A token altered after signing.
	tok := token(idp, "ops-bot")
	parts := strings.Split(tok, ".")
	b.want(b.call(parts[0]+"."+parts[1]+"x."+parts[2], "GET", "/api/v1/whoami", nil), 401, "unauthenticated")

	// Its changes name the operator and the provider.
	b.want(b.call(tok, "POST", "/api/v1/orgs", map[string]string{"id": "gamma", "name": "Gamma", "reason": "new customer"}), 201, "")
	evs := b.events(audit.OrgCreated)
	if len(evs) == 0 {
		t.Fatal("no org.created event")
	}
	if last := evs[len(evs)-1]; last.Actor != idp.URL+"|ops-bot" || last.Via != "jwt "+idp.URL || last.Reason != "new customer" {
		t.Errorf("event %+v", last)
	}

	// The provider unreachable: 503, and API tokens keep working.
	down, err := NewOperatorVerifier(config.OperatorTokens{Issuer: "https://127.0.0.1:1", Audience: "portcullis-admin", RoleClaim: "roles", Role: "portcullis-operator"})
	if err != nil {
		t.Fatal(err)
	}
	b.api.ops = down
	b.want(b.call(tok, "GET", "/api/v1/whoami", nil), 503, "idp_unavailable")
	b.want(b.call(b.ops, "GET", "/api/v1/whoami", nil), 200, "")
}

// tokenURL is the provider's token endpoint, from its discovery document.
func tokenURL(t *testing.T, s *devidptest.Server) string {
	t.Helper()
	p, err := oidc.NewProvider(oidc.ClientContext(context.Background(), s.HTTP.Client()), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return p.Endpoint().TokenURL
}
