package main

// End-to-end tests of SCIM provisioning (issue 16) through the real binary: two replicas over
// one redis-server, devidp for sign-in, and a directory driven like Entra ID's and Okta's
// provisioning, replaying the request sequences of their public documentation
// (scim/testdata/sequences.json).

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/store"
)

type scimStep struct {
	Name   string          `json:"name"`
	Method string          `json:"method"`
	Path   string          `json:"path"`
	Body   json.RawMessage `json:"body"`
	Expect int             `json:"expect"`
}

// scimClient is a directory calling one organisation's SCIM endpoint with a token.
type scimClient struct {
	t     *testing.T
	c     *http.Client
	base  string // https://admin-listener/scim/v2/{org}
	token string
	vars  map[string]string
}

func (sc *scimClient) call(method, path string, body []byte) (int, map[string]any) {
	sc.t.Helper()
	for k, v := range sc.vars {
		path = strings.ReplaceAll(path, "{{"+k+"}}", v)
		body = []byte(strings.ReplaceAll(string(body), "{{"+k+"}}", v))
	}
	var rd io.Reader
	if len(body) > 0 && string(body) != "null" {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequest(method, sc.base+path, rd)
	if err != nil {
		sc.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sc.token)
	req.Header.Set("Content-Type", "application/scim+json")
	resp, err := sc.c.Do(req)
	if err != nil {
		sc.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

// replay runs steps, stopping after the step named stop (all when ""), and records the ids
// the server assigns.
func (sc *scimClient) replay(steps []scimStep, from, stop string) {
	sc.t.Helper()
	started := from == ""
	for _, s := range steps {
		if !started {
			started = s.Name == from
			if !started {
				continue
			}
		}
		status, out := sc.call(s.Method, s.Path, s.Body)
		want := s.Expect
		// A group's PATCH answers 204 (Entra ID's expectation; Okta's documentation
		// shows 200 and accepts 204).
		if s.Method == "PATCH" && strings.HasPrefix(s.Path, "/Groups/") && want == 200 {
			want = 204
		}
		if status != want {
			sc.t.Fatalf("%s (%s %s): %d %v, want %d", s.Name, s.Method, s.Path, status, out, want)
		}
		if s.Method == "POST" && status == 201 {
			key := "user_id"
			if strings.HasPrefix(s.Path, "/Groups") {
				key = "group_id"
			}
			sc.vars[key], _ = out["id"].(string)
		}
		if s.Name == stop {
			return
		}
	}
}

func loadSCIMSequences(t *testing.T) map[string][]scimStep {
	b, err := os.ReadFile("../../scim/testdata/sequences.json")
	if err != nil {
		t.Fatal(err)
	}
	var seqs map[string][]scimStep
	if err := json.Unmarshal(b, &seqs); err != nil {
		t.Fatal(err)
	}
	return seqs
}

// stepNamed returns the name of the first step of seq whose method is method and whose path
// and body contain the given strings: the tests stop the replay there.
func stepNamed(t *testing.T, seq []scimStep, method, path, body string) string {
	for _, s := range seq {
		if s.Method == method && strings.Contains(s.Path, path) && strings.Contains(string(s.Body), body) {
			return s.Name
		}
	}
	t.Fatalf("no %s %s step with %q", method, path, body)
	return ""
}

func TestE2ESCIM(t *testing.T) {
	seqs := loadSCIMSequences(t)
	admins := []string{freePort(t), freePort(t)}
	b := newAZBedWith(t, azOptions{extra: func(b *azBed, i int) string {
		return fmt.Sprintf(`admin_api:
  listen: %s
scim:
  enabled: true
  group_roles: {"Portal Admins": admin}
`, admins[i])
	}, ownProvider: true, users: []devidp.User{
		{Subject: "alice-entra-oid-0001", Username: "scim-alice", Password: "pw-scim-alice", Email: "alice@acme.example", EmailVerified: true},
		{Subject: "00u1alice", Username: "okta-alice", Password: "pw-okta-alice", Email: "alice@acme.example", EmailVerified: true},
	}})
	ctx := context.Background()
	// acme signs its people in through its own provider, which it alone lists: its directory
	// then ends their sessions too. beta lists none, and has a directory token all the same.
	if _, err := b.orgs.SetOrgProviders(ctx, "acme", []string{"customer-idp"}, azActor, "e2e"); err != nil {
		t.Fatal(err)
	}
	tokenFor := func(org string) string {
		secret, _, err := b.orgs.CreateToken(ctx, store.Token{Name: org + " directory", Owner: store.SCIMOwner(org), Org: org, SCIM: true,
			Expires: time.Now().Add(24 * time.Hour)}, azActor, "e2e")
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	acmeTok, betaTok := tokenFor("acme"), tokenFor("beta")
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	client := func(t *testing.T, replica int, org, tok string) *scimClient {
		return &scimClient{t: t, c: hc, base: "https://" + admins[replica] + "/scim/v2/" + org, token: tok, vars: map[string]string{}}
	}
	p1, p2 := b.px[0], b.px[1]
	person := store.UserKey(b.idp.URL, "alice-entra-oid-0001")

	// until polls both replicas until want holds for path (the invalidation reaches each
	// within its delay), failing after 5 s.
	until := func(t *testing.T, c *azClient, path string, want func(*azResp) bool, what string) {
		t.Helper()
		for _, px := range []*azProxy{p1, p2} {
			deadline := time.Now().Add(5 * time.Second)
			for {
				r := c.api(px, path)
				if want(r) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s on %s: %d %s", what, px.name, r.status, r.body)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}

	t.Run("Entra ID's sequence provisions, elevates, deactivates and deletes access", func(t *testing.T) {
		entra := seqs["entra"]
		sc := client(t, 0, "acme", acmeTok)
		addMember := stepNamed(t, entra, "PATCH", "/Groups/", `"Add"`)
		sc.replay(entra, "", addMember)
		alice := b.newClient()
		alice.signIn(p1, "scim-alice")
		// The user is a member; in Portal Admins, an administrator: on both replicas.
		until(t, alice, "/orgs/acme/x", func(r *azResp) bool { return r.status == 200 }, "member after create")
		until(t, alice, "/admin/acme/x", func(r *azResp) bool { return r.status == 200 }, "admin through the group")
		_, m, err := b.st.Lookup(ctx, "acme", person)
		if err != nil || m == nil || m.GrantedBy == "" || !strings.HasPrefix(m.GrantedBy, "scim:acme:") || m.Kind != store.KindEmployee {
			t.Fatalf("membership %+v %v", m, err)
		}
		// Removed from the group (the other replica's listener): no longer an admin.
		sc2 := client(t, 1, "acme", acmeTok)
		sc2.vars = sc.vars
		sc2.replay(entra, stepNamed(t, entra, "PATCH", "/Groups/", `"Remove"`), stepNamed(t, entra, "PATCH", "/Groups/", `"Remove"`))
		until(t, alice, "/admin/acme/x", func(r *azResp) bool { return r.status == 403 }, "admin after the group removal")
		until(t, alice, "/orgs/acme/x", func(r *azResp) bool { return r.status == 200 }, "member after the group removal")
		// active "False": the membership is suspended and the sessions end.
		deactivate := stepNamed(t, entra, "PATCH", "/Users/", `"active"`)
		sc.replay(entra, deactivate, deactivate)
		until(t, alice, "/.portcullis/whoami", func(r *azResp) bool { return r.status == 401 }, "session after deactivation")
		if _, m, _ := b.st.Lookup(ctx, "acme", person); m == nil || m.Status != store.MembershipSuspended {
			t.Fatalf("after active false: %+v", m)
		}
		// Signing in again reaches nothing of acme's while suspended.
		alice.signIn(p2, "scim-alice")
		until(t, alice, "/orgs/acme/x", func(r *azResp) bool { return r.status == 403 && r.reason() == "membership_suspended" }, "suspended member")
		// Reactivated (the body Entra ID sends, with the boolean), then deleted.
		if st, out := sc.call("PATCH", "/Users/{{user_id}}", []byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":true}]}`)); st != 200 || out["active"] != true {
			t.Fatalf("reactivate: %d %v", st, out)
		}
		until(t, alice, "/orgs/acme/x", func(r *azResp) bool { return r.status == 200 }, "member after reactivation")
		sc.replay(entra, stepNamed(t, entra, "DELETE", "/Users/", ""), "")
		until(t, alice, "/.portcullis/whoami", func(r *azResp) bool { return r.status == 401 }, "session after delete")
		alice.signIn(p1, "scim-alice")
		until(t, alice, "/orgs/acme/x", func(r *azResp) bool { return r.status == 403 && r.reason() == "membership_revoked" }, "member after delete")
		// Every change is in the audit trail with the directory as the actor.
		evs, _, err := b.aud.Before(ctx, "", 500)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range evs {
			if e.Org == "acme" && strings.HasPrefix(e.Actor, "scim:acme:") {
				seen[string(e.Type)] = true
			}
		}
		for _, typ := range []string{"scim.user_created", "scim.user_changed", "scim.user_deleted", "scim.group_created", "scim.group_changed",
			"membership.granted", "membership.changed", "membership.revoked"} {
			if !seen[typ] {
				t.Errorf("no %s event by the directory (saw %v)", typ, seen)
			}
		}
	})

	t.Run("Okta's sequence", func(t *testing.T) {
		sc := client(t, 1, "acme", acmeTok)
		sc.replay(seqs["okta"], "", "")
		if _, m, _ := b.st.Lookup(ctx, "acme", store.UserKey(b.idp.URL, "00u1alice")); m == nil || m.Status != store.MembershipSuspended {
			t.Errorf("after Okta's deactivation: %+v", m)
		}
	})

	t.Run("a token reaches its own organisation only, and only SCIM", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			c    *scimClient
		}{
			{"beta's token at acme", client(t, 0, "acme", betaTok)},
			// (acme holds Okta's deactivated user: what follows must add none.)
			{"acme's token at beta", client(t, 0, "beta", acmeTok)},
			{"no token", client(t, 0, "acme", "")},
			{"a forged token", client(t, 0, "acme", acmeTok[:len(acmeTok)-4]+"aaaa")},
		} {
			for _, req := range []struct{ method, path, body string }{
				{"GET", "/Users", ""},
				{"POST", "/Users", `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"x@acme.example","externalId":"x"}`},
			} {
				if st, _ := tc.c.call(req.method, req.path, []byte(req.body)); st != 401 {
					t.Errorf("%s: %s %s answered %d", tc.name, req.method, req.path, st)
				}
			}
		}
		us, _ := b.st.SCIMUsers(ctx, "acme")
		for _, u := range us {
			if u.UserName == "x@acme.example" {
				t.Errorf("a refused request made a user: %+v", u)
			}
		}
		if len(us) > 1 {
			t.Errorf("acme has users after the refusals: %v", us)
		}
		// A SCIM token is no admin API credential.
		req, _ := http.NewRequest("GET", "https://"+admins[0]+"/api/v1/whoami", nil)
		req.Header.Set("Authorization", "Bearer "+acmeTok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("SCIM token at the admin API: %d", resp.StatusCode)
		}
		// A revoked token stops at once.
		if _, err := b.orgs.RevokeToken(ctx, strings.Split(strings.TrimPrefix(betaTok, store.TokenPrefix), "_")[0], azActor, "rotated"); err != nil {
			t.Fatal(err)
		}
		if st, _ := client(t, 0, "beta", betaTok).call("GET", "/Users", nil); st != 401 {
			t.Errorf("revoked token: %d", st)
		}
	})
}
