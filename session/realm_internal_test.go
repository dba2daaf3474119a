package session

import (
	"fmt"
	"testing"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

func TestEmailDomain(t *testing.T) {
	for email, want := range map[string]string{
		"alice@acme.example":          "acme.example",
		"Alice@ACME.Example":          "acme.example",
		"a@b@acme.example":            "acme.example", // the domain is after the last @
		"alice@localhost":             "",
		"alice@":                      "",
		"@acme.example":               "",
		"alice":                       "",
		"alice@acme.example\r\nX: y":  "",
		"alice <a@acme.example>":      "",
		"a,b@acme.example":            "",
		"alice@\u212acme.example":     "", // the Kelvin sign is not "k"
		"alice@acme.example.":         "acme.example",
		"alice@xn--bcher-kva.example": "xn--bcher-kva.example",
		"":                            "",
	} {
		got, ok := emailDomain(email)
		if got != want || ok != (want != "") {
			t.Errorf("emailDomain(%q) = %q, %v; want %q", email, got, ok, want)
		}
	}
	long := make([]byte, maxEmailLen)
	for i := range long {
		long[i] = 'a'
	}
	if _, ok := emailDomain(string(long) + "@acme.example"); ok {
		t.Error("an address longer than 254 bytes was accepted")
	}
}

func TestProviderACRMapping(t *testing.T) {
	p := &idp{cfg: config.OIDCProvider{ACRValues: map[string]string{"phr": "urn:idp:mfa", "phrh": "urn:idp:hw"}}}
	d := authz.Demand{ACR: []string{"phr", "loa2"}}
	got := p.demand(d)
	if got.ACR[0] != "urn:idp:mfa" || got.ACR[1] != "loa2" || d.ACR[0] != "phr" {
		t.Errorf("demand %v (the route's kept %v)", got.ACR, d.ACR)
	}
	for acr, want := range map[string]string{"urn:idp:mfa": "phr", "loa2": "loa2", "urn:idp:hw": "urn:idp:hw"} {
		// urn:idp:hw is phrh's, which this demand did not ask for: kept as the provider said.
		if got := p.routeACR(d.ACR, acr); got != want {
			t.Errorf("routeACR(%q) = %q, want %q", acr, got, want)
		}
	}
	if plain := (&idp{}).demand(d); &plain.ACR[0] != &d.ACR[0] {
		t.Error("a provider without a mapping copied the demand")
	}
}

func TestSpeakFor(t *testing.T) {
	all := []config.OIDCProvider{{Name: "portal", Issuer: "https://p.example", Shared: true},
		{Name: "acme-idp", Issuer: "https://a.example"}, {Name: "beta-idp", Issuer: "https://b.example"}}
	m := &Manager{trust: authz.NewTrust(authz.CompileProviders(all))}
	var idps []*idp
	for _, c := range all {
		idps = append(idps, &idp{cfg: c})
	}
	m.idps.Store(&idps)
	names := func(ps []*idp) (out []string) {
		for _, p := range ps {
			out = append(out, p.cfg.Name)
		}
		return out
	}
	for _, tc := range []struct {
		org  *store.Org
		want string
	}{
		{nil, "[portal]"},
		{&store.Org{ID: "x"}, "[portal]"},
		{&store.Org{ID: "acme", Providers: []string{"acme-idp"}}, "[acme-idp]"},
		{&store.Org{ID: "both", Providers: []string{"beta-idp", "portal"}}, "[portal beta-idp]"},
		{&store.Org{ID: "gone", Providers: []string{"removed"}}, "[]"},
	} {
		if got := names(m.speakFor(tc.org)); fmt.Sprint(got) != tc.want {
			t.Errorf("speakFor(%+v) = %v, want %s", tc.org, got, tc.want)
		}
	}
}
