package admin

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/store"
)

// TestPlatformEndpoints: the operators' records through the API (what `portcullis admin`
// uses): organisation status, domains, the person indexes, reviews due, the audit stream.
// None of them is an organisation administrator's.
func TestPlatformEndpoints(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	annTok := b.personal(ann, "", false)
	for _, c := range []struct{ method, path string }{
		{"POST", "/api/v1/orgs/acme/status"}, {"POST", "/api/v1/orgs/acme/domains"}, {"POST", "/api/v1/people/index"},
		{"GET", "/api/v1/reviews/due"}, {"GET", "/api/v1/audit"},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{"status": "suspended", "domain": "acme.example", "user": bob, "email": "bob@acme.example", "reason": "x"}
		}
		b.want(b.call(annTok, c.method, c.path, body), 403, "not_permitted")
	}

	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/status", map[string]any{"status": "suspended", "reason": "unpaid invoices"}), 200, "")
	if o, _ := b.st.Org(ctx, "acme"); o.Status != store.OrgSuspended {
		t.Errorf("acme: %s", o.Status)
	}
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/status", map[string]any{"status": "paused", "reason": "x"}), 400, "invalid_input")
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/status", map[string]any{"status": "active", "reason": "paid"}), 200, "")

	dom := func(status string) answer {
		return b.call(b.ops, "POST", "/api/v1/orgs/acme/domains", map[string]any{"domain": "Acme.Example.", "status": status, "reason": "DNS TXT checked"})
	}
	b.want(dom(""), 200, "")
	b.want(dom("verified"), 200, "")
	if o, _ := b.st.Org(ctx, "acme"); len(o.Domains) != 1 || o.Domains[0].Name != "acme.example" || o.Domains[0].Status != store.DomainVerified {
		t.Errorf("domains %+v", o.Domains)
	}
	b.want(dom("lapsed"), 200, "")
	b.want(dom("gone"), 400, "invalid_input")

	b.want(b.call(b.ops, "POST", "/api/v1/people/index", map[string]any{"user": bob, "email": "Bob@Acme.Example", "reason": "backfill"}), 200, "")
	if p, err := b.st.PersonByEmail(ctx, "bob@acme.example"); err != nil || p.User != bob {
		t.Errorf("person by email: %+v %v", p, err)
	}
	b.want(b.call(b.ops, "POST", "/api/v1/people/index", map[string]any{"user": bob, "username": "bob01", "reason": "backfill"}), 200, "")
	b.want(b.call(b.ops, "POST", "/api/v1/people/index", map[string]any{"user": bob, "email": "b@x.example", "username": "b", "reason": "x"}), 400, "invalid_input")
	if evs := b.events(audit.PersonEmailRecorded); len(evs) != 1 || evs[0].Actor != "ops-olga" || evs[0].User != bob || evs[0].Via == "" {
		t.Errorf("person events %+v", evs)
	}

	due := b.call(b.ops, "GET", "/api/v1/reviews/due?within=400d", nil)
	b.want(due, 200, "")
	if n := len(due.body["items"].([]any)); n < 3 {
		t.Errorf("%d memberships due within 400 days: %s", n, due.raw)
	}
	b.want(b.call(b.ops, "GET", "/api/v1/reviews/due?within=soon", nil), 400, "invalid_input")

	page := b.call(b.ops, "GET", "/api/v1/audit?since=0&count=5", nil)
	b.want(page, 200, "")
	if items := page.body["items"].([]any); len(items) != 5 || page.body["next"] == "" {
		t.Fatalf("audit page %s", page.raw)
	}
	newest := b.call(b.ops, "GET", "/api/v1/audit?count=1", nil)
	b.want(newest, 200, "")
	if items := newest.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["type"] != string(audit.PersonEmailRecorded) &&
		items[0].(map[string]any)["type"] != string(audit.PersonUsernameSet) {
		t.Errorf("the newest event: %s", newest.raw)
	}
	next := page.body["next"].(string)
	rest := b.call(b.ops, "GET", "/api/v1/audit?since="+next+"&count=1000", nil)
	b.want(rest, 200, "")
	start := time.Now()
	empty := b.call(b.ops, "GET", "/api/v1/audit?since="+rest.body["next"].(string)+"&wait=1", nil)
	if b.want(empty, 200, ""); len(empty.body["items"].([]any)) != 0 || time.Since(start) < 900*time.Millisecond {
		t.Errorf("waiting tail %s after %v", empty.raw, time.Since(start))
	}
	for _, q := range []string{"since=yesterday", "count=0", "count=5000", "wait=60"} {
		b.want(b.call(b.ops, "GET", "/api/v1/audit?"+q, nil), 400, "invalid_input")
	}
}

