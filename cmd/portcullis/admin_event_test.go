package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/store"
)

// TestAdminEvents: each business event from the command line, its dry run listing exactly
// what the real run then changes, the lifecycle policy applied, and usage errors named.
func TestAdminEvents(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	writeFile(t, b.cfg, adminConfig(b.rs.Addr)+"lifecycle:\n  privileged_roles:\n    admin: {max_elevation: 8h}\n")
	b.ok("org", "create", "acme", "--name", "Acme")
	b.ok("org", "create", "bigco", "--name", "BigCo")
	b.ok("member", "grant", "acme", alice, "--kind", "employee", "--role", "user", "--review-by", "300d")
	b.ok("member", "grant", "acme", bob, "--kind", "partner", "--expires", "20d")

	// Usage errors, before anything is opened.
	b.refused(1, []string{"--reason is required"}, "event", "contract-ended", "acme")
	b.refused(1, []string{"--until", "is required"}, "event", "contract-renewed", "acme", "--reason", "x")
	b.refused(2, nil, "event", "merged-into", "acme", "--reason", "x")
	b.refused(1, []string{"ORG", "want an org id"}, "event", "contract-ended", "Acme Corp", "--reason", "x")

	var dry, real eventResult
	b.okJSON(&dry, "event", "merged-into", "acme", "bigco", "--reason", "acquisition", "--dry-run")
	if !dry.DryRun || len(dry.Changes) != 3 {
		t.Fatalf("dry run %+v", dry)
	}
	if o := b.org("acme"); o.Status != store.OrgActive {
		t.Fatalf("the dry run changed acme: %+v", o)
	}
	out := b.ok("event", "merged-into", "acme", "bigco", "--reason", "acquisition", "--dry-run")
	for _, want := range []string{"merged into (dry run, nothing changed): 3 change(s)", "org.merged", "request.created", "access ends"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	b.okJSON(&real, "event", "merged-into", "acme", "bigco", "--reason", "acquisition")
	for i := range real.Changes {
		real.Changes[i].ID = ""
	}
	if !slices.Equal(dry.Changes, real.Changes) {
		t.Errorf("dry run %v, real run %v", dry.Changes, real.Changes)
	}
	if o := b.org("acme"); o.Status != store.OrgEnded || o.MergedInto != "bigco" {
		t.Errorf("acme after the merger: %+v", o)
	}
	evs := b.events()
	parent := slices.IndexFunc(evs, func(e audit.Event) bool { return e.Type == audit.BusinessMergedInto })
	if parent < 0 || evs[parent].Actor != testActor || evs[parent].Operation != real.Operation || len(evs) != parent+1+len(real.Changes) {
		t.Fatalf("events %+v", evs)
	}
	for _, e := range evs[parent+1:] {
		if e.Operation != real.Operation || e.Reason != "acquisition" {
			t.Errorf("child %+v", e)
		}
	}

	// The policy applies: a privileged role is never a standing one; and a renewal of an
	// organisation merged away is refused.
	b.ok("member", "grant", "bigco", alice, "--kind", "employee", "--review-by", "300d")
	b.refused(1, []string{"lifecycle"}, "event", "role-changed", "bigco", alice, "--role", "admin", "--reason", "promotion")
	b.refused(1, []string{"merged into bigco"}, "event", "contract-renewed", "acme", "--until", "365d", "--reason", "x")
	out = b.ok("event", "role-changed", "bigco", alice, "--role", "viewer", "--reason", "moved team")
	if !strings.Contains(out, "roles none → viewer; step-up elevations for bigco ended") {
		t.Errorf("role change printed %q", out)
	}

	// An offboarding ends the sessions too.
	if err := b.st.CreateSession(b.ctx, "h-alice", alice, "https://idp.example.com", "", []byte(`{}`), time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	var off eventResult
	b.okJSON(&off, "event", "offboarded", alice, "--reason", "left")
	if off.SessionsEnded != 1 || len(off.Changes) != 3 {
		t.Errorf("offboarding %+v", off)
	}
}

// TestAdminSupportMoved: support moved from one partner to another from the command line:
// the old partner's people lose their partner access, the new one's are asked for.
func TestAdminSupportMoved(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	const nina = "https://idp.newco.example|nina"
	b.ok("org", "create", "acme", "--name", "Acme")
	b.ok("org", "create", "oldco", "--name", "OldCo")
	b.ok("org", "create", "newco", "--name", "NewCo")
	b.ok("member", "grant", "oldco", bob, "--kind", "employee", "--review-by", "300d")
	b.ok("member", "grant", "acme", bob, "--kind", "partner", "--role", "support-desk", "--expires", "20d")
	b.ok("member", "grant", "newco", nina, "--kind", "employee", "--review-by", "300d")

	b.refused(1, []string{"FROM", "want an org id"}, "event", "support-moved", "acme", "Old Co", "newco", "--reason", "x")
	var dry, real eventResult
	b.okJSON(&dry, "event", "support-moved", "acme", "oldco", "newco", "--person", nina, "--reason", "CHG-77", "--dry-run")
	b.okJSON(&real, "event", "support-moved", "acme", "oldco", "newco", "--person", nina, "--reason", "CHG-77")
	for i := range real.Changes {
		real.Changes[i].ID = ""
	}
	if !slices.Equal(dry.Changes, real.Changes) || len(real.Changes) != 2 {
		t.Fatalf("dry run %v, real run %v", dry.Changes, real.Changes)
	}
	if m := b.membership("acme", bob); m.Status != store.MembershipRevoked {
		t.Errorf("bob in acme: %s", m.Status)
	}
	reqs, err := b.st.Requests(b.ctx, "acme", 10)
	if err != nil || len(reqs) != 1 || reqs[0].For != nina || reqs[0].Kind != store.KindPartner || !slices.Equal(reqs[0].Roles, []string{"support-desk"}) {
		t.Errorf("requests %+v %v", reqs, err)
	}
}
