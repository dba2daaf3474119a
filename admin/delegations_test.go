package admin

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

// TestDelegation: acme lets partnerco's administrators administer it. paul (partnerco's
// administrator) then acts for acme within the policy, each change naming the delegation; he
// cannot hand acme on, nor reach an organisation that delegated to acme; the delegation ends
// at its end, at its review date, or when ended, and with it his authority.
func TestDelegation(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	annTok, paulTok, patTok, bobTok := b.personal(ann, "", false), b.personal(paul, "", false), b.personal(pat, "", false), b.personal(bob, "", false)
	month := time.Now().Add(30 * 24 * time.Hour)
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")

	// Only acme's own administrators (or operators) delegate, to another live organisation,
	// with an end within a year.
	del := func(tok, org, to string, end time.Time) answer {
		return b.call(tok, "POST", "/api/v1/orgs/"+org+"/delegations", map[string]any{"to": to, "expires_at": end, "reason": "MSA-9: managed service"})
	}
	b.want(del(paulTok, "acme", "partnerco", month), 403, "not_permitted")
	b.want(del(annTok, "acme", "acme", month), 400, "invalid_input")
	b.want(del(annTok, "acme", "nope", month), 404, "not_found")
	b.want(del(annTok, "acme", "partnerco", time.Now().Add(800*24*time.Hour)), 400, "invalid_input")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/delegations", map[string]any{"to": "partnerco", "expires_at": month,
		"review_by": month.Add(time.Hour), "reason": "x"}), 400, "invalid_input") // a review after the end
	a := b.call(annTok, "POST", "/api/v1/orgs/acme/delegations", map[string]any{"to": "partnerco", "expires_at": month,
		"review_by": time.Now().Add(48 * time.Hour), "reason": "MSA-9: managed service"})
	b.want(a, 201, "")
	id := a.body["id"].(string)
	b.want(del(annTok, "acme", "partnerco", month), 409, "")

	// paul administers acme now; pat (partnerco, not its administrator) does not.
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 200, "")
	b.want(b.call(patTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")
	b.want(b.call(paulTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": "https://idp.acme|cleo", "kind": "employee",
		"roles": []string{"viewer"}, "reason": "new starter (HR-12)"}), 200, "")
	granted := b.events(audit.MembershipGranted)
	last := granted[len(granted)-1]
	if last.Actor != paul || !strings.Contains(last.Via, "token ") || !strings.Contains(last.Via, "delegation "+id+" (partnerco for acme)") {
		t.Errorf("the grant's event names %q via %q", last.Actor, last.Via)
	}
	// He cannot hand acme on, nor grant himself anything there.
	b.want(del(paulTok, "acme", "beta", month), 403, "not_permitted")
	b.want(b.call(paulTok, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": paul, "kind": "employee", "roles": []string{"org-admin"}, "reason": "x"}), 403, "not_permitted")
	// Not transitive: beta delegates to acme; paul does not reach beta through acme.
	b.want(del(bobTok, "beta", "acme", month), 201, "")
	b.want(b.call(annTok, "GET", "/api/v1/orgs/beta/members", nil), 200, "")
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/beta/members", nil), 403, "not_permitted")
	// What each administers, as the console lists it: paul partnerco and acme through it;
	// ann acme and beta through it; pat nothing.
	for tok, want := range map[string]string{paulTok: "partnerco acme<partnerco", annTok: "acme beta<acme", patTok: ""} {
		a := b.call(tok, "GET", "/api/v1/me/administers", nil)
		b.want(a, 200, "")
		var got []string
		for _, it := range a.body["items"].([]any) {
			m := it.(map[string]any)
			s := m["org"].(string)
			if th, _ := m["through"].(string); th != "" {
				s += "<" + th
			}
			got = append(got, s)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("administers: %v, want %s", got, want)
		}
	}

	// He approves as acme's administrator, and the approval names the delegation.
	r := b.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]string{"role": "billing", "duration": "8h", "reason": "month end"})
	b.want(r, 201, "")
	ap := b.call(paulTok, "POST", "/api/v1/orgs/acme/requests/"+r.body["id"].(string)+"/approve", map[string]string{"reason": "ok"})
	b.want(ap, 200, "")
	if aps, _ := ap.body["approvals"].([]any); len(aps) != 1 || !strings.Contains(aps[0].(map[string]any)["via"].(string), "delegation "+id) {
		t.Errorf("approvals %v", ap.body["approvals"])
	}

	// Its review date passes: paul's authority stops; a renewed delegation would restore it.
	b.advance(72 * time.Hour)
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")
	b.advance(-72 * time.Hour)
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 200, "")

	// paul may give it up; so may ann end it. Then he is refused.
	b.want(b.call(patTok, "POST", "/api/v1/orgs/acme/delegations/"+id+"/end", map[string]string{"reason": "x"}), 403, "not_permitted")
	b.want(b.call(paulTok, "POST", "/api/v1/orgs/acme/delegations/"+id+"/end", map[string]string{"reason": "contract over"}), 200, "")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/delegations/"+id+"/end", map[string]string{"reason": "again"}), 409, "")
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")
	if a := b.call(paulTok, "GET", "/api/v1/me/administers", nil); strings.Contains(a.raw, `"org":"acme"`) {
		t.Errorf("paul still lists acme after the delegation ended: %s", a.raw)
	}
	lst := b.call(annTok, "GET", "/api/v1/orgs/acme/delegations", nil)
	if items, _ := lst.body["items"].([]any); len(items) != 1 || items[0].(map[string]any)["live"] != false || items[0].(map[string]any)["ended_by"] != paul {
		t.Errorf("delegations %s", lst.raw)
	}
	if evs := b.events(audit.DelegationEnded); len(evs) != 1 || evs[0].Actor != paul {
		t.Errorf("ended events %+v", evs)
	}
	if o, _ := b.st.Org(ctx, "acme"); len(o.Delegations) != 1 {
		t.Errorf("acme's delegations %+v", o.Delegations)
	}
}
