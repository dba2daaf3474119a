// Package authz owns the access decision: the organisation, membership and purpose model, the
// pure decision function (request facts, session, membership, organisation, route, clock →
// decision with a reason code), step-up rules and the recovery guard.
package authz
