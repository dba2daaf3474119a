package store

import "errors"

// The errors of package store, the only ones callers need to match (errors.Is finds them in
// whatever a method returns). A method that reports a miss as an error reports ErrNotFound,
// whatever was missing (a session, a sign-in state, a handoff code, an organisation): the
// wrapping error says what. Lookup answers absent records with nil instead.

// ErrNotConfigured is returned by New when the configuration has no Redis address, which means
// Redis is not in use (only public routes can work).
var ErrNotConfigured = errors.New("redis is not configured")

// ErrUnavailable marks errors caused by Redis not answering (connection refused, timeout, closed
// store, authentication failure). Callers fail closed on it with reason store_unavailable;
// errors.Is finds it in the errors returned by Store's methods.
var ErrUnavailable = errors.New("store unavailable")

// ErrNotReplicated marks a change that the Redis primary applied but fewer replicas than
// redis.replica_acks confirmed within the wait: it is in effect now, and a failover before a
// replica receives it would undo it (a revocation would come back as access). The error also
// wraps ErrUnavailable, so callers that know only that one fail closed.
var ErrNotReplicated = errors.New("not confirmed by enough replicas")

var (
	// ErrNotFound: what was asked for does not exist (never created, expired, used, revoked).
	ErrNotFound = errors.New("not found")
	// ErrInvalid: an argument is malformed (bad id, unknown kind or status, empty actor…).
	ErrInvalid = errors.New("invalid")
	// ErrExists: creating something that is already there (an org, a domain of the org).
	ErrExists = errors.New("already exists")
	// ErrConflict: the change clashes with other data (a domain verified by another org), or
	// concurrent changes kept it from committing after several attempts.
	ErrConflict = errors.New("conflict")
)
