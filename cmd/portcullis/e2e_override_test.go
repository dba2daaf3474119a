package main

// End-to-end tests of method overrides (issue 23) through the real binary: the portal records
// the method, headers and body it receives, so a test can check that no override header
// reaches it by default, that a `_method` field on a route where the method matters is
// refused before the portal sees anything, and that a route allowing overrides is decided as
// the method asked for.

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func overrideRoutes(b *azBed, _ int) string {
	return fmt.Sprintf(`  - name: mo-delete
    path: /mo/ro
    methods: [DELETE]
    upstream: %[1]s
    org: {from: path, path_segment: 3}
    require: {roles: [admin]}
  - name: mo-ro
    path: /mo/ro
    methods: [GET, POST]
    upstream: %[1]s
    org: {from: path, path_segment: 3}
    require: {roles: [user]}
  - name: mo-stepup
    path: /mo/su
    upstream: %[1]s
    step_up: {acr: ["urn:portcullis:acr:mfa"], max_age: 5m}
  - name: mo-ok-delete
    path: /mo/ok
    methods: [DELETE]
    method_override: allow
    upstream: %[1]s
    org: {from: path, path_segment: 3}
    require: {roles: [admin]}
  - name: mo-ok-put
    path: /mo/ok
    methods: [PUT]
    upstream: %[1]s
    org: {from: path, path_segment: 3}
    require: {roles: [user]}
  - name: mo-ok
    path: /mo/ok
    methods: [GET, POST]
    method_override: allow
    upstream: %[1]s
    org: {from: path, path_segment: 3}
    require: {roles: [user]}
  - name: mo-any
    path: /mo/any
    upstream: %[1]s
`, b.portal.URL)
}

// raw sends a request with a body of its own type, with the client's cookies.
func (c *azClient) raw(method, target, contentType, body string, hdr http.Header) *azResp {
	c.b.t.Helper()
	h := http.Header{"Accept": {"application/json"}}
	if contentType != "" {
		h["Content-Type"] = []string{contentType}
	}
	for k, v := range hdr {
		h[k] = v
	}
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		c.b.t.Fatal(err)
	}
	req.Header = h
	resp, err := c.c.Do(req)
	if err != nil {
		c.b.t.Fatalf("%s %s: %v", method, target, err)
	}
	return readAZResp(resp)
}

