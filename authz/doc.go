// Package authz owns every access decision, each a pure function of the facts its caller
// gathered and the clock:
//
//   - Decide (decision.go): may this person use this org-scoped route for this organisation,
//     now? Which organisation a request acts for is OrgResolver's (resolve.go), compiled from
//     a route's `org` section; what the route requires of a membership is Requirement's
//     (policy.go), compiled from its `require` section.
//   - Elevated and Grant (stepup.go): does the session hold a step-up elevation meeting the
//     route's step_up (StepUp, compiled once), and does a provider's fresh authentication earn
//     one (acr any of, amr all of, auth_time after the step-up began and within max_age)?
//   - DecideRecovery (recovery.go): may an account-recovery request through a public route's
//     recovery_guard reach the portal? It names the facts it needs one at a time, so the caller
//     reads no more of Redis than the answer takes.
//
// Every outcome is a reason code of package reason. None of these functions does I/O or reads
// a clock of its own, and the ones on the request path allocate nothing; loading the records
// (package store, through the Members and RecoveryRecords interfaces defined here), caching
// them and acting on the decision (headers, pages, audit events) belong to the caller,
// package proxy. Finding the identifier in a recovery request's body is internal/recoveryid's.
package authz
