package authz

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/store"
)

// FuzzResolve: whatever the request says, Resolve never panics and yields either nothing or
// a valid org id, and a header is never believed from an untrusted client.
func FuzzResolve(f *testing.F) {
	f.Add("acme.portal.example.com", "/orgs/acme/x", "acme", true, "acme", 2)
	f.Add("a.b.portal.example.com", "//..//", "../x", false, "", 1)
	f.Add("portal.example.com", "/orgs/%2e%2e", "ACME", true, "Acme", 9)
	f.Add("acme.portal.example.com.evil.test", "", "", false, "-", 0)
	resolvers := []OrgResolver{
		{},
		mustResolver(f, &config.OrgSource{From: "host", Host: "{org}.portal.example.com"}),
		mustResolver(f, &config.OrgSource{From: "header", Header: "X-Org"}),
		mustResolver(f, nil),
	}
	f.Fuzz(func(t *testing.T, host, path, hdr string, trusted bool, session string, segment int) {
		rs := resolvers
		if p, err := NewOrgResolver(&config.OrgSource{From: "path", PathSegment: segment % 70}); err == nil {
			rs = append(rs[:len(rs):len(rs)], p)
		}
		header := func(string) []string { return []string{hdr} }
		for _, r := range rs {
			org, ok := r.Resolve(host, path, header, trusted, session)
			if ok != (org != "") || ok && !syntax.OrgID(org) {
				t.Fatalf("%s: Resolve = %q, %v", r.From(), org, ok)
			}
			if ok && r.From() == "header" && !trusted {
				t.Fatalf("header believed from an untrusted client")
			}
		}
	})
}

// FuzzDecideEmail: no email address allows unless its domain is, ASCII case aside, exactly a
// verified domain of the organisation.
func FuzzDecideEmail(f *testing.F) {
	for _, s := range []string{"alice@acme.com", "Alice@ACME.com", "a@mail.acme.com", "a@\u212Aone.example", "@", "", `"a@acme.com"@x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, email string) {
		in := fixture()
		in.Email = email
		in.Org.Domains = append(in.Org.Domains, store.Domain{Name: "kone.example", Status: store.DomainVerified})
		d := Decide(in, now)
		dom := emailDomain(email)
		lower := []byte(dom)
		for i, c := range lower {
			if 'A' <= c && c <= 'Z' {
				lower[i] = c + 'a' - 'A'
			}
		}
		ok := string(lower) == "acme.com" || string(lower) == "kone.example"
		if d.Allow != ok {
			t.Fatalf("email %q: decision %s", email, d.Reason)
		}
	})
}
