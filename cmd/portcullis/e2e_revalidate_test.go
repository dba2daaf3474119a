package main

import (
	"slices"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

// Session re-validation (oidc.revalidate, issue 16) through the real binary, two replicas on
// one Redis: a session checks back with the provider every second here; once the provider
// disables the person, their session ends on both replicas, and a person it keeps goes on.
func TestE2ESessionRevalidation(t *testing.T) {
	b := newAZBedWith(t, azOptions{oidc: "  scopes: [openid, email, profile, offline_access]\n  revalidate: {interval: 1s, grace: 30s}\n"})
	p1, p2 := b.px[0], b.px[1]
	alice, bob := b.newClient(), b.newClient()
	alice.signIn(p1, "alice")
	bob.signIn(p2, "bob")
	for _, px := range b.px {
		if r := alice.api(px, "/orgs/acme/home"); r.status != 200 {
			t.Fatalf("alice on %s: %d %s", px.name, r.status, r.body)
		}
	}
	// Sessions keep working across checks: wait for two of alice's, on either replica.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; b.idp.IdP.RefreshTokenUses("alice") < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("alice's session checked back %d times in 10 s", b.idp.IdP.RefreshTokenUses("alice"))
		}
		if r := alice.api(b.px[i%2], "/orgs/acme/home"); r.status != 200 {
			t.Fatalf("alice between checks on %s: %d %s", b.px[i%2].name, r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond) // the binary's clock is real: a poll, a second per check
	}

	b.idp.IdP.DisableUser("alice")
	for _, px := range []*azProxy{p2, p1} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := alice.api(px, "/orgs/acme/home")
			if r.status == 401 && r.reason() == "no_session" {
				break
			}
			if r.status != 200 || time.Now().After(deadline) {
				t.Fatalf("alice on %s after the provider disabled her: %d %s", px.name, r.status, r.body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Whatever reached the portal after the refusal, nothing does now.
	after := b.portal.hits.Load()
	if r := alice.api(p1, "/orgs/acme/home"); r.status != 401 || b.portal.hits.Load() != after {
		t.Fatalf("alice after the end: %d, portal hits %d → %d", r.status, after, b.portal.hits.Load())
	}
	if r := bob.api(p1, "/orgs/acme/home"); r.status != 200 {
		t.Fatalf("bob, whom the provider keeps: %d %s", r.status, r.body)
	}
	evs, _, err := b.aud.Tail(t.Context(), "0", 100000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e audit.Event) bool {
		return e.Type == audit.SessionEnded && e.User == b.user("sub-alice") && e.Reason == "idp_refresh_refused"
	}) {
		t.Error("no session.ended event with reason idp_refresh_refused")
	}
}
