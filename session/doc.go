// Package session is the OIDC relying party and the server-side session store: sign-in
// (authorisation code + PKCE + state + nonce), callback, logout, back-channel logout, and the
// session records kept in Redis behind an opaque __Host- cookie. It authenticates; it never
// decides authorisation.
package session
