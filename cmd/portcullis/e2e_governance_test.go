package main

// End-to-end test of governance (issue 13) through the real binary: the administration API
// on process 1's admin listener, the lifecycle policy enforced by both processes, a bearer
// operator JWT from the provider's client_credentials grant, and the first operator token
// made by `portcullis admin token create` against the same Redis.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/getkin/kin-openapi/openapi3"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/store"
)

// govAPI calls the administration API of one process.
type govAPI struct {
	t    *testing.T
	base string
	c    *http.Client
}

type govAnswer struct {
	status int
	body   map[string]any
	raw    string
}

func (a govAnswer) code() string { s, _ := a.body["error"].(string); return s }

func (g *govAPI) call(token, method, path string, body any) govAnswer {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			g.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, g.base+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.c.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := govAnswer{status: resp.StatusCode, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && !strings.HasPrefix(ct, "application/problem+json") {
		g.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		g.t.Errorf("%s %s: not JSON: %s", method, path, raw)
	}
	return a
}

// want fails the test unless the answer has the status and (for a refusal) the code.
func (g *govAPI) want(a govAnswer, status int, code string) govAnswer {
	g.t.Helper()
	if a.status != status || code != "" && a.code() != code {
		g.t.Fatalf("got %d %s, want %d %s", a.status, a.raw, status, code)
	}
	return a
}

// hookReceiver is a chat or ticket system's webhook endpoint: it keeps the deliveries whose
// Standard Webhooks signature verifies under key, and counts the others.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	events map[string]audit.Event // by webhook-id
	forged int
}

