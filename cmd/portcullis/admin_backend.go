package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/portcullis-proxy/portcullis/admin"
	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/recoveryid"
	"github.com/portcullis-proxy/portcullis/providerset"
	"github.com/portcullis-proxy/portcullis/store"
)

// adminBackend is what the commands of `portcullis admin` do, whichever way they reach the
// records: through the admin API (apiBackend, the normal way: the actor is the credential's
// owner, and the server applies its policy and permissions), or straight to Redis
// (storeBackend, the break-glass way: the actor is --actor, every change is recorded as made
// through break-glass). Either way the change goes through store.Orgs, with its audit event.
type adminBackend interface {
	CreateOrg(ctx context.Context, org store.Org, reason string) (*store.Org, error)
	Org(ctx context.Context, id string) (*store.Org, error)
	Orgs(ctx context.Context) ([]store.Org, error)
	SetOrgStatus(ctx context.Context, id string, st store.OrgStatus, reason string) (*store.Org, error)
	// SetDomain adds domain to org (status "") or sets its status.
	SetDomain(ctx context.Context, org, domain, status, reason string) (*store.Org, error)
	// SetProviders replaces the identity providers org trusts (none: the shared ones).
	SetProviders(ctx context.Context, org string, providers []string, reason string) (*store.Org, error)

	Grant(ctx context.Context, m store.Membership, ticket, reason string) (*store.Membership, error)
	Invite(ctx context.Context, inv store.Invitation, reason string) (*store.Invitation, error)
	Invitations(ctx context.Context, org string) ([]store.Invitation, error)
	ImportInvitations(ctx context.Context, org string, invs []store.Invitation, reason string) ([]store.Invitation, error)
	Withdraw(ctx context.Context, org, email, reason string) (*store.Invitation, error)
	Change(ctx context.Context, org, user string, ch memberChange, reason string) (*store.Membership, error)
	// Membership is the record of user in org (ErrNotFound when there is none).
	Membership(ctx context.Context, org, user string) (*store.Membership, error)
	Memberships(ctx context.Context, org string) ([]store.Membership, error)
	Revoke(ctx context.Context, org, user, reason string) (*store.Membership, error)
	ReviewDue(ctx context.Context, now time.Time, within time.Duration) ([]store.Membership, error)

	// Apply runs a business event; an offboarding also ends the person's sessions.
	Apply(ctx context.Context, ev store.BusinessEvent, reason string, dryRun bool) (*eventResult, error)
	// RecordPerson records whose address (email) or portal username it is.
	RecordPerson(ctx context.Context, user, email, username, reason string) error
	Tail(ctx context.Context, after string, count int, block time.Duration) ([]audit.Event, string, error)
	// ResetRecoveryLimit clears the recovery rate limit of an address or username on route;
	// it returns the identifier as audit events name it, and how many counters it removed.
	ResetRecoveryLimit(ctx context.Context, route, email, username, reason string) (string, int, error)

	CreateToken(ctx context.Context, t store.Token, reason string) (string, *store.Token, error)
	// CreateSCIMToken makes a SCIM token for org's directory, living life.
	CreateSCIMToken(ctx context.Context, org, name string, life time.Duration, reason string) (string, *store.Token, error)
	Tokens(ctx context.Context) ([]store.Token, error)
	RevokeToken(ctx context.Context, id, reason string) (*store.Token, error)

	machineBackend
	providerBackend

	Close()
}

// memberChange is what `member change` asks; nil pointers leave a field as it is, and a
// zero time set through a pointer means none ("never").
type memberChange struct {
	AddRoles, RemoveRoles, RemovePurposes []string
	AddPurposes                           []store.Grant
	Kind                                  *string
	ExpiresAt, ReviewBy                   *time.Time
	ApprovedBy                            *string
}

// breakGlassVia is how a break-glass change is recorded (the audit events' via).
func breakGlassVia(host string) string {
	return "break-glass: portcullis admin on " + host + ", direct Redis (not through the admin API)"
}

// storeBackend is the break-glass way: Redis, with the configuration's lifecycle policy for
// business events.
type storeBackend struct {
	st     *store.Store
	orgs   *store.Orgs
	audit  *store.Audit
	policy *authz.Policy
	// providers are the configuration's identity providers, the names SetProviders takes.
	providers *authz.Providers
	// pset are the providers in force, the managed ones as read at start.
	pset  *providerset.Set
	actor string
	via   string
}

func (b *storeBackend) Close() { _ = b.st.Close() }

func (b *storeBackend) CreateOrg(ctx context.Context, org store.Org, reason string) (*store.Org, error) {
	return b.orgs.CreateOrg(ctx, org, b.actor, reason)
}

func (b *storeBackend) Org(ctx context.Context, id string) (*store.Org, error) {
	return b.st.Org(ctx, id)
}

