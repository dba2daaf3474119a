package authz

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// A fixed key of the right shape (apikey.Parse), and its public id.
const (
	machineKey   = "pc_abcdefghijklmnop_" + "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"
	machineKeyID = "abcdefghijklmnop"
)

// machineFixture is an allowed machine request: acme's billing export, sponsored by alice
// (fixture's live employee), holding the billing role and a live key.
func machineFixture() MachineInput {
	p := fixture()
	user := store.MachineUser("acme", "billing-export")
	return MachineInput{
		Key: machineKey, KeyID: machineKeyID,
		Owner:   &store.APIKeyOwner{Org: "acme", Machine: "billing-export", Hash: apikey.Hash(machineKey)},
		OrgID:   "acme",
		Require: p.Require,
		Org:     p.Org,
		Machine: &store.Membership{Org: "acme", User: user, Kind: store.KindService, Roles: []string{"billing"},
			Status: store.MembershipActive, ExpiresAt: now.Add(30 * 24 * time.Hour),
			Machine: &store.Machine{ID: "billing-export", Name: "Billing export", Sponsor: alice,
				Keys: []store.APIKey{{ID: "zzzzzzzzzzzzzzzz", ExpiresAt: now.Add(time.Hour), Revoked: now.Add(-time.Hour)},
					{ID: machineKeyID, ExpiresAt: now.Add(time.Hour)}}}},
		Sponsor: p.Membership,
	}
}

