// Package recoveryid finds the one account identifier an account-recovery request (a
// password reset by email or username) carries, or says why there is not exactly one: the
// request-body and query parsing of the recovery guard, written so that no portal or
// framework can read a different identifier from the same bytes. It also canonicalises email
// addresses and domains the way the guard compares them.
//
// It is pure (no I/O, no clock) and imports only the project's leaf packages, so that config
// compiles a route's rule once, at load (config.RecoveryGuard.Spec), with the same code that
// reports its errors. Deciding what an identifier means (a stale domain, a live membership,
// rate limits) is authz.DecideRecovery's.
package recoveryid
