// Package admin is the administration API (README, "Governance"): JSON over HTTPS under /api/v1/, on a
// listener of its own, with an OpenAPI 3 document generated from its route table. Every call is
// made by an authenticated actor, an operator (an admin API token or an operator JWT verified
// with go-oidc) or a person with a token of their own, and every change is recorded with that
// individual and the credential they used (audit.Event.Actor and Via).
//
// It manages organisations and memberships within the lifecycle policy, and runs the
// just-in-time flow: a request for a role, a purpose or a membership; approvals from distinct
// people other than the requester, as many as the policy requires, by the approvers it names;
// and the time-boxed grant that carries the request id. Who may do what is decided by package
// authz (CheckMembership, CheckRequest, Approve, Fulfil); the records and their transactions
// are package store's. The handlers only authenticate, gather the facts, and answer.
package admin
