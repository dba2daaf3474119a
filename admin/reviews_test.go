package admin

import (
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// raw fetches path as text (a CSV report).
func (b *bed) raw(token, path string) (int, string, string) {
	b.t.Helper()
	req, _ := http.NewRequest("GET", b.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

// TestReviewCampaign: an administrator reviews their organisation's memberships, never their
// own; a change is a grant (within what they may grant alone and the policy); an item nobody
// decides stops granting at the deadline; the report says who decided what.
func TestReviewCampaign(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	annTok, bobTok := b.personal(ann, "", false), b.personal(bob, "", false)
	deadline := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Second)
	start := map[string]any{"deadline": deadline, "reason": "Q1 review"}
	b.want(b.call(bobTok, "POST", "/api/v1/orgs/acme/reviews", start), 403, "not_permitted") // bob administers beta only
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/reviews", map[string]any{"reason": "x"}), 400, "invalid_input")
	a := b.call(annTok, "POST", "/api/v1/orgs/acme/reviews", start)
	b.want(a, 201, "")
	id := a.body["id"].(string)
	if items, _ := a.body["items"].([]any); len(items) != 3 {
		t.Fatalf("items %v: ann, bob and pat", a.body["items"])
	}
	path := "/api/v1/orgs/acme/reviews/" + id
	decide := func(tok string, body map[string]any) answer {
		if body["reason"] == nil {
			body["reason"] = "reviewed"
		}
		return b.call(tok, "POST", path+"/decide", body)
	}
	b.want(decide(annTok, map[string]any{"user": ann, "decision": "keep"}), 403, "self_approval")
	b.want(decide(bobTok, map[string]any{"user": pat, "decision": "keep"}), 403, "not_permitted")
	b.want(decide(b.personal(ann, "", true), map[string]any{"user": bob, "decision": "keep"}), 403, "not_permitted")
	b.want(decide(annTok, map[string]any{"user": pat, "decision": "change", "roles": []string{"billing"}}), 403, "not_permitted") // partners: two approvals
	b.want(decide(annTok, map[string]any{"user": bob, "decision": "change", "roles": []string{"admin"}}), 422, "policy_violation")
	b.want(decide(annTok, map[string]any{"user": bob, "decision": "maybe"}), 400, "invalid_input")
	b.want(decide(annTok, map[string]any{"user": sue, "decision": "keep"}), 404, "not_found")

	b.want(decide(annTok, map[string]any{"user": bob, "decision": "keep", "reason": "=HYPERLINK(\"http://x\")"}), 200, "")
	_, m, _ := b.st.Lookup(ctx, "acme", bob)
	if d := time.Until(m.ReviewBy); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("bob kept: next review in %s, want the employee review_every (1 year)", d)
	}
	b.want(decide(annTok, map[string]any{"user": bob, "decision": "revoke"}), 409, "conflict")
	b.want(decide(annTok, map[string]any{"user": pat, "decision": "revoke", "reason": "engagement over"}), 200, "")

	// ann's own item is undecided: at the deadline her membership stops granting.
	policy := b.api.policy.Load()
	o, mine, _ := b.st.Lookup(ctx, "acme", ann)
	no := false
	anyone := authz.CompileRequire(&config.Require{VerifiedEmailDomain: &no})
	in := authz.Input{User: ann, OrgID: "acme", Org: o, Membership: mine, Require: anyone, Policy: policy.Policy}
	if d := authz.Decide(in, deadline.Add(-time.Minute)); !d.Allow {
		t.Errorf("ann before the deadline: %s", d.Reason)
	}
	if d := authz.Decide(in, deadline.Add(time.Second)); d.Allow || d.Reason != reason.ReviewOverdue {
		t.Errorf("ann after the deadline: %v %s", d.Allow, d.Reason)
	}
	_, kept, _ := b.st.Lookup(ctx, "acme", bob)
	if d := authz.Decide(authz.Input{User: bob, OrgID: "acme", Org: o, Membership: kept, Require: anyone, Policy: policy.Policy}, deadline.Add(time.Second)); !d.Allow {
		t.Errorf("bob, kept, after the deadline: %s", d.Reason)
	}

	// The report: JSON and CSV, with who decided what; a formula in a note is defused.
	rep := b.call(annTok, "GET", path, nil)
	b.want(rep, 200, "")
	if rep.body["undecided"] != float64(1) {
		t.Errorf("report %s", rep.raw)
	}
	status, ct, body := b.raw(annTok, path+"?format=csv")
	if status != 200 || !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("csv: %d %s %s", status, ct, body)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil || len(rows) != 4 || rows[0][3] != "user" {
		t.Fatalf("csv rows %v %v", rows, err)
	}
	byUser := map[string][]string{}
	for _, r := range rows[1:] {
		byUser[r[3]] = r
	}
	if r := byUser[bob]; r[7] != "operators; administrators of acme" || r[8] != "keep" || r[10] != ann || r[12] != `'=HYPERLINK("http://x")` || r[13] != "active" {
		t.Errorf("bob's row %q", r)
	}
	if r := byUser[pat]; r[7] != "operators; administrators of acme; administrators of partnerco" || r[8] != "revoke" || r[13] != "revoked" {
		t.Errorf("pat's row %q", r)
	}
	if r := byUser[ann]; r[8] != "" || r[13] != "active" {
		t.Errorf("ann's row %q", r)
	}
	if status, _, _ := b.raw(annTok, path+"?format=xml"); status != 400 {
		t.Errorf("an unknown format: %d", status)
	}
	b.want(b.call(bobTok, "GET", path, nil), 403, "not_permitted")
	if evs := b.events(audit.ReviewDecided); len(evs) != 2 || evs[0].Actor != ann || !strings.HasPrefix(evs[0].Via, "token ") {
		t.Errorf("decisions recorded %+v", evs)
	}
}

// TestAccessReports: who has what, per organisation (its administrators, operators) and per
// person (oneself; operators for anyone), in JSON and CSV, with the last use.
func TestAccessReports(t *testing.T) {
	b := newBed(t)
	annTok, bobTok, patTok := b.personal(ann, "", false), b.personal(bob, "", false), b.personal(pat, "", false)
	u := store.NewUseRecorder(b.st, 0, nil)
	defer u.Close()
	used := time.Now().UTC().Truncate(time.Second)
	u.Used("acme", bob, used)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m, _ := b.st.LastUsed(context.Background(), "acme"); !m[bob].IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("bob's use was not recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}

	rep := b.call(annTok, "GET", "/api/v1/orgs/acme/access", nil)
	b.want(rep, 200, "")
	items, _ := rep.body["items"].([]any)
	if len(items) != 3 {
		t.Fatalf("acme's access: %s", rep.raw)
	}
	for _, it := range items {
		l := it.(map[string]any)
		if l["user"] == bob && (l["last_used"] != used.Format(time.RFC3339) || l["effective"] != "active" || l["granted_by"] != "bootstrap") {
			t.Errorf("bob's line %v", l)
		}
	}
	b.want(b.call(bobTok, "GET", "/api/v1/orgs/acme/access", nil), 403, "not_permitted")
	if status, ct, body := b.raw(b.ops, "/api/v1/orgs/acme/access?format=csv"); status != 200 || !strings.HasPrefix(ct, "text/csv") ||
		!strings.HasPrefix(body, "org,user,kind,effective,roles") || strings.Count(body, "\n") != 4 {
		t.Errorf("csv: %d %s\n%s", status, ct, body)
	}

	// pat's own, in both organisations; another person's only for operators.
	mine := b.call(patTok, "GET", "/api/v1/access", nil)
	b.want(mine, 200, "")
	var orgs []string
	for _, it := range mine.body["items"].([]any) {
		orgs = append(orgs, it.(map[string]any)["org"].(string))
	}
	slices.Sort(orgs)
	if !slices.Equal(orgs, []string{"acme", "partnerco"}) {
		t.Errorf("pat's access: %s", mine.raw)
	}
	b.want(b.call(annTok, "GET", "/api/v1/access?user="+strings.ReplaceAll(pat, "|", "%7C"), nil), 403, "not_permitted")
	if a := b.call(b.ops, "GET", "/api/v1/access?user="+strings.ReplaceAll(pat, "|", "%7C"), nil); a.status != 200 || len(a.body["items"].([]any)) != 2 {
		t.Errorf("an operator on pat's access: %s", a.raw)
	}
	// A token restricted to one organisation sees that one.
	if a := b.call(b.personal(pat, "acme", true), "GET", "/api/v1/access", nil); len(a.body["items"].([]any)) != 1 {
		t.Errorf("pat's acme token: %s", a.raw)
	}
}

// TestPartnerReviewsItsPeople: the partner's administrators (named by the partner kind's
// approver rules, org_admin_of:partnerco) review their own people's memberships in the
// customer's campaign: they see only those items and decide only those; never the customer's
// employees, never in another organisation's campaign, never their own.
func TestPartnerReviewsItsPeople(t *testing.T) {
	b := newBed(t)
	annTok, paulTok, bobTok, patTok := b.personal(ann, "", false), b.personal(paul, "", false), b.personal(bob, "", false), b.personal(pat, "", false)
	st := b.call(annTok, "POST", "/api/v1/orgs/acme/reviews", map[string]any{"deadline": time.Now().Add(7 * 24 * time.Hour), "reason": "Q4 review"})
	b.want(st, 201, "")
	id := st.body["id"].(string)
	path := "/api/v1/orgs/acme/reviews/" + id

	// paul sees the campaign with pat's item only.
	ls := b.call(paulTok, "GET", "/api/v1/orgs/acme/reviews", nil)
	b.want(ls, 200, "")
	items := ls.body["items"].([]any)
	if len(items) != 1 || len(items[0].(map[string]any)["items"].([]any)) != 1 {
		t.Fatalf("paul's list %s", ls.raw)
	}
	rep := b.call(paulTok, "GET", path, nil)
	b.want(rep, 200, "")
	rows := rep.body["report"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["user"] != pat {
		t.Fatalf("paul's report %s", rep.raw)
	}
	decide := func(tok, user, decision string) answer {
		return b.call(tok, "POST", path+"/decide", map[string]any{"user": user, "decision": decision, "reason": "checked with the team"})
	}
	b.want(decide(paulTok, bob, "revoke"), 403, "not_permitted") // an acme employee: not his to review
	b.want(decide(patTok, pat, "keep"), 403, "self_approval")
	b.want(decide(bobTok, pat, "keep"), 403, "") // beta's administrator: nothing here
	b.want(b.call(bobTok, "GET", "/api/v1/orgs/acme/reviews", nil), 403, "not_permitted")
	b.want(decide(b.personal(paul, "beta", false), pat, "keep"), 403, "not_permitted") // a token for another org
	// A change of roles is a grant: paul does not administer acme, so he cannot.
	b.want(b.call(paulTok, "POST", path+"/decide", map[string]any{"user": pat, "decision": "change", "roles": []string{"billing"}, "reason": "x"}), 403, "")
	b.want(decide(paulTok, pat, "keep"), 200, "")
	after := b.call(annTok, "GET", path, nil)
	for _, r := range after.body["report"].([]any) {
		if m := r.(map[string]any); m["user"] == pat && (m["decision"] != "keep" || m["decided_by"] != paul) {
			t.Errorf("pat's item %v", m)
		}
	}
}
