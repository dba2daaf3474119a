package authz

import (
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
)

func mustResolver(t testing.TB, s *config.OrgSource) OrgResolver {
	t.Helper()
	r, err := NewOrgResolver(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewOrgResolver(t *testing.T) {
	for _, c := range []struct {
		name    string
		src     *config.OrgSource
		from    string
		wantErr string
	}{
		{name: "nil is the session", src: nil, from: "session"},
		{name: "empty from is the session", src: &config.OrgSource{}, from: "session"},
		{name: "session", src: &config.OrgSource{From: "session"}, from: "session"},
		{name: "host", src: &config.OrgSource{From: "host", Host: "{org}.portal.example.com"}, from: "host"},
		{name: "path", src: &config.OrgSource{From: "path", PathSegment: 2}, from: "path"},
		{name: "header", src: &config.OrgSource{From: "header", Header: "x-org"}, from: "header"},
		{name: "unknown from", src: &config.OrgSource{From: "cookie"}, wantErr: `from "cookie"`},
		{name: "host without pattern", src: &config.OrgSource{From: "host", Host: "portal.example.com"}, wantErr: "host pattern"},
		{name: "host pattern not leftmost", src: &config.OrgSource{From: "host", Host: "portal.{org}.example.com"}, wantErr: "host pattern"},
		{name: "host pattern partial label", src: &config.OrgSource{From: "host", Host: "x{org}.example.com"}, wantErr: "host pattern"},
		{name: "host pattern alone", src: &config.OrgSource{From: "host", Host: "{org}."}, wantErr: "host pattern"},
		{name: "host pattern twice", src: &config.OrgSource{From: "host", Host: "{org}.{org}.example.com"}, wantErr: "host pattern"},
		{name: "host pattern upper case", src: &config.OrgSource{From: "host", Host: "{org}.Portal.example.com"}, wantErr: "host pattern"},
		{name: "host pattern empty label", src: &config.OrgSource{From: "host", Host: "{org}..example.com"}, wantErr: "host pattern"},
		{name: "host pattern inner empty label", src: &config.OrgSource{From: "host", Host: "{org}.portal..example.com"}, wantErr: "host pattern"},
		{name: "host pattern trailing dot", src: &config.OrgSource{From: "host", Host: "{org}.example.com."}, wantErr: "host pattern"},
		{name: "path segment zero", src: &config.OrgSource{From: "path"}, wantErr: "path segment"},
		{name: "path segment negative", src: &config.OrgSource{From: "path", PathSegment: -1}, wantErr: "path segment"},
		{name: "header empty", src: &config.OrgSource{From: "header"}, wantErr: "header"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewOrgResolver(c.src)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, c.wantErr)
				}
				if r != (OrgResolver{}) {
					t.Error("a failed constructor must return the zero resolver")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.From() != c.from {
				t.Errorf("From() = %q, want %q", r.From(), c.from)
			}
		})
	}
}

type resolveCase struct {
	name       string
	host, path string
	header     map[string]string
	headers    http.Header // for a header sent more than once
	trusted    bool
	session    string
	want       string // "" = not ok
}

func runResolve(t *testing.T, r OrgResolver, cases []resolveCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range c.header {
				h.Set(k, v)
			}
			for k, vs := range c.headers {
				h[k] = vs
			}
			got, ok := r.Resolve(c.host, c.path, h.Values, c.trusted, c.session)
			if ok != (c.want != "") || got != c.want {
				t.Errorf("Resolve = %q, %v; want %q", got, ok, c.want)
			}
		})
	}
}

func TestResolveHost(t *testing.T) {
	r := mustResolver(t, &config.OrgSource{From: "host", Host: "{org}.portal.example.com"})
	runResolve(t, r, []resolveCase{
		{name: "one label", host: "acme.portal.example.com", want: "acme"},
		{name: "digits and hyphen", host: "acme-2.portal.example.com", want: "acme-2"},
		{name: "63 characters", host: strings.Repeat("a", 63) + ".portal.example.com", want: strings.Repeat("a", 63)},
		{name: "64 characters", host: strings.Repeat("a", 64) + ".portal.example.com"},
		{name: "two labels", host: "a.b.portal.example.com"},
		{name: "the base name itself", host: "portal.example.com"},
		{name: "empty label", host: ".portal.example.com"},
		{name: "suffix without the dot", host: "evil-portal.example.com"},
		{name: "pattern as a prefix of another name", host: "acme.portal.example.com.evil.test"},
		{name: "other domain", host: "acme.portal.example.org"},
		{name: "upper case", host: "ACME.portal.example.com"},
		{name: "with port", host: "acme.portal.example.com:443"},
		{name: "trailing dot", host: "acme.portal.example.com."},
		{name: "encoded label", host: "%61cme.portal.example.com"},
		{name: "underscore", host: "a_b.portal.example.com"},
		{name: "empty host", host: ""},
		{name: "header and session are ignored", host: "other.example.com", header: map[string]string{"X-Org": "acme"},
			trusted: true, session: "acme"},
	})
}