func TestE2EMethodOverride(t *testing.T) {
	t.Parallel()
	b := newAZBedWith(t, azOptions{extra: overrideRoutes})
	px := b.px[0]
	alice, bob := b.newClient(), b.newClient() // alice: role user; bob: admin and user
	alice.signIn(px, "alice")
	bob.signIn(px, "bob")
	const form = "application/x-www-form-urlencoded"

	t.Run("override headers never reach the portal", func(t *testing.T) {
		spellings := []string{"X-HTTP-Method-Override", "X-Method-Override", "X-HTTP-Method",
			"x-http-method-override", "X_HTTP_METHOD_OVERRIDE", "X.HTTP.Method.Override", "x-http-method"}
		for _, path := range []string{"/mo/ro/acme/x", "/mo/any/x"} {
			for _, method := range []string{"GET", "POST"} {
				hdr := http.Header{}
				for _, s := range spellings {
					hdr[s] = []string{"DELETE"}
				}
				r := alice.raw(method, px.base+path, form, "a=1", hdr)
				seen := r.seen()
				if r.status != 200 || seen == nil {
					t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
				}
				if seen.Method != method {
					t.Errorf("%s %s: the portal saw %s", method, path, seen.Method)
				}
				for name := range seen.Header {
					if isOverrideName(name) {
						t.Errorf("%s %s: %s reached the portal", method, path, name)
					}
				}
			}
		}
	})

	multipart := func(name, value string) (string, string) {
		return "multipart/form-data; boundary=B0und",
			"--B0und\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n--B0und--\r\n"
	}
	mpType, mpBody := multipart("_method", "DELETE")
	fields := []struct{ name, ct, query, body string }{
		{"form", form, "", "a=1&_method=DELETE"},
		{"form upper case", form, "", "_METHOD=delete"},
		{"form escaped", form, "", "%5Fm%65thod=DELETE"},
		{"form php dot", form, "", ".method=DELETE"},
		{"form brackets", form, "", "_method[]=DELETE"},
		{"query", "", "?_method=DELETE", ""},
		{"query on a form post", form, "?_method=PUT", "a=1"},
		{"multipart", mpType, "", mpBody},
		{"json", "application/json", "", `{"_method":"DELETE"}`},
		{"no content type (Rack reads a form)", "", "", "_method=DELETE"},
		{"multipart/mixed", "multipart/mixed; boundary=B0und", "", mpBody},
		{"json nested", "application/json", "", `{"item":{"_method":"DELETE"}}`},
	}

	t.Run("a _method field is refused where the method matters", func(t *testing.T) {
		for _, target := range []struct {
			who  *azClient
			path string
		}{
			{alice, "/mo/ro/acme/item"}, // method-restricted: DELETE needs admin
			{bob, "/mo/ro/acme/item"},   // even for someone the DELETE route would admit
			{alice, "/mo/su/item"},      // a step-up route
		} {
			for _, f := range fields {
				before := b.portal.hits.Load()
				r := target.who.raw("POST", px.base+target.path+f.query, f.ct, f.body, nil)
				if r.status != 400 || r.reason() != "method_override" {
					t.Errorf("%s %s: %d %s", target.path, f.name, r.status, r.body)
				}
				if n := b.portal.hits.Load() - before; n != 0 {
					t.Errorf("%s %s: the portal was reached", target.path, f.name)
				}
			}
		}
	})

	t.Run("a body whose type is ambiguous is refused", func(t *testing.T) {
		for _, hdr := range []http.Header{
			{"Content-Type": {"text/plain", form}}, // two: parsers differ on which counts
			{"Content-Type": {""}},                 // empty: Rack reads a form
		} {
			r := alice.raw("POST", px.base+"/mo/ro/acme/item", "", "_method=DELETE", hdr)
			if r.status != 400 || r.reason() != "method_override" {
				t.Errorf("%q: %d %s", hdr["Content-Type"], r.status, r.body)
			}
		}
	})

	t.Run("what is not an override is forwarded untouched", func(t *testing.T) {
		for _, c := range []struct{ ct, body string }{
			{form, "a=1&b=2"},
			{form, "_method=POST"}, // the method it has
			{"text/plain", "_method=DELETE"},
			{"application/octet-stream", `{"_method":"DELETE"}`},
			{"application/json", `{"method":"DELETE"}`},
		} {
			r := alice.raw("POST", px.base+"/mo/ro/acme/item", c.ct, c.body, nil)
			seen := r.seen()
			if r.status != 200 || seen == nil || seen.Method != "POST" || seen.Body != c.body {
				t.Errorf("%s %q: %d %s", c.ct, c.body, r.status, r.body)
			}
		}
		// Only POSTs are overridden by frameworks: a GET's query is the portal's business.
		for _, q := range []string{"?_method=DELETE", "?sort=a;b&payment_method=x&q=100%"} {
			if r := alice.raw("GET", px.base+"/mo/ro/acme/item"+q, "", "", nil); r.status != 200 {
				t.Errorf("GET %s: %d %s", q, r.status, r.body)
			}
		}
		// Without a step-up the step-up route still asks for one.
		if r := alice.raw("POST", px.base+"/mo/su/item", form, "a=1", nil); r.status != 401 || r.reason() != "step_up_required" {
			t.Errorf("step-up route without _method: %d %s", r.status, r.body)
		}
		// Where the method changes nothing (no methods, no step-up, no method route before
		// it), a field is the portal's business.
		if r := alice.raw("POST", px.base+"/mo/any/x", form, "_method=DELETE", nil); r.status != 200 || r.seen() == nil {
			t.Errorf("route without methods: %d %s", r.status, r.body)
		}
	})

	t.Run("bodies beyond the inspection limit are refused where they would be inspected", func(t *testing.T) {
		big := "a=" + strings.Repeat("x", 1<<20)
		if r := alice.raw("POST", px.base+"/mo/ro/acme/item", form, big, nil); r.status != 413 || r.reason() != "body_too_large" {
			t.Errorf("large form on a method route: %d %.200s", r.status, r.body)
		}
		if r := alice.raw("POST", px.base+"/mo/ro/acme/item", "application/octet-stream", big, nil); r.status != 200 {
			t.Errorf("large upload of another type: %d %.200s", r.status, r.body)
		}
		if r := alice.raw("POST", px.base+"/mo/any/x", form, big, nil); r.status != 200 {
			t.Errorf("large form where the method does not matter: %d %.200s", r.status, r.body)
		}
	})

	t.Run("an allowed override is decided as the method it asks for", func(t *testing.T) {
		del := http.Header{"X-HTTP-Method-Override": {"DELETE"}}
		// alice holds role user: the POST route admits her, the DELETE route does not.
		if r := alice.raw("POST", px.base+"/mo/ok/acme/item", form, "a=1", del); r.status != 403 || r.reason() != "role_missing" {
			t.Errorf("alice's POST as DELETE: %d %s", r.status, r.body)
		}
		if r := alice.raw("POST", px.base+"/mo/ok/acme/item", form, "_method=DELETE", nil); r.status != 403 || r.reason() != "role_missing" {
			t.Errorf("alice's POST with _method=DELETE: %d %s", r.status, r.body)
		}
		// bob is an admin: decided as DELETE and forwarded with the override, which the
		// portal then honours.
		r := bob.raw("POST", px.base+"/mo/ok/acme/item", form, "a=1", del)
		if seen := r.seen(); r.status != 200 || seen == nil || seen.Method != "POST" || len(seen.Header["X-Http-Method-Override"]) != 1 {
			t.Errorf("bob's POST as DELETE: %d %s", r.status, r.body)
		}
		r = bob.raw("POST", px.base+"/mo/ok/acme/item", form, "_method=DELETE", nil)
		if seen := r.seen(); r.status != 200 || seen == nil || seen.Body != "_method=DELETE" {
			t.Errorf("bob's POST with _method=DELETE: %d %s", r.status, r.body)
		}
		// A GET asking to be a DELETE stays a GET in every framework: refused, not re-routed.
		if r := bob.raw("GET", px.base+"/mo/ok/acme/item", "", "", del); r.status != 400 || r.reason() != "method_override" {
			t.Errorf("a GET with an override: %d %s", r.status, r.body)
		}
		// A plain POST is decided as a POST.
		if r := alice.raw("POST", px.base+"/mo/ok/acme/item", form, "a=1", nil); r.status != 200 {
			t.Errorf("alice's plain POST: %d %s", r.status, r.body)
		}
		for _, c := range []struct {
			name   string
			hdr    http.Header
			body   string
			status int
			reason string
		}{
			// The PUT route does not allow overrides: reaching it through one is refused.
			{"to a route that does not allow it", http.Header{"X-Method-Override": {"PUT"}}, "a=1", 400, "method_override"},
			{"to a method no route takes", http.Header{"X-HTTP-Method": {"PATCH"}}, "a=1", 405, "method_not_allowed"},
			{"two different overrides", del, "_method=PUT", 400, "method_override"},
			{"two headers disagreeing", http.Header{"X-HTTP-Method-Override": {"DELETE"}, "X-HTTP-Method": {"GET"}}, "a=1", 400, "method_override"},
			{"not a method", http.Header{"X-HTTP-Method-Override": {"DEL ETE"}}, "a=1", 400, "method_override"},
			{"a list", http.Header{"X-HTTP-Method-Override": {"DELETE, GET"}}, "a=1", 400, "method_override"},
			{"a value a framework would not take", nil, "_method=DELETE%20", 400, "method_override"},
			{"a method no framework overrides to", http.Header{"X-HTTP-Method-Override": {"PROPFIND"}}, "a=1", 400, "method_override"},
		} {
			before := b.portal.hits.Load()
			r := bob.raw("POST", px.base+"/mo/ok/acme/item", form, c.body, c.hdr)
			if r.status != c.status || r.reason() != c.reason {
				t.Errorf("%s: %d %s", c.name, r.status, r.body)
			}
			if b.portal.hits.Load() != before {
				t.Errorf("%s: the portal was reached", c.name)
			}
		}
	})
}

// isOverrideName reports whether a header name is a method-override header in any spelling.
func isOverrideName(name string) bool {
	n := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return '_'
		}
		return r
	}, name)
	return n == "X_HTTP_METHOD_OVERRIDE" || n == "X_METHOD_OVERRIDE" || n == "X_HTTP_METHOD"
}
