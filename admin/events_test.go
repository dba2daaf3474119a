package admin

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/store"
)

// event posts a business event.
func (b *bed) event(token string, body map[string]any) answer {
	b.t.Helper()
	if body["reason"] == nil {
		body["reason"] = "test"
	}
	return b.call(token, "POST", "/api/v1/events", body)
}

// changes decodes an outcome's changes, without the ids only a real run knows.
func changes(t *testing.T, a answer) []store.Change {
	t.Helper()
	var out store.Outcome
	if err := json.Unmarshal([]byte(a.raw), &out); err != nil {
		t.Fatalf("outcome %s: %v", a.raw, err)
	}
	for i := range out.Changes {
		out.Changes[i].ID = ""
	}
	return out.Changes
}

// TestEventPermissions: the events that change a business relationship are the operators';
// an administrator changes roles in their own organisation only, never their own, and only
// for kinds they could grant alone; every way around it is refused and changes nothing.
func TestEventPermissions(t *testing.T) {
	b := newBed(t)
	annTok, bobTok := b.personal(ann, "", false), b.personal(bob, "", false)
	b.want(b.event("", map[string]any{"event": "contract_ended", "org": "acme"}), 401, "")
	for _, ev := range []map[string]any{
		{"event": "contract_ended", "org": "acme"},
		{"event": "contract_renewed", "org": "acme", "until": time.Now().Add(365 * 24 * time.Hour)},
		{"event": "merged_into", "org": "acme", "into": "beta"},
		{"event": "offboarded", "user": bob},
		{"event": "domain_lapsed", "org": "acme", "domain": "acme.example"},
	} {
		ev["dry_run"] = true
		b.want(b.event(annTok, ev), 403, "not_permitted")
	}
	roles := func(tok, org, user string, rs ...string) answer {
		return b.event(tok, map[string]any{"event": "role_changed", "org": org, "user": user, "roles": rs})
	}
	b.want(roles(annTok, "acme", ann, "org-admin", "billing"), 403, "not_permitted") // her own
	b.want(roles(annTok, "beta", bob, "viewer"), 403, "not_permitted")               // not her org
	b.want(roles(annTok, "acme", pat, "billing"), 403, "not_permitted")              // partners need two approvals
	b.want(roles(bobTok, "acme", ann, "viewer"), 403, "not_permitted")               // bob administers beta, not acme
	b.want(roles(b.personal(ann, "beta", false), "acme", bob, "billing"), 403, "not_permitted")
	b.want(roles(b.personal(ann, "", true), "acme", bob, "billing"), 403, "not_permitted") // read-only
	b.want(roles(annTok, "acme", sue, "billing"), 404, "not_found")                        // no membership
	b.want(roles(annTok, "acme", bob, "admin"), 422, "policy_violation")                   // privileged: just in time only
	b.want(b.event(annTok, map[string]any{"event": "role_changed", "org": "acme", "user": bob, "roles": []string{"billing"}, "reason": " "}), 400, "invalid_input")
	b.want(b.event(b.ops, map[string]any{"event": "sold", "org": "acme"}), 400, "invalid_input")
	if evs := b.events(audit.BusinessRoleChanged); len(evs) != 0 {
		t.Fatalf("a refused event was recorded: %+v", evs)
	}

	// What ann may do: change bob's roles in acme, recorded with her and her token.
	a := roles(annTok, "acme", bob, "billing", "viewer")
	b.want(a, 200, "")
	if got := changes(t, a); len(got) != 1 || got[0].User != bob || !strings.HasPrefix(got[0].What, "roles viewer → billing, viewer") {
		t.Errorf("changes %+v", got)
	}
	evs := b.events(audit.BusinessRoleChanged)
	if len(evs) != 1 || evs[0].Actor != ann || !strings.HasPrefix(evs[0].Via, "token ") {
		t.Errorf("parent event %+v", evs)
	}
	if _, m, _ := b.st.Lookup(context.Background(), "acme", bob); !slices.Equal(m.Roles, []string{"billing", "viewer"}) || m.ElevationsAfter.IsZero() {
		t.Errorf("bob after: %+v", m)
	}
}