func TestResolvePath(t *testing.T) {
	r := mustResolver(t, &config.OrgSource{From: "path", PathSegment: 2})
	runResolve(t, r, []resolveCase{
		{name: "segment two", path: "/orgs/acme/invoices", want: "acme"},
		{name: "last segment", path: "/orgs/acme", want: "acme"},
		{name: "trailing slash", path: "/orgs/acme/", want: "acme"},
		{name: "beyond the end", path: "/orgs"},
		{name: "beyond the end with slash", path: "/orgs/"},
		{name: "root", path: "/"},
		{name: "empty path", path: ""},
		{name: "relative path", path: "orgs/acme/x"},
		{name: "empty segment before the index", path: "//acme/x"},
		{name: "empty segment after the index is not our concern", path: "/orgs/acme//x", want: "acme"},
		{name: "empty segment at the index", path: "/orgs//acme"},
		{name: "dot dot", path: "/orgs/../admin"},
		{name: "dot", path: "/orgs/./x"},
		{name: "encoded dot dot", path: "/orgs/%2e%2e/x"},
		{name: "encoded slash", path: "/orgs/acme%2fglobex/x"},
		{name: "encoded letters", path: "/orgs/%61cme/x"},
		{name: "path parameter", path: "/orgs/acme;x=1/y"},
		{name: "query kept out", path: "/orgs/acme?org=globex"},
		{name: "upper case", path: "/orgs/ACME/x"},
		{name: "over-long id", path: "/orgs/" + strings.Repeat("a", 64) + "/x"},
		{name: "63 characters", path: "/orgs/" + strings.Repeat("a", 63), want: strings.Repeat("a", 63)},
		{name: "session is ignored", path: "/orgs", session: "acme"},
	})
	first := mustResolver(t, &config.OrgSource{From: "path", PathSegment: 1})
	runResolve(t, first, []resolveCase{
		{name: "first segment", path: "/acme/x", want: "acme"},
		{name: "first of root", path: "/"},
	})
	far := mustResolver(t, &config.OrgSource{From: "path", PathSegment: 5})
	runResolve(t, far, []resolveCase{
		{name: "fifth", path: "/a/b/c/d/acme", want: "acme"},
		{name: "only four", path: "/a/b/c/d"},
	})
}

func TestResolveHeader(t *testing.T) {
	r := mustResolver(t, &config.OrgSource{From: "header", Header: "x-portcullis-org"})
	if r.Header() != "X-Portcullis-Org" {
		t.Errorf("Header() = %q, want the canonical name", r.Header())
	}
	runResolve(t, r, []resolveCase{
		{name: "trusted", header: map[string]string{"X-Portcullis-Org": "acme"}, trusted: true, want: "acme"},
		{name: "untrusted", header: map[string]string{"X-Portcullis-Org": "acme"}, trusted: false},
		{name: "untrusted falls back to nothing, not the session", header: map[string]string{"X-Portcullis-Org": "acme"}, session: "acme"},
		{name: "absent", trusted: true},
		{name: "invalid value", header: map[string]string{"X-Portcullis-Org": "../acme"}, trusted: true},
		{name: "spaces", header: map[string]string{"X-Portcullis-Org": " acme "}, trusted: true},
		{name: "list", header: map[string]string{"X-Portcullis-Org": "acme,globex"}, trusted: true},
		{name: "upper case", header: map[string]string{"X-Portcullis-Org": "ACME"}, trusted: true},
		// Sent twice, the header names no org: the portal may read the other value.
		{name: "repeated", headers: http.Header{"X-Portcullis-Org": {"acme", "globex"}}, trusted: true},
		{name: "repeated, same value", headers: http.Header{"X-Portcullis-Org": {"acme", "acme"}}, trusted: true},
	})
	if org, ok := r.Resolve("", "", nil, true, ""); ok || org != "" {
		t.Errorf("nil header func: %q, %v", org, ok)
	}
}

func TestResolveSession(t *testing.T) {
	r := mustResolver(t, nil)
	runResolve(t, r, []resolveCase{
		{name: "chosen", session: "acme", want: "acme"},
		{name: "none chosen", session: ""},
		{name: "invalid stored choice", session: "Acme"},
		{name: "host and path are ignored", host: "globex.portal.example.com", path: "/orgs/globex", session: "acme", want: "acme"},
	})
}

func TestResolveZero(t *testing.T) {
	var r OrgResolver
	if org, ok := r.Resolve("acme.portal.example.com", "/acme", func(string) []string { return []string{"acme"} }, true, "acme"); ok || org != "" {
		t.Errorf("zero resolver resolved %q", org)
	}
	if r.From() != "" || r.Header() != "" {
		t.Error("zero resolver names a source")
	}
}

func TestResolveAllocs(t *testing.T) {
	host := mustResolver(t, &config.OrgSource{From: "host", Host: "{org}.portal.example.com"})
	path := mustResolver(t, &config.OrgSource{From: "path", PathSegment: 2})
	sess := mustResolver(t, nil)
	for name, f := range map[string]func(){
		"host":    func() { sinkOrg, _ = host.Resolve("acme.portal.example.com", "/", nil, false, "") },
		"path":    func() { sinkOrg, _ = path.Resolve("h", "/orgs/acme/invoices/2026", nil, false, "") },
		"session": func() { sinkOrg, _ = sess.Resolve("h", "/", nil, false, "acme") },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}

var sinkOrg string

func BenchmarkResolve(b *testing.B) {
	host := mustResolver(b, &config.OrgSource{From: "host", Host: "{org}.portal.example.com"})
	path := mustResolver(b, &config.OrgSource{From: "path", PathSegment: 2})
	hdr := mustResolver(b, &config.OrgSource{From: "header", Header: "X-Portcullis-Org"})
	h := http.Header{"X-Portcullis-Org": {"acme"}}
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"host", func() { sinkOrg, _ = host.Resolve("acme.portal.example.com", "/", nil, false, "") }},
		{"path", func() { sinkOrg, _ = path.Resolve("h", "/orgs/acme/invoices/2026", nil, false, "") }},
		{"header", func() { sinkOrg, _ = hdr.Resolve("h", "/", h.Values, true, "") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.f()
			}
		})
	}
}