// TestChangeMember: a membership changed in place through the API, within the policy, by who
// may grant it; every way around it refused, changing nothing.
func TestChangeMember(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	annTok, bobTok := b.personal(ann, "", false), b.personal(bob, "", false)
	change := func(tok string, body map[string]any) answer {
		if body["reason"] == nil {
			body["reason"] = "team change"
		}
		return b.call(tok, "POST", "/api/v1/orgs/acme/members/change", body)
	}
	b.want(change(annTok, map[string]any{"user": ann, "add_roles": []string{"billing"}}), 403, "not_permitted")  // her own
	b.want(change(bobTok, map[string]any{"user": pat, "add_roles": []string{"billing"}}), 403, "not_permitted")  // not his org
	b.want(change(annTok, map[string]any{"user": bob, "add_roles": []string{"admin"}}), 422, "policy_violation") // privileged
	b.want(change(annTok, map[string]any{"user": bob, "kind": "support"}), 403, "not_permitted")                 // only through requests
	b.want(change(annTok, map[string]any{"user": bob, "remove_roles": []string{"owner"}}), 400, "invalid_input") // not held
	b.want(change(annTok, map[string]any{"user": bob, "expires_at": "tomorrow"}), 400, "invalid_input")          // not a time
	b.want(change(b.ops, map[string]any{"user": pat, "expires_at": "never"}), 422, "policy_violation")           // partners end
	b.want(change(annTok, map[string]any{"user": pat, "add_roles": []string{"billing"}}), 403, "not_permitted")  // two approvals
	if _, m, _ := b.st.Lookup(ctx, "acme", bob); !slices.Equal(m.Roles, []string{"viewer"}) || m.Kind != store.KindEmployee {
		t.Fatalf("a refused change changed bob: %+v", m)
	}
	a := change(annTok, map[string]any{"user": bob, "add_roles": []string{"billing"}, "remove_roles": []string{"viewer"},
		"add_purposes": []map[string]any{{"purpose": "audit", "reason": "AUD-9", "expires_at": time.Now().Add(time.Hour)}}})
	b.want(a, 200, "")
	if _, m, _ := b.st.Lookup(ctx, "acme", bob); !slices.Equal(m.Roles, []string{"billing"}) || len(m.Grants) != 1 || m.ApprovedBy != ann {
		t.Errorf("bob after: %+v", m)
	}
	if evs := b.events(audit.MembershipChanged); len(evs) == 0 || evs[len(evs)-1].Actor != ann || evs[len(evs)-1].Reason != "team change" {
		t.Errorf("events %+v", evs)
	}

	// Suspended, then resumed; never her own, never another organisation's, never a
	// revoked one back, and no status but these two.
	b.want(change(annTok, map[string]any{"user": ann, "status": "suspended"}), 403, "not_permitted")
	b.want(change(bobTok, map[string]any{"user": pat, "status": "suspended"}), 403, "not_permitted")
	b.want(change(annTok, map[string]any{"user": bob, "status": "revoked"}), 400, "invalid_input")
	b.want(change(annTok, map[string]any{"user": bob, "status": "suspended", "reason": "leave of absence"}), 200, "")
	if _, m, _ := b.st.Lookup(ctx, "acme", bob); m.Status != store.MembershipSuspended {
		t.Fatalf("bob after the suspension: %s", m.Status)
	}
	b.want(change(annTok, map[string]any{"user": bob, "status": "active", "reason": "back"}), 200, "")
	if _, m, _ := b.st.Lookup(ctx, "acme", bob); m.Status != store.MembershipActive {
		t.Fatalf("bob after resuming: %s", m.Status)
	}
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members/revoke", map[string]any{"user": bob, "reason": "left"}), 200, "")
	b.want(change(annTok, map[string]any{"user": bob, "status": "active"}), 400, "invalid_input")
	if _, m, _ := b.st.Lookup(ctx, "acme", bob); m.Status != store.MembershipRevoked {
		t.Fatalf("a revoked membership was resumed: %s", m.Status)
	}
}