// TestEventDryRunThenApply: an operator's dry run changes nothing and lists what the real run
// then changes; an ended organisation's administrators lose their authority with it.
func TestEventDryRunThenApply(t *testing.T) {
	b := newBed(t)
	annTok := b.personal(ann, "", false)
	r := b.call(b.ops, "POST", "/api/v1/orgs/acme/invitations", map[string]any{"email": "zoe@partner.example", "kind": "partner",
		"expires_at": time.Now().Add(30 * 24 * time.Hour), "reason": "new partner"})
	b.want(r, 201, "")
	ev := map[string]any{"event": "contract_ended", "org": "acme", "dry_run": true, "reason": "contract not renewed"}
	dry := b.event(b.ops, ev)
	b.want(dry, 200, "")
	if dry.body["dry_run"] != true {
		t.Errorf("dry run: %s", dry.raw)
	}
	if o, _ := b.st.Org(context.Background(), "acme"); o.Status != store.OrgActive {
		t.Fatalf("the dry run changed acme: %+v", o)
	}
	if n := len(b.events(audit.BusinessContractEnded)); n != 0 {
		t.Fatalf("the dry run recorded %d events", n)
	}
	ev["dry_run"] = false
	real := b.event(b.ops, ev)
	b.want(real, 200, "")
	if d, r := changes(t, dry), changes(t, real); !slices.Equal(d, r) || len(r) != 2 {
		t.Errorf("dry run %v, real run %v", d, r)
	}
	if ends, _ := real.body["ends"].([]any); len(ends) != 3 {
		t.Errorf("ends %v: ann's, bob's and pat's memberships stop granting", real.body["ends"])
	}
	// ann administered acme; acme has ended, so she administers nothing any more.
	b.want(b.call(annTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")
	b.want(b.event(b.ops, map[string]any{"event": "contract_ended", "org": "acme"}), 400, "invalid_input")
}

// TestMergerRequestsNeedTheSurvivor: a merger's requests are decided by the surviving
// organisation's approvers, never by the operator who ran the merger, nor by the person they
// are for; until then the person has no access there.
func TestMergerRequestsNeedTheSurvivor(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	a := b.event(b.ops, map[string]any{"event": "merged_into", "org": "acme", "into": "beta", "reason": "acquisition"})
	b.want(a, 200, "")
	var out store.Outcome
	_ = json.Unmarshal([]byte(a.raw), &out)
	ids := map[string]string{}
	for _, c := range out.Changes {
		if c.Type == audit.RequestCreated {
			ids[c.User] = c.ID
		}
	}
	if len(ids) != 2 || ids[ann] == "" || ids[pat] == "" {
		t.Fatalf("requests %v (bob is a member of beta already: skipped)", out.Changes)
	}
	if len(out.Skipped) != 1 || out.Skipped[0].User != bob {
		t.Errorf("skipped %+v", out.Skipped)
	}
	annReq, _ := b.st.Request(ctx, "beta", ids[ann])
	// Her administrator role is not carried over: who administers beta is beta's decision.
	if annReq.Kind != store.KindEmployee || len(annReq.Roles) != 0 || annReq.Duration != 365*24*time.Hour || annReq.Lapses.Sub(annReq.Created) != 72*time.Hour {
		t.Errorf("ann's request: %+v", annReq)
	}
	patReq, _ := b.st.Request(ctx, "beta", ids[pat])
	if patReq.Duration > 60*24*time.Hour || patReq.Duration < 59*24*time.Hour {
		t.Errorf("pat's request asks for what was left of his membership: %+v", patReq)
	}
	path := "/api/v1/orgs/beta/requests/" + ids[ann] + "/approve"
	b.want(b.call(b.ops, "POST", path, map[string]string{"reason": "x"}), 403, "self_approval")                      // the merger's operator asked
	b.want(b.call(b.personal(ann, "", false), "POST", path, map[string]string{"reason": "x"}), 403, "self_approval") // for herself
	b.want(b.call(b.personal(paul, "", false), "POST", path, map[string]string{"reason": "x"}), 404, "not_found")    // not his to see
	if _, m, _ := b.st.Lookup(ctx, "beta", ann); m != nil {
		t.Fatalf("ann is in beta before approval: %+v", m)
	}
	b.want(b.call(b.personal(bob, "", false), "POST", path, map[string]string{"reason": "welcome"}), 200, "")
	if _, m, _ := b.st.Lookup(ctx, "beta", ann); m == nil || len(m.Roles) != 0 || m.ExpiresAt.IsZero() || m.Status != store.MembershipActive {
		t.Errorf("ann in beta after bob's approval: %+v", m)
	}
	// The absorbed organisation's domains wait for verification in the survivor.
	if o, _ := b.st.Org(ctx, "acme"); o.MergedInto != "beta" || o.Status != store.OrgEnded {
		t.Errorf("acme: %+v", o)
	}
	b.want(b.event(b.ops, map[string]any{"event": "merged_into", "org": "partnerco", "into": "acme"}), 400, "invalid_input") // acme is gone
}

// TestRenewalWithinPolicy: a renewal moves the memberships bound to the contract, but never
// beyond what the kind allows.
func TestRenewalWithinPolicy(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	_, m, _ := b.st.Lookup(ctx, "acme", pat)
	if _, err := b.orgs.SetOrgStatus(ctx, "acme", store.OrgStatus{Status: store.OrgActive, ContractEnd: m.ExpiresAt}, "bootstrap", "contract"); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(3 * 365 * 24 * time.Hour)
	a := b.event(b.ops, map[string]any{"event": "contract_renewed", "org": "acme", "until": until, "reason": "renewed for 3 years"})
	b.want(a, 200, "")
	_, m, _ = b.st.Lookup(ctx, "acme", pat)
	if d := time.Until(m.ExpiresAt); d > 366*24*time.Hour || d < 364*24*time.Hour {
		t.Errorf("pat's partner membership follows the contract only up to the partner max_duration (1 year): ends in %s", d)
	}
	if time.Until(m.ReviewBy) > 31*24*time.Hour {
		t.Errorf("pat's review after the renewal: %s", m.ReviewBy)
	}
}

// TestOffboardThroughAPI: an offboarding revokes every membership and ends the sessions.
func TestOffboardThroughAPI(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	if err := b.st.CreateSession(ctx, "sess-pat", pat, "https://idp.partner", "", []byte(`{"user":"`+pat+`"}`), time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	dry := b.event(b.ops, map[string]any{"event": "offboarded", "user": pat, "dry_run": true, "reason": "left"})
	b.want(dry, 200, "")
	if _, err := b.st.LoadSession(ctx, "sess-pat"); err != nil {
		t.Fatalf("the dry run ended a session: %v", err)
	}
	a := b.event(b.ops, map[string]any{"event": "offboarded", "user": pat, "reason": "left"})
	b.want(a, 200, "")
	if !slices.Equal(changes(t, dry), changes(t, a)) || a.body["sessions_ended"] != float64(1) {
		t.Errorf("dry %s\nreal %s", dry.raw, a.raw)
	}
	for _, org := range []string{"acme", "partnerco"} {
		if _, m, _ := b.st.Lookup(ctx, org, pat); m.Status != store.MembershipRevoked {
			t.Errorf("pat in %s: %+v", org, m)
		}
	}
	if _, err := b.st.LoadSession(ctx, "sess-pat"); err == nil {
		t.Error("pat's session survived the offboarding")
	}
}

// TestSupportMoved: acme moves its support from partnerco to newco. partnerco's delegation,
// its people's partner access in acme and their open requests there end; newco's named people
// are asked for, and get nothing until acme's approvers approve. Only acme's own
// administrators (and operators) may do it: not the partner being replaced through its
// delegation, not another organisation's administrator; newco's people must be newco's.
func TestSupportMoved(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	const nina = "https://idp.newco|nina"
	if _, err := b.orgs.CreateOrg(ctx, store.Org{ID: "newco", Name: "NewCo"}, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.orgs.Grant(ctx, store.Membership{Org: "newco", User: nina, Kind: store.KindEmployee, Roles: []string{"engineer"},
		ReviewBy: time.Now().Add(200 * 24 * time.Hour)}, "bootstrap", "setup"); err != nil {
		t.Fatal(err)
	}
	annTok, bobTok, paulTok, patTok := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(paul, "", false), b.personal(pat, "", false)
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/delegations", map[string]any{"to": "partnerco",
		"expires_at": time.Now().Add(30 * 24 * time.Hour), "reason": "MSA-1"}), 201, "")
	req := b.call(patTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "billing", "duration": "8h", "reason": "month end"})
	b.want(req, 201, "")

	move := func(tok string, extra map[string]any) answer {
		ev := map[string]any{"event": "support_moved", "org": "acme", "from": "partnerco", "to": "newco",
			"people": []string{nina}, "reason": "CHG-77: newco supports acme from today"}
		for k, v := range extra {
			ev[k] = v
		}
		return b.event(tok, ev)
	}
	b.want(move(paulTok, map[string]any{"dry_run": true}), 403, "not_permitted") // the partner replaced, through its delegation
	b.want(move(bobTok, map[string]any{"dry_run": true}), 403, "not_permitted")  // another org's administrator
	notPartner := move(annTok, map[string]any{"people": []string{bob}})
	b.want(notPartner, 400, "invalid_input")
	// The answer says what was wrong (the store's error wraps "invalid" at its end).
	if msg, _ := notPartner.body["message"].(string); !strings.Contains(msg, "is not a live member of newco") {
		t.Errorf("support_moved to someone outside the partner: %s", notPartner.raw)
	}
	b.want(move(annTok, map[string]any{"to": "partnerco"}), 400, "invalid_input")
	b.want(move(annTok, map[string]any{"from": "acme"}), 400, "invalid_input")
	if n := len(b.events(audit.BusinessSupportMoved)); n != 0 {
		t.Fatalf("a refused event was recorded %d times", n)
	}

	dry := move(annTok, map[string]any{"dry_run": true})
	b.want(dry, 200, "")
	if _, m, _ := b.st.Lookup(ctx, "acme", pat); m.Status != store.MembershipActive {
		t.Fatal("the dry run revoked pat")
	}
	real := move(annTok, nil)
	b.want(real, 200, "")
	d, r := changes(t, dry), changes(t, real)
	if !slices.Equal(d, r) {
		t.Errorf("dry run %v, real run %v", d, r)
	}
	var kinds []audit.Type
	for _, c := range r {
		kinds = append(kinds, c.Type)
	}
	slices.Sort(kinds)
	if want := []audit.Type{audit.DelegationEnded, audit.MembershipRevoked, audit.RequestCancelled, audit.RequestCreated}; !slices.Equal(kinds, want) {
		t.Errorf("changes %v, want one of each of %v", r, want)
	}

	// partnerco is out: pat's access and request, paul's delegated administration.
	if _, m, _ := b.st.Lookup(ctx, "acme", pat); m.Status != store.MembershipRevoked {
		t.Errorf("pat in acme: %s", m.Status)
	}
	if got := b.call(annTok, "GET", "/api/v1/orgs/acme/requests/"+req.body["id"].(string), nil); got.body["state"] != "cancelled" {
		t.Errorf("pat's request: %s", got.raw)
	}
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")
	// newco's nina has a pending request only; she cannot approve it herself.
	if _, m, _ := b.st.Lookup(ctx, "acme", nina); m != nil {
		t.Errorf("nina was given access without approval: %+v", m)
	}
	reqs := b.call(annTok, "GET", "/api/v1/orgs/acme/requests", nil)
	var ninas string
	for _, it := range reqs.body["items"].([]any) {
		if m := it.(map[string]any); m["for"] == nina && m["state"] == "pending" {
			ninas = m["id"].(string)
			if m["kind"] != "partner" || !strings.Contains(m["reason"].(string), "support moved from partnerco to newco") {
				t.Errorf("nina's request %v", m)
			}
		}
	}
	if ninas == "" {
		t.Fatalf("no pending request for nina: %s", reqs.raw)
	}
	b.want(b.call(b.personal(nina, "", false), "POST", "/api/v1/orgs/acme/requests/"+ninas+"/approve", map[string]string{"reason": "me"}), 403, "")
	parent := b.events(audit.BusinessSupportMoved)
	if len(parent) != 1 || parent[0].Actor != ann || parent[0].Detail["from"] != "partnerco" || parent[0].Detail["to"] != "newco" {
		t.Errorf("parent event %+v", parent)
	}
	// Applied again: nothing left to move, and nina's request is not made twice.
	again := move(annTok, nil)
	b.want(again, 200, "")
	for _, c := range changes(t, again) {
		if c.Type == audit.RequestCreated {
			t.Errorf("a second request for nina: %+v", c)
		}
	}
}
