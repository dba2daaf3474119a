// Package store is Portcullis's access to Redis: connection set-up, the session,
// organisation and membership records, the scripts and pipelines that read and change them,
// the audit stream, and the pub/sub invalidations that keep every replica's local caches
// (Cache for memberships, WatchSessions for sessions, both on internal/invalcache) fresh.
// Every "not there" error is ErrNotFound (Lookup, which answers for absent records with nil,
// is the exception) and every outage wraps ErrUnavailable (errors.go).
//
// It is the only package that knows Redis key names (all of them are built in keys.go) and the
// only non-test package that imports the Redis client, so the data layout can change in one
// place and a test can enforce that nobody reaches around it.
//
// Keys are cluster-safe: everything one lookup needs shares a hash tag ({u:<user>} for a
// person's data, {o:<org>} for an organisation's), so a pipeline or script touching them lands on
// one Redis Cluster slot. Identifiers that come from outside (user ids from an IdP, session ids
// from cookies, organisation ids, domains) are escaped before they enter a key, so no value can
// leave its hash tag or forge another key.
//
// The package contains no policy: it stores and loads what it is given and reports what it
// finds; whether a membership still grants access is for package authz to decide.
package store