// TestResetRecoveryLimit: an operator clears the per-address limit a person ran into, by the
// address as the person types it; the clients' limits stay; it is audited; nobody else may.
func TestResetRecoveryLimit(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	now := time.Now()
	for range 6 {
		if _, err := b.st.CountRecovery(ctx, "reset", "victim@stale.example", "192.0.2.1", time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	reset := func(tok string, body map[string]any) answer {
		return b.call(tok, "POST", "/api/v1/recovery/reset", body)
	}
	b.want(reset(b.personal(ann, "", false), map[string]any{"route": "reset", "email": "victim@stale.example", "reason": "x"}), 403, "not_permitted")
	b.want(reset(b.ops, map[string]any{"route": "reset", "email": "not an address", "reason": "x"}), 400, "invalid_input")
	b.want(reset(b.ops, map[string]any{"route": "reset", "reason": "x"}), 400, "invalid_input")
	a := reset(b.ops, map[string]any{"route": "reset", "email": "Victim@STALE.example", "reason": "HD-4: locked herself out"})
	b.want(a, 200, "")
	if a.body["cleared"].(float64) != 1 || !strings.HasPrefix(a.body["identifier"].(string), "sha256:") {
		t.Errorf("outcome %s", a.raw)
	}
	n, err := b.st.CountRecovery(ctx, "reset", "victim@stale.example", "192.0.2.1", time.Hour, now)
	if err != nil || n.Identifier != 1 || n.Client != 7 {
		t.Errorf("after the reset: %+v %v", n, err)
	}
	evs := b.events(audit.RecoveryLimitReset)
	if len(evs) != 1 || evs[0].Actor != "ops-olga" || evs[0].Route != "reset" || evs[0].Detail["identifier"] != a.body["identifier"] {
		t.Errorf("events %+v", evs)
	}
}

// TestImportInvitations: a portal's existing users invited in one change: all rows or none,
// each within the policy, one parent event and one child per invitation.
func TestImportInvitations(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	if _, err := b.orgs.AddDomain(ctx, "acme", "acme.example", "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	annTok := b.personal(ann, "", false)
	imp := func(tok string, rows ...map[string]any) answer {
		return b.call(tok, "POST", "/api/v1/orgs/acme/invitations/import", map[string]any{"invitations": rows, "reason": "go-live: existing users"})
	}
	row := func(email, kind string, roles ...string) map[string]any {
		return map[string]any{"email": email, "kind": kind, "roles": roles}
	}
	b.want(imp(b.personal(bob, "", false), row("a@acme.example", "employee")), 403, "not_permitted")
	a := imp(annTok, row("a@acme.example", "employee", "viewer"), row("x@elsewhere.example", "employee"))
	if a.status < 400 || !strings.Contains(a.raw, "row 2") {
		t.Errorf("a row at an unverified domain: %d %s", a.status, a.raw)
	}
	b.want(imp(annTok, row("a@acme.example", "employee"), row("A@acme.example", "employee")), 400, "invalid_input")
	b.want(imp(annTok, row("a@acme.example", "employee", "admin")), 422, "policy_violation")
	if invs, _ := b.st.OrgInvitations(ctx, "acme"); len(invs) != 0 {
		t.Fatalf("a refused import wrote %+v", invs)
	}
	long := row("a@acme.example", "employee")
	long["until"] = time.Now().Add(400 * 24 * time.Hour)
	b.want(imp(annTok, long), 400, "invalid_input") // an invitation waits at most 90 days
	a = imp(annTok, row("a@acme.example", "employee", "viewer"), row("b@acme.example", "employee"))
	b.want(a, 200, "")
	if a.body["imported"].(float64) != 2 {
		t.Errorf("outcome %s", a.raw)
	}
	parent := b.events(audit.InvitationsImported)
	children := b.events(audit.MembershipInvited)
	if len(parent) != 1 || parent[0].Actor != ann || parent[0].Operation == "" || len(children) != 2 ||
		children[0].Operation != parent[0].Operation || children[1].Operation != parent[0].Operation {
		t.Errorf("events %+v %+v", parent, children)
	}
}

// TestGrantByEmail: an operator or administrator names the person by the verified address
// they signed in with; refused when nobody, or more than one person, did, and for oneself.
func TestGrantByEmail(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	const cleo = "https://idp.acme|cleo"
	for _, rec := range []struct{ email, user string }{{"cleo@acme.example", cleo}, {"ann@acme.example", ann},
		{"shared@acme.example", cleo}, {"shared@acme.example", bob}} {
		if err := b.st.RecordPerson(ctx, rec.email, rec.user, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
	}
	annTok := b.personal(ann, "", false)
	grant := func(body map[string]any) answer {
		body["kind"], body["roles"], body["reason"] = "employee", []string{"viewer"}, "new starter"
		return b.call(annTok, "POST", "/api/v1/orgs/acme/members", body)
	}
	b.want(grant(map[string]any{"email": "nobody@acme.example"}), 400, "invalid_input")
	b.want(grant(map[string]any{"email": "shared@acme.example"}), 400, "invalid_input")
	b.want(grant(map[string]any{"email": "cleo@acme.example", "user": cleo}), 400, "invalid_input")
	b.want(grant(map[string]any{"email": "ann@acme.example"}), 403, "not_permitted") // herself
	// Someone who may not grant here learns nothing about who signed in with what.
	patTok := b.personal(pat, "", false)
	for _, e := range []string{"cleo@acme.example", "nobody@acme.example", "shared@acme.example"} {
		b.want(b.call(patTok, "POST", "/api/v1/orgs/beta/members", map[string]any{"email": e, "kind": "employee", "reason": "x"}), 403, "not_permitted")
	}
	for _, u := range []string{bob, "https://idp.acme|nobody"} {
		b.want(b.call(patTok, "POST", "/api/v1/orgs/beta/members/change", map[string]any{"user": u, "add_roles": []string{"x"}, "reason": "x"}), 403, "not_permitted")
	}
	a := grant(map[string]any{"email": "Cleo@Acme.Example"})
	b.want(a, 200, "")
	if _, m, _ := b.st.Lookup(ctx, "acme", cleo); m == nil || m.Email != "cleo@acme.example" {
		t.Errorf("cleo's membership (the address kept canonical): %+v", m)
	}
}

// TestImportManyInvitations: an import of a real portal's size goes in one change.
func TestImportManyInvitations(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	if _, err := b.orgs.AddDomain(ctx, "acme", "acme.example", "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	rows := make([]map[string]any, 2000)
	for i := range rows {
		rows[i] = map[string]any{"email": fmt.Sprintf("user%04d@acme.example", i), "kind": "employee", "roles": []string{"viewer"}}
	}
	a := b.call(b.personal(ann, "", false), "POST", "/api/v1/orgs/acme/invitations/import", map[string]any{"invitations": rows, "reason": "go-live"})
	b.want(a, 200, "")
	if invs, _ := b.st.OrgInvitations(ctx, "acme"); len(invs) != 2000 {
		t.Errorf("%d invitations", len(invs))
	}
}
