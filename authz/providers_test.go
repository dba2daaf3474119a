package authz

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// trustTable has the portal owner's shared IdP (alice's, idp.example.com) and a customer's own
// that signs people in only where an organisation lists it.
var trustTable = CompileProviders([]config.OIDCProvider{
	{Name: config.DefaultProvider, Issuer: "https://idp.example.com", Shared: true},
	{Name: "acme-entra", Issuer: "https://login.acme.example/v2.0"},
})

const acmeBob = "https://login.acme.example/v2.0|bob"

// TestDecideTrustRule tries to reach an organisation through a provider it does not trust: a
// membership whatever way it was granted is refused unless the person's provider speaks for
// the organisation.
func TestDecideTrustRule(t *testing.T) {
	bob := func(in *Input) {
		in.User, in.Membership.User = acmeBob, acmeBob
	}
	for _, c := range []struct {
		name   string
		change func(*Input)
		want   reason.Code
	}{
		{"no table: no rule", func(in *Input) { in.Providers = nil }, reason.Allowed},
		{"shared provider, org lists none", func(*Input) {}, reason.Allowed},
		{"customer's provider, org lists none", bob, reason.ProviderNotTrusted},
		{"customer's provider, org lists it", func(in *Input) { bob(in); in.Org.Providers = []string{"acme-entra"} }, reason.Allowed},
		{"shared provider, org lists only its own", func(in *Input) { in.Org.Providers = []string{"acme-entra"} }, reason.ProviderNotTrusted},
		{"shared provider listed beside its own", func(in *Input) { in.Org.Providers = []string{"acme-entra", "default"} }, reason.Allowed},
		{"unconfigured issuer", func(in *Input) {
			in.User, in.Membership.User = "https://evil.example|alice", "https://evil.example|alice"
		}, reason.ProviderNotTrusted},
		{"unconfigured issuer, org lists an unknown name", func(in *Input) {
			in.User, in.Membership.User = "https://evil.example|alice", "https://evil.example|alice"
			in.Org.Providers = []string{"evil"}
		}, reason.ProviderNotTrusted},
		{"issuer prefix is not the issuer", func(in *Input) {
			in.User, in.Membership.User = "https://idp.example.com.evil|alice", "https://idp.example.com.evil|alice"
		}, reason.ProviderNotTrusted},
		{"org lists a name no longer configured", func(in *Input) { in.Org.Providers = []string{"gone"} }, reason.ProviderNotTrusted},
		{"hand-typed key with a trailing slash", func(in *Input) {
			in.User, in.Membership.User = "https://idp.example.com/|alice", "https://idp.example.com/|alice"
		}, reason.Allowed},
		{"no separator", func(in *Input) { in.User, in.Membership.User = "alice", "alice" }, reason.ProviderNotTrusted},
		{"not a member stays not_member", func(in *Input) { in.Membership = nil; in.Org.Providers = []string{"acme-entra"} }, reason.NotMember},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := fixture()
			in.Providers = trustTable
			c.change(&in)
			d := Decide(in, now)
			if d.Reason != c.want || d.Allow != (c.want == reason.Allowed) {
				t.Fatalf("Decide = %s (allow %v), want %s", d.Reason, d.Allow, c.want)
			}
			if c.want == reason.ProviderNotTrusted && !d.Member {
				t.Error("the record exists: the page may say why")
			}
		})
	}
}

// TestTrustRuleAllocatesNothing keeps the warm decision free of allocations with the rule on.
func TestTrustRuleAllocatesNothing(t *testing.T) {
	in := fixture()
	in.Providers = trustTable
	in.Org.Providers = []string{"acme-entra", "default"}
	if n := testing.AllocsPerRun(1000, func() { sinkDecision = Decide(in, now) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

// TestMachineSponsorTrust: a machine is not signed in through a provider, but its sponsor is;
// a sponsor whose provider the organisation stopped trusting no longer answers for it.
func TestMachineSponsorTrust(t *testing.T) {
	in := machineFixture()
	in.Providers = trustTable
	if d := DecideMachine(in, now); !d.Allow {
		t.Fatalf("shared sponsor: %s", d.Reason)
	}
	in.Org.Providers = []string{"acme-entra"}
	if d := DecideMachine(in, now); d.Allow || d.Reason != reason.SponsorInactive {
		t.Fatalf("sponsor's provider not trusted: %s, want sponsor_inactive", d.Reason)
	}
}

func TestProvidersLookups(t *testing.T) {
	var none *Providers
	if none.Known("default") || none.ByIssuer("https://idp.example.com") != "" || !none.Trusts(nil, "") || !none.TrustsUser(nil, alice) {
		t.Error("a nil table knows nothing and trusts everyone")
	}
	if CompileProviders(nil) != nil {
		t.Error("no providers: no table")
	}
	if !trustTable.Known("acme-entra") || trustTable.Known("evil") || trustTable.ByIssuer("https://login.acme.example/v2.0") != "acme-entra" {
		t.Error("lookups")
	}
	if trustTable.Trusts(nil, "default") || trustTable.Trusts(&store.Org{}, "") {
		t.Error("no org or no provider: not trusted")
	}
	if !trustTable.TrustsUser(&store.Org{Providers: []string{"acme-entra"}}, store.MachineUser("acme", "export")) {
		t.Error("a machine's own key is not a provider's person: its sponsor is decided")
	}
}

// A provider bound to one organisation signs people in there only: another organisation that
// lists it anyway (an old list, a direct write) does not trust it, and a bound provider is
// never shared.
func TestBoundProvider(t *testing.T) {
	p := CompileProviders([]config.OIDCProvider{
		{Name: config.DefaultProvider, Issuer: "https://idp.example.com", Shared: true},
		{Name: "acme-okta", Issuer: "https://acme.okta.example", Org: "acme", Shared: true},
	})
	acme := &store.Org{ID: "acme", Providers: []string{"acme-okta"}}
	beta := &store.Org{ID: "beta", Providers: []string{"acme-okta"}}
	gamma := &store.Org{ID: "gamma"}
	switch {
	case !p.Trusts(acme, "acme-okta"):
		t.Error("acme does not trust its own bound provider")
	case p.Trusts(beta, "acme-okta"):
		t.Error("beta trusts a provider bound to acme")
	case p.Trusts(gamma, "acme-okta"):
		t.Error("a bound provider is shared")
	case !p.Trusts(gamma, config.DefaultProvider):
		t.Error("the shared provider is no longer shared")
	}
	if n := p.Foreign("beta", []string{"default", "acme-okta"}); n != "acme-okta" {
		t.Errorf("Foreign = %q", n)
	}
	if n := p.Foreign("acme", []string{"acme-okta"}); n != "" {
		t.Errorf("Foreign for its own organisation = %q", n)
	}
	if p.Issuer("acme-okta") != "https://acme.okta.example" || p.BoundTo("acme-okta") != "acme" {
		t.Error("lookups")
	}
	var tr *Trust
	if tr.Load() != nil {
		t.Error("a nil Trust holds a table")
	}
	tr = NewTrust(nil)
	tr.Store(p)
	if !tr.Load().Known("acme-okta") {
		t.Error("Store did not replace the table")
	}
	if n := testing.AllocsPerRun(100, func() { _ = tr.Load().Trusts(acme, "acme-okta") }); n != 0 {
		t.Errorf("Load and Trusts allocate %v", n)
	}
}
