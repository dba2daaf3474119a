// Package audit is the append-only event stream (Redis Streams) of every entitlement change and
// every denial. It is a leaf: every other package may use it, it uses none of them.
package audit
