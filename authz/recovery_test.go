package authz

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// recoveryWorld is what the facts are read from, for the driver below.
type recoveryWorld struct {
	count   store.RecoveryCount
	holder  *store.Org // nil: no org ever held the domain
	matched string
	person  string // "" nobody
	// username: the identifier is a username (known before any read).
	username bool
	// invitations are the open invitations to the address.
	invitations []store.Invitation
	// mailDomains are the person's email domains, and mailHolders who holds each.
	mailDomains []string
	mailHolders map[string]DomainHolder
	orgs        []string
	records     map[string]HeldMembership
}

// decideRecovery runs the caller's loop: ask, read what is needed, ask again. It returns the
// decision and the needs in the order they were asked.
func decideRecovery(t *testing.T, p RecoveryPolicy, w recoveryWorld, now time.Time) (RecoveryDecision, []RecoveryNeed) {
	t.Helper()
	f := RecoveryFacts{Username: w.username}
	var needs []RecoveryNeed
	for range 50 {
		d := DecideRecovery(p, &f, now)
		if again := DecideRecovery(p, &f, now); again != d {
			t.Fatalf("not a function of its facts: %+v then %+v", d, again)
		}
		if d.Need == NeedNothing {
			return d, needs
		}
		needs = append(needs, d.Need)
		switch d.Need {
		case NeedCount:
			c := w.count
			f.Count = &c
		case NeedDomain:
			f.Domain = &DomainHolder{Org: w.holder, Matched: w.matched}
		case NeedPerson:
			f.Person, f.PersonRead = w.person, true
		case NeedOrgs:
			f.Orgs, f.OrgsRead = w.orgs, true
		case NeedMembership:
			f.Memberships = append(f.Memberships, w.records[f.Orgs[len(f.Memberships)]])
		case NeedMailDomains:
			f.MailDomains, f.MailDomainsRead = w.mailDomains, true
		case NeedInvitations:
			f.Invitations, f.InvitationsRead = w.invitations, true
		case NeedMailDomainHolder:
			f.MailHolders = append(f.MailHolders, w.mailHolders[f.MailDomains[len(f.MailHolders)]])
		}
	}
	t.Fatal("DecideRecovery never decided")
	return RecoveryDecision{}, nil
}

// recoveryTrust: "iss" (the test's people) is a customer's provider, not shared.
var recoveryTrust = CompileProviders([]config.OIDCProvider{
	{Name: config.DefaultProvider, Issuer: "https://idp.example", Shared: true},
	{Name: "customer", Issuer: "iss"},
})

