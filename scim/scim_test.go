package scim_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/scim"
	"github.com/portcullis-proxy/portcullis/store"
)

func TestMain(m *testing.M) { redistest.Main(m) }

const (
	issuer     = "https://idp.acme.example"
	issuerBeta = "https://idp.beta.example"
	actor      = "admin|test"
)

type bed struct {
	t      *testing.T
	st     *store.Store
	orgs   *store.Orgs
	srv    *httptest.Server
	tokens map[string]string
	ended  []string
	// issuers are each organisation's provider's issuer.
	issuers map[string]string
}

func (b *bed) RevokeUser(_ context.Context, user string) (int, error) {
	b.ended = append(b.ended, user)
	return 1, nil
}

func newBed(t *testing.T, cfg config.SCIM, providers []config.OIDCProvider) *bed {
	t.Helper()
	srv := redistest.Shared(t)
	st, err := store.New(config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b := &bed{t: t, st: st, orgs: store.NewOrgs(st, store.NewAudit(st, 0)), tokens: map[string]string{},
		issuers: map[string]string{"acme": issuer, "beta": issuer}}
	ctx := context.Background()
	_ = ctx
	for _, id := range []string{"acme", "beta"} {
		if _, err := b.orgs.CreateOrg(ctx, store.Org{ID: id, Name: id}, actor, "test"); err != nil {
			t.Fatal(err)
		}
		secret, _, err := b.orgs.CreateToken(ctx, store.Token{Name: id, Owner: actor, Org: id, SCIM: true, Expires: time.Now().Add(time.Hour)}, actor, "test")
		if err != nil {
			t.Fatal(err)
		}
		b.tokens[id] = secret
	}
	if cfg.SubjectAttribute == "" {
		cfg.SubjectAttribute = config.SCIMSubjectExternalID
	}
	if cfg.Kind == "" {
		cfg.Kind = "employee"
	}
	if cfg.Roles == nil {
		cfg.Roles = []string{"user"}
	}
	if providers == nil {
		// Each customer's own provider, listed by its organisation alone.
		providers = []config.OIDCProvider{{Name: "acme-idp", Issuer: issuer}, {Name: "beta-idp", Issuer: issuerBeta}}
		b.issuers["beta"] = issuerBeta
		for _, id := range []string{"acme", "beta"} {
			if _, err := b.orgs.SetOrgProviders(ctx, id, []string{id + "-idp"}, actor, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := scim.New(scim.Options{Store: st, Orgs: b.orgs, Policy: defaultPolicy(t), Providers: providers, Config: cfg, Sessions: b})
	if err != nil {
		t.Fatal(err)
	}
	b.srv = httptest.NewServer(s)
	t.Cleanup(b.srv.Close)
	return b
}

// defaultPolicy is the lifecycle policy of a configuration that sets none.
func defaultPolicy(t *testing.T) *authz.Policy {
	cfg, _, err := config.Loader{}.Parse("test.yaml", []byte("tls: {mode: self_signed}\nroutes: [{name: a, upstream: \"http://10.0.0.5\"}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	return authz.CompilePolicy(&cfg.Lifecycle)
}

func (b *bed) call(org, method, path, body string) (int, map[string]any) {
	b.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, b.srv.URL+"/scim/v2/"+org+path, rd)
	req.Header.Set("Authorization", "Bearer "+b.tokens[org])
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out == nil && len(raw) > 0 {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

func (b *bed) create(org, userName, ext string) string {
	b.t.Helper()
	st, out := b.call(org, "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"`+userName+`","externalId":"`+ext+`",
		"password":"hunter2","emails":[{"value":"`+userName+`","primary":true,"type":"work"}],"name":{"givenName":"A"}}`)
	if st != 201 {
		b.t.Fatalf("create %s: %d %v", userName, st, out)
	}
	return out["id"].(string)
}

func (b *bed) membership(org, sub string) *store.Membership {
	b.t.Helper()
	_, m, err := b.st.Lookup(context.Background(), org, store.UserKey(b.issuers[org], sub))
	if err != nil {
		b.t.Fatal(err)
	}
	return m
}

const patchOp = `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":`

func TestUsersAndTheirMemberships(t *testing.T) {
	b := newBed(t, config.SCIM{GroupRoles: map[string]string{"Portal Admins": "admin"}}, nil)
	id := b.create("acme", "alice@acme.example", "sub-alice")
	if m := b.membership("acme", "sub-alice"); m == nil || m.Status != store.MembershipActive || m.Email != "alice@acme.example" || m.Roles[0] != "user" {
		t.Fatalf("membership %+v", m)
	}
	// The password is never kept.
	if u, _ := b.st.SCIMUser(context.Background(), "acme", id); strings.Contains(string(u.Attributes), "hunter2") {
		t.Errorf("password stored: %s", u.Attributes)
	}
	_, got := b.call("acme", "GET", "/Users/"+id, "")
	if got["password"] != nil || got["userName"] != "alice@acme.example" || got["externalId"] != "sub-alice" {
		t.Errorf("GET: %v", got)
	}

	for name, tc := range map[string]struct {
		body string
		want int
	}{
		// The person is bound for good: another subject would hand alice's record to bob.
		"externalId changed":   {patchOp + `[{"op":"replace","path":"externalId","value":"sub-bob"}]}`, 400},
		"externalId in a map":  {patchOp + `[{"op":"replace","value":{"externalId":"sub-bob"}}]}`, 400},
		"userName removed":     {patchOp + `[{"op":"remove","path":"userName"}]}`, 400},
		"not a PATCH":          {`{"Operations":[{"op":"replace","path":"active","value":false}]}`, 400},
		"a filter on no value": {patchOp + `[{"op":"replace","path":"emails[type eq \"home\"]","value":{"value":"x@y.example"}}]}`, 400},
	} {
		if st, out := b.call("acme", "PATCH", "/Users/"+id, tc.body); st != tc.want {
			t.Errorf("%s: %d %v", name, st, out)
		}
	}
	if m := b.membership("acme", "sub-alice"); m == nil || m.Status != store.MembershipActive {
		t.Fatalf("refused patches changed the membership: %+v", m)
	}
	// Entra ID's forms: capitalised ops, "False", dotted names, an extension's URN, a filter.
	for _, body := range []string{
		patchOp + `[{"op":"Replace","path":"name.familyName","value":"Example"},{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"0001"}]}`,
		patchOp + `[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"alice.example@acme.example"}]}`,
		patchOp + `[{"op":"replace","value":{"displayName":"Alice","name.givenName":"Alice"}}]}`,
	} {
		if st, out := b.call("acme", "PATCH", "/Users/"+id, body); st != 200 {
			t.Fatalf("%s: %d %v", body, st, out)
		}
	}
	_, got = b.call("acme", "GET", "/Users/"+id, "")
	name, _ := got["name"].(map[string]any)
	ext, _ := got["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)
	emails, _ := got["emails"].([]any)
	if name["familyName"] != "Example" || name["givenName"] != "Alice" || ext["employeeNumber"] != "0001" || got["displayName"] != "Alice" ||
		len(emails) != 1 || emails[0].(map[string]any)["value"] != "alice.example@acme.example" {
		t.Errorf("after Entra's patches: %v", got)
	}
	if st, _ := b.call("acme", "PATCH", "/Users/"+id, patchOp+`[{"op":"Replace","path":"active","value":"False"}]}`); st != 200 {
		t.Fatalf("active False: %d", st)
	}
	if m := b.membership("acme", "sub-alice"); m.Status != store.MembershipSuspended || len(b.ended) != 1 || b.ended[0] != store.UserKey(issuer, "sub-alice") {
		t.Fatalf("deactivated: %+v, sessions ended %v", m, b.ended)
	}
	// Okta's deactivation again changes nothing and ends nothing more.
	if st, _ := b.call("acme", "PATCH", "/Users/"+id, patchOp+`[{"op":"replace","value":{"active":false}}]}`); st != 200 || len(b.ended) != 1 {
		t.Errorf("second deactivation: %d, ended %v", st, b.ended)
	}
	if st, _ := b.call("acme", "PATCH", "/Users/"+id, patchOp+`[{"op":"replace","value":{"active":true}}]}`); st != 200 {
		t.Fatal("reactivate")
	}

	// Uniqueness within the organisation, not across organisations.
	if st, out := b.call("acme", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ALICE@acme.example","externalId":"sub-x"}`); st != 409 {
		t.Errorf("duplicate userName: %d %v", st, out)
	}
	if st, out := b.call("acme", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"other@acme.example","externalId":"sub-alice"}`); st != 409 {
		t.Errorf("duplicate person: %d %v", st, out)
	}
	if st, out := b.call("acme", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"nobody@acme.example"}`); st != 400 {
		t.Errorf("no externalId: %d %v", st, out)
	}
	b.create("beta", "alice@acme.example", "sub-alice")

	// Filters and paging, as the directories probe.
	b.create("acme", "bob@acme.example", "sub-bob")
	for q, want := range map[string]int{
		`userName eq "Alice@acme.example"`: 1,
		`externalId eq "sub-bob"`:          1,
		`userName eq "carol@acme.example"`: 0,
		`userName sw "a"`:                  1,
	} {
		st, out := b.call("acme", "GET", "/Users?filter="+url.QueryEscape(q), "")
		if st != 200 || out["totalResults"] != float64(want) {
			t.Errorf("filter %s: %d %v", q, st, out)
		}
	}
	if _, out := b.call("acme", "GET", "/Users?startIndex=2&count=1", ""); out["totalResults"] != float64(2) || len(out["Resources"].([]any)) != 1 {
		t.Errorf("paging: %v", out)
	}
	if st, _ := b.call("acme", "GET", "/Users?filter="+url.QueryEscape(`userName eq`), ""); st != 400 {
		t.Errorf("malformed filter: %d", st)
	}

	// A group gives its role; leaving it takes the role away; the roles an administrator
	// granted by hand stay.
	st, out := b.call("acme", "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Portal Admins","members":[{"value":"`+id+`"}]}`)
	if st != 201 {
		t.Fatalf("group: %d %v", st, out)
	}
	gid := out["id"].(string)
	if m := b.membership("acme", "sub-alice"); strings.Join(m.Roles, ",") != "admin,user" {
		t.Errorf("roles in the group: %v", m.Roles)
	}
	if _, err := b.orgs.ChangeMembership(context.Background(), "acme", store.UserKey(issuer, "sub-alice"), func(m *store.Membership) error {
		m.Roles = append(m.Roles, "billing")
		return nil
	}, actor, "by hand"); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.call("acme", "PATCH", "/Groups/"+gid, patchOp+`[{"op":"Remove","path":"members","value":[{"value":"`+id+`"}]}]}`); st != 204 {
		t.Fatalf("remove member: %d", st)
	}
	if m := b.membership("acme", "sub-alice"); strings.Join(m.Roles, ",") != "billing,user" {
		t.Errorf("roles after leaving the group: %v", m.Roles)
	}
	if st, out := b.call("acme", "PATCH", "/Groups/"+gid, patchOp+`[{"op":"add","path":"members","value":[{"value":"no-such-user"}]}]}`); st != 400 {
		t.Errorf("a member that is no user: %d %v", st, out)
	}
	// beta's records are not acme's.
	if st, _ := b.call("beta", "GET", "/Groups/"+gid, ""); st != 404 {
		t.Errorf("acme's group seen from beta: %d", st)
	}
	if st, _ := b.call("beta", "DELETE", "/Users/"+id, ""); st != 404 {
		t.Errorf("acme's user deleted from beta: %d", st)
	}

	// DELETE revokes.
	if st, _ := b.call("acme", "DELETE", "/Users/"+id, ""); st != 204 {
		t.Fatal("delete")
	}
	if m := b.membership("acme", "sub-alice"); m.Status != store.MembershipRevoked {
		t.Errorf("after delete: %+v", m)
	}
	if m := b.membership("beta", "sub-alice"); m == nil || m.Status != store.MembershipActive {
		t.Errorf("beta's membership after acme's delete: %+v", m)
	}
}

func TestProvisioningStaysWithinItsBounds(t *testing.T) {
	b := newBed(t, config.SCIM{}, nil)
	ctx := context.Background()
	// A partner's membership is not the directory's to take over.
	if _, err := b.orgs.Grant(ctx, store.Membership{Org: "acme", User: store.UserKey(issuer, "sub-pat"), Kind: store.KindPartner,
		Roles: []string{"viewer"}, ExpiresAt: time.Now().Add(30 * 24 * time.Hour)}, actor, "test"); err != nil {
		t.Fatal(err)
	}
	if st, out := b.call("acme", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"pat@partner.example","externalId":"sub-pat"}`); st != 400 {
		t.Errorf("taking over a partner: %d %v", st, out)
	}
	if m := b.membership("acme", "sub-pat"); m.Kind != store.KindPartner || m.Status != store.MembershipActive {
		t.Errorf("the partner's membership changed: %+v", m)
	}
	if us, _ := b.st.SCIMUsers(ctx, "acme"); len(us) != 0 {
		t.Errorf("a refused create left a record: %v", us)
	}

	// With two providers for the organisation, a subject names no one person: refused.
	two := newBed(t, config.SCIM{}, []config.OIDCProvider{{Name: "default", Issuer: issuer, Shared: true}, {Name: "other", Issuer: "https://other.example", Shared: true}})
	if st, out := two.call("acme", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a@acme.example","externalId":"sub-a"}`); st != 400 ||
		!strings.Contains(out["detail"].(string), "providers") {
		t.Errorf("ambiguous provider: %d %v", st, out)
	}
	// Listing one makes its persons the users.
	if _, err := two.orgs.SetOrgProviders(ctx, "acme", []string{"other"}, actor, "test"); err != nil {
		t.Fatal(err)
	}
	two.create("acme", "a@acme.example", "sub-a")
	if _, m, _ := two.st.Lookup(ctx, "acme", store.UserKey("https://other.example", "sub-a")); m == nil {
		t.Error("the user is not the listed provider's person")
	}

	// Through the shared provider, beta's directory may name acme's people too: deactivating
	// its own user refuses them at beta, but does not end their sessions, which are acme's
	// as much as beta's.
	shared := newBed(t, config.SCIM{}, []config.OIDCProvider{{Name: "default", Issuer: issuer, Shared: true}})
	id := shared.create("beta", "alice@acme.example", "sub-alice")
	if st, _ := shared.call("beta", "PATCH", "/Users/"+id, patchOp+`[{"op":"replace","path":"active","value":false}]}`); st != 200 {
		t.Fatal("deactivate")
	}
	if m := shared.membership("beta", "sub-alice"); m.Status != store.MembershipSuspended || len(shared.ended) != 0 {
		t.Errorf("through the shared provider: %+v, sessions ended %v", m, shared.ended)
	}
	// A user created inactive ends nobody's sessions either.
	if st, out := shared.call("beta", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"z@beta.example","externalId":"sub-z","active":false}`); st != 201 || len(shared.ended) != 0 {
		t.Errorf("created inactive: %d %v, ended %v", st, out, shared.ended)
	}
}

func TestStatusFollowsActiveOnly(t *testing.T) {
	b := newBed(t, config.SCIM{}, nil)
	ctx := context.Background()
	id := b.create("acme", "alice@acme.example", "sub-alice")
	// An administrator suspends her; the directory edits her name: she stays suspended.
	if _, err := b.orgs.ChangeMembership(ctx, "acme", store.UserKey(issuer, "sub-alice"), func(m *store.Membership) error {
		m.Status = store.MembershipSuspended
		return nil
	}, actor, "investigation"); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.call("acme", "PATCH", "/Users/"+id, patchOp+`[{"op":"replace","path":"displayName","value":"Alice E."}]}`); st != 200 {
		t.Fatal("edit")
	}
	if m := b.membership("acme", "sub-alice"); m.Status != store.MembershipSuspended {
		t.Errorf("an edit undid the suspension: %+v", m)
	}
	// Deactivated by the directory, a PUT without active, or removing active, keeps her so.
	if st, _ := b.call("acme", "PATCH", "/Users/"+id, patchOp+`[{"op":"replace","path":"active","value":false}]}`); st != 200 {
		t.Fatal("deactivate")
	}
	if st, out := b.call("acme", "PUT", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice@acme.example","externalId":"sub-alice"}`); st != 200 || out["active"] != false {
		t.Errorf("PUT without active: %d %v", st, out)
	}
	if st, out := b.call("acme", "PATCH", "/Users/"+id, patchOp+`[{"op":"remove","path":"active"}]}`); st != 200 || out["active"] != false {
		t.Errorf("remove active: %d %v", st, out)
	}
	// After a second provider is listed, the directory still deactivates and deletes its
	// users: their persons are bound already.
	id2 := b.create("acme", "bob@acme.example", "sub-bob")
	if _, err := b.orgs.SetOrgProviders(ctx, "acme", []string{"acme-idp", "another"}, actor, "test"); err != nil {
		t.Fatal(err)
	}
	if st, out := b.call("acme", "PATCH", "/Users/"+id2, patchOp+`[{"op":"replace","path":"active","value":false}]}`); st != 200 {
		t.Errorf("deactivate with two providers: %d %v", st, out)
	}
	// DELETE revokes the directory's memberships only.
	if _, err := b.orgs.ChangeMembership(ctx, "acme", store.UserKey(issuer, "sub-bob"), func(m *store.Membership) error {
		m.Kind = store.KindPartner
		m.ExpiresAt = time.Now().Add(30 * 24 * time.Hour)
		return nil
	}, actor, "now a partner"); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.call("acme", "DELETE", "/Users/"+id2, ""); st != 204 {
		t.Fatal("delete")
	}
	if m := b.membership("acme", "sub-bob"); m.Status == store.MembershipRevoked || m.Kind != store.KindPartner {
		t.Errorf("DELETE revoked a membership the directory does not manage: %+v", m)
	}
}

func TestDirectoryNeedsWhatOneAdministratorMayGrant(t *testing.T) {
	b := newBed(t, config.SCIM{}, nil)
	if _, err := b.orgs.SetOrgPolicy(context.Background(), "acme", &store.OrgPolicy{Kinds: map[string]store.KindLimits{"employee": {ApprovalsRequired: 2}}}, actor, "four eyes"); err != nil {
		t.Fatal(err)
	}
	if st, out := b.call("acme", "POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"a@acme.example","externalId":"sub-a"}`); st != 400 {
		t.Errorf("a kind needing two approvals: %d %v", st, out)
	}
	if m := b.membership("acme", "sub-a"); m != nil {
		t.Errorf("membership written: %+v", m)
	}
}

func TestTokens(t *testing.T) {
	b := newBed(t, config.SCIM{}, nil)
	ctx := context.Background()
	// An admin API token, even an operator's, is no SCIM token.
	opTok, _, err := b.orgs.CreateToken(ctx, store.Token{Name: "op", Owner: actor, Operator: true, Expires: time.Now().Add(time.Hour)}, actor, "test")
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"operator token": opTok, "beta's token": b.tokens["beta"], "none": "", "garbage": "Basic abc"} {
		req, _ := http.NewRequest("GET", b.srv.URL+"/scim/v2/acme/Users", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || strings.Contains(string(body), "beta") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/scim/v2/", "/scim/v2/Acme/Users", "/scim/v2/../admin"} {
		resp, err := http.Get(b.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 401 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	// The service provider's own description needs the token too, and says what it supports.
	st, out := b.call("acme", "GET", "/ServiceProviderConfig", "")
	if st != 200 || out["patch"].(map[string]any)["supported"] != true || out["filter"].(map[string]any)["supported"] != true {
		t.Errorf("ServiceProviderConfig: %d %v", st, out)
	}
}

// PATCH forms that must not damage the record: a sub-attribute of a multi-valued attribute
// without a filter, an extension given as one object, an empty list of members to remove, and
// a group renamed (its members' roles follow).
func TestPatchFormsKeepTheRecordWhole(t *testing.T) {
	b := newBed(t, config.SCIM{GroupRoles: map[string]string{"Admins": "admin"}}, nil)
	id := b.create("acme", "alice@acme.example", "sub-alice")
	for _, body := range []string{
		patchOp + `[{"op":"replace","path":"emails.type","value":"home"}]}`,
		patchOp + `[{"op":"replace","value":{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Sales"}}}]}`,
	} {
		if st, out := b.call("acme", "PATCH", "/Users/"+id, body); st != 200 {
			t.Fatalf("%s: %d %v", body, st, out)
		}
	}
	_, got := b.call("acme", "GET", "/Users/"+id, "")
	emails, _ := got["emails"].([]any)
	ext, _ := got["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"].(map[string]any)
	if len(emails) != 1 || emails[0].(map[string]any)["type"] != "home" || emails[0].(map[string]any)["value"] != "alice@acme.example" || ext["department"] != "Sales" {
		t.Errorf("after the patches: %v", got)
	}
	st, out := b.call("acme", "POST", "/Groups", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Admins","members":[{"value":"`+id+`"}]}`)
	if st != 201 {
		t.Fatalf("group: %d %v", st, out)
	}
	gid := out["id"].(string)
	if st, _ := b.call("acme", "PATCH", "/Groups/"+gid, patchOp+`[{"op":"remove","path":"members","value":[]}]}`); st != 204 {
		t.Fatal("remove nothing")
	}
	if g, _ := b.st.SCIMGroup(context.Background(), "acme", gid); len(g.Members) != 1 {
		t.Errorf("an empty removal removed members: %+v", g)
	}
	if m := b.membership("acme", "sub-alice"); !strings.Contains(strings.Join(m.Roles, ","), "admin") {
		t.Fatalf("roles in Admins: %v", m.Roles)
	}
	// Okta's rename: a value with the group's id and its new name.
	if st, _ := b.call("acme", "PATCH", "/Groups/"+gid, patchOp+`[{"op":"replace","value":{"id":"`+gid+`","displayName":"Former admins"}}]}`); st != 204 {
		t.Fatal("rename")
	}
	if m := b.membership("acme", "sub-alice"); strings.Contains(strings.Join(m.Roles, ","), "admin") {
		t.Errorf("roles after the rename: %v", m.Roles)
	}
	// An id in the value changes no id (the library drops it: ids are the server's).
	if st, _ := b.call("acme", "PATCH", "/Groups/"+gid, patchOp+`[{"op":"replace","value":{"id":"someone-else","displayName":"x"}}]}`); st/100 == 2 {
		if st, out := b.call("acme", "GET", "/Groups/"+gid, ""); st != 200 || out["id"] != gid {
			t.Errorf("after a value naming another id: %d %v", st, out)
		}
	}
}

// A directory ends the sessions only of its own provider's people: a provider bound to its
// organisation, or listed by it alone. Through a provider two organisations list, acme's
// directory suspends alice at acme but leaves her sessions, which are beta's too.
func TestSessionsEndOnlyForTheOrganisationsOwnProvider(t *testing.T) {
	for _, tc := range []struct {
		name      string
		providers []config.OIDCProvider
		listedBy  []string
		ends      bool
	}{
		{"listed by acme alone", []config.OIDCProvider{{Name: "acme-idp", Issuer: issuer}}, []string{"acme"}, true},
		{"bound to acme", []config.OIDCProvider{{Name: "acme-idp", Issuer: issuer, Org: "acme"}}, []string{"acme"}, true},
		{"listed by acme and beta", []config.OIDCProvider{{Name: "acme-idp", Issuer: issuer}}, []string{"acme", "beta"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBed(t, config.SCIM{}, tc.providers)
			for _, org := range tc.listedBy {
				if _, err := b.orgs.SetOrgProviders(context.Background(), org, []string{"acme-idp"}, actor, "test"); err != nil {
					t.Fatal(err)
				}
			}
			id := b.create("acme", "alice@acme.example", "sub-alice")
			if st, _ := b.call("acme", "PATCH", "/Users/"+id, patchOp+`[{"op":"replace","path":"active","value":false}]}`); st != 200 {
				t.Fatalf("deactivate: %d", st)
			}
			if m := b.membership("acme", "sub-alice"); m.Status != store.MembershipSuspended {
				t.Fatalf("membership %+v", m)
			}
			if got := len(b.ended) == 1; got != tc.ends {
				t.Errorf("sessions ended %v, want ended: %v", b.ended, tc.ends)
			}
		})
	}
}