func TestDecideMachine(t *testing.T) {
	if _, ok := apikey.Parse(machineKey); !ok {
		t.Fatal("the fixture's key is malformed")
	}
	d := DecideMachine(machineFixture(), now)
	if !d.Allow || d.Reason != reason.Allowed || d.Org != "acme" || d.Kind != store.KindService ||
		!slices.Equal(d.Roles, []string{"billing"}) || d.Sponsor != alice {
		t.Fatalf("allowed case: %+v", d)
	}

	// Employees (the sponsor's kind) end within 30 days.
	capped := policyOf(t, "\n  kinds:\n    employee: {max_duration: 30d}\n")
	for _, tc := range []struct {
		name   string
		change func(*MachineInput)
		want   reason.Code
	}{
		// The credential.
		{"no index entry", func(in *MachineInput) { in.Owner = nil }, reason.CredentialInvalid},
		{"a wrong secret", func(in *MachineInput) { in.Key = in.Key[:len(in.Key)-1] + "b" }, reason.CredentialInvalid},
		{"the hash as the key", func(in *MachineInput) { in.Key = in.Owner.Hash }, reason.CredentialInvalid},
		{"an empty key", func(in *MachineInput) { in.Key = "" }, reason.CredentialInvalid},
		{"no machine record", func(in *MachineInput) { in.Machine = nil }, reason.CredentialInvalid},
		{"a person's membership as the record", func(in *MachineInput) { in.Machine = in.Sponsor }, reason.CredentialInvalid},
		{"the record of another machine", func(in *MachineInput) { in.Machine.User = store.MachineUser("acme", "other") }, reason.CredentialInvalid},
		{"the record in another org", func(in *MachineInput) { in.Machine.Org = "globex" }, reason.CredentialInvalid},
		{"an entry naming another machine", func(in *MachineInput) { in.Owner.Machine = "other" }, reason.CredentialInvalid},
		{"a key the record does not list", func(in *MachineInput) { in.Machine.Machine.Keys = in.Machine.Machine.Keys[:1] }, reason.CredentialInvalid},
		{"another key's id", func(in *MachineInput) { in.KeyID = "zzzzzzzzzzzzzzzz" }, reason.CredentialRevoked},
		{"revoked", func(in *MachineInput) { in.Machine.Machine.Keys[1].Revoked = now.Add(-time.Second) }, reason.CredentialRevoked},
		{"expired", func(in *MachineInput) { in.Machine.Machine.Keys[1].ExpiresAt = now }, reason.CredentialExpired},
		{"rotated out, overlap over", func(in *MachineInput) { in.Machine.Machine.Keys[1].ExpiresAt = now.Add(-time.Minute) }, reason.CredentialExpired},

		// Another organisation, whatever it is.
		{"another org", func(in *MachineInput) { in.OrgID = "globex" }, reason.NotMember},
		{"no org", func(in *MachineInput) { in.OrgID = "" }, reason.NoOrg},

		// The machine's own membership, as Decide sees it.
		{"machine suspended", func(in *MachineInput) { in.Machine.Status = store.MembershipSuspended }, reason.MembershipSuspended},
		{"machine revoked", func(in *MachineInput) { in.Machine.Status = store.MembershipRevoked }, reason.MembershipRevoked},
		{"machine expired", func(in *MachineInput) { in.Machine.ExpiresAt = now }, reason.MembershipExpired},
		{"machine overdue for review", func(in *MachineInput) { in.Machine.ReviewBy = now }, reason.ReviewOverdue},
		{"org suspended", func(in *MachineInput) { in.Org.Status = store.OrgSuspended }, reason.OrgInactive},
		{"contract ended", func(in *MachineInput) { in.Org.ContractEnd = now }, reason.OrgInactive},
		{"no org record", func(in *MachineInput) { in.Org = nil }, reason.OrgUnknown},
		{"role missing", func(in *MachineInput) { in.Machine.Roles = []string{"viewer"} }, reason.RoleMissing},
		{"kind not admitted", func(in *MachineInput) { in.Require = require(config.Require{Kinds: []string{"employee"}}) }, reason.KindNotAllowed},
		{"purpose missing", func(in *MachineInput) { in.Require = require(config.Require{Purposes: []string{"audit"}}) }, reason.PurposeMissing},

		// The sponsor.
		{"no sponsor membership", func(in *MachineInput) { in.Sponsor = nil }, reason.SponsorInactive},
		{"sponsor revoked", func(in *MachineInput) { in.Sponsor.Status = store.MembershipRevoked }, reason.SponsorInactive},
		{"sponsor suspended", func(in *MachineInput) { in.Sponsor.Status = store.MembershipSuspended }, reason.SponsorInactive},
		{"sponsor expired", func(in *MachineInput) { in.Sponsor.ExpiresAt = now }, reason.SponsorInactive},
		{"sponsor overdue", func(in *MachineInput) { in.Sponsor.ReviewBy = now }, reason.SponsorInactive},
		{"sponsor's membership elsewhere", func(in *MachineInput) { in.Sponsor.Org = "globex" }, reason.SponsorInactive},
		{"someone else's membership as the sponsor's", func(in *MachineInput) { in.Sponsor.User = "https://idp.example.com|bob" }, reason.SponsorInactive},
		{"sponsor lost the role the route needs", func(in *MachineInput) { in.Sponsor.Roles = []string{"viewer"} }, reason.RoleMissing},
		{"a purpose only the machine holds", func(in *MachineInput) {
			in.Require = require(config.Require{Purposes: []string{"export"}})
			in.Machine.Grants = []store.Grant{{Purpose: "export", ExpiresAt: now.Add(time.Hour)}}
		}, reason.PurposeMissing},
		{"sponsor beyond its kind's policy", func(in *MachineInput) {
			in.Policy = capped
			in.Sponsor.Created, in.Sponsor.ExpiresAt = now.Add(-time.Hour), time.Time{}
		}, reason.SponsorInactive},
		{"any-of purposes met differently", func(in *MachineInput) {
			in.Require = require(config.Require{Purposes: []string{"audit", "export"}})
			in.Machine.Grants = []store.Grant{{Purpose: "export", ExpiresAt: now.Add(time.Hour)}}
		}, reason.PurposeMissing},
		{"any-of roles met differently", func(in *MachineInput) {
			in.Require = require(config.Require{Roles: []string{"admin", "billing"}})
			in.Machine.Roles = []string{"admin"}
		}, reason.RoleMissing},
		{"the machine as its own sponsor", func(in *MachineInput) {
			in.Machine.Machine.Sponsor = in.Machine.User
			in.Sponsor = in.Machine
		}, reason.SponsorInactive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := machineFixture()
			tc.change(&in)
			d := DecideMachine(in, now)
			if d.Allow || d.Reason != tc.want {
				t.Errorf("got %s (allow %v), want %s", d.Reason, d.Allow, tc.want)
			}
			if d.Kind != "" || d.Roles != nil || d.Sponsor != "" {
				t.Errorf("a denial carries what is forwarded: %+v", d)
			}
			switch d.Reason {
			case reason.CredentialInvalid, reason.CredentialRevoked, reason.CredentialExpired, reason.NotMember:
				if d.Member || d.Missing.Contact != "" {
					t.Errorf("a credential denial tells about the org: %+v", d)
				}
			}
		})
	}
}

