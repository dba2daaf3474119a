package authz

import (
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// The account-recovery guard's decision. A public route's recovery_guard stops the
// password-reset requests that would hand an account to whoever now reads a stale mailbox;
// internal/recoveryid finds the one identifier a request carries, and DecideRecovery decides
// what it means. The facts live in Redis and are read one after another, each read only when
// the earlier ones leave the question open (a rate-limited request costs no lookup at all),
// so DecideRecovery is asked repeatedly: it either decides or names the one fact it needs
// next, which the caller reads and adds. It never reads anything itself.
//
// The order of the checks, each with its reason code:
//
//  1. rate_limited: the identifier, or the client, made more requests this window than the
//     route allows. The counters run for every identifier, known or not, so a 429 says
//     nothing about accounts.
//  2. For an email address: unknown_domain when neither the domain nor a parent of it was
//     ever held by an organisation (unless unknown_domains: allow); stale_domain when its
//     holder no longer verifies it, or is suspended, ended, merged or past its contract end.
//  3. no_active_membership when the address is not one a person signed in with (unless an
//     open invitation to it from the organisation holding its domain exists: allowed, with
//     ByInvitation, for portals whose users have not signed in through Portcullis yet) (or the
//     username not one an operator mapped), or when that person holds no membership Decide
//     allows anywhere (the email-domain check lifted: the address's domain was checked in 2).
//     For a username, first: every email domain the person is known by (they signed in
//     with, or an operator recorded) is checked as in 2, since the portal mails the reset to
//     an address of theirs the guard does not see: unknown_domain or stale_domain for the
//     first that fails, address_unknown when no address of theirs is known at all.
//     With unknown_domains: allow, an address of an unknown domain that belongs to nobody we
//     know is allowed; a known person must still be live.

// RecoveryPolicy is the part of a route's recovery_guard the decision applies.
type RecoveryPolicy struct {
	// PerIdentifier and PerClient are the requests allowed per window.
	PerIdentifier, PerClient int64
	// AllowUnknownDomains lets addresses of never-held domains through (unknown_domains: allow).
	AllowUnknownDomains bool
	// Lifecycle is the lifecycle policy a live membership must meet; nil applies none.
	Lifecycle *Policy
	// Providers is the trust rule a live membership must meet (Input.Providers); Trust, when
	// set, holds the table in force instead (providers managed while the process runs).
	Providers *Providers
	Trust     *Trust
}

// RecoveryPolicyOf is the policy of guard g.
func RecoveryPolicyOf(g *config.RecoveryGuard) RecoveryPolicy {
	return RecoveryPolicy{
		PerIdentifier:       int64(g.RateLimit.PerIdentifier),
		PerClient:           int64(g.RateLimit.PerClient),
		AllowUnknownDomains: g.UnknownDomains == config.RecoveryAllow,
	}
}

// RecoveryNeed names the fact DecideRecovery needs next.
type RecoveryNeed uint8

// The facts, in the order they are asked for.
const (
	// NeedNothing: the decision is made.
	NeedNothing RecoveryNeed = iota
	// NeedCount: count this request against the rate limits (RecoveryFacts.Count).
	NeedCount
	// NeedDomain: who holds the address's domain (RecoveryFacts.Domain).
	NeedDomain
	// NeedPerson: whose the address or username is (RecoveryFacts.Person).
	NeedPerson
	// NeedOrgs: the organisations the person is a member of (RecoveryFacts.Orgs).
	NeedOrgs
	// NeedMembership: the organisation and membership records of the next of Orgs
	// (RecoveryFacts.Memberships, appended in Orgs' order).
	NeedMembership
	// NeedMailDomains: the email domains the person (found by username) has signed in with
	// (RecoveryFacts.MailDomains).
	NeedMailDomains
	// NeedMailDomainHolder: who holds the next of MailDomains (RecoveryFacts.MailHolders,
	// appended in MailDomains' order).
	NeedMailDomainHolder
	// NeedInvitations: the open invitations to the address, for an address nobody has
	// signed in with yet (RecoveryFacts.Invitations).
	NeedInvitations
)

// RecoveryFacts is what is known so far about one recovery request. The caller fills each
// field when asked, and marks it known; records are read, never modified.
type RecoveryFacts struct {
	// Username is true when the request's identifier is a portal username, false for an
	// email address (a guard may accept either, in different fields): known from the start.
	Username bool
	// Count is this request's place in the current windows, once counted.
	Count *store.RecoveryCount
	// Domain is the holder of the address's domain, once looked up.
	Domain *DomainHolder
	// Person is whose the identifier is, once looked up: "" when nobody's.
	Person     string
	PersonRead bool
	// Orgs are the person's organisations, once read (OrgsRead).
	Orgs     []string
	OrgsRead bool
	// Memberships are the records of Orgs[0], Orgs[1], ..., as far as they were read.
	Memberships []HeldMembership
	// MailDomains are the email domains of the person found by username, once read
	// (MailDomainsRead), and MailHolders the holder of each, as far as they were read.
	MailDomains     []string
	MailDomainsRead bool
	MailHolders     []DomainHolder
	// Invitations are the invitations to the address, once read (InvitationsRead).
	Invitations     []store.Invitation
	InvitationsRead bool
}

// DomainHolder is who holds a domain: Org nil when no organisation ever did; Matched is the
// domain (the address's own or a parent) the holder is recorded for.
type DomainHolder struct {
	Org     *store.Org
	Matched string
}

// HeldMembership is one organisation of a person with its records; nil when absent.
type HeldMembership struct {
	Org        *store.Org
	Membership *store.Membership
}

// RecoveryDecision is DecideRecovery's answer.
type RecoveryDecision struct {
	// Need, when not NeedNothing, is the fact to read before asking again.
	Need RecoveryNeed
	// Reason is reason.Allowed or why the request is blocked (when Need is NeedNothing).
	Reason reason.Code
	// Org and User say whose the identifier turned out to be, for the audit and the log:
	// the organisation of the domain or of the live membership, and the person.
	Org, User string
	// RetryAfter, on rate_limited, is how long until the window ends.
	RetryAfter time.Duration
	// ByInvitation, on allow, says the address belongs to nobody who signed in yet, and was
	// allowed for an open invitation of the organisation that holds its domain (Org): a
	// portal's existing user on the first day behind Portcullis. The caller audits it.
	ByInvitation bool
	// Quiet, on rate_limited, says this is not the first refusal of its window for its
	// counter: it is logged and counted, but not audited, so that one client hammering the
	// route cannot flood the audit stream and push out the events of changes.
	Quiet bool
}

// DecideRecovery decides a recovery request on the facts f gathered so far, or names the
// next fact it needs (Need); the checks and their order are in this file's comment. It is
// pure: no I/O, no allocation, and now is the only clock. Asked again with the same facts, it
// gives the same answer.
func DecideRecovery(p RecoveryPolicy, f *RecoveryFacts, now time.Time) RecoveryDecision {
	if f.Count == nil {
		return RecoveryDecision{Need: NeedCount}
	}
	if n := f.Count; n.Identifier > p.PerIdentifier || n.Client > p.PerClient {
		d := RecoveryDecision{Reason: reason.RateLimited,
			Quiet: n.Identifier != p.PerIdentifier+1 && n.Client != p.PerClient+1}
		if secs := int64(n.Reset.Sub(now)/time.Second) + 1; secs > 0 {
			d.RetryAfter = time.Duration(secs) * time.Second
		}
		return d
	}

	var d RecoveryDecision
	unknown := false
	if !f.Username {
		if f.Domain == nil {
			return RecoveryDecision{Need: NeedDomain}
		}
		switch h := f.Domain; {
		case h.Org == nil && !p.AllowUnknownDomains:
			return RecoveryDecision{Reason: reason.UnknownDomain}
		case h.Org == nil:
			unknown = true
		default:
			d.Org = h.Org.ID
			if staleDomain(h.Org, h.Matched, now) {
				d.Reason = reason.StaleDomain
				return d
			}
		}
	}
	if !f.PersonRead {
		d.Need = NeedPerson
		return d
	}
	if f.Person == "" {
		if unknown {
			d.Reason = reason.Allowed // unknown_domains: allow, and nobody we know
			return d
		}
		if !f.Username && d.Org != "" {
			// Nobody signed in with the address yet; an open invitation to it from the
			// organisation that holds (and verifies) its domain is a live relationship.
			if !f.InvitationsRead {
				d.Need = NeedInvitations
				return d
			}
			for i := range f.Invitations {
				// The invitation is open, and the membership it would become would grant now.
				if inv := &f.Invitations[i]; inv.Org == d.Org && now.Before(inv.Until) &&
					(inv.ExpiresAt.IsZero() || now.Before(inv.ExpiresAt)) && (inv.ReviewBy.IsZero() || now.Before(inv.ReviewBy)) {
					d.Reason, d.ByInvitation = reason.Allowed, true
					return d
				}
			}
		}
		d.Reason = reason.NoActiveMembership
		return d
	}
	d.User = f.Person
	if f.Username {
		// The portal mails the reset to the address it has for the username, which the guard
		// does not see: every address the person is known by must still be vouched for, as
		// an address given in the request would be. None known: nothing vouches for any.
		if !f.MailDomainsRead {
			d.Need = NeedMailDomains
			return d
		}
		if len(f.MailDomains) == 0 {
			d.Reason = reason.AddressUnknown
			return d
		}
		for i := range f.MailDomains {
			if i == len(f.MailHolders) {
				d.Need = NeedMailDomainHolder
				return d
			}
			switch h := f.MailHolders[i]; {
			case h.Org == nil && !p.AllowUnknownDomains:
				d.Reason = reason.UnknownDomain
				return d
			case h.Org != nil && staleDomain(h.Org, h.Matched, now):
				d.Org = h.Org.ID
				d.Reason = reason.StaleDomain
				return d
			}
		}
	}
	if !f.OrgsRead {
		d.Need = NeedOrgs
		return d
	}
	for i, org := range f.Orgs {
		if i == len(f.Memberships) {
			d.Need = NeedMembership
			return d
		}
		h := f.Memberships[i]
		if Decide(Input{User: f.Person, OrgID: org, Org: h.Org, Membership: h.Membership, Require: anyLiveMembership, Policy: p.Lifecycle, Providers: p.providers()}, now).Allow {
			if d.Org == "" {
				d.Org = org
			}
			d.Reason = reason.Allowed
			return d
		}
	}
	d.Reason = reason.NoActiveMembership
	return d
}

// anyLiveMembership is the requirement of the liveness check: any live membership, the
// email-domain check lifted (the recovery address's domain is checked on its own).
var anyLiveMembership = Requirement{skipEmailDomain: true}

// staleDomain reports whether the matched domain of org no longer vouches for its mailboxes:
// not verified now, or its organisation not active.
func staleDomain(o *store.Org, matched string, now time.Time) bool {
	if o.Status != store.OrgActive || o.MergedInto != "" || passed(o.ContractEnd, now) {
		return true
	}
	for _, d := range o.Domains {
		if d.Name == matched {
			return d.Status != store.DomainVerified
		}
	}
	return true // the index names an org that does not list the domain: no present holder
}

// providers is the trust rule's table in force.
func (p RecoveryPolicy) providers() *Providers {
	if p.Trust != nil {
		return p.Trust.Load()
	}
	return p.Providers
}
