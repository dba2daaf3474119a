// Package proxy is the front door: listeners and TLS, the route table, Portcullis's own
// endpoints under /.portcullis/, header hygiene and forwarding to the legacy portals with
// httputil.ReverseProxy (Rewrite, never Director).
//
// Each request is one exchange (exchange.go), built once in Server.ServeHTTP; its methods are
// the steps of the flow, in order: path normalisation → own endpoints → route match → admit
// (session through the Gate, organisation resolved once, authz.Decide, authz.Elevated, the
// signed assertion) or, on a public route with a recovery guard, recover (internal/recoveryid,
// then authz.DecideRecovery) → header hygiene → forward. A step returns its refusal as an
// error; exchange.fail (refuse.go) is the one place refusals are counted, logged, audited and
// rendered (package problem, with package reason's codes). The per-configuration state
// (routes, compiled policies, upstream transports, trusted proxies) is immutable and swapped
// atomically on reload, so a request always sees one whole configuration.
//
// The proxy decides nothing itself and never talks to Redis: records reach it through
// authz's Members and RecoveryRecords interfaces, and it names package store only for its
// errors (importgraph_test.go checks both).
package proxy
