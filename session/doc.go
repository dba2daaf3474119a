// Package session is the OIDC relying party and the keeper of sessions: sign-in
// (authorisation code + PKCE + state + nonce), callback, logout, back-channel logout, the
// session records kept in Redis behind an opaque __Host- cookie (cached per replica on the
// invalcache rules), the handoff of a sign-in to organisation hosts (handoff.go), and the OIDC
// side of step-up (stepup.go): it runs the provider round trip and records the elevation that
// authz.Grant decides the returned ID token earns.
//
// It authenticates; it never decides authorisation. Its endpoints return their refusals as
// errors, which serve (gate.go) logs and renders in one place with package reason's codes.
// What it needs from storage is one small interface per flow (LoginStates, Sessions,
// Handoffs, LogoutTokens), all implemented by *store.Store.
package session
