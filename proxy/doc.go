// Package proxy is the front door: listeners and TLS, the route table, Portcullis's own
// endpoints under /.portcullis/, header hygiene and forwarding to the legacy portals with
// httputil.ReverseProxy (Rewrite, never Director).
//
// Every request goes through one handler that reads like the request flow (see
// Server.ServeHTTP): request id → path normalisation → own endpoints → route match → access
// gate → header hygiene → forward. The per-configuration state (routes, upstream transports,
// trusted proxies) is immutable and swapped atomically on reload, so a request always sees one
// whole configuration.
//
// The proxy never talks to Redis itself: what it needs from storage reaches it through small
// interfaces defined here and implemented elsewhere.
package proxy
