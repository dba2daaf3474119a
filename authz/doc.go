// Package authz owns the access decision for org-scoped routes: which organisation a request
// acts for (OrgResolver, compiled from a route's `org` section), what the route requires of
// a membership (Requirement, compiled from its `require` section), and Decide, a pure
// function of those facts, the organisation and membership records and the clock, which
// returns a Decision with a stable Reason code.
//
// Decide does no I/O and allocates nothing; loading the records (store), caching them and
// acting on the decision (headers, pages, audit events) belong to its callers. Step-up rules
// and the account-recovery guard will live here too.
package authz
