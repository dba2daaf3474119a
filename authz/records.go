package authz

import (
	"context"
	"time"

	"github.com/portcullis-proxy/portcullis/store"
)

// The lookups the decisions need, for whoever gathers their facts (package proxy). Decide and
// DecideRecovery read nothing themselves; these say what the gatherer must be able to read.
// store.Cache implements Members, store.Store RecoveryRecords. Members answers absent records
// with nil, and any error of its means storage could not answer: the request fails closed.
// RecoveryRecords reports a miss as store.ErrNotFound; any other error fails closed.

// Members looks up an organisation and a person's membership in it.
type Members interface {
	// Lookup returns the organisation org and user's membership of it; nil when absent.
	Lookup(ctx context.Context, org, user string) (*store.Org, *store.Membership, error)
	// OrgsOf lists the organisations user holds a membership record in, live or not.
	OrgsOf(ctx context.Context, user string) ([]string, error)
	// WithPrefetch returns ctx marked so that loading the request's session with it (the
	// gate's Admit) also reads the membership Lookup will be asked for, in the same round
	// trip; org is the organisation, or "" for the one the session chose. A store that
	// cannot returns ctx as it is.
	WithPrefetch(ctx context.Context, org string) context.Context
}

// APIKeys finds the machine an API key belongs to (store.Cache implements it): its index
// entry, nil when there is none; any error means storage could not answer.
type APIKeys interface {
	APIKeyOwner(ctx context.Context, id string) (*store.APIKeyOwner, error)
}

// RecoveryRecords answers the recovery guard's questions beside Members: who holds a domain,
// whose an address or username is, and where a request stands against the rate limits.
type RecoveryRecords interface {
	DomainHolder(ctx context.Context, domain string) (*store.Org, string, error)
	PersonByEmail(ctx context.Context, email string) (*store.PersonRecord, error)
	PersonByUsername(ctx context.Context, name string) (*store.PersonRecord, error)
	MailDomains(ctx context.Context, user string) ([]string, error)
	Invitations(ctx context.Context, email string) ([]store.Invitation, error)
	CountRecovery(ctx context.Context, route, identifier, client string, window time.Duration, now time.Time) (store.RecoveryCount, error)
}
