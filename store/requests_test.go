package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

func TestRequests(t *testing.T) {
	f := newOrgFixture(t)
	f.createOrg("acme")
	base := f.grant("acme", alice, "viewer")

	// A request is stored pending, with its lapse time, an id, and its event.
	r, err := f.o.Via("token tok1").CreateRequest(f.ctx(), Request{Org: "acme", For: alice, Requester: alice, Role: "billing",
		Duration: 8 * time.Hour, Reason: "month end"}, time.Hour, alice)
	if err != nil {
		t.Fatal(err)
	}
	evs := f.expect([]audit.Type{audit.RequestCreated})
	if r.State != RequestPending || !validRequestID(r.ID) || !r.Lapses.Equal(r.Created.Add(time.Hour)) || evs[0].Via != "token tok1" ||
		evs[0].Detail["request"] != r.ID || evs[0].Actor != alice {
		t.Errorf("created %+v, event %+v", r, evs[0])
	}
	got, err := f.s.Request(f.ctx(), "acme", r.ID)
	if err != nil || got.ID != r.ID || got.Role != "billing" {
		t.Errorf("Request = %+v, %v", got, err)
	}
	for _, list := range [][]Request{must(f.s.Requests(f.ctx(), "acme", 0)), must(f.s.RequestsFor(f.ctx(), alice, 0))} {
		if len(list) != 1 || list[0].ID != r.ID {
			t.Errorf("listing %+v", list)
		}
	}

	// Deciding: the edit sees the membership, and an approval writes both in one transaction,
	// each with its event, and invalidates the membership.
	approved, err := f.o.DecideRequest(f.ctx(), "acme", r.ID, func(req *Request, m *Membership) (RequestStep, error) {
		if m == nil || m.Kind != KindEmployee || m.Created != base.Created {
			t.Errorf("membership given to the edit: %+v", m)
		}
		req.State, req.GrantedUntil = RequestApproved, req.Created.Add(8*time.Hour)
		req.Approvals = append(req.Approvals, Approval{By: "bob", Rule: "org_admin", At: req.Created})
		m.RoleGrants = append(m.RoleGrants, RoleGrant{Role: "billing", ExpiresAt: req.GrantedUntil, RequestID: req.ID})
		return RequestStep{Type: audit.RequestGranted, Membership: m, MembershipType: audit.MembershipChanged}, nil
	}, "bob", "ok")
	if err != nil {
		t.Fatal(err)
	}
	evs = f.expect([]audit.Type{audit.RequestGranted, audit.MembershipChanged}, invalMembership("acme", alice))
	if approved.State != RequestApproved || evs[1].Detail["request"] != r.ID || !strings.Contains(string(evs[1].After), r.ID) {
		t.Errorf("approved %+v, events %+v", approved, evs)
	}
	_, m, _ := f.s.Lookup(f.ctx(), "acme", alice)
	if len(m.RoleGrants) != 1 || m.RoleGrants[0].RequestID != r.ID || m.Created != base.Created {
		t.Errorf("membership after approval %+v", m)
	}

	// An edit's error writes nothing; unknown and malformed ids are not found.
	boom := errors.New("refused")
	if _, err := f.o.DecideRequest(f.ctx(), "acme", r.ID, func(*Request, *Membership) (RequestStep, error) { return RequestStep{}, boom }, "bob", "x"); !errors.Is(err, boom) {
		t.Errorf("edit error: %v", err)
	}
	f.expect(nil)
	for _, id := range []string{"req_aaaaaaaaaaaaaaaa", "x", "req_../../org", ""} {
		if _, err := f.s.Request(f.ctx(), "acme", id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Request(%q): %v", id, err)
		}
	}
	// Another org's request id is not found through this org.
	f.createOrg("beta")
	if _, err := f.s.Request(f.ctx(), "beta", r.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("request of acme through beta: %v", err)
	}

	// Invalid requests are refused before anything is written.
	for name, bad := range map[string]Request{
		"nothing asked":    {Org: "acme", For: alice, Requester: alice, Duration: time.Hour, Reason: "x"},
		"role and purpose": {Org: "acme", For: alice, Requester: alice, Role: "a", Purpose: "b", Duration: time.Hour, Reason: "x"},
		"no reason":        {Org: "acme", For: alice, Requester: alice, Role: "a", Duration: time.Hour},
		"no duration":      {Org: "acme", For: alice, Requester: alice, Role: "a", Reason: "x"},
		"unknown org":      {Org: "nope", For: alice, Requester: alice, Role: "a", Duration: time.Hour, Reason: "x"},
		"bad kind":         {Org: "acme", For: alice, Requester: alice, Kind: "vendor", Duration: time.Hour, Reason: "x"},
		"bad role":         {Org: "acme", For: alice, Requester: alice, Role: "A B", Duration: time.Hour, Reason: "x"},
		"no person":        {Org: "acme", Requester: alice, Role: "a", Duration: time.Hour, Reason: "x"},
	} {
		if _, err := f.o.CreateRequest(f.ctx(), bad, time.Hour, alice); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v", name, err)
		}
	}
	f.expect(nil)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestTokens(t *testing.T) {
	f := newOrgFixture(t)
	now := time.Now()
	s, tok, err := f.o.CreateToken(f.ctx(), Token{Name: "ci", Owner: "ops-alice", Operator: true, Expires: now.Add(24 * time.Hour)}, "ops-alice", "ci pipeline")
	if err != nil {
		t.Fatal(err)
	}
	evs := f.expect([]audit.Type{audit.TokenCreated})
	if evs[0].Reason != "ci pipeline" || evs[0].Detail["name"] != "ci" || evs[0].Actor != "ops-alice" {
		t.Errorf("event %+v", evs[0])
	}
	if !strings.HasPrefix(s, TokenPrefix+tok.ID+"_") || len(s) != len(TokenPrefix)+16+1+52 {
		t.Errorf("token %q", s)
	}
	// Neither the secret nor its hash is in the event.
	if strings.Contains(string(evs[0].After), s[len(TokenPrefix)+17:]) || strings.Contains(string(evs[0].After), tok.Hash) {
		t.Errorf("the event holds the secret or its hash: %s", evs[0].After)
	}
	got, err := f.s.TokenBySecret(f.ctx(), s)
	if err != nil || got.ID != tok.ID || !got.Operator || !got.Live(now) {
		t.Fatalf("TokenBySecret = %+v, %v", got, err)
	}
	// A token one character off, another prefix, or garbage is simply not found.
	last := s[len(s)-1]
	other := byte('a')
	if last == 'a' {
		other = 'b'
	}
	for _, bad := range []string{s[:len(s)-1] + string(other), strings.Replace(s, TokenPrefix, "pc_", 1), "", "pcadm_", s + "a", strings.ToUpper(s)} {
		if _, err := f.s.TokenBySecret(f.ctx(), bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("TokenBySecret(%q): %v", bad, err)
		}
	}
	// Redis holds no secret: the record is keyed and stored by its hash.
	keys, _ := f.raw.Keys(f.ctx(), "*").Result()
	for _, k := range keys {
		if v, _ := f.raw.Get(f.ctx(), k).Result(); strings.Contains(v, s) || strings.Contains(k, s) {
			t.Errorf("key %s holds the token", k)
		}
	}
	list, err := f.s.Tokens(f.ctx())
	if err != nil || len(list) != 1 || list[0].Hash != "" {
		t.Errorf("Tokens = %+v, %v", list, err)
	}
	if _, err := f.o.RevokeToken(f.ctx(), tok.ID, "ops-bob", "rotated"); err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.TokenRevoked})
	if got, _ := f.s.TokenBySecret(f.ctx(), s); got.Live(now) {
		t.Error("a revoked token is live")
	}
	for name, bad := range map[string]Token{
		"no end":          {Name: "x", Owner: "a"},
		"too long":        {Name: "x", Owner: "a", Expires: now.Add(2 * MaxTokenLifetime)},
		"no owner":        {Name: "x", Expires: now.Add(time.Hour)},
		"operator in org": {Name: "x", Owner: "a", Operator: true, Org: "acme", Expires: now.Add(time.Hour)},
	} {
		if _, _, err := f.o.CreateToken(f.ctx(), bad, "ops", "x"); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestOffboardRevokesTokens: offboarding ends the person's admin API tokens, and nobody
// else's.
func TestOffboardRevokesTokens(t *testing.T) {
	f := newOrgFixture(t)
	ctx := f.ctx()
	const alice, bob = "https://idp|alice", "https://idp|bob"
	f.createOrg("acme")
	f.grant("acme", alice, "org-admin")
	exp := time.Now().Add(24 * time.Hour)
	aliceTok, _, err := f.o.CreateToken(ctx, Token{Name: "a", Owner: alice, Expires: exp}, "ops", "x")
	if err != nil {
		t.Fatal(err)
	}
	bobTok, _, err := f.o.CreateToken(ctx, Token{Name: "b", Owner: bob, Expires: exp}, "ops", "x")
	if err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.TokenCreated, audit.TokenCreated})
	if _, err := f.o.Offboard(ctx, alice, "ops", "left"); err != nil {
		t.Fatal(err)
	}
	evs := f.expect([]audit.Type{audit.PersonOffboarded, audit.MembershipRevoked, audit.TokenRevoked},
		invalMembership("acme", alice), invalUser(alice))
	if got, _ := f.s.TokenBySecret(ctx, aliceTok); got == nil || got.Live(time.Now()) {
		t.Errorf("alice's token after her offboarding: %+v", got)
	}
	if got, _ := f.s.TokenBySecret(ctx, bobTok); got == nil || !got.Live(time.Now()) {
		t.Errorf("bob's token after alice's offboarding: %+v", got)
	}
	if evs[0].Detail["tokens"] == "" || evs[2].Reason != "left" || evs[2].Operation == "" || evs[2].Operation != evs[0].Operation {
		t.Errorf("events %+v", evs)
	}
}