func TestDecideRecovery(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	pol := RecoveryPolicy{PerIdentifier: 5, PerClient: 20}
	acme := func(edit func(*store.Org)) *store.Org {
		o := &store.Org{ID: "acme", Status: store.OrgActive, Domains: []store.Domain{{Name: "acme.example", Status: store.DomainVerified}}}
		if edit != nil {
			edit(o)
		}
		return o
	}
	live := func(org string, edit func(*store.Membership)) HeldMembership {
		m := &store.Membership{Org: org, User: "iss|alice", Kind: store.KindEmployee, Status: store.MembershipActive}
		if edit != nil {
			edit(m)
		}
		return HeldMembership{Org: &store.Org{ID: org, Status: store.OrgActive}, Membership: m}
	}
	good := recoveryWorld{count: store.RecoveryCount{Identifier: 1, Client: 1, Reset: now.Add(30 * time.Minute)},
		holder: acme(nil), matched: "acme.example", person: "iss|alice", orgs: []string{"acme"},
		records:     map[string]HeldMembership{"acme": live("acme", nil)},
		mailDomains: []string{"acme.example"}, mailHolders: map[string]DomainHolder{"acme.example": {Org: acme(nil), Matched: "acme.example"}}}
	all := []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedOrgs, NeedMembership}

	for _, c := range []struct {
		name  string
		pol   func(*RecoveryPolicy)
		world func(*recoveryWorld)
		want  reason.Code
		org   string
		needs []RecoveryNeed
	}{
		{"live person, verified domain", nil, nil, reason.Allowed, "acme", all},
		// A membership of a person of a provider the organisation does not trust is not live.
		{"membership of an untrusted provider's person", func(p *RecoveryPolicy) { p.Providers = recoveryTrust }, nil,
			reason.NoActiveMembership, "acme", all},
		{"membership of a provider the organisation lists", func(p *RecoveryPolicy) { p.Providers = recoveryTrust }, func(w *recoveryWorld) {
			h := live("acme", nil)
			h.Org.Providers = []string{"customer"}
			w.records = map[string]HeldMembership{"acme": h}
		}, reason.Allowed, "acme", all},

		// Rate limits come first and cost no lookup.
		{"identifier over its limit", nil, func(w *recoveryWorld) { w.count.Identifier = 6 }, reason.RateLimited, "", []RecoveryNeed{NeedCount}},
		{"client over its limit", nil, func(w *recoveryWorld) { w.count.Client = 21 }, reason.RateLimited, "", []RecoveryNeed{NeedCount}},
		{"at the limits", nil, func(w *recoveryWorld) { w.count.Identifier, w.count.Client = 5, 20 }, reason.Allowed, "acme", all},

		// The domain (security-cases REC-02..04): lapsed, pending, its holder gone.
		{"domain lapsed", nil, func(w *recoveryWorld) {
			w.holder = acme(func(o *store.Org) { o.Domains[0].Status = store.DomainLapsed })
		},
			reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedDomain}},
		{"domain pending", nil, func(w *recoveryWorld) {
			w.holder = acme(func(o *store.Org) { o.Domains[0].Status = store.DomainPending })
		},
			reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedDomain}},
		{"holder suspended", nil, func(w *recoveryWorld) { w.holder = acme(func(o *store.Org) { o.Status = store.OrgSuspended }) },
			reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedDomain}},
		{"holder ended", nil, func(w *recoveryWorld) { w.holder = acme(func(o *store.Org) { o.Status = store.OrgEnded }) },
			reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedDomain}},
		{"holder merged away", nil, func(w *recoveryWorld) { w.holder = acme(func(o *store.Org) { o.MergedInto = "globex" }) },
			reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedDomain}},
		{"holder's contract over", nil, func(w *recoveryWorld) { w.holder = acme(func(o *store.Org) { o.ContractEnd = now }) },
			reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedDomain}},
		{"holder's contract not over yet", nil, func(w *recoveryWorld) { w.holder = acme(func(o *store.Org) { o.ContractEnd = now.Add(time.Second) }) },
			reason.Allowed, "acme", all},
		{"index names an org that does not list the domain", nil, func(w *recoveryWorld) { w.matched = "other.example" },
			reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedDomain}},
		{"unknown domain", nil, func(w *recoveryWorld) { w.holder = nil }, reason.UnknownDomain, "", []RecoveryNeed{NeedCount, NeedDomain}},
		{"unknown domain allowed, nobody we know", func(p *RecoveryPolicy) { p.AllowUnknownDomains = true },
			func(w *recoveryWorld) { w.holder, w.person = nil, "" }, reason.Allowed, "", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson}},
		{"unknown domain allowed, but a former member", func(p *RecoveryPolicy) { p.AllowUnknownDomains = true },
			func(w *recoveryWorld) { w.holder, w.orgs = nil, nil }, reason.NoActiveMembership, "", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedOrgs}},

		// The person: unknown, or without a live membership anywhere.
		{"nobody signed in with it", nil, func(w *recoveryWorld) { w.person = "" }, reason.NoActiveMembership, "acme", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedInvitations}},
		{"nobody signed in with it, invited by the domain's holder", nil, func(w *recoveryWorld) {
			w.person, w.invitations = "", []store.Invitation{{Org: "acme", Email: "victim@acme.example", Until: now.Add(time.Hour)}}
		}, reason.Allowed, "acme", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedInvitations}},
		{"nobody signed in with it, invited by another organisation", nil, func(w *recoveryWorld) {
			w.person, w.invitations = "", []store.Invitation{{Org: "beta", Email: "victim@acme.example", Until: now.Add(time.Hour)}}
		}, reason.NoActiveMembership, "acme", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedInvitations}},
		{"nobody signed in with it, invited to a membership that has ended", nil, func(w *recoveryWorld) {
			w.person, w.invitations = "", []store.Invitation{{Org: "acme", Email: "victim@acme.example", Until: now.Add(time.Hour), ExpiresAt: now.Add(-time.Hour)}}
		}, reason.NoActiveMembership, "acme", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedInvitations}},
		{"nobody signed in with it, invited to a membership overdue for review", nil, func(w *recoveryWorld) {
			w.person, w.invitations = "", []store.Invitation{{Org: "acme", Email: "victim@acme.example", Until: now.Add(time.Hour), ReviewBy: now}}
		}, reason.NoActiveMembership, "acme", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedInvitations}},
		{"nobody signed in with it, the invitation lapsed", nil, func(w *recoveryWorld) {
			w.person, w.invitations = "", []store.Invitation{{Org: "acme", Email: "victim@acme.example", Until: now}}
		}, reason.NoActiveMembership, "acme", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedInvitations}},
		{"no membership anywhere", nil, func(w *recoveryWorld) { w.orgs = nil }, reason.NoActiveMembership, "acme", []RecoveryNeed{NeedCount, NeedDomain, NeedPerson, NeedOrgs}},
		{"revoked", nil, func(w *recoveryWorld) {
			w.records = map[string]HeldMembership{"acme": live("acme", func(m *store.Membership) { m.Status = store.MembershipRevoked })}
		}, reason.NoActiveMembership, "acme", all},
		{"suspended", nil, func(w *recoveryWorld) {
			w.records = map[string]HeldMembership{"acme": live("acme", func(m *store.Membership) { m.Status = store.MembershipSuspended })}
		}, reason.NoActiveMembership, "acme", all},
		{"expired", nil, func(w *recoveryWorld) {
			w.records = map[string]HeldMembership{"acme": live("acme", func(m *store.Membership) { m.ExpiresAt = now })}
		}, reason.NoActiveMembership, "acme", all},
		{"review overdue", nil, func(w *recoveryWorld) {
			w.records = map[string]HeldMembership{"acme": live("acme", func(m *store.Membership) { m.ReviewBy = now.Add(-time.Hour) })}
		}, reason.NoActiveMembership, "acme", all},
		{"membership of another person (cache mix-up)", nil, func(w *recoveryWorld) {
			w.records = map[string]HeldMembership{"acme": live("acme", func(m *store.Membership) { m.User = "iss|mallory" })}
		}, reason.NoActiveMembership, "acme", all},
		{"record missing", nil, func(w *recoveryWorld) { w.records = map[string]HeldMembership{} }, reason.NoActiveMembership, "acme", all},
		{"live elsewhere: a partner's mailbox at a verified domain", nil, func(w *recoveryWorld) {
			w.orgs = []string{"acme", "beta"}
			w.records = map[string]HeldMembership{"acme": live("acme", func(m *store.Membership) { m.Status = store.MembershipRevoked }), "beta": live("beta", nil)}
		}, reason.Allowed, "acme", append(all, NeedMembership)},
		{"first live membership ends the reads", nil, func(w *recoveryWorld) {
			w.orgs = []string{"acme", "beta", "gamma"}
			w.records = map[string]HeldMembership{"acme": live("acme", nil)}
		}, reason.Allowed, "acme", all},

		// Usernames: no domain in the request, the person through the username index, and
		// every address the person is known by checked as a requested one would be.
		{"username, live", nil, func(w *recoveryWorld) { w.username, w.holder = true, nil },
			reason.Allowed, "acme", []RecoveryNeed{NeedCount, NeedPerson, NeedMailDomains, NeedMailDomainHolder, NeedOrgs, NeedMembership}},
		{"username, nobody's", nil, func(w *recoveryWorld) { w.username, w.person = true, "" },
			reason.NoActiveMembership, "", []RecoveryNeed{NeedCount, NeedPerson}},
		{"username, revoked", nil, func(w *recoveryWorld) {
			w.username = true
			w.records = map[string]HeldMembership{"acme": live("acme", func(m *store.Membership) { m.Status = store.MembershipRevoked })}
		}, reason.NoActiveMembership, "", []RecoveryNeed{NeedCount, NeedPerson, NeedMailDomains, NeedMailDomainHolder, NeedOrgs, NeedMembership}},
		{"username, the address's domain lapsed", nil, func(w *recoveryWorld) {
			w.username = true
			w.mailHolders = map[string]DomainHolder{"acme.example": {Org: acme(func(o *store.Org) { o.Domains[0].Status = store.DomainLapsed }), Matched: "acme.example"}}
		}, reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedPerson, NeedMailDomains, NeedMailDomainHolder}},
		{"username, one of two addresses stale", nil, func(w *recoveryWorld) {
			w.username = true
			w.mailDomains = []string{"acme.example", "old.example"}
			w.mailHolders = map[string]DomainHolder{"acme.example": w.mailHolders["acme.example"]}
			w.mailHolders["old.example"] = DomainHolder{Org: acme(func(o *store.Org) { o.Status = store.OrgEnded }), Matched: "acme.example"}
		}, reason.StaleDomain, "acme", []RecoveryNeed{NeedCount, NeedPerson, NeedMailDomains, NeedMailDomainHolder, NeedMailDomainHolder}},
		{"username, an address at a domain nobody held", nil, func(w *recoveryWorld) {
			w.username = true
			w.mailDomains = []string{"gmail.example"}
		}, reason.UnknownDomain, "", []RecoveryNeed{NeedCount, NeedPerson, NeedMailDomains, NeedMailDomainHolder}},
		{"username, an address at a domain nobody held, allowed", func(p *RecoveryPolicy) { p.AllowUnknownDomains = true }, func(w *recoveryWorld) {
			w.username = true
			w.mailDomains = []string{"gmail.example"}
		}, reason.Allowed, "acme", []RecoveryNeed{NeedCount, NeedPerson, NeedMailDomains, NeedMailDomainHolder, NeedOrgs, NeedMembership}},
		{"username, no known address", nil, func(w *recoveryWorld) { w.username, w.mailDomains = true, nil },
			reason.AddressUnknown, "", []RecoveryNeed{NeedCount, NeedPerson, NeedMailDomains}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, w := pol, good
			if c.pol != nil {
				c.pol(&p)
			}
			if c.world != nil {
				c.world(&w)
			}
			d, needs := decideRecovery(t, p, w, now)
			if d.Reason != c.want || d.Org != c.org {
				t.Errorf("decision %+v, want %s for org %q", d, c.want, c.org)
			}
			if d.ByInvitation != strings.Contains(c.name, "invited by the domain's holder") {
				t.Errorf("ByInvitation %v", d.ByInvitation)
			}
			if !slices.Equal(needs, c.needs) {
				t.Errorf("facts read %v, want %v", needs, c.needs)
			}
			wantUser := c.want != reason.RateLimited && c.want != reason.UnknownDomain && c.want != reason.StaleDomain && w.person != ""
			if w.username {
				// A username names its person before any domain is looked at.
				wantUser = c.want != reason.RateLimited && w.person != ""
			}
			if wantUser != (d.User == w.person && d.User != "") {
				t.Errorf("user %q", d.User)
			}
		})
	}
}

