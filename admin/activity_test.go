package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/audit"
)

// TestOrgActivity: an organisation's administrators read the events that name it, newest
// first, paged, filtered by type and kind, and as CSV; never another organisation's; a
// support engineer's access shows its kind and ticket.
func TestOrgActivity(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	annTok, bobTok := b.personal(ann, "", false), b.personal(bob, "", false)
	// Support access to acme, asked by sue with a ticket; some of beta's own activity.
	created := b.call(b.personal(sue, "", false), "POST", "/api/v1/orgs/acme/requests",
		map[string]any{"kind": "support", "duration": "8h", "reason": "customer escalation", "ticket": "SUP-991", "role": "viewer"})
	b.want(created, 201, "")
	for i := range 3 {
		if err := b.aud.Append(ctx, audit.Event{Type: audit.AccessDenied, Org: "beta", User: bob, Reason: "role_missing", Detail: map[string]string{"n": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}

	page := b.call(annTok, "GET", "/api/v1/orgs/acme/activity", nil)
	b.want(page, 200, "")
	items := page.body["items"].([]any)
	if len(items) == 0 {
		t.Fatal("no activity for acme")
	}
	var sawSupport bool
	for _, it := range items {
		e := it.(map[string]any)
		if e["org"] != "acme" {
			t.Errorf("acme's activity holds another organisation's event: %v", e)
		}
		if e["type"] == "request.created" && e["kind"] == "support" && e["ticket"] == "SUP-991" && e["user"] == sue {
			sawSupport = true
		}
	}
	if !sawSupport {
		t.Errorf("the support request with its ticket is not in acme's activity: %s", page.raw)
	}
	// Newest first, paged without loss: count=1 pages give the same events.
	var paged []any
	before := ""
	for range 100 {
		p := b.call(annTok, "GET", "/api/v1/orgs/acme/activity?count=1"+map[bool]string{true: "&before=" + before}[before != ""], nil)
		b.want(p, 200, "")
		paged = append(paged, p.body["items"].([]any)...)
		next, _ := p.body["next"].(string)
		if next == "" {
			break
		}
		before = next
	}
	if len(paged) != len(items) {
		t.Errorf("paging by one gave %d events, one page %d", len(paged), len(items))
	}
	for i := range paged {
		if paged[i].(map[string]any)["id"] != items[i].(map[string]any)["id"] {
			t.Errorf("event %d differs between the pages and the single page", i)
		}
	}
	only := b.call(annTok, "GET", "/api/v1/orgs/acme/activity?type=request.&kind=support", nil)
	b.want(only, 200, "")
	if n := len(only.body["items"].([]any)); n != 1 {
		t.Errorf("support requests in acme's activity: %d, want 1: %s", n, only.raw)
	}

	req, _ := http.NewRequest("GET", b.srv.URL+"/api/v1/orgs/acme/activity?format=csv", nil)
	req.Header.Set("Authorization", "Bearer "+annTok)
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	csv, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(csv), "id,time,type,actor,via,user,kind,reason,ticket") || !strings.Contains(string(csv), "SUP-991") ||
		strings.Contains(string(csv), "beta") {
		t.Errorf("CSV activity:\n%s", csv)
	}

	// bob administers beta, not acme; ann not beta.
	b.want(b.call(bobTok, "GET", "/api/v1/orgs/acme/activity", nil), 403, "not_permitted")
	b.want(b.call(annTok, "GET", "/api/v1/orgs/beta/activity", nil), 403, "not_permitted")
	b.want(b.call(annTok, "GET", "/api/v1/orgs/acme/activity?before=x", nil), 400, "invalid_input")
	beta := b.call(bobTok, "GET", "/api/v1/orgs/beta/activity?type=access.denied", nil)
	if n := len(beta.body["items"].([]any)); n != 3 {
		t.Errorf("beta's refusals: %d, want 3: %s", n, beta.raw)
	}
}
