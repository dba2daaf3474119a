package proxy

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
)

func testPolicy(mode string) *routePolicy {
	h := config.IdentityHeaders{User: "X-Portcullis-User", Email: "x-portcullis-email", Org: "X-Portcullis-Org", Roles: "X-Portcullis-Roles",
		Purpose: "X-Portcullis-Purpose", Kind: "X-Portcullis-Kind", Assertion: "X-Portcullis-Assertion", Sponsor: "X-Portcullis-Sponsor"}
	return &routePolicy{names: canonicalNames(h), forward: forwardModeOf(config.ForwardFull, mode)}
}

func assertionOf(r *rendered) string {
	h := http.Header{}
	r.set(h)
	return h.Get("X-Portcullis-Assertion")
}

// TestRenderReuse: a rendering, and the assertion in it, is reused for the same identity on
// the same route within the signer's reuse window, and for nothing else: not another person,
// address, organisation, role set, kind, step-up level, purpose, grant or sponsor, not another
// route, not after the window (nor before its signing), not after the key changed. Each case
// renders the base identity into a cache of its own first, so it is the variant alone that
// must miss.
func TestRenderReuse(t *testing.T) {
	key, _, err := assertion.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := assertion.New(key, "https://portal.example.com", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)
	pol := testPolicy("")
	base := func() identity {
		return identity{user: "iss|alice", email: "alice@acme.example", org: "acme", roles: []string{"admin", "user"}, kind: "employee",
			acr: "pwd", purpose: "audit", grantReason: "INC-1", grantEnd: now.Add(time.Hour), sponsor: ""}
	}
	// primed is a cache holding base's rendering on pol for route "billing", and it.
	primed := func(t *testing.T) (*renderCache, *rendered) {
		t.Helper()
		c := &renderCache{}
		id := base()
		r, err := c.render(pol, &id, "billing", sig, now)
		if err != nil || assertionOf(r) == "" {
			t.Fatalf("render: %v", err)
		}
		return c, r
	}

	t.Run("same identity within the window", func(t *testing.T) {
		c, first := primed(t)
		id := base()
		id.roles = []string{"admin", "user"} // equal, another slice
		if again, _ := c.render(pol, &id, "billing", sig, now.Add(sig.ReuseWindow()-time.Nanosecond)); again != first {
			t.Error("rendered again")
		}
	})
	for name, at := range map[string]time.Time{"at the window's end": now.Add(sig.ReuseWindow()), "before its signing": now.Add(-time.Second)} {
		t.Run(name, func(t *testing.T) {
			c, first := primed(t)
			id := base()
			if r, _ := c.render(pol, &id, "billing", sig, at); r == first || assertionOf(r) == assertionOf(first) {
				t.Error("reused")
			}
		})
	}
	for name, change := range map[string]func(*identity){
		"person":       func(i *identity) { i.user = "iss|bob" },
		"email":        func(i *identity) { i.email = "alice@other.example" },
		"org":          func(i *identity) { i.org = "beta" },
		"roles":        func(i *identity) { i.roles = []string{"admin"} },
		"role order":   func(i *identity) { i.roles = []string{"user", "admin"} },
		"no roles":     func(i *identity) { i.roles = nil },
		"kind":         func(i *identity) { i.kind = "partner" },
		"acr":          func(i *identity) { i.acr = "mfa" },
		"purpose":      func(i *identity) { i.purpose = "billing" },
		"grant reason": func(i *identity) { i.grantReason = "INC-2" },
		"grant end":    func(i *identity) { i.grantEnd = i.grantEnd.Add(time.Minute) },
		"no grant end": func(i *identity) { i.grantEnd = time.Time{} },
		"sponsor":      func(i *identity) { i.sponsor = "iss|carol" },
	} {
		t.Run(name, func(t *testing.T) {
			c, first := primed(t)
			id := base()
			change(&id)
			if r, _ := c.render(pol, &id, "billing", sig, now.Add(time.Second)); r == first || assertionOf(r) == assertionOf(first) {
				t.Error("got the base identity's rendering")
			}
		})
	}
	t.Run("another route name", func(t *testing.T) {
		c, first := primed(t)
		id := base()
		if r, _ := c.render(pol, &id, "admin", sig, now.Add(time.Second)); r == first {
			t.Error("reused")
		}
	})
	t.Run("another route's policy", func(t *testing.T) {
		c, first := primed(t)
		id := base()
		if r, _ := c.render(testPolicy(""), &id, "billing", sig, now.Add(time.Second)); r == first {
			t.Error("reused")
		}
	})
	t.Run("the caller's roles are not shared", func(t *testing.T) {
		c := &renderCache{}
		id := base()
		mine := []string{"admin", "user"}
		id.roles = mine
		r, _ := c.render(pol, &id, "billing", sig, now)
		mine[0] = "root"
		if r.roles[0] != "admin" {
			t.Error("the rendering shares the caller's roles")
		}
		id.roles = []string{"admin", "user"}
		if again, _ := c.render(pol, &id, "billing", sig, now); again != r {
			t.Error("not reused after the caller changed its slice")
		}
	})
	t.Run("after the key changed", func(t *testing.T) {
		other, err := assertion.New(key, "https://portal.example.com", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c := &renderCache{}
		id := base()
		first, _ := c.render(pol, &id, "billing", other, now)
		k2, _, _ := assertion.GenerateKey()
		if err := other.SetKey(k2); err != nil {
			t.Fatal(err)
		}
		if r, _ := c.render(pol, &id, "billing", other, now.Add(time.Second)); r == first || assertionOf(r) == assertionOf(first) {
			t.Error("an assertion signed with the replaced key was reused")
		}
	})
}

// TestRenderModes: each identity_forward mode sends what it says, and only the modes that
// send an assertion need the signing key.
func TestRenderModes(t *testing.T) {
	pending := assertion.NewPending("https://portal.example.com", time.Minute)
	id := identity{user: "iss|alice", email: "alice@acme.example", org: "acme", roles: []string{"admin", "user"}, kind: "employee",
		purpose: "audit", grantReason: "INC-1\r\nX: y", grantEnd: time.Date(2026, 12, 8, 11, 0, 0, 0, time.UTC)}
	now := time.Date(2026, 12, 8, 10, 0, 0, 0, time.UTC)
	var c renderCache
	for mode, want := range map[string][]string{
		config.ForwardHeaders: {"X-Portcullis-User", "X-Portcullis-Email", "X-Portcullis-Org", "X-Portcullis-Roles", "X-Portcullis-Purpose", "X-Portcullis-Kind"},
		config.ForwardNone:    nil,
	} {
		r, err := c.render(testPolicy(mode), &id, "billing", pending, now)
		if err != nil {
			t.Fatalf("%s without a key: %v", mode, err)
		}
		h := http.Header{}
		r.set(h)
		if len(h) != len(want) {
			t.Errorf("%s: %v, want %v", mode, h, want)
		}
		for _, n := range want {
			if len(h[n]) != 1 {
				t.Errorf("%s: %s = %q", mode, n, h[n])
			}
		}
		if mode == config.ForwardHeaders && (h.Get("X-Portcullis-Roles") != "admin,user" || h.Get("X-Portcullis-Email") != "alice@acme.example") {
			t.Errorf("headers: %v", h)
		}
	}
	for _, mode := range []string{config.ForwardFull, config.ForwardAssertion} {
		if _, err := c.render(testPolicy(mode), &id, "billing", pending, now); !errors.Is(err, assertion.ErrNoKey) {
			t.Errorf("%s without a key: %v, want ErrNoKey", mode, err)
		}
	}
	key, _, _ := assertion.GenerateKey()
	if err := pending.SetKey(key); err != nil {
		t.Fatal(err)
	}
	r, err := c.render(testPolicy(config.ForwardAssertion), &id, "billing", pending, now)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	r.set(h)
	if len(h) != 1 || h.Get("X-Portcullis-Assertion") == "" {
		t.Errorf("assertion only: %v", h)
	}
	// Without a signer (none configured) full sends the headers and no assertion.
	r, err = c.render(testPolicy(config.ForwardFull), &id, "billing", nil, now)
	if err != nil {
		t.Fatal(err)
	}
	h = http.Header{}
	r.set(h)
	if h.Get("X-Portcullis-Assertion") != "" || h.Get("X-Portcullis-User") != "iss|alice" {
		t.Errorf("full without a signer: %v", h)
	}
}

// TestRenderedHeadersAreNotShared: a request's header map holds the rendering's values in
// capacity-limited slices, so adding a value to one request's header (an append) cannot
// write into the rendering, nor into another request's header.
func TestRenderedHeadersAreNotShared(t *testing.T) {
	var c renderCache
	id := identity{user: "iss|alice", email: "alice@acme.example", org: "acme"}
	r, err := c.render(testPolicy(config.ForwardHeaders), &id, "billing", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, b := http.Header{}, http.Header{}
	r.set(a)
	r.set(b)
	a.Add("X-Portcullis-User", "mallory")
	if got := b.Values("X-Portcullis-User"); len(got) != 1 || got[0] != "iss|alice" {
		t.Errorf("another request's header: %q", got)
	}
	if got := a.Values("X-Portcullis-Email"); len(got) != 1 {
		t.Errorf("email: %q", got)
	}
}

func BenchmarkRender(b *testing.B) {
	key, _, _ := assertion.GenerateKey()
	sig, _ := assertion.New(key, "https://portal.example.com", time.Minute)
	var c renderCache
	pol := testPolicy("")
	id := identity{user: "iss|alice", email: "alice@acme.example", org: "acme", roles: []string{"admin", "user"}, kind: "employee"}
	now := time.Now()
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.render(pol, &id, "billing", sig, now)
		if err != nil {
			b.Fatal(err)
		}
		r.set(h)
	}
}

// TestForwardModeReloads: identity.forward comes from the configuration through SettingsOf,
// a route's own mode wins, and a reload applies a changed one.
func TestForwardModeReloads(t *testing.T) {
	c := &config.Config{Identity: config.Identity{Forward: config.ForwardHeaders}, Routes: []config.Route{
		{Name: "a", Path: "/a", UpstreamURL: mustURL(t, "http://127.0.0.1:9")},
		{Name: "b", Path: "/b", UpstreamURL: mustURL(t, "http://127.0.0.1:9"), IdentityForward: config.ForwardNone},
	}}
	set := SettingsOf(c)
	s, err := New(set, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := s.state.Load()
	if st.policies[0].forward != forwardHeaders || st.policies[1].forward != forwardNone {
		t.Fatalf("modes %v %v", st.policies[0].forward, st.policies[1].forward)
	}
	set.Forward = config.ForwardAssertion
	if err := s.Reload(set); err != nil {
		t.Fatal(err)
	}
	st = s.state.Load()
	if st.policies[0].forward != forwardAssertion || st.policies[1].forward != forwardNone {
		t.Errorf("after reload: modes %v %v", st.policies[0].forward, st.policies[1].forward)
	}
}
