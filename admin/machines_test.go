package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/store"
)

// TestMachines: who may create a machine identity and its keys, within which limits, and each
// way around them: another person, another organisation, more roles than the sponsor, longer
// than the policy, through the membership endpoints.
func TestMachines(t *testing.T) {
	b := newBed(t)
	annTok, bobTok, patTok, paulTok := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(pat, "", false), b.personal(paul, "", false)
	end := time.Now().Add(200 * 24 * time.Hour)
	create := func(tok string, body map[string]any) answer {
		body["reason"] = "integration INT-7"
		if _, ok := body["expires_at"]; !ok {
			body["expires_at"] = end
		}
		return b.call(tok, "POST", "/api/v1/orgs/acme/machines", body)
	}

	// Creating: an operator for a live sponsor, an administrator for themselves only, with roles
	// the sponsor holds.
	b.want(create(bobTok, map[string]any{"id": "sync", "name": "Sync"}), 403, "not_permitted")
	b.want(create(annTok, map[string]any{"id": "sync", "name": "Sync", "sponsor": bob}), 403, "not_permitted")
	b.want(create(b.ops, map[string]any{"id": "sync", "name": "Sync"}), 400, "invalid_input") // an operator names the sponsor
	b.want(create(b.ops, map[string]any{"id": "sync", "name": "Sync", "sponsor": sue}), 400, "invalid_input")
	b.want(create(b.ops, map[string]any{"id": "sync", "name": "Sync", "sponsor": store.MachineUser("acme", "x")}), 400, "invalid_input")
	b.want(create(b.ops, map[string]any{"id": "sync", "name": "Sync", "sponsor": bob, "roles": []string{"viewer", "billing"}}), 422, "policy_violation")
	b.want(create(b.ops, map[string]any{"id": "sync", "name": "Sync", "sponsor": bob, "expires_at": time.Now().Add(400 * 24 * time.Hour)}), 422, "policy_violation")
	b.want(create(b.ops, map[string]any{"id": "Sync!", "name": "Sync", "sponsor": bob}), 400, "invalid_input")
	b.want(create(annTok, map[string]any{"id": "ann-bot", "name": "Ann's", "roles": []string{"viewer"}}), 422, "policy_violation") // ann holds org-admin only
	// paul administers partnerco, not acme; pat is no administrator.
	b.want(create(paulTok, map[string]any{"id": "sync", "name": "Sync"}), 403, "not_permitted")
	b.want(create(patTok, map[string]any{"id": "sync", "name": "Sync"}), 403, "not_permitted")
	if a := create(annTok, map[string]any{"id": "ann-bot", "name": "Ann's report job", "roles": []string{"org-admin"}}); a.status != 201 || a.body["machine"].(map[string]any)["sponsor"] != ann {
		t.Fatalf("ann's own machine: %s", a.raw)
	}
	a := create(b.ops, map[string]any{"id": "sync", "name": "Ticket sync", "sponsor": bob, "roles": []string{"viewer"}})
	b.want(a, 201, "")
	if a.body["user"] != store.MachineUser("acme", "sync") || a.body["kind"] != "service" || a.body["approved_by"] != "ops-olga" {
		t.Errorf("created %s", a.raw)
	}
	b.want(create(b.ops, map[string]any{"id": "sync", "name": "Again", "sponsor": bob}), 409, "")
	if evs := b.events(audit.MachineCreated); len(evs) != 2 || evs[1].Actor != "ops-olga" || evs[1].Detail["sponsor"] != bob {
		t.Errorf("machine.created %+v", evs)
	}
	// A request or a role change never gives a machine a grant of its own.
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests", map[string]any{"for": store.MachineUser("acme", "sync"), "role": "billing", "duration": "8h", "reason": "x"}), 400, "invalid_input")
	b.want(b.call(b.ops, "POST", "/api/v1/events", map[string]any{"event": "role_changed", "org": "acme", "user": store.MachineUser("acme", "sync"), "roles": []string{"admin"}, "reason": "x"}), 400, "invalid_input")

	// Keys: made by the sponsor (or an operator) only, so the secret is shown to whom it ends
	// with; not by an administrator, not by anyone else.
	keys := "/api/v1/orgs/acme/machines/sync/keys"
	b.want(b.call(annTok, "POST", keys, map[string]any{"reason": "x"}), 403, "not_permitted")
	b.want(b.call(patTok, "POST", keys, map[string]any{"reason": "x"}), 403, "not_permitted")
	b.want(b.call(paulTok, "POST", keys, map[string]any{"reason": "x"}), 403, "not_permitted")
	// bob administers beta: the same machine id through beta is not his acme machine.
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/beta/machines/sync/keys", map[string]any{"reason": "x"}), 404, "not_found")
	// A token of bob's restricted to beta cannot act in acme, even as the sponsor.
	b.want(b.call(b.personal(bob, "beta", false), "POST", keys, map[string]any{"reason": "x"}), 403, "not_permitted")
	b.want(b.call(bobTok, "POST", keys, map[string]any{"reason": "x", "expires_at": time.Now().Add(100 * 24 * time.Hour)}), 422, "policy_violation")
	k := b.call(bobTok, "POST", keys, map[string]any{"reason": "first key"})
	b.want(k, 201, "")
	key, _ := k.body["key"].(string)
	rec, _ := k.body["record"].(map[string]any)
	id, _ := rec["id"].(string)
	if _, ok := apikey.Parse(key); !ok || !strings.HasPrefix(key, "pc_"+id+"_") {
		t.Fatalf("created key %s", k.raw)
	}
	if exp, _ := time.Parse(time.RFC3339, rec["expires_at"].(string)); time.Until(exp) > 90*24*time.Hour+time.Minute || time.Until(exp) < 89*24*time.Hour {
		t.Errorf("default expiry %v: want lifecycle.api_keys.max_lifetime (90d)", exp)
	}
	// Nobody sees the secret again, nor its hash: not a listing, not the audit trail.
	l := b.call(annTok, "GET", "/api/v1/orgs/acme/machines", nil)
	b.want(l, 200, "")
	owner, err := b.st.APIKeyOwner(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"listing": l.raw, "members": b.call(annTok, "GET", "/api/v1/orgs/acme/members", nil).raw, "audit": b.call(b.ops, "GET", "/api/v1/audit?since=0&count=1000", nil).raw} {
		if strings.Contains(s, key[len(key)-52:]) || strings.Contains(s, owner.Hash) {
			t.Errorf("the %s shows the key or its hash", what)
		}
	}
	if !strings.Contains(l.raw, `"sponsor":"`+bob+`"`) || !strings.Contains(l.raw, id) {
		t.Errorf("listing %s", l.raw)
	}
	// bob sees the machine he sponsors, and only that one; pat sees none.
	if l := b.call(bobTok, "GET", "/api/v1/orgs/acme/machines", nil); l.status != 200 || len(l.body["items"].([]any)) != 1 || !strings.Contains(l.raw, `"id":"sync"`) {
		t.Errorf("bob's listing: %s", l.raw)
	}
	b.want(b.call(patTok, "GET", "/api/v1/orgs/acme/machines", nil), 403, "not_permitted")

	// Rotation within max_overlap.
	rot := keys + "/" + id + "/rotate"
	b.want(b.call(bobTok, "POST", rot, map[string]any{"reason": "x", "overlap": "8d"}), 422, "policy_violation")
	b.want(b.call(bobTok, "POST", keys+"/nosuchkeyatall00/rotate", map[string]any{"reason": "x"}), 404, "not_found")
	r := b.call(bobTok, "POST", rot, map[string]any{"reason": "yearly rotation", "overlap": "1h"})
	b.want(r, 201, "")
	if r.body["key"] == key || r.body["record"].(map[string]any)["replaces"] != id {
		t.Errorf("rotated %s", r.raw)
	}
	b.want(b.call(annTok, "POST", rot, map[string]any{"reason": "x"}), 403, "not_permitted")
	// Revoking: the sponsor or an administrator, not someone else.
	b.want(b.call(patTok, "POST", keys+"/"+id+"/revoke", map[string]any{"reason": "x"}), 403, "not_permitted")
	b.want(b.call(annTok, "POST", keys+"/"+id+"/revoke", map[string]any{"reason": "leaked"}), 200, "")

	// The membership endpoints do not touch a machine: its roles stay within its sponsor's.
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members/change", map[string]any{"user": store.MachineUser("acme", "sync"), "add_roles": []string{"billing"}, "reason": "x"}), 400, "invalid_input")
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": store.MachineUser("acme", "other"), "kind": "service", "expires_at": end, "reason": "x"}), 400, "invalid_input")

	// The sponsor's revocation suspends the machine and ends its keys.
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/members/revoke", map[string]any{"user": bob, "reason": "left"}), 200, "")
	l = b.call(annTok, "GET", "/api/v1/orgs/acme/machines", nil)
	var m map[string]any
	for _, it := range l.body["items"].([]any) {
		if it.(map[string]any)["user"] == store.MachineUser("acme", "sync") {
			m = it.(map[string]any)
		}
	}
	if m["status"] != "suspended" {
		t.Errorf("machine after its sponsor's revocation: %s", l.raw)
	}
	for _, k := range m["machine"].(map[string]any)["keys"].([]any) {
		if k.(map[string]any)["revoked"] == nil {
			t.Errorf("a key survived its sponsor: %v", k)
		}
	}
	// Nobody adds a key to a suspended machine, its former sponsor included.
	b.want(b.call(bobTok, "POST", keys, map[string]any{"reason": "x"}), 400, "invalid_input")
	b.want(b.call(b.ops, "POST", keys, map[string]any{"reason": "x"}), 400, "invalid_input")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/machines/sync/revoke", map[string]any{"reason": "retired"}), 200, "")
}