func newHookReceiver(t *testing.T, key []byte) *hookReceiver {
	h := &hookReceiver{events: map[string]audit.Event{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		id, ts := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp")
		m := hmac.New(sha256.New, key)
		m.Write([]byte(id + "." + ts + "." + string(body)))
		var p struct {
			Type audit.Type  `json:"type"`
			Data audit.Event `json:"data"`
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if r.Header.Get("webhook-signature") != "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)) || json.Unmarshal(body, &p) != nil {
			h.forged++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.events[id] = p.Data
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

// find returns the delivered event that ok accepts, waiting up to 5s for it.
func (h *hookReceiver) find(t *testing.T, what string, ok func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		for _, e := range h.events {
			if ok(e) {
				h.mu.Unlock()
				return e
			}
		}
		h.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s was not delivered to the webhook", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestE2EGovernance(t *testing.T) {
	t.Parallel()
	adminListen := freePort(t)
	hookKey := []byte("e2e webhook signing key, 32 bytes or more")
	hook := newHookReceiver(t, hookKey)
	hookSecret := filepath.Join(t.TempDir(), "hook-secret")
	writeFile(t, hookSecret, string(hookKey))
	b := newAZBedWith(t, azOptions{
		clients: []devidp.Client{
			{ID: "ops-console", Secret: "ops-secret", ClientCredentials: true, JWTAccessTokens: true,
				Audience: []string{"portcullis-admin"}, Claims: map[string]any{"roles": []string{"portcullis-operator"}}},
			// The same provider's token for another audience: never an operator.
			{ID: "billing-job", Secret: "billing-secret", ClientCredentials: true, JWTAccessTokens: true,
				Audience: []string{"billing"}, Claims: map[string]any{"roles": []string{"portcullis-operator"}}},
		},
		extra: func(b *azBed, i int) string {
			// Employees' requests need an administrator of the organisation and an operator;
			// admin is privileged: held only through an approved, time-boxed request.
			s := fmt.Sprintf(`lifecycle:
  kinds:
    employee: {approvers: [org_admin, operator], approvals_required: 2}
  privileged_roles:
    admin: {max_elevation: 1h}
notifications:
  webhooks:
    - name: approvals
      url: %s
      secret_file: %s
      events: [request.*, business.*]
`, hook.URL, hookSecret)
			if i == 0 {
				s += fmt.Sprintf(`admin_api:
  listen: %s
  operators:
    issuer: %s
    audience: portcullis-admin
    ca_root_file: %s
`, adminListen, b.idp.URL, b.ca)
			}
			return s
		},
	})
	p1, p2 := b.px[0], b.px[1]
	if l := p1.proc.waitLog(t, "portcullis serving", 10*time.Second); l["admin_listen"] != adminListen {
		t.Fatalf("serving log %v, want admin_listen %s", l, adminListen)
	}
	api := &govAPI{t: t, base: "https://" + adminListen, c: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	bobKey, erinKey, aliceKey := b.user("sub-bob"), b.user("sub-erin"), b.user("sub-alice")

	// The first tokens come from the command line, straight to Redis: the first operator's,
	// and the people's (through the API, everyone makes only their own).
	cliToken := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append([]string{"admin", "token", "create", "--break-glass", "--config", b.cfgs[0], "--actor", "olga", "--name", "e2e",
			"--lifetime", "1d", "--reason", "install", "--json"}, args...)
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("admin token create: %d %s", code, errOut.String())
		}
		var made struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal(out.Bytes(), &made); err != nil || made.Token == "" {
			t.Fatalf("admin token create: %v %s", err, out.String())
		}
		return made.Token
	}
	olga := cliToken("--owner", "ops|olga", "--operator")

	// The operators' console signs in with client credentials: a JWT for the API's audience.
	jwtFor := func(id, secret string) string {
		t.Helper()
		ctx := oidc.ClientContext(context.Background(), b.idp.HTTP.Client())
		p, err := oidc.NewProvider(ctx, b.idp.URL)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := (&clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: p.Endpoint().TokenURL}).Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	console := jwtFor("ops-console", "ops-secret")
	consoleName := store.UserKey(b.idp.URL, "ops-console")

	t.Run("credentials", func(t *testing.T) {
		api.t = t
		api.want(api.call("", "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
		api.want(api.call("pcadm_forged_token", "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
		api.want(api.call(jwtFor("billing-job", "billing-secret"), "GET", "/api/v1/whoami", nil), 401, "unauthenticated")
		if a := api.want(api.call(olga, "GET", "/api/v1/whoami", nil), 200, ""); a.body["name"] != "ops|olga" || a.body["operator"] != true {
			t.Errorf("whoami with the bootstrap token: %s", a.raw)
		}
		if a := api.want(api.call(console, "GET", "/api/v1/whoami", nil), 200, ""); a.body["name"] != consoleName || a.body["via"] != "jwt "+b.idp.URL {
			t.Errorf("whoami with the console's JWT: %s", a.raw)
		}
		// The proxy's own listeners do not serve the API.
		c := b.newClient()
		if r := c.api(p1, "/api/v1/whoami"); r.status == 200 && strings.Contains(r.body, `"operator"`) {
			t.Errorf("the main listener answered the admin API: %s", r.body)
		}
		// The document describes what is served, and is a valid OpenAPI 3 document.
		resp, err := api.c.Get(api.base + "/api/v1/openapi.json")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		doc, err := openapi3.NewLoader().LoadFromData(raw)
		if err != nil {
			t.Fatal(err)
		}
		if err := doc.Validate(context.Background()); err != nil {
			t.Errorf("openapi.json: %v", err)
		}
		if doc.Paths.Find("/api/v1/orgs/{org}/requests/{id}/approve") == nil {
			t.Error("openapi.json lacks the approve endpoint")
		}
	})
	api.t = t

	// erin becomes acme's administrator; personal tokens for the people of the story.
	api.want(api.call(olga, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": erinKey, "kind": "employee",
		"roles": []string{"user", "org-admin"}, "reason": "acme's new IT lead (TICKET-7)"}), 200, "")
	erin, bobTok, alice := cliToken("--owner", erinKey, "--org", "acme"), cliToken("--owner", bobKey), cliToken("--owner", aliceKey)
	// The console cannot make a token that acts as someone else.
	api.want(api.call(console, "POST", "/api/v1/tokens", map[string]any{"name": "x", "lifetime": "1d", "reason": "x"}), 403, "not_permitted")

	t.Run("policy refuses what outlives it", func(t *testing.T) {
		api.t = t
		// Partners end within a year: 400 days is refused, naming the rule.
		a := api.want(api.call(erin, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": b.user("sub-mallory"), "kind": "partner",
			"roles": []string{"user"}, "expires_at": time.Now().Add(400 * 24 * time.Hour), "reason": "integration partner"}), 422, "policy_violation")
		if d, _ := a.body["message"].(string); !strings.Contains(d, "lifecycle.kinds.partner.max_duration") || !strings.Contains(d, "400d") {
			t.Errorf("policy_violation does not name the rule: %s", a.raw)
		}
		// erin's token is acme's: beta is out of its reach.
		api.want(api.call(erin, "GET", "/api/v1/orgs/beta/members", nil), 403, "not_permitted")
		// alice administers nothing.
		api.want(api.call(alice, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")
		// An administrator grants herself nothing; nor anyone a standing privileged role.
		api.want(api.call(erin, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": erinKey, "kind": "employee",
			"roles": []string{"user", "org-admin", "admin"}, "reason": "shortcut"}), 403, "not_permitted")
		api.want(api.call(olga, "POST", "/api/v1/orgs/acme/members", map[string]any{"user": aliceKey, "kind": "employee",
			"roles": []string{"user", "admin"}, "reason": "shortcut"}), 422, "policy_violation")
	})
	api.t = t

	// bob's standing admin role no longer counts on either process.
	bob := b.newClient()
	bob.signIn(p1, "bob")
	for _, px := range b.px {
		if r := bob.api(px, "/admin/acme/users"); r.status != 403 || r.reason() != "role_requires_request" {
			t.Fatalf("bob's standing admin role via %s: %d %s", px.name, r.status, r.body)
		}
		if s := bob.api(px, "/orgs/acme/home").seen(); s == nil || !azHas(s, "X-Portcullis-Roles", "user") {
			t.Fatalf("bob's roles via %s: %+v", px.name, s)
		}
	}

	// He asks for admin for a few seconds; the request needs two different approvers.
	const elevation = 6 * time.Second
	req := api.want(api.call(bobTok, "POST", "/api/v1/orgs/acme/requests", map[string]any{"role": "admin", "duration": elevation.String(),
		"reason": "rotate the SSO certificate (CHG-42)"}), 201, "")
	id := req.body["id"].(string)
	path := "/api/v1/orgs/acme/requests/" + id
	// The approvers' chat hears of it, signed, from one of the two processes.
	hook.find(t, "bob's request", func(e audit.Event) bool {
		return e.Type == audit.RequestCreated && e.Detail["request"] == id && e.Actor == bobKey
	})
	api.want(api.call(bobTok, "POST", path+"/approve", map[string]string{"reason": "mine"}), 403, "self_approval")
	// alice may not approve, nor even see, another person's request.
	api.want(api.call(alice, "POST", path+"/approve", map[string]string{"reason": "looks fine"}), 404, "not_found")
	api.want(api.call("", "POST", path+"/approve", map[string]string{"reason": "x"}), 401, "unauthenticated")
	if a := api.want(api.call(erin, "POST", path+"/approve", map[string]string{"reason": "planned change"}), 200, ""); a.body["state"] != "pending" {
		t.Fatalf("after one approval: %s", a.raw)
	}
	api.want(api.call(erin, "POST", path+"/approve", map[string]string{"reason": "again"}), 409, "approval_duplicate")
	if r := bob.api(p2, "/admin/acme/users"); r.status != 403 {
		t.Fatalf("a half-approved request let bob in: %d %s", r.status, r.body)
	}
	a := api.want(api.call(console, "POST", path+"/approve", map[string]string{"reason": "CHG-42 approved"}), 200, "")
	until, err := time.Parse(time.RFC3339Nano, fmt.Sprint(a.body["granted_until"]))
	if a.body["state"] != "approved" || err != nil {
		t.Fatalf("after the second approval: %s (%v)", a.raw, err)
	}
	if d := time.Until(until); d > elevation || d < elevation-3*time.Second {
		t.Errorf("granted until %v, %v from now; want about %v", until, d, elevation)
	}

	// Both processes let him in as soon as the change's invalidation reaches them, with the
	// role named to the portal, and refuse him again when the grant ends, with no change
	// written: the end is a fact of every decision.
	for _, px := range b.px {
		var r *azResp
		for {
			r = bob.api(px, "/admin/acme/users")
			if r.status == 200 || time.Now().After(until) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if r.status != 200 || r.seen() == nil {
			t.Fatalf("bob during his elevation via %s: %d %s", px.name, r.status, r.body)
		}
		if !azHas(r.seen(), "X-Portcullis-Roles", "admin,user") {
			t.Errorf("roles during the elevation via %s: %v", px.name, r.seen().Header)
		}
	}
	for _, px := range b.px {
		for time.Now().Before(until) {
			time.Sleep(time.Until(until))
		}
		if r := bob.api(px, "/admin/acme/users"); r.status != 403 || r.reason() != "role_requires_request" {
			t.Errorf("bob after his elevation via %s: %d %s", px.name, r.status, r.body)
		}
	}
	if a := api.want(api.call(bobTok, "GET", path, nil), 200, ""); a.body["effective_state"] != "ended" {
		t.Errorf("the request after its grant: %s", a.raw)
	}
	// Withdrawing or approving it again does nothing.
	api.want(api.call(bobTok, "POST", path+"/cancel", map[string]string{"reason": "x"}), 409, "request_not_pending")

	// The trail names every individual and the credential they used.
	evs, _, err := b.aud.Tail(context.Background(), "0", 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	var approved, granted, created *audit.Event
	for i := range evs {
		e := &evs[i]
		switch {
		case e.Type == audit.RequestCreated && e.Detail["request"] == id:
			created = e
		case e.Type == audit.RequestApproved && e.Detail["request"] == id:
			approved = e
		case e.Type == audit.RequestGranted && e.Detail["request"] == id:
			granted = e
		}
	}
	switch {
	case created == nil || created.Actor != bobKey || !strings.HasPrefix(created.Via, "token "):
		t.Errorf("request.created %+v", created)
	case approved == nil || approved.Actor != erinKey || !strings.HasPrefix(approved.Via, "token ") || approved.Reason != "planned change":
		t.Errorf("request.approved %+v", approved)
	case granted == nil || granted.Actor != consoleName || granted.Via != "jwt "+b.idp.URL || granted.User != bobKey:
		t.Errorf("request.granted %+v", granted)
	}

	t.Run("access review", func(t *testing.T) {
		api.t = t
		// erin reviews acme: bob is kept, her own item is an operator's to keep, alice's is
		// left undecided and stops granting at the deadline on both processes, with nothing
		// running then; a late keep gives it back.
		alice := b.newClient()
		alice.signIn(p1, "alice")
		deadline := time.Now().Add(4 * time.Second)
		rv := api.want(api.call(erin, "POST", "/api/v1/orgs/acme/reviews", map[string]any{"deadline": deadline, "reason": "quarterly review"}), 201, "")
		path := "/api/v1/orgs/acme/reviews/" + rv.body["id"].(string)
		keep := func(token, user string) govAnswer {
			return api.call(token, "POST", path+"/decide", map[string]any{"user": user, "decision": "keep", "reason": "still on the team"})
		}
		api.want(keep(erin, erinKey), 403, "self_approval")
		api.want(keep(console, erinKey), 200, "")
		api.want(keep(erin, bobKey), 200, "")
		for _, px := range b.px {
			if r := alice.api(px, "/orgs/acme/home"); r.status != 200 {
				t.Fatalf("alice via %s before the deadline: %d %s", px.name, r.status, r.body)
			}
		}
		time.Sleep(time.Until(deadline))
		for _, px := range b.px {
			if r := alice.api(px, "/orgs/acme/home"); r.status != 403 || r.reason() != "review_overdue" {
				t.Errorf("alice via %s after the deadline: %d %s", px.name, r.status, r.body)
			}
			if r := bob.api(px, "/orgs/acme/home"); r.status != 200 {
				t.Errorf("bob, kept, via %s after the deadline: %d %s", px.name, r.status, r.body)
			}
		}
		api.want(keep(erin, aliceKey), 200, "")
		for _, px := range b.px {
			deadline := time.Now().Add(3 * time.Second)
			for alice.api(px, "/orgs/acme/home").status != 200 {
				if time.Now().After(deadline) {
					t.Fatalf("alice's late keep did not reach %s", px.name)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		// dave's item is still undecided: the report says his membership is overdue.
		rep := api.want(api.call(erin, "GET", path, nil), 200, "")
		if rep.body["state"] != "open" || rep.body["undecided"] != float64(1) || !strings.Contains(rep.raw, `"user":"`+b.user("sub-dave")+`","kind":"employee","roles":["user"],"reviewers":["operators","administrators of acme"],"now":"review_overdue"`) {
			t.Errorf("the campaign report: %s", rep.raw)
		}
	})
	api.t = t

	t.Run("business events", func(t *testing.T) {
		api.t = t
		// Each event's dry run lists exactly what its real run then changes, and the effect
		// reaches the other process through the invalidation, with no restart.
		apply := func(token string, ev map[string]any) govAnswer {
			t.Helper()
			ev["dry_run"] = true
			dry := api.want(api.call(token, "POST", "/api/v1/events", ev), 200, "")
			ev["dry_run"] = false
			real := api.want(api.call(token, "POST", "/api/v1/events", ev), 200, "")
			if d, r := fmt.Sprint(dry.body["changes"]), fmt.Sprint(real.body["changes"]); d != r || real.body["dry_run"] != false {
				t.Fatalf("%s: the dry run listed %s, the real run changed %s", ev["event"], d, r)
			}
			return real
		}
		eventually := func(what string, ok func() bool) {
			t.Helper()
			deadline := time.Now().Add(3 * time.Second)
			for !ok() {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not seen within 3s", what)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}

		// A role change: erin may not make it alone (employees need two approvals here);
		// an operator does, and process 2 names the new roles at once.
		if s := bob.api(p2, "/orgs/acme/home").seen(); s == nil || !azHas(s, "X-Portcullis-Roles", "user") {
			t.Fatalf("bob before the role change: %+v", s)
		}
		roleChange := map[string]any{"event": "role_changed", "org": "acme", "user": bobKey, "roles": []string{"viewer"}, "reason": "moved to sales (HR-7)"}
		api.want(api.call(erin, "POST", "/api/v1/events", roleChange), 403, "not_permitted")
		apply(console, roleChange)
		eventually("bob's new roles on process 2", func() bool {
			s := bob.api(p2, "/orgs/acme/home").seen()
			return s != nil && azHas(s, "X-Portcullis-Roles", "viewer")
		})

		// A contract end: every acme member's access ends on both processes (each has it
		// cached), with no change to their records; erin, acme's administrator, may not end
		// it.
		ann := b.newClient()
		ann.signIn(p2, "alice")
		for _, px := range b.px {
			if r := ann.api(px, "/orgs/acme/home"); r.status != 200 {
				t.Fatalf("alice in acme via %s before the contract ended: %d %s", px.name, r.status, r.body)
			}
		}
		api.want(api.call(erin, "POST", "/api/v1/events", map[string]any{"event": "contract_ended", "org": "acme", "reason": "x"}), 403, "not_permitted")
		real := apply(console, map[string]any{"event": "contract_ended", "org": "acme", "reason": "contract 2024-3 ended"})
		if ends, _ := real.body["ends"].([]any); len(ends) < 4 {
			t.Errorf("ends %v: every live acme membership", real.body["ends"])
		}
		for _, px := range b.px {
			eventually("alice refused in acme via "+px.name, func() bool { return ann.api(px, "/orgs/acme/home").status == 403 })
		}
		// erin's authority ended with the organisation.
		api.want(api.call(erin, "GET", "/api/v1/orgs/acme/members", nil), 403, "not_permitted")

		// The webhook heard of the contract's end too; nothing it received was forged.
		hook.find(t, "the contract end", func(e audit.Event) bool {
			return e.Type == audit.BusinessContractEnded && e.Org == "acme" && e.Operation == real.body["operation"]
		})
		hook.mu.Lock()
		if hook.forged != 0 {
			t.Errorf("%d deliveries failed verification", hook.forged)
		}
		hook.mu.Unlock()

		// The trail: one parent per event, each child carrying its operation.
		evs, _, err := b.aud.Tail(context.Background(), "0", 10000, 0)
		if err != nil {
			t.Fatal(err)
		}
		op, _ := real.body["operation"].(string)
		family := 0
		for _, e := range evs {
			if e.Operation == op {
				family++
				if e.Actor != consoleName || e.Via != "jwt "+b.idp.URL || e.Reason != "contract 2024-3 ended" {
					t.Errorf("event of the contract end %+v", e)
				}
			}
		}
		if changes, _ := real.body["changes"].([]any); family != len(changes)+1 {
			t.Errorf("%d events carry operation %s, want the parent and %d children", family, op, len(changes))
		}
	})
}

// azHas reports whether the portal received header name exactly once, with value v.
func azHas(s *azSeen, name, v string) bool {
	got := azCGIValues(s.Header, azCGI(name))
	return len(got) == 1 && got[0] == v
}