// TestDecideMachineClient: a verified client-credentials token is the machine its client is
// bound to, in an organisation its issuer speaks for, until the token expires.
func TestDecideMachineClient(t *testing.T) {
	const iss = "https://login.acme.example"
	base := func() MachineInput {
		in := machineFixture()
		in.Key, in.KeyID, in.Owner = "", "", nil
		in.Client = &VerifiedClient{Issuer: iss, Subject: "sync-client", Expiry: now.Add(time.Minute), Orgs: []string{"acme"}}
		in.ClientOwner = &store.ClientOwner{Org: "acme", Machine: "billing-export", Issuer: iss, Subject: "sync-client"}
		in.Machine.Machine.Clients = []store.FederatedClient{{Issuer: iss, Subject: "sync-client"}}
		return in
	}
	if d := DecideMachine(base(), now); !d.Allow || d.Sponsor != alice {
		t.Fatalf("a bound client: %+v", d)
	}
	for name, tc := range map[string]struct {
		change func(*MachineInput)
		want   reason.Code
	}{
		"no index entry":                    {func(in *MachineInput) { in.ClientOwner = nil }, reason.CredentialInvalid},
		"the record does not list it":       {func(in *MachineInput) { in.Machine.Machine.Clients = nil }, reason.CredentialInvalid},
		"an entry for another subject":      {func(in *MachineInput) { in.ClientOwner.Subject = "other" }, reason.CredentialInvalid},
		"the issuer speaks for another org": {func(in *MachineInput) { in.Client.Orgs = []string{"globex"} }, reason.CredentialInvalid},
		"expired":                           {func(in *MachineInput) { in.Client.Expiry = now }, reason.CredentialExpired},
		"another org's route":               {func(in *MachineInput) { in.OrgID = "globex" }, reason.NotMember},
		"bound at another issuer":           {func(in *MachineInput) { in.Machine.Machine.Clients[0].Issuer = "https://elsewhere" }, reason.CredentialInvalid},
	} {
		in := base()
		tc.change(&in)
		if d := DecideMachine(in, now); d.Allow || d.Reason != tc.want {
			t.Errorf("%s: %s, want %s", name, d.Reason, tc.want)
		}
	}
}

// TestDecideMachineWithinSponsor: the roles forwarded are those both hold, whatever the
// machine's own record says; with the sponsor holding them all, nothing is allocated.
func TestDecideMachineWithinSponsor(t *testing.T) {
	in := machineFixture()
	in.Require = require(config.Require{})
	in.Machine.Roles = []string{"billing", "finance", "viewer"}
	in.Sponsor.Roles = []string{"billing", "viewer"}
	if d := DecideMachine(in, now); !d.Allow || !slices.Equal(d.Roles, []string{"billing", "viewer"}) {
		t.Errorf("roles %v (%s), want those the sponsor holds too", d.Roles, d.Reason)
	}
	in.Sponsor.Roles = []string{"admin"}
	if d := DecideMachine(in, now); !d.Allow || len(d.Roles) != 0 {
		t.Errorf("roles %v (%s), want none", d.Roles, d.Reason)
	}
}