func (b *storeBackend) Orgs(ctx context.Context) ([]store.Org, error) {
	return b.st.AllOrgs(ctx)
}

func (b *storeBackend) SetOrgStatus(ctx context.Context, id string, st store.OrgStatus, reason string) (*store.Org, error) {
	if st.MergedInto != "" {
		if _, err := b.st.Org(ctx, st.MergedInto); err != nil {
			return nil, fmt.Errorf("merged into %s: %w", st.MergedInto, err)
		}
	}
	return b.orgs.SetOrgStatus(ctx, id, st, b.actor, reason)
}

func (b *storeBackend) SetDomain(ctx context.Context, org, domain, status, reason string) (*store.Org, error) {
	if status == "" {
		return b.orgs.AddDomain(ctx, org, domain, b.actor, reason)
	}
	return b.orgs.SetDomainStatus(ctx, org, domain, status, b.actor, reason)
}

func (b *storeBackend) SetProviders(ctx context.Context, org string, providers []string, reason string) (*store.Org, error) {
	if n := b.providers.Foreign(org, providers); n != "" {
		return nil, fmt.Errorf("provider %q is bound to organisation %s: %w", n, b.providers.BoundTo(n), store.ErrConflict)
	}
	if n := b.providers.Unknown(providers); n != "" {
		return nil, fmt.Errorf("provider %q is not a configured identity provider: %w", n, store.ErrInvalid)
	}
	return b.orgs.SetOrgProviders(ctx, org, providers, b.actor, reason)
}

func (b *storeBackend) Grant(ctx context.Context, m store.Membership, _, reason string) (*store.Membership, error) {
	if m.User == "" && m.Email != "" {
		user, err := b.st.ResolveEmail(ctx, m.Email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, fmt.Errorf("nobody has signed in with %s yet: invite the address instead (member invite)", m.Email)
		case errors.Is(err, store.ErrConflict):
			return nil, fmt.Errorf("more than one person has signed in with %s: grant by user key", m.Email)
		case err != nil:
			return nil, err
		}
		m.User = user
	}
	return b.orgs.Grant(ctx, m, b.actor, reason)
}

func (b *storeBackend) Invite(ctx context.Context, inv store.Invitation, reason string) (*store.Invitation, error) {
	return b.orgs.Invite(ctx, inv, b.actor, reason)
}

func (b *storeBackend) Invitations(ctx context.Context, org string) ([]store.Invitation, error) {
	if _, err := b.st.Org(ctx, org); err != nil {
		return nil, err
	}
	return b.st.OrgInvitations(ctx, org)
}

func (b *storeBackend) ImportInvitations(ctx context.Context, org string, invs []store.Invitation, reason string) ([]store.Invitation, error) {
	return b.orgs.ImportInvitations(ctx, org, invs, b.actor, reason)
}

func (b *storeBackend) Withdraw(ctx context.Context, org, email, reason string) (*store.Invitation, error) {
	return b.orgs.WithdrawInvitation(ctx, org, email, b.actor, reason)
}

func (b *storeBackend) Change(ctx context.Context, org, user string, ch memberChange, reason string) (*store.Membership, error) {
	// edit may run more than once (a concurrent change forces a retry): it only changes m.
	edit := func(m *store.Membership) error {
		roles := slices.Clone(m.Roles)
		for _, r := range ch.RemoveRoles {
			if !slices.Contains(roles, r) {
				return fmt.Errorf("--remove-role %q: the membership has no such role (roles: %s)", r, joinOrDash(m.Roles))
			}
			roles = slices.DeleteFunc(roles, func(x string) bool { return x == r })
		}
		m.Roles = append(roles, ch.AddRoles...)
		grants := slices.Clone(m.Grants)
		for _, p := range ch.RemovePurposes {
			if !slices.ContainsFunc(grants, func(g store.Grant) bool { return g.Purpose == p }) {
				return fmt.Errorf("--remove-purpose %q: the membership has no such purpose (purposes: %s)", p, purposeList(m.Grants))
			}
			grants = slices.DeleteFunc(grants, func(g store.Grant) bool { return g.Purpose == p })
		}
		for _, g := range ch.AddPurposes {
			grants = slices.DeleteFunc(grants, func(x store.Grant) bool { return x.Purpose == g.Purpose })
			grants = append(grants, g)
		}
		m.Grants = grants
		if ch.Kind != nil {
			m.Kind = *ch.Kind
		}
		if ch.ExpiresAt != nil {
			m.ExpiresAt = *ch.ExpiresAt
		}
		if ch.ReviewBy != nil {
			m.ReviewBy = *ch.ReviewBy
		}
		if ch.ApprovedBy != nil {
			m.ApprovedBy = *ch.ApprovedBy
		}
		return nil
	}
	return b.orgs.ChangeMembership(ctx, org, user, edit, b.actor, reason)
}

