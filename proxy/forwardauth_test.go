package proxy

import (
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"crypto/tls"

	"github.com/portcullis-proxy/portcullis/store"
)

// accForwardAuth asks /.portcullis/auth about requests, in nginx's convention and in
// Traefik's (Caddy's), and tries to get around every check: the answers are those the proxy
// gives for the same request, nothing is forwarded, and what cannot be decided the proxy's
// way is refused.
func accForwardAuth(t *testing.T, b *accBed) {
	host := strings.TrimPrefix(b.base, "https://")
	alice := b.user(accAlice)
	b.members.set(acmeOrg(), b.aliceIn("acme"))
	hitsBefore := b.up.hits()

	type style int
	const (
		traefik style = iota
		nginx
	)
	ask := func(c *http.Client, st style, method, uri string, hdr http.Header) *accResp {
		t.Helper()
		h := http.Header{"X-Forwarded-Host": {host}, "X-Forwarded-Proto": {"https"}}
		switch st {
		case nginx:
			h.Set("X-Original-Method", method)
			h.Set("X-Original-URI", uri)
		default:
			h.Set("X-Forwarded-Method", method)
			h.Set("X-Forwarded-Uri", uri)
		}
		for k, v := range hdr {
			h[k] = v
		}
		return accDo(t, c, "GET", b.base+"/.portcullis/auth", nil, h)
	}
	anon := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 10 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}

	t.Run("a member is allowed with the identity the proxy would forward", func(t *testing.T) {
		for _, st := range []style{traefik, nginx} {
			r := ask(b.cli, st, "GET", "/o/acme/invoices?page=2", accAPI)
			if r.StatusCode != 200 || r.body != "" {
				t.Fatalf("style %d: %d %q", st, r.StatusCode, r.body)
			}
			if r.Header.Get("X-Portcullis-User") != alice || r.Header.Get("X-Portcullis-Org") != "acme" ||
				r.Header.Get("X-Portcullis-Roles") != "user" || r.Header.Get("X-Portcullis-Kind") != "employee" {
				t.Errorf("style %d: identity %v", st, r.Header)
			}
			tok := r.Header.Get("X-Portcullis-Assertion")
			if strings.Count(tok, ".") != 2 {
				t.Errorf("style %d: no signed assertion: %q", st, tok)
			}
			if _, ok := r.Header["X-Portcullis-Purpose"]; !ok {
				t.Errorf("style %d: an identity header without a value must still be answered (empty), so an ingress copying it replaces the client's", st)
			}
			if c := r.Header.Get("X-Portcullis-Upstream-Cookie"); strings.Contains(c, "portcullis") {
				t.Errorf("style %d: the portal would get Portcullis's cookies: %q", st, c)
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("style %d: an answer naming a person must not be cached", st)
			}
		}
		// A route with other header names answers with those.
		r := ask(b.cli, traefik, "GET", "/c/acme/x", accAPI)
		if r.StatusCode != 200 || r.Header.Get("X-Remote-Person") != alice || r.Header.Get("X-Tenant") != "acme" {
			t.Errorf("custom names: %d %v", r.StatusCode, r.Header)
		}
		// identity_forward: the ingress is answered what the portal would be told, and every
		// name the mode does not send still comes back empty, so copying it replaces what the
		// client sent.
		names := []string{"X-Portcullis-User", "X-Portcullis-Email", "X-Portcullis-Org", "X-Portcullis-Roles", "X-Portcullis-Kind", "X-Portcullis-Assertion"}
		for uri, sent := range map[string][]string{
			"/nada/acme/x": nil,
			"/asrt/acme/x": {"X-Portcullis-Assertion"},
			"/hdrs/acme/x": {"X-Portcullis-User", "X-Portcullis-Email", "X-Portcullis-Org", "X-Portcullis-Roles", "X-Portcullis-Kind"},
		} {
			r := ask(b.cli, traefik, "GET", uri, accAPI)
			if r.StatusCode != 200 {
				t.Fatalf("%s: %d %s", uri, r.StatusCode, r.body)
			}
			for _, n := range names {
				vs, present := r.Header[n]
				switch {
				case !present || len(vs) != 1:
					t.Errorf("%s: %s answered %q, want one value (empty if not sent)", uri, n, vs)
				case slices.Contains(sent, n) && vs[0] == "":
					t.Errorf("%s: %s empty, want it sent", uri, n)
				case !slices.Contains(sent, n) && vs[0] != "":
					t.Errorf("%s: %s = %q, want it empty (identity_forward)", uri, n, vs[0])
				}
			}
		}
	})

	t.Run("refusals are the proxy's, folded to 401 and 403 for nginx", func(t *testing.T) {
		for _, tc := range []struct {
			uri, reason string
			status      int
		}{
			{"/o/beta/x", "not_member", 403},
			{"/adm/acme/x", "role_missing", 403},
			{"/nowhere", "no_route", 404},
		} {
			for _, st := range []style{traefik, nginx} {
				r := ask(b.cli, st, "GET", tc.uri, accAPI)
				want := tc.status
				if st == nginx && want != 401 {
					want = 403
				}
				if r.StatusCode != want || r.Header.Get("X-Portcullis-Reason") != tc.reason {
					t.Errorf("%s style %d: %d %s, want %d %s", tc.uri, st, r.StatusCode, r.Header.Get("X-Portcullis-Reason"), want, tc.reason)
				}
				if st == nginx && tc.status != 403 && r.Header.Get("X-Portcullis-Status") != "404" {
					t.Errorf("%s: nginx is not told the real status: %v", tc.uri, r.Header)
				}
				if r.Header.Get("X-Portcullis-User") != "" || r.Header.Get("X-Portcullis-Assertion") != "" {
					t.Errorf("%s style %d: a refusal carries an identity", tc.uri, st)
				}
			}
			// The proxy answers the same request the same way.
			if p := b.get(tc.uri, accAPI); p.StatusCode != tc.status {
				t.Errorf("%s: the proxy answers %d", tc.uri, p.StatusCode)
			}
		}
		// A revoked member, decided on what is true now.
		m := b.aliceIn("acme")
		m.Status = store.MembershipRevoked
		b.members.set(acmeOrg(), m)
		if r := ask(b.cli, nginx, "GET", "/o/acme/x", accAPI); r.StatusCode != 403 || r.Header.Get("X-Portcullis-Reason") != "membership_revoked" {
			t.Errorf("revoked: %d %v", r.StatusCode, r.Header)
		}
		b.members.set(acmeOrg(), b.aliceIn("acme"))
	})

	t.Run("nobody signed in: the sign-in, at an address the ingress can redirect to", func(t *testing.T) {
		want := b.base + "/.portcullis/login?rd=" + url.QueryEscape("/o/acme/x?a=1")
		r := ask(anon(), traefik, "GET", "/o/acme/x?a=1", accNav)
		if r.StatusCode != http.StatusFound || r.Header.Get("Location") != want {
			t.Errorf("traefik: %d %q, want 302 %q", r.StatusCode, r.Header.Get("Location"), want)
		}
		r = ask(anon(), nginx, "GET", "/o/acme/x?a=1", accNav)
		if r.StatusCode != http.StatusUnauthorized || r.Header.Get("Location") != want || r.Header.Get("X-Portcullis-Status") != "302" {
			t.Errorf("nginx: %d %q %v, want 401 with the Location", r.StatusCode, r.Header.Get("Location"), r.Header)
		}
		// An API client gets the 401 challenge, in both conventions.
		for _, st := range []style{traefik, nginx} {
			r := ask(anon(), st, "GET", "/o/acme/x", accAPI)
			if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") == "" || r.Header.Get("X-Portcullis-Reason") != "no_session" {
				t.Errorf("api style %d: %d %v", st, r.StatusCode, r.Header)
			}
		}
		// A public route: allowed, with every identity header empty; one the client sent
		// itself is refused there too.
		r = ask(anon(), nginx, "GET", "/pub/x", nil)
		if r.StatusCode != 200 || r.Header.Get("X-Portcullis-User") != "" {
			t.Errorf("public: %d %v", r.StatusCode, r.Header)
		}
		if _, ok := r.Header["X-Portcullis-User"]; !ok {
			t.Error("public: the identity headers must be answered empty, so the client's are replaced")
		}
		if r := ask(anon(), traefik, "GET", "/pub/x", http.Header{"X-Portcullis-User": {"mallory"}}); r.StatusCode != 400 || r.Header.Get("X-Portcullis-Reason") != "forward_auth_request" {
			t.Errorf("public, with the client's identity header: %d %v", r.StatusCode, r.Header)
		}
	})

	t.Run("paths the ingress and Portcullis could read differently are refused", func(t *testing.T) {
		for _, uri := range []string{
			"/o/acme/../beta/x", "/o/beta/../acme/x", "/o//acme/x", "/o/./acme/x", "/o/acme/%2e%2e/beta",
			"/o%2Facme/x", "/o/acme;jsessionid=1/x", "/o/%61cme/x", "/o/acme\\x", "/o/acme/%252e",
			"o/acme/x", "http://evil.example/o/acme/x", "*",
		} {
			for _, st := range []style{traefik, nginx} {
				r := ask(b.cli, st, "GET", uri, accAPI)
				if r.StatusCode/100 != 4 || r.Header.Get("X-Portcullis-User") != "" {
					t.Errorf("%q style %d: %d %s (want a refusal)", uri, st, r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
				}
			}
		}
		if r := ask(b.cli, traefik, "GET", "/o/acme/../acme/x", accAPI); r.Header.Get("X-Portcullis-Reason") != "forward_auth_path" {
			t.Errorf("a path the proxy would normalise: %s", r.Header.Get("X-Portcullis-Reason"))
		}
		// Portcullis's own endpoints are not decided as portal paths.
		if r := ask(b.cli, traefik, "GET", "/.portcullis/whoami", accAPI); r.StatusCode != 404 {
			t.Errorf("own endpoint: %d", r.StatusCode)
		}
	})

	t.Run("the question must name one request", func(t *testing.T) {
		for name, h := range map[string]http.Header{
			"no URI":             {"X-Forwarded-Method": {"GET"}},
			"no method":          {"X-Forwarded-Uri": {"/o/acme/x"}},
			"two URIs":           {"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/o/acme/x", "/adm/acme/x"}},
			"disagreeing":        {"X-Original-Method": {"GET"}, "X-Original-Uri": {"/pub/x"}, "X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/adm/acme/x"}},
			"methods disagree":   {"X-Original-Method": {"GET"}, "X-Original-Uri": {"/o/acme/x"}, "X-Forwarded-Method": {"DELETE"}},
			"mixed conventions":  {"X-Original-Uri": {"/o/acme/x"}, "X-Forwarded-Method": {"GET"}},
			"client's extra one": {"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {"/m/acme/x"}, "X-Original-Method": {"GET"}},
			"no host":            {"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/o/acme/x"}, "X-Forwarded-Host": {""}},
			"other spelling":     {"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/pub/x"}, "X_portcullis_user": {"admin"}},
			"dotted spelling":    {"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/o/acme/x"}, "X.Portcullis.Org": {"beta"}},
			"not a method":       {"X-Forwarded-Method": {"GET /x"}, "X-Forwarded-Uri": {"/o/acme/x"}},
			"two hosts":          {"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/o/acme/x"}, "X-Forwarded-Host": {host, "evil.example"}},
			"nothing at all":     {},
			"empty URI":          {"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {""}},
			"URI with no slash ": {"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"?a=1"}},
		} {
			h["Accept"] = []string{"application/json"}
			if _, ok := h["X-Forwarded-Host"]; !ok && name != "nothing at all" {
				h["X-Forwarded-Host"] = []string{host}
			}
			r := accDo(t, b.cli, "GET", b.base+"/.portcullis/auth", nil, h)
			if r.StatusCode != 400 || r.Header.Get("X-Portcullis-Reason") != "forward_auth_request" {
				t.Errorf("%s: %d %s", name, r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
			}
		}
	})

	t.Run("a header the proxy would strip and the ingress passes on is refused", func(t *testing.T) {
		// The proxy drops these before forwarding; an ingress forwards the client's request
		// with only the answered identity headers and its own replaced, so a portal would
		// read the client's X-Remote-User, Forwarded or True-Client-IP. Every managed name
		// is tried in its usual spelling, with a member's session on an allowed path.
		const client = "203.0.113.7"
		tried := 0
		for _, c := range append(slices.Clone(managedHeaders), "X_PORTCULLIS_USER", "X_PORTCULLIS_ORG", "X_PORTCULLIS_ASSERTION", "X_REMOTE_PERSON", "X_TENANT") {
			name := http.CanonicalHeaderKey(strings.ReplaceAll(c, "_", "-"))
			if ingressSet[name] {
				continue
			}
			tried++
			h := http.Header{"X-Forwarded-For": {client}, name: {"198.51.100.9"}}
			for k, v := range accAPI {
				h[k] = v
			}
			for _, st := range []style{traefik, nginx} {
				r := ask(b.cli, st, "GET", "/o/acme/invoices", h)
				// nginx's auth_request knows 401 and 403 only; a header of the other
				// convention is refused before the convention is known, as a mix (400).
				folded := st == nginx && r.StatusCode == 403
				if r.StatusCode != 400 && !folded || r.Header.Get("X-Portcullis-Reason") != "forward_auth_request" || r.Header.Get("X-Portcullis-User") != "" {
					t.Errorf("%s (style %d): %d %s", name, st, r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
				}
			}
		}
		if tried < 35 {
			t.Fatalf("only %d managed headers tried", tried)
		}
		for name, h := range map[string]http.Header{
			"underscored forwarding header": {"X_forwarded_for": {"198.51.100.9"}},
			"another name in the namespace": {"X-Portcullis-Admin": {"1"}},
			"client address, another one":   {"X-Real-Ip": {"198.51.100.9"}},
			"client address, twice":         {"X-Real-Ip": {client, "198.51.100.9"}},
			"Envoy's, another address":      {"X-Envoy-External-Address": {"198.51.100.9"}},
			"Envoy's, not an address":       {"X-Envoy-External-Address": {"me"}},
			"client address, mapped":        {"X-Real-Ip": {"::ffff:" + client}},
			"Traefik's port":                {"X-Forwarded-Port": {"443"}},
			"exact identity name":           {"X-Portcullis-Org": {"beta"}},
			"a route's own identity name":   {"X-Tenant": {"beta"}},
		} {
			h["X-Forwarded-For"] = []string{client}
			for k, v := range accAPI {
				h[k] = v
			}
			r := ask(b.cli, traefik, "GET", "/o/acme/invoices", h)
			if r.StatusCode != 400 || r.Header.Get("X-Portcullis-Reason") != "forward_auth_request" {
				t.Errorf("%s: %d %s", name, r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
			}
		}
		// What an ingress sets itself is its own: its forwarding headers, and X-Real-Ip or
		// Envoy's X-Envoy-External-Address when they are exactly the decided client.
		h := http.Header{"X-Forwarded-For": {client}, "X-Real-Ip": {client}, "X-Envoy-External-Address": {client},
			"X-Request-Id": {"r-1"}}
		for k, v := range accAPI {
			h[k] = v
		}
		if r := ask(b.cli, traefik, "GET", "/o/acme/invoices", h); r.StatusCode != 200 || r.Header.Get("X-Portcullis-User") != alice {
			t.Errorf("an ingress's own headers: %d %s %v", r.StatusCode, r.Header.Get("X-Portcullis-Reason"), r.Header)
		}
	})

	t.Run("a decision that needs the body is refused", func(t *testing.T) {
		form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}}
		// A route with methods: the POST's body may hold _method=DELETE, unseen.
		if r := ask(b.cli, traefik, "POST", "/m/acme/x", form); r.StatusCode != 403 || r.Header.Get("X-Portcullis-Reason") != "forward_auth_body" {
			t.Errorf("form POST where the method matters: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		if r := ask(b.cli, traefik, "POST", "/m/acme/x", http.Header{"Accept": {"application/json"}}); r.Header.Get("X-Portcullis-Reason") != "forward_auth_body" {
			t.Errorf("POST without a Content-Type (Rack reads a form): %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		// A guard on PUT: a POST asking to be a PUT is guarded like one (the guard reads
		// the query here; no ingress but Envoy passes a body, and the decision is the
		// method's, not the POST's).
		override := http.Header{"X-Http-Method-Override": {"PUT"}, "Content-Type": {"text/plain"}, "Accept": {"application/json"}}
		if r := ask(anon(), traefik, "POST", "/account/reset?email=victim%40stale.example", override); r.StatusCode != 403 || r.Header.Get("X-Portcullis-Reason") != "forward_auth_body" {
			t.Errorf("a POST overridden to a guarded PUT: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		if r := ask(anon(), traefik, "POST", "/account/reset?email=victim%40stale.example", http.Header{"Content-Type": {"text/plain"}}); r.StatusCode != 200 {
			t.Errorf("an unguarded POST: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		// A body nothing reads parameters from is decided.
		if r := ask(b.cli, traefik, "POST", "/m/acme/x", http.Header{"Content-Type": {"text/csv"}, "Accept": {"application/json"}}); r.StatusCode != 200 {
			t.Errorf("text/csv POST: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		// Where the method changes nothing, a form POST is decided as the proxy would.
		if r := ask(b.cli, traefik, "POST", "/o/acme/x", form); r.StatusCode != 200 {
			t.Errorf("form POST where the method does not matter: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		// The override headers, which the proxy strips and an ingress passes on.
		for _, name := range []string{"X-HTTP-Method-Override", "X-Method-Override", "X_HTTP_Method"} {
			h := http.Header{name: {"DELETE"}, "Accept": {"application/json"}}
			if r := ask(b.cli, traefik, "GET", "/m/acme/x", h); r.StatusCode != 400 || r.Header.Get("X-Portcullis-Reason") != "method_override" {
				t.Errorf("%s: %d %s", name, r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
			}
		}
		// _method in the query is seen, and refused as the proxy refuses it.
		if r := ask(b.cli, traefik, "POST", "/m/acme/x?_method=DELETE", http.Header{"Content-Type": {"text/csv"}, "Accept": {"application/json"}}); r.Header.Get("X-Portcullis-Reason") != "method_override" {
			t.Errorf("_method in the query: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		// A method the route does not take.
		if r := ask(b.cli, traefik, "DELETE", "/m/acme/x", accAPI); r.StatusCode != 405 {
			t.Errorf("DELETE on a GET/POST route: %d", r.StatusCode)
		}
		// A recovery guard reads the body.
		if r := ask(anon(), nginx, "POST", "/reset", form); r.StatusCode != 403 || r.Header.Get("X-Portcullis-Reason") != "forward_auth_body" {
			t.Errorf("recovery guard: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		// An upgrade the route does not allow.
		if r := ask(b.cli, traefik, "GET", "/o/acme/ws", http.Header{"Upgrade": {"websocket"}, "Accept": {"application/json"}}); r.StatusCode != 400 {
			t.Errorf("websocket upgrade on a route without websocket: %d", r.StatusCode)
		}
	})

	t.Run("the original body, passed along, is neither read nor refused", func(t *testing.T) {
		body := strings.Repeat("x", 2<<20)
		req, _ := http.NewRequest("POST", b.base+"/.portcullis/auth", strings.NewReader(body))
		req.Header.Set("X-Forwarded-Method", "POST")
		req.Header.Set("X-Forwarded-Uri", "/o/acme/upload")
		req.Header.Set("X-Forwarded-Host", host)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Accept", "application/json")
		resp, err := b.cli.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Portcullis-User") != alice {
			t.Errorf("a 2 MiB upload's question: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("from an untrusted address the question is not believed", func(t *testing.T) {
		req := httptest.NewRequest("GET", b.base+"/.portcullis/auth", nil)
		req.RemoteAddr = "192.0.2.7:4711"
		req.Header.Set("X-Forwarded-Method", "GET")
		req.Header.Set("X-Forwarded-Uri", "/pub/x")
		req.Header.Set("X-Original-URI", "/pub/x")
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		req.Header.Set("Accept", "application/json")
		for _, ck := range b.cli.Jar.Cookies(mustURL(t, b.base)) {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		b.srv.ServeHTTP(rec, req)
		if rec.Code != 403 || rec.Header().Get("X-Portcullis-Reason") != "forward_auth_untrusted" || rec.Header().Get("X-Portcullis-User") != "" {
			t.Errorf("untrusted: %d %v", rec.Code, rec.Header())
		}
	})

	if n := b.up.hits() - hitsBefore; n != 0 {
		t.Errorf("forward-auth questions reached the portal %d times", n)
	}
}