// TestDecideMachineNoEmailCheck: a machine has no address; the route's email domain rule is
// the people's, and it does not let a machine through on its sponsor's address either.
func TestDecideMachineNoEmailCheck(t *testing.T) {
	in := machineFixture()
	in.Org.Domains = nil
	if d := DecideMachine(in, now); !d.Allow {
		t.Errorf("machine refused for the email domain: %+v", d)
	}
}

func TestDecideMachineAllocatesNothing(t *testing.T) {
	in := machineFixture()
	if n := testing.AllocsPerRun(200, func() { DecideMachine(in, now) }); n != 0 {
		t.Errorf("DecideMachine allocates %v times", n)
	}
}

// fakeMachines is a Members and MachineLookup over fixed records, counting reads.
type fakeMachines struct {
	org            *store.Org
	mems           map[string]*store.Membership
	singles, pairs int
}

func (f *fakeMachines) Lookup(_ context.Context, org, user string) (*store.Org, *store.Membership, error) {
	f.singles++
	return f.org, f.mems[user], nil
}
func (f *fakeMachines) LookupMachine(_ context.Context, org, machine, sponsor string) (*store.Org, *store.Membership, *store.Membership, error) {
	f.pairs++
	return f.org, f.mems[machine], f.mems[sponsor], nil
}
func (f *fakeMachines) OrgsOf(context.Context, string) ([]string, error)           { return nil, nil }
func (f *fakeMachines) WithPrefetch(ctx context.Context, _ string) context.Context { return ctx }

type fakeKeys map[string]*store.APIKeyOwner

func (k fakeKeys) APIKeyOwner(_ context.Context, id string) (*store.APIKeyOwner, error) {
	return k[id], nil
}

// TestGatherMachine: the key's sponsor, named in its index entry, is read with the machine in
// one lookup; when the record names another sponsor (a handover, which revoked the key), the
// record's is read instead, for the decision to refuse.
func TestGatherMachine(t *testing.T) {
	in := machineFixture()
	bob := &store.Membership{Org: "acme", User: "https://idp.example.com|bob", Kind: store.KindEmployee, Roles: []string{"billing"}, Status: store.MembershipActive}
	f := &fakeMachines{org: in.Org, mems: map[string]*store.Membership{in.Machine.User: in.Machine, alice: in.Sponsor, bob.User: bob}}
	owner := *in.Owner
	owner.Sponsor = alice
	keys := fakeKeys{machineKeyID: &owner}
	got, err := GatherMachine(context.Background(), keys, f, machineKey, machineKeyID)
	if err != nil || got.Sponsor != in.Sponsor || got.Machine != in.Machine || f.pairs != 1 || f.singles != 0 {
		t.Fatalf("with the key's sponsor: %+v %v (pairs %d, singles %d)", got, err, f.pairs, f.singles)
	}
	got.OrgID, got.Require = "acme", in.Require
	if d := DecideMachine(got, now); !d.Allow {
		t.Errorf("decided: %+v", d)
	}
	// Handed over to bob: the record is the truth.
	handed := *in.Machine
	mc := *handed.Machine
	mc.Sponsor = bob.User
	handed.Machine = &mc
	f.mems[in.Machine.User] = &handed
	f.pairs, f.singles = 0, 0
	got, err = GatherMachine(context.Background(), keys, f, machineKey, machineKeyID)
	if err != nil || got.Sponsor != bob || f.pairs != 1 || f.singles != 2 {
		t.Fatalf("after a handover: sponsor %+v %v (pairs %d, singles %d)", got.Sponsor, err, f.pairs, f.singles)
	}
	// A wrong secret reads nothing but the index.
	f.pairs, f.singles = 0, 0
	if got, _ := GatherMachine(context.Background(), keys, f, machineKey[:len(machineKey)-1]+"b", machineKeyID); got.Owner != nil || f.pairs+f.singles != 0 {
		t.Errorf("a wrong secret: %+v (reads %d)", got, f.pairs+f.singles)
	}
}
