// Package audit is the append-only event stream (Redis Streams) of every entitlement change and
// every denial. It is a leaf: every other package may use it, it uses none of them.
//
// The package defines what an event is (Event, the Type constants) and the one-method Sink a
// producer writes to; package store implements Sink on a bounded Redis Stream, and tests can use
// Recorder. Producers call Append on every deny and every change: an event that is not written
// is an entitlement nobody can account for, so a failing Sink must fail the change (or, for a
// deny, be logged and counted), never be ignored silently.
//
// Secrets never go in events: no passwords, tokens, cookies, session ids, signing keys or
// authorisation codes, not even truncated or hashed. Events name people by their stable user key
// (issuer and subject), organisations by id, and may carry an email address as an attribute.
// Before and After hold the stored records, which contain no secrets by design.
package audit
