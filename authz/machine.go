package authz

import (
	"context"
	"slices"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// MachineInput is everything DecideMachine looks at: one request presenting an API key on an
// org-scoped route, with the records its caller gathered. As with Input, DecideMachine only
// reads it.
type MachineInput struct {
	// Key is the API key as presented (the whole "pc_<id>_<secret>"), KeyID its public id
	// (apikey.Parse).
	Key, KeyID string
	// Owner is the key's index entry; nil when the index has none.
	Owner *store.APIKeyOwner
	// Client, instead of a key, is a client-credentials token whose signature, issuer,
	// audience and algorithm were verified (package clientjwt), and ClientOwner the index
	// entry of its issuer and subject (nil when none).
	Client      *VerifiedClient
	ClientOwner *store.ClientOwner

	// OrgID is the organisation the request acts for: what the route resolved, or the
	// machine's own (Owner.Org) on a route where a person's session would choose.
	OrgID   string
	Require Requirement

	// Org is the record of Owner.Org, Machine the machine's membership of it
	// (Owner.User()), Sponsor the sponsor's membership of it; nil when absent.
	Org     *store.Org
	Machine *store.Membership
	Sponsor *store.Membership

	Policy *Policy
	// Providers is the trust rule of the sponsor, a person (Input.Providers).
	Providers *Providers
}

// DecideMachine decides whether a machine identity may use an org-scoped route with the API
// key it presents, now. Like Decide it is pure, default-deny and allocation-free (but for the
// roles Decide would allocate). Checks run in this order, the first failing giving the
// Reason:
//
//  1. credential_invalid: no index entry, a secret that does not hash to the entry's (the
//     comparison takes the same time wherever it differs), no machine record for the entry,
//     or a record that does not list the key (a key whose creation did not complete).
//  2. credential_revoked, then credential_expired: the key's own end.
//  3. not_member: the request acts for another organisation than the machine's.
//  4. every check of Decide on the machine's membership, but for the email domain (a
//     machine has no address; its sponsor answers for it).
//  5. the sponsor, decided by Decide for the same route (but for its kinds, which are the
//     machine's to meet, and the email domain, which a record cannot show): sponsor_inactive
//     when the sponsor's membership does not grant at all (none, revoked, suspended,
//     expired, overdue for review, beyond its kind's policy), and the sponsor's own
//     role_missing, role_requires_request, purpose_missing or purpose_expired when it lacks
//     what the route requires.
//
// A machine never holds more than its sponsor, whatever its own record says (a role the
// sponsor lost, a purpose granted to the machine alone, a role granted to it by any path):
// the roles forwarded are those both hold, and the route's requirement must be met by both.
// The credential comes first so that a request with a wrong key learns nothing about any
// organisation. The sponsor comes last because the machine's own state is what its owner
// must fix first; either way nothing is admitted without both.
func DecideMachine(in MachineInput, now time.Time) Decision {
	org, d, ok := in.credential(now)
	if !ok {
		return d
	}
	m := in.Machine
	if in.OrgID != org {
		d := Decide(Input{OrgID: in.OrgID}, now) // no_org for an invalid id
		if d.Reason != reason.NoOrg {
			d = deny(reason.NotMember, Decision{Org: in.OrgID})
		}
		return d
	}
	req := in.Require
	req.skipEmailDomain = true
	d = Decide(Input{User: m.User, OrgID: in.OrgID, Require: req, Org: in.Org, Membership: m, Policy: in.Policy}, now)
	if !d.Allow {
		return d
	}
	sp := in.Sponsor
	if sp == nil || sp.User != m.Machine.Sponsor || store.IsMachineUser(sp.User) {
		return deny(reason.SponsorInactive, Decision{Org: d.Org, Member: true, Missing: Missing{Contact: in.Org.Contact}})
	}
	req.kinds, req.purposes = nil, nil
	sd := Decide(Input{User: sp.User, OrgID: in.OrgID, Require: req, Org: in.Org, Membership: sp, Policy: in.Policy, Providers: in.Providers}, now)
	switch sd.Reason {
	case reason.Allowed:
	case reason.RoleMissing, reason.RoleRequiresRequest, reason.PurposeMissing, reason.PurposeExpired:
		sd.Missing.Contact = in.Org.Contact
		return sd
	default:
		return deny(reason.SponsorInactive, Decision{Org: d.Org, Member: true, Missing: Missing{Contact: in.Org.Contact}})
	}
	// The route's requirements are "any of": both must meet them the same way. The purpose
	// the machine acts for is one the sponsor holds live, and a required role one both hold.
	if g := d.Grant; g != nil && !holdsPurpose(sp.Grants, g.Purpose, now) {
		return deny(reason.PurposeMissing, Decision{Org: d.Org, Member: true, Missing: Missing{Purposes: in.Require.purposes, Contact: in.Org.Contact}})
	}
	d.Roles = common(d.Roles, sd.Roles)
	if q := &in.Require; len(q.roles) > 0 && !holdsRole(d.Roles, q.roles) {
		return deny(reason.RoleMissing, Decision{Org: d.Org, Member: true, Missing: Missing{Roles: q.roles, Contact: in.Org.Contact}})
	}
	d.Sponsor = sp.User
	return d
}

// holdsPurpose reports whether grants hold a live grant of purpose.
func holdsPurpose(grants []store.Grant, purpose string, now time.Time) bool {
	for i := range grants {
		if grants[i].Purpose == purpose && !passed(grants[i].ExpiresAt, now) {
			return true
		}
	}
	return false
}

// credential checks the key or the token against the machine's record and returns the
// machine's organisation, or the denial.
func (in *MachineInput) credential(now time.Time) (string, Decision, bool) {
	m := in.Machine
	if c := in.Client; c != nil {
		// The token itself was verified; what it names must be bound to this machine.
		co := in.ClientOwner
		switch {
		case co == nil || co.Issuer != c.Issuer || co.Subject != c.Subject || !slices.Contains(c.Orgs, co.Org):
			// Not bound, or bound to a machine of an organisation the issuer does not speak for.
			return "", deny(reason.CredentialInvalid, Decision{}), false
		case !isRecordOf(m, co.Org, co.User()) || m.Machine.Client(c.Issuer, c.Subject) == nil:
			return "", deny(reason.CredentialInvalid, Decision{}), false
		case !now.Before(c.Expiry):
			return "", deny(reason.CredentialExpired, Decision{Org: co.Org, Missing: Missing{Ended: c.Expiry}}), false
		}
		return co.Org, Decision{}, true
	}
	a := in.Owner
	if a == nil || !apikey.Match(in.Key, a.Hash) {
		return "", deny(reason.CredentialInvalid, Decision{}), false
	}
	if !isRecordOf(m, a.Org, a.User()) {
		return "", deny(reason.CredentialInvalid, Decision{}), false
	}
	k := m.Machine.Key(in.KeyID)
	switch {
	case k == nil:
		return "", deny(reason.CredentialInvalid, Decision{}), false
	case !k.Revoked.IsZero():
		return "", deny(reason.CredentialRevoked, Decision{Org: a.Org}), false
	case !now.Before(k.ExpiresAt):
		return "", deny(reason.CredentialExpired, Decision{Org: a.Org, Missing: Missing{Ended: k.ExpiresAt}}), false
	}
	return a.Org, Decision{}, true
}

// isRecordOf reports whether m is the record of machine user of org: the one an index entry
// names (defence against a cache or key mix-up).
func isRecordOf(m *store.Membership, org, user string) bool {
	return m != nil && m.Machine != nil && m.Org == org && m.User == user
}

// VerifiedClient is a client-credentials token whose signature, issuer, audience and
// algorithm have been verified: who it names, and until when it is valid.
type VerifiedClient struct {
	Issuer, Subject string
	Expiry          time.Time
	// Orgs are the organisations the issuer speaks for (client_jwt.issuers[].orgs).
	Orgs []string
}

// ClientIndex finds the machine a federated client is bound to (store.Cache implements it):
// its index entry, nil when there is none; any error means storage could not answer.
type ClientIndex interface {
	ClientOwner(ctx context.Context, issuer, subject string) (*store.ClientOwner, error)
}

// GatherClient is GatherMachine for a verified client-credentials token.
func GatherClient(ctx context.Context, clients ClientIndex, members Members, c *VerifiedClient) (MachineInput, error) {
	in := MachineInput{Client: c}
	co, err := clients.ClientOwner(ctx, c.Issuer, c.Subject)
	if err != nil || co == nil {
		return in, err
	}
	in.ClientOwner = co
	return in, gatherRecords(ctx, members, &in, co.Org, co.User())
}

// common is the roles of a that b holds too: a itself when b holds them all (no allocation,
// the usual case), else a new slice.
func common(a, b []string) []string {
	for i, r := range a {
		if !slices.Contains(b, r) {
			out := append(make([]string, 0, len(a)-1), a[:i]...)
			for _, r := range a[i+1:] {
				if slices.Contains(b, r) {
					out = append(out, r)
				}
			}
			return out
		}
	}
	return a
}

// GatherMachine reads what DecideMachine is asked about an API key (key, of public id id):
// its index entry and, when the key matches it, the machine's and its sponsor's memberships.
// It leaves OrgID, Require and Policy to the caller. A key that matches no entry is read no
// further: DecideMachine refuses it as credential_invalid. Any error means storage could not
// answer.
func GatherMachine(ctx context.Context, keys APIKeys, members Members, key, id string) (MachineInput, error) {
	in := MachineInput{Key: key, KeyID: id}
	owner, err := keys.APIKeyOwner(ctx, id)
	if err != nil || owner == nil || !apikey.Match(key, owner.Hash) {
		return in, err
	}
	in.Owner = owner
	if ml, ok := members.(MachineLookup); ok && owner.Sponsor != "" {
		// The key's sponsor is the machine's while the key is live: both in one read.
		if in.Org, in.Machine, in.Sponsor, err = ml.LookupMachine(ctx, owner.Org, owner.User(), owner.Sponsor); err != nil {
			return in, err
		}
		if m := in.Machine; m == nil || m.Machine == nil || m.Machine.Sponsor == owner.Sponsor {
			if m == nil || m.Machine == nil || m.Status != store.MembershipActive {
				in.Sponsor = nil
			}
			return in, nil
		}
		// Handed over since (and so the key revoked): read as below, for the decision to say.
	}
	return in, gatherRecords(ctx, members, &in, owner.Org, owner.User())
}

// MachineLookup reads a machine's and its sponsor's memberships at once (store.Cache): what
// GatherMachine uses, when the lookups can, to cost a cold key one round trip less.
type MachineLookup interface {
	LookupMachine(ctx context.Context, org, machine, sponsor string) (*store.Org, *store.Membership, *store.Membership, error)
}

// gatherRecords reads the organisation org, the machine user's membership of it and its
// sponsor's into in.
func gatherRecords(ctx context.Context, members Members, in *MachineInput, org, user string) error {
	var err error
	if in.Org, in.Machine, err = members.Lookup(ctx, org, user); err != nil {
		return err
	}
	if m := in.Machine; m != nil && m.Machine != nil && m.Status == store.MembershipActive {
		if _, in.Sponsor, err = members.Lookup(ctx, org, m.Machine.Sponsor); err != nil {
			return err
		}
	}
	return nil
}
