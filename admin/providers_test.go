package admin

import (
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// TestOrgProviders: only operators say which providers sign people in for an organisation,
// only configured names are taken, and the API's own decisions apply the trust rule: an
// administrator signed in through a provider the organisation does not trust administers
// nothing there.
func TestOrgProviders(t *testing.T) {
	b := newBed(t)
	// The portal owner's IdP is shared; acme's own (ann's and bob's issuer) is not.
	table := authz.CompileProviders([]config.OIDCProvider{
		{Name: config.DefaultProvider, Issuer: "https://idp.portal", Shared: true},
		{Name: "acme-idp", Issuer: "https://idp.acme"},
		{Name: "partner-idp", Issuer: "https://idp.partner/"},
	})
	api, err := New(Options{Store: b.st, Orgs: b.orgs, Audit: b.aud, Lifecycle: b.api.policy.Load().Policy, Sessions: b.st, Now: b.now, Providers: table})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	b.srv = srv
	annTok := b.personal(ann, "", false)
	put := func(tok string, providers ...string) answer {
		return b.call(tok, "PUT", "/api/v1/orgs/acme/providers", map[string]any{"providers": providers, "reason": "acme's own IdP"})
	}

	// acme lists no providers: only the shared one counts, so ann is no administrator there.
	b.want(b.call(annTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "")
	// Nor can she give her own provider the organisation.
	b.want(put(annTok, "acme-idp"), 403, "")
	b.want(put(b.ops, "nobody-configured-this"), 400, "invalid_input")
	b.want(put(b.ops, "Bad Name"), 400, "invalid_input")
	if evs := b.events(audit.OrgProvidersChanged); len(evs) != 0 {
		t.Fatalf("refused changes recorded: %+v", evs)
	}

	a := put(b.ops, "acme-idp")
	b.want(a, 200, "")
	if got := a.body["providers"].([]any); len(got) != 1 || got[0] != "acme-idp" {
		t.Fatalf("providers %s", a.raw)
	}
	evs := b.events(audit.OrgProvidersChanged)
	if len(evs) != 1 || evs[0].Org != "acme" || evs[0].Detail["providers"] != "acme-idp" || evs[0].Actor == "" {
		t.Fatalf("events %+v", evs)
	}
	// Now ann administers acme; sue, of the shared provider, would not even as a member.
	b.want(b.call(annTok, "GET", "/api/v1/orgs/acme/members", nil), 200, "")
	o, _ := b.st.Org(t.Context(), "acme")
	if !slices.Equal(o.Providers, []string{"acme-idp"}) {
		t.Fatalf("stored %v", o.Providers)
	}
	// Another organisation's list is untouched.
	if o, _ := b.st.Org(t.Context(), "beta"); o.Providers != nil {
		t.Fatalf("beta %v", o.Providers)
	}

	// A delegate acts in acme: acme's rule applies to them. paul administers partnerco
	// through partnerco's own provider, and acme delegates to partnerco.
	b.want(b.call(b.ops, "PUT", "/api/v1/orgs/partnerco/providers", map[string]any{"providers": []string{"partner-idp"}, "reason": "x"}), 200, "")
	if _, err := b.orgs.Delegate(t.Context(), "acme", store.Delegation{To: "partnerco", ExpiresAt: time.Now().Add(24 * time.Hour)}, "bootstrap", "msp"); err != nil {
		t.Fatal(err)
	}
	paulTok := b.personal(paul, "", false)
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/partnerco/members", nil), 200, "")
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 403, "")
	b.want(put(b.ops, "acme-idp", "partner-idp"), 200, "")
	b.want(b.call(paulTok, "GET", "/api/v1/orgs/acme/members", nil), 200, "")

	// Without configured providers no name is known.
	b.srv = httptest.NewTLSServer(b.api)
	t.Cleanup(b.srv.Close)
	b.want(put(b.ops, "default"), 400, "invalid_input")
}
