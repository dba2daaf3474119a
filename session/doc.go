// Package session is the OIDC relying party and the server-side session store: sign-in
// (authorisation code + PKCE + state + nonce), callback, logout, back-channel logout, and the
// session records kept in Redis behind an opaque __Host- cookie, and step-up: a fresh, strong
// authentication recorded in the session as a time-boxed elevation for one organisation
// (stepup.go). It authenticates; it never decides authorisation.
package session