func TestDecideRecoveryRateLimitAudit(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	pol := RecoveryPolicy{PerIdentifier: 5, PerClient: 20}
	for _, c := range []struct {
		name      string
		id, cl    int64
		quiet     bool
		reset     time.Time
		retryWant time.Duration
	}{
		{"first over the identifier's limit is audited", 6, 3, false, now.Add(90*time.Second + 500*time.Millisecond), 91 * time.Second},
		{"first over the client's limit is audited", 2, 21, false, now.Add(time.Second), 2 * time.Second},
		{"later ones are quiet", 7, 22, true, now.Add(time.Hour), time.Hour + time.Second},
		{"window over already", 9, 1, true, now.Add(-2 * time.Second), 0},
	} {
		f := RecoveryFacts{Count: &store.RecoveryCount{Identifier: c.id, Client: c.cl, Reset: c.reset}}
		d := DecideRecovery(pol, &f, now)
		if d.Reason != reason.RateLimited || d.Quiet != c.quiet || d.RetryAfter != c.retryWant || d.Need != NeedNothing {
			t.Errorf("%s: %+v", c.name, d)
		}
	}
}

func TestDecideRecoveryNoAllocs(t *testing.T) {
	now := time.Now()
	org := &store.Org{ID: "acme", Status: store.OrgActive, Domains: []store.Domain{{Name: "acme.example", Status: store.DomainVerified}}}
	f := RecoveryFacts{Count: &store.RecoveryCount{Identifier: 1, Client: 1}, Domain: &DomainHolder{Org: org, Matched: "acme.example"},
		Person: "iss|a", PersonRead: true, Orgs: []string{"acme"}, OrgsRead: true,
		Memberships: []HeldMembership{{Org: org, Membership: &store.Membership{Org: "acme", User: "iss|a", Kind: store.KindEmployee, Status: store.MembershipActive}}}}
	if n := testing.AllocsPerRun(100, func() { _ = DecideRecovery(RecoveryPolicy{PerIdentifier: 5, PerClient: 5}, &f, now) }); n != 0 {
		t.Errorf("allocations: %v", n)
	}
}