// TestMachineHandOver: another sponsor takes a machine over, approved like a grant of its
// access; the keys its former sponsor saw end with the handover.
func TestMachineHandOver(t *testing.T) {
	b := newBed(t)
	annTok, bobTok, paulTok := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(paul, "", false)
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/acme/machines", map[string]any{"id": "sync", "name": "Sync", "sponsor": bob, "roles": []string{"viewer"},
		"expires_at": time.Now().Add(100 * 24 * time.Hour), "reason": "x"}), 201, "")
	k := b.call(bobTok, "POST", "/api/v1/orgs/acme/machines/sync/keys", map[string]any{"reason": "x"})
	b.want(k, 201, "")
	path := "/api/v1/orgs/acme/machines/sync/sponsor"
	b.want(b.call(bobTok, "POST", path, map[string]any{"sponsor": pat, "reason": "x"}), 403, "not_permitted")    // not an administrator
	b.want(b.call(paulTok, "POST", path, map[string]any{"sponsor": pat, "reason": "x"}), 403, "not_permitted")   // another org's
	b.want(b.call(annTok, "POST", path, map[string]any{"sponsor": sue, "reason": "x"}), 400, "invalid_input")    // no membership
	b.want(b.call(annTok, "POST", path, map[string]any{"sponsor": ann, "reason": "x"}), 422, "policy_violation") // ann lacks viewer
	b.want(b.call(annTok, "POST", path, map[string]any{"sponsor": store.MachineUser("acme", "sync"), "reason": "x"}), 400, "invalid_input")
	a := b.call(annTok, "POST", path, map[string]any{"sponsor": pat, "reason": "bob moves to another team"})
	b.want(a, 200, "")
	mc := a.body["machine"].(map[string]any)
	if mc["sponsor"] != pat {
		t.Errorf("after the handover: %s", a.raw)
	}
	for _, key := range mc["keys"].([]any) {
		if key.(map[string]any)["revoked"] == nil {
			t.Errorf("a key the former sponsor saw survived the handover: %v", key)
		}
	}
	if evs := b.events(audit.MachineHandedOver); len(evs) != 1 || evs[0].Detail["previous_sponsor"] != bob || evs[0].Actor != ann {
		t.Errorf("handover events %+v", evs)
	}
	// The new sponsor makes keys; the former one no longer does.
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/acme/machines/sync/keys", map[string]any{"reason": "x"}), 403, "not_permitted")
	b.want(b.call(b.personal(pat, "", false), "POST", "/api/v1/orgs/acme/machines/sync/keys", map[string]any{"reason": "x"}), 201, "")
}

