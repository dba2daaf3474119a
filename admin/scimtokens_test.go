package admin

import (
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/store"
)

// TestSCIMTokens: an organisation's own administrators and operators make, list and revoke
// its SCIM tokens; the token is the directory's, shown once, no longer-lived than the
// credential that made it, and no admin API credential; another organisation's tokens are
// out of reach.
func TestSCIMTokens(t *testing.T) {
	b := newBed(t)
	annTok := b.personal(ann, "", false) // acme's administrator
	bobTok := b.personal(bob, "", false) // an employee, no administrator
	create := func(tok, org, lifetime string) answer {
		return b.call(tok, "POST", "/api/v1/orgs/"+org+"/scim/tokens", map[string]any{"name": "Entra ID", "lifetime": lifetime, "reason": "provisioning"})
	}
	b.want(create(bobTok, "acme", "30d"), 403, "not_permitted")
	b.want(create(annTok, "beta", "30d"), 403, "")
	b.want(create(annTok, "acme", "400d"), 400, "invalid_input")
	a := create(annTok, "acme", "30d")
	b.want(a, 201, "")
	secret, _ := a.body["token"].(string)
	rec, _ := a.body["record"].(map[string]any)
	if !strings.HasPrefix(secret, store.TokenPrefix) || rec["scim"] != true || rec["org"] != "acme" || rec["owner"] != store.SCIMOwner("acme") ||
		rec["created_by"] != ann || rec["hash"] != nil {
		t.Fatalf("created %s", a.raw)
	}
	id, _ := rec["id"].(string)
	// No admin API call takes it, its own organisation's included.
	b.want(b.call(secret, "GET", "/api/v1/orgs/acme/members", nil), 401, "")
	b.want(b.call(secret, "GET", "/api/v1/whoami", nil), 401, "")
	// Listed for acme, not for another organisation; bob sees none.
	list := b.call(annTok, "GET", "/api/v1/orgs/acme/scim/tokens", nil)
	b.want(list, 200, "")
	if items, _ := list.body["items"].([]any); len(items) != 1 {
		t.Fatalf("acme's tokens %s", list.raw)
	}
	b.want(b.call(bobTok, "GET", "/api/v1/orgs/acme/scim/tokens", nil), 403, "")
	if items, _ := b.call(b.ops, "GET", "/api/v1/orgs/beta/scim/tokens", nil).body["items"].([]any); len(items) != 0 {
		t.Errorf("beta lists acme's token: %v", items)
	}
	// Revoked only as acme's: under another organisation it is not found.
	b.want(b.call(b.ops, "POST", "/api/v1/orgs/beta/scim/tokens/"+id+"/revoke", map[string]string{"reason": "x"}), 404, "not_found")
	b.want(b.call(annTok, "POST", "/api/v1/orgs/acme/scim/tokens/"+id+"/revoke", map[string]string{"reason": "rotated"}), 200, "")
	if tk, err := b.st.TokenBySecret(t.Context(), secret); err != nil || tk.Revoked.IsZero() {
		t.Errorf("after revoke: %+v %v", tk, err)
	}
}