// TestDecideRequestWatches: a change to a watched membership (the approver's own, revoked
// while the approval is being decided) between the edit's reads and the write makes the
// decision run again, on what is true now; nothing is written from the stale reads.
func TestDecideRequestWatches(t *testing.T) {
	f := newOrgFixture(t)
	f.createOrg("acme")
	f.grant("acme", alice, "viewer")
	f.grant("acme", bob, "org-admin")
	r, err := f.o.CreateRequest(f.ctx(), Request{Org: "acme", For: alice, Requester: alice, Role: "billing", Duration: time.Hour, Reason: "x"}, time.Hour, alice)
	if err != nil {
		t.Fatal(err)
	}
	f.expect([]audit.Type{audit.RequestCreated})
	runs := 0
	_, err = f.o.DecideRequest(f.ctx(), "acme", r.ID, func(req *Request, _ *Membership) (RequestStep, error) {
		runs++
		_, approver, err := f.s.Lookup(f.ctx(), "acme", bob)
		if err != nil {
			return RequestStep{}, err
		}
		if approver.Status != MembershipActive {
			return RequestStep{}, errors.New("the approver is no administrator any more")
		}
		if runs == 1 {
			// bob is revoked after his authority was read, before the approval is written.
			if _, err := f.o.Revoke(f.ctx(), "acme", bob, "ops", "left"); err != nil {
				return RequestStep{}, err
			}
		}
		req.Approvals = append(req.Approvals, Approval{By: bob, Rule: "org_admin", At: time.Now()})
		return RequestStep{Type: audit.RequestApproved}, nil
	}, bob, "ok", MemberRef{Org: "acme", User: bob})
	if err == nil || !strings.Contains(err.Error(), "no administrator") || runs != 2 {
		t.Fatalf("DecideRequest after the approver's revocation: runs %d, %v", runs, err)
	}
	f.expect([]audit.Type{audit.MembershipRevoked}, invalMembership("acme", bob))
	if got, _ := f.s.Request(f.ctx(), "acme", r.ID); len(got.Approvals) != 0 {
		t.Errorf("the stale approval was written: %+v", got.Approvals)
	}
	// Unwatched, the same race writes the stale approval: the watch is what prevents it.
	f.grant("acme", bob, "org-admin")
	runs = 0
	_, err = f.o.DecideRequest(f.ctx(), "acme", r.ID, func(req *Request, _ *Membership) (RequestStep, error) {
		runs++
		if runs == 1 {
			if _, err := f.o.Revoke(f.ctx(), "acme", bob, "ops", "left"); err != nil {
				return RequestStep{}, err
			}
		}
		req.Approvals = append(req.Approvals, Approval{By: bob, Rule: "org_admin", At: time.Now()})
		return RequestStep{Type: audit.RequestApproved}, nil
	}, bob, "ok")
	if err != nil || runs != 1 {
		t.Fatalf("unwatched: runs %d, %v", runs, err)
	}
}