// TestBindClientScope: an issuer speaks for the organisations the configuration names; another
// organisation's administrator cannot bind its clients to their own machine.
func TestBindClientScope(t *testing.T) {
	b := newBed(t)
	b.api.clientIssuers = map[string][]string{"https://login.acme.example": {"acme"}}
	bobTok := b.personal(bob, "", false) // administers beta
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/beta/machines", map[string]any{"id": "squat", "name": "x", "roles": []string{"org-admin"},
		"expires_at": time.Now().Add(100 * 24 * time.Hour), "reason": "x"}), 201, "")
	bind := map[string]any{"issuer": "https://login.acme.example", "subject": "acme-billing-sync", "reason": "x"}
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/beta/machines/squat/clients", bind), 403, "not_permitted")
	bind["issuer"] = "https://login.elsewhere.example"
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/beta/machines/squat/clients", bind), 400, "invalid_input")
}

// TestMachineRequest: a member asks for a machine identity they will sponsor; the service
// kind's approvers approve (never the requester), and the approval creates it.
func TestMachineRequest(t *testing.T) {
	b := newBed(t)
	annTok, bobTok := b.personal(ann, "", false), b.personal(bob, "", false)
	ask := func(body map[string]any) answer {
		body["reason"], body["duration"] = "nightly export (INT-9)", "30d"
		return b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", body)
	}
	b.want(ask(map[string]any{"machine": map[string]any{"id": "bob-export", "name": "Bob's export"}, "role": "billing"}), 422, "policy_violation") // bob lacks billing
	b.want(ask(map[string]any{"machine": map[string]any{"id": "Bad id", "name": "x"}}), 400, "invalid_input")
	r := ask(map[string]any{"machine": map[string]any{"id": "bob-export", "name": "Bob's export"}, "role": "viewer"})
	b.want(r, 201, "")
	id, _ := r.body["id"].(string)
	path := "/api/v1/orgs/acme/requests/" + id
	b.want(b.call(bobTok, "POST", path+"/approve", map[string]any{"reason": "mine"}), 403, "self_approval")
	a := b.call(annTok, "POST", path+"/approve", map[string]any{"reason": "ok"})
	b.want(a, 200, "")
	if a.body["state"] != "approved" {
		t.Fatalf("after ann's approval: %s", a.raw)
	}
	_, m, err := b.st.Lookup(t.Context(), "acme", store.MachineUser("acme", "bob-export"))
	if err != nil || m == nil || m.Machine == nil || m.Machine.Sponsor != bob || m.Kind != store.KindService || len(m.Roles) != 1 || m.Roles[0] != "viewer" ||
		m.ApprovedBy != ann || m.ExpiresAt.IsZero() {
		t.Fatalf("the machine the approval created: %+v %v", m, err)
	}
	// Its sponsor makes its keys.
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/acme/machines/bob-export/keys", map[string]any{"reason": "first"}), 201, "")
	// The same id again: the approval finds it taken.
	r = ask(map[string]any{"machine": map[string]any{"id": "bob-export", "name": "Again"}, "role": "viewer"})
	if r.status == 201 {
		b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/requests/"+r.body["id"].(string)+"/approve", map[string]any{"reason": "ok"}), 409, "")
	} else if r.status != 422 {
		t.Errorf("asking for a machine id taken: %s", r.raw)
	}
}