func (b *storeBackend) Membership(ctx context.Context, org, user string) (*store.Membership, error) {
	o, m, err := b.st.Lookup(ctx, org, user)
	switch {
	case err != nil:
		return nil, err
	case o == nil:
		return nil, fmt.Errorf("org %s: %w", org, store.ErrNotFound)
	case m == nil:
		return nil, fmt.Errorf("membership %s/%s: %w", org, user, store.ErrNotFound)
	}
	return m, nil
}

func (b *storeBackend) Memberships(ctx context.Context, org string) ([]store.Membership, error) {
	if _, err := b.st.Org(ctx, org); err != nil {
		return nil, err
	}
	return b.st.Memberships(ctx, org)
}

func (b *storeBackend) Revoke(ctx context.Context, org, user, reason string) (*store.Membership, error) {
	return b.orgs.Revoke(ctx, org, user, b.actor, reason)
}

func (b *storeBackend) ReviewDue(ctx context.Context, now time.Time, within time.Duration) ([]store.Membership, error) {
	return b.st.ReviewDue(ctx, now, within)
}

func (b *storeBackend) Apply(ctx context.Context, ev store.BusinessEvent, reason string, dryRun bool) (*eventResult, error) {
	ev.Policy, ev.RequestTTL = admin.EventPolicy(b.policy, reason), b.policy.RequestTTL()
	out, err := b.orgs.Apply(ctx, ev, b.actor, reason, dryRun)
	if err != nil {
		return nil, err
	}
	res := &eventResult{Outcome: *out}
	if ev.Event == store.EventOffboarded && !dryRun {
		// Memberships first, then sessions: a session opened in between finds no membership.
		n, err := b.st.RevokeUser(ctx, ev.User)
		if err != nil {
			return nil, fmt.Errorf("the offboarding was applied, but its sessions could not be ended (run it again): %w", err)
		}
		res.SessionsEnded = n
	}
	return res, nil
}

func (b *storeBackend) RecordPerson(ctx context.Context, user, email, username, reason string) error {
	var err error
	typ := audit.PersonEmailRecorded
	if email != "" {
		err = b.st.RecordPerson(ctx, email, user, time.Now(), 0)
	} else {
		typ, err = audit.PersonUsernameSet, b.st.SetUsername(ctx, username, user)
	}
	if err != nil {
		return err
	}
	// The value itself is an identifier the guard keeps hashed; the event names the person only.
	return b.audit.Append(ctx, audit.Event{Type: typ, Actor: b.actor, Via: b.via, User: user, Reason: reason})
}

func (b *storeBackend) Tail(ctx context.Context, after string, count int, block time.Duration) ([]audit.Event, string, error) {
	return b.audit.Tail(ctx, after, count, block)
}

func (b *storeBackend) CreateToken(ctx context.Context, t store.Token, reason string) (string, *store.Token, error) {
	return b.orgs.CreateToken(ctx, t, b.actor, reason)
}

func (b *storeBackend) CreateSCIMToken(ctx context.Context, org, name string, life time.Duration, reason string) (string, *store.Token, error) {
	if _, err := b.st.Org(ctx, org); err != nil {
		return "", nil, err
	}
	return b.orgs.CreateToken(ctx, store.Token{Name: name, Owner: store.SCIMOwner(org), Org: org, SCIM: true, Expires: time.Now().Add(life)}, b.actor, reason)
}

func (b *storeBackend) Tokens(ctx context.Context) ([]store.Token, error) { return b.st.Tokens(ctx) }

func (b *storeBackend) RevokeToken(ctx context.Context, id, reason string) (*store.Token, error) {
	return b.orgs.RevokeToken(ctx, id, b.actor, reason)
}

func (b *storeBackend) ResetRecoveryLimit(ctx context.Context, route, email, username, reason string) (string, int, error) {
	id := recoveryid.Identifier{Kind: recoveryid.KindUsername, Raw: username}
	if email != "" {
		local, domain, why := recoveryid.CanonicalEmail(email)
		if why != "" {
			return "", 0, fmt.Errorf("--email %q: %s", email, why)
		}
		id = recoveryid.Identifier{Kind: recoveryid.KindEmail, Raw: email, Local: local, Domain: domain}
	}
	n, err := b.st.ResetRecoveryCount(ctx, route, id.LookupKey())
	if err != nil {
		return "", 0, err
	}
	shown := id.AuditHash()
	return shown, n, b.audit.Append(ctx, audit.Event{Type: audit.RecoveryLimitReset, Actor: b.actor, Via: b.via, Route: route, Reason: reason,
		Detail: map[string]string{"identifier": shown, "cleared": strconv.Itoa(n)}})
}
