package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// These tests drive `portcullis admin` in-process, through run, against a real redis-server,
// and read what it did back through the store.

const (
	testActor = "ops@example.com"
	alice     = "https://idp.example.com|alice"
	bob       = "https://idp.example.com|bob"
)

// adminBed is a private Redis, a configuration file pointing at it, and the store over it.
type adminBed struct {
	t   *testing.T
	rs  *redistest.Server
	cfg string
	st  *store.Store
	ctx context.Context
}

func newAdminBed(t *testing.T) *adminBed {
	t.Helper()
	rs := redistest.Start(t)
	cfg := filepath.Join(t.TempDir(), "portcullis.yaml")
	writeFile(t, cfg, adminConfig(rs.Addr))
	st, err := store.New(config.Redis{Address: rs.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &adminBed{t: t, rs: rs, cfg: cfg, st: st, ctx: ctx}
}

func adminConfig(redisAddr string) string {
	return fmt.Sprintf(`tls: {mode: self_signed}
redis:
  address: %s
  dial_timeout: 2s
  read_timeout: 5s
routes:
  - name: app
    upstream: http://127.0.0.1:9
`, redisAddr)
}

// raw runs `portcullis admin args…` as given (no flags added).
func (b *adminBed) raw(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(append([]string{"admin"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// admin runs `portcullis admin args… --break-glass --config FILE --actor testActor`: the
// commands straight against Redis (TestAdminThroughTheAPI runs them through the API).
func (b *adminBed) admin(args ...string) (code int, stdout, stderr string) {
	return b.raw(append(args, "--break-glass", "--config", b.cfg, "--actor", testActor)...)
}

// ok runs admin and fails the test unless it exits 0.
func (b *adminBed) ok(args ...string) string {
	b.t.Helper()
	code, out, errOut := b.admin(args...)
	if code != 0 {
		b.t.Fatalf("admin %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// okJSON runs admin with --json and decodes its output into v.
func (b *adminBed) okJSON(v any, args ...string) {
	b.t.Helper()
	out := b.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		b.t.Fatalf("admin %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// refused runs admin, wants exit code want and a stderr containing every part of wantErr.
func (b *adminBed) refused(want int, wantErr []string, args ...string) {
	b.t.Helper()
	code, out, errOut := b.admin(args...)
	if code != want {
		b.t.Errorf("admin %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
		return
	}
	for _, w := range wantErr {
		if !strings.Contains(errOut, w) {
			b.t.Errorf("admin %s: stderr %q does not contain %q", strings.Join(args, " "), errOut, w)
		}
	}
}

// events returns the audit stream.
func (b *adminBed) events() []audit.Event {
	b.t.Helper()
	evs, _, err := store.NewAudit(b.st, 0).Tail(b.ctx, "0", 10000, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	return evs
}

// lastEvent returns the newest event of type typ, failing the test if there is none.
func (b *adminBed) lastEvent(typ audit.Type) audit.Event {
	b.t.Helper()
	evs := b.events()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i]
		}
	}
	b.t.Fatalf("no %s event in %+v", typ, evs)
	return audit.Event{}
}

func (b *adminBed) org(id string) *store.Org {
	b.t.Helper()
	o, err := b.st.Org(b.ctx, id)
	if err != nil {
		b.t.Fatal(err)
	}
	return o
}

func (b *adminBed) membership(org, user string) *store.Membership {
	b.t.Helper()
	_, m, err := b.st.Lookup(b.ctx, org, user)
	if err != nil || m == nil {
		b.t.Fatalf("membership %s/%s: %v, %v", org, user, m, err)
	}
	return m
}

// field decodes one field of a stored record (an event's Before or After).
func field(t *testing.T, rec json.RawMessage, name string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec, &m); err != nil {
		t.Fatalf("record %s: %v", rec, err)
	}
	return m[name]
}

func near(got, want time.Time) bool { return got.Sub(want).Abs() < time.Minute }

func TestAdminOrg(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)

	out := b.ok("org", "create", "acme", "--name", "Acme Corp", "--contact", "it@acme.example", "--reason", "signed TCK-1")
	if !strings.Contains(out, `created org acme "Acme Corp" (active)`) {
		t.Errorf("create printed %q", out)
	}
	if o := b.org("acme"); o.Name != "Acme Corp" || o.Status != store.OrgActive || o.Contact != "it@acme.example" {
		t.Errorf("stored org %+v", o)
	}
	e := b.lastEvent(audit.OrgCreated)
	if e.Actor != testActor || e.Org != "acme" || e.Reason != "signed TCK-1" || len(e.Before) != 0 || field(t, e.After, "name") != "Acme Corp" {
		t.Errorf("org.created event %+v", e)
	}

	// --json prints the record in its stored form.
	var created map[string]any
	b.okJSON(&created, "org", "create", "globex", "--name", "Globex")
	if created["id"] != "globex" || created["name"] != "Globex" || created["status"] != "active" || created["updated"] == nil {
		t.Errorf("create --json = %v", created)
	}

	if out := b.ok("org", "show", "acme"); !strings.Contains(out, "Acme Corp") || !strings.Contains(out, "it@acme.example") {
		t.Errorf("show printed %q", out)
	}
	var shown store.Org
	b.okJSON(&shown, "org", "show", "acme")
	if shown.ID != "acme" || shown.Contact != "it@acme.example" {
		t.Errorf("show --json = %+v", shown)
	}

	// Suspend needs a reason; without one nothing changes.
	b.refused(1, []string{"--reason", "required"}, "org", "suspend", "acme")
	if o := b.org("acme"); o.Status != store.OrgActive {
		t.Fatalf("status %s after a refused suspend", o.Status)
	}
	if out := b.ok("org", "suspend", "acme", "--reason", "unpaid invoice"); !strings.Contains(out, "org acme: suspended") {
		t.Errorf("suspend printed %q", out)
	}
	e = b.lastEvent(audit.OrgStatusChanged)
	if e.Reason != "unpaid invoice" || e.Actor != testActor || field(t, e.Before, "status") != "active" || field(t, e.After, "status") != "suspended" {
		t.Errorf("suspend event %+v", e)
	}
	b.ok("org", "activate", "acme")
	if o := b.org("acme"); o.Status != store.OrgActive {
		t.Errorf("status after activate: %s", o.Status)
	}

	// End, with contract end and merger.
	b.refused(1, []string{"merged into nope", "not found"}, "org", "end", "acme", "--reason", "merged", "--merged-into", "nope")
	b.refused(1, []string{"--merged-into", "itself"}, "org", "end", "acme", "--reason", "merged", "--merged-into", "acme")
	var ended store.Org
	b.okJSON(&ended, "org", "end", "acme", "--reason", "merged into globex", "--contract-end", "2026-12-31T00:00:00Z", "--merged-into", "globex")
	want := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	if o := b.org("acme"); o.Status != store.OrgEnded || !o.ContractEnd.Equal(want) || o.MergedInto != "globex" || ended.MergedInto != "globex" {
		t.Errorf("after end: stored %+v, printed %+v", o, ended)
	}
	if e := b.lastEvent(audit.OrgStatusChanged); e.Reason != "merged into globex" || field(t, e.After, "merged_into") != "globex" {
		t.Errorf("end event %+v", e)
	}

	// Unknown org; duplicate; bad id.
	b.refused(1, []string{"org show", "nope", "not found"}, "org", "show", "nope")
	b.refused(1, []string{"not found"}, "org", "suspend", "nope", "--reason", "x")
	b.refused(1, []string{"already exists"}, "org", "create", "acme", "--name", "Again")
	b.refused(1, []string{`ID "Acme"`, "[a-z0-9-]"}, "org", "create", "Acme", "--name", "x")
	b.refused(1, []string{"--name", "required", "--contact"}, "org", "create", "x", "--contact", "not an address")
}

func TestAdminOrgList(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "b-org", "--name", "B")
	b.ok("org", "create", "a-org", "--name", "A")
	var orgs []store.Org
	b.okJSON(&orgs, "org", "list")
	if len(orgs) != 2 || orgs[0].ID != "a-org" || orgs[1].ID != "b-org" {
		t.Errorf("org list --json = %+v", orgs)
	}
	if out := b.ok("org", "list"); !strings.Contains(out, "a-org") || !strings.Contains(out, "STATUS") {
		t.Errorf("org list printed %q", out)
	}
}

func TestAdminDomain(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")

	if out := b.ok("domain", "add", "acme", "Acme.Example."); !strings.Contains(out, "domain acme.example pending") {
		t.Errorf("add printed %q", out)
	}
	b.ok("domain", "verify", "acme", "acme.example", "--reason", "DNS TXT seen")
	if o, err := b.st.OrgByDomain(b.ctx, "acme.example"); err != nil || o.ID != "acme" || o.Domains[0].Status != store.DomainVerified {
		t.Fatalf("OrgByDomain = %+v, %v", o, err)
	}
	if e := b.lastEvent(audit.DomainVerified); e.Reason != "DNS TXT seen" || e.Detail["domain"] != "acme.example" || e.Actor != testActor {
		t.Errorf("verify event %+v", e)
	}
	b.ok("domain", "pending", "acme", "acme.example")
	b.refused(1, []string{"--reason"}, "domain", "lapse", "acme", "acme.example")
	var o store.Org
	b.okJSON(&o, "domain", "lapse", "acme", "acme.example", "--reason", "registration expired")
	if len(o.Domains) != 1 || o.Domains[0].Status != store.DomainLapsed {
		t.Errorf("lapse --json = %+v", o)
	}
	if e := b.lastEvent(audit.DomainLapsed); e.Reason != "registration expired" {
		t.Errorf("lapse event %+v", e)
	}

	b.refused(1, []string{"already exists"}, "domain", "add", "acme", "acme.example")
	b.refused(1, []string{"not found"}, "domain", "verify", "acme", "other.example")
	b.refused(1, []string{"not found"}, "domain", "add", "nope", "x.example")
	b.refused(1, []string{`DOMAIN "not a domain"`}, "domain", "add", "acme", "not a domain")
	b.refused(2, []string{"want ORG DOMAIN"}, "domain", "add", "acme")
}

func TestAdminMember(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	now := time.Now()

	// Grant, naming the person by issuer and subject.
	var granted map[string]any
	b.okJSON(&granted, "member", "grant", "acme", "--issuer", "https://idp.example.com", "--subject", "alice",
		"--kind", "partner", "--role", "viewer", "--role", "billing", "--role", "viewer",
		"--purpose", "audit:TCK-9:30d", "--purpose", "support:case 7: urgent:2030-01-01T00:00:00Z",
		"--expires", "90d", "--review-by", "2160h", "--approved-by", "cfo@example.com", "--reason", "onboarding TCK-9")
	for _, k := range []string{"org", "user", "kind", "roles", "grants", "status", "expires_at", "review_by", "granted_by", "approved_by", "created"} {
		if _, ok := granted[k]; !ok {
			t.Errorf("grant --json has no %q: %v", k, granted)
		}
	}
	m := b.membership("acme", alice)
	if m.Kind != store.KindPartner || m.Status != store.MembershipActive || !slices.Equal(m.Roles, []string{"billing", "viewer"}) ||
		m.GrantedBy != testActor || m.ApprovedBy != "cfo@example.com" ||
		!near(m.ExpiresAt, now.Add(90*24*time.Hour)) || !near(m.ReviewBy, now.Add(90*24*time.Hour)) {
		t.Errorf("granted membership %+v", m)
	}
	if len(m.Grants) != 2 || m.Grants[0].Purpose != "audit" || m.Grants[0].Reason != "TCK-9" || !near(m.Grants[0].ExpiresAt, now.Add(30*24*time.Hour)) ||
		m.Grants[1].Reason != "case 7: urgent" || !m.Grants[1].ExpiresAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		m.Grants[1].ApprovedBy != "cfo@example.com" || m.Grants[1].GrantedBy != testActor {
		t.Errorf("grants %+v", m.Grants)
	}
	e := b.lastEvent(audit.MembershipGranted)
	if e.Actor != testActor || e.User != alice || e.Org != "acme" || e.Reason != "onboarding TCK-9" || len(e.Before) != 0 || field(t, e.After, "kind") != "partner" {
		t.Errorf("grant event %+v", e)
	}

	// Change.
	b.ok("member", "change", "acme", alice, "--add-role", "admin", "--remove-role", "billing", "--kind", "employee",
		"--remove-purpose", "audit", "--add-purpose", "support:case 8", "--expires", "never", "--reason", "promoted")
	m = b.membership("acme", alice)
	if m.Kind != store.KindEmployee || !slices.Equal(m.Roles, []string{"admin", "viewer"}) || !m.ExpiresAt.IsZero() ||
		len(m.Grants) != 1 || m.Grants[0].Purpose != "support" || m.Grants[0].Reason != "case 8" || !m.Grants[0].ExpiresAt.IsZero() {
		t.Errorf("changed membership %+v", m)
	}
	e = b.lastEvent(audit.MembershipChanged)
	if e.Reason != "promoted" || field(t, e.Before, "kind") != "partner" || field(t, e.After, "kind") != "employee" {
		t.Errorf("change event %+v", e)
	}
	b.refused(1, []string{`--remove-role "billing"`, "no such role"}, "member", "change", "acme", alice, "--remove-role", "billing")
	b.refused(1, []string{`--remove-purpose "audit"`, "no such purpose"}, "member", "change", "acme", alice, "--remove-purpose", "audit")
	b.refused(2, []string{"nothing to change"}, "member", "change", "acme", alice)
	b.refused(1, []string{"not found"}, "member", "change", "acme", bob, "--add-role", "x")

	// Show and list.
	if out := b.ok("member", "show", "acme", alice); !strings.Contains(out, alice) || !strings.Contains(out, "admin,viewer") {
		t.Errorf("show printed %q", out)
	}
	var shown store.Membership
	b.okJSON(&shown, "member", "show", "acme", alice)
	if shown.User != alice || shown.Kind != store.KindEmployee {
		t.Errorf("show --json = %+v", shown)
	}
	b.ok("member", "grant", "acme", bob, "--kind", "support")
	var list []store.Membership
	b.okJSON(&list, "member", "list", "acme")
	if len(list) != 2 || list[0].User != alice || list[1].User != bob {
		t.Errorf("list --json = %+v", list)
	}
	b.ok("org", "create", "empty", "--name", "Empty")
	if out := b.ok("member", "list", "empty", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("empty list --json = %q, want []", out)
	}

	// Revoke: --reason is required, and nothing changes without it.
	b.refused(1, []string{"--reason is required"}, "member", "revoke", "acme", alice)
	if m := b.membership("acme", alice); m.Status != store.MembershipActive {
		t.Fatalf("status %s after a refused revoke", m.Status)
	}
	if out := b.ok("member", "revoke", "acme", alice, "--reason", "left the company"); !strings.Contains(out, "revoked") {
		t.Errorf("revoke printed %q", out)
	}
	if m := b.membership("acme", alice); m.Status != store.MembershipRevoked {
		t.Errorf("status after revoke: %s", m.Status)
	}
	e = b.lastEvent(audit.MembershipRevoked)
	if e.Actor != testActor || e.Reason != "left the company" || e.User != alice ||
		field(t, e.Before, "status") != "active" || field(t, e.After, "status") != "revoked" {
		t.Errorf("revoke event %+v", e)
	}
	if orgs, _ := b.st.OrgsOf(b.ctx, alice); len(orgs) != 0 {
		t.Errorf("OrgsOf after revoke = %v", orgs)
	}
	n := len(b.events())
	if out := b.ok("member", "revoke", "acme", alice, "--reason", "again"); !strings.Contains(out, "already") {
		t.Errorf("second revoke printed %q", out)
	}
	if len(b.events()) != n {
		t.Error("revoking a revoked membership recorded an event")
	}
	b.refused(1, []string{"not found"}, "member", "show", "acme", "https://idp.example.com|nobody")
	b.refused(1, []string{"org nope", "not found"}, "member", "show", "nope", alice)
}

func TestAdminMemberInvite(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	// Employees are invited at the organisation's own verified domains.
	b.refused(1, []string{"verified domains"}, "member", "invite", "acme", "carol@acme.example", "--kind", "employee", "--reason", "x")
	b.ok("domain", "add", "acme", "acme.example")
	b.ok("domain", "verify", "acme", "acme.example")
	var inv store.Invitation
	b.okJSON(&inv, "member", "invite", "acme", "Carol@Acme.example", "--kind", "employee", "--role", "viewer",
		"--purpose", "audit:TCK-3", "--until", "7d", "--reason", "new hire")
	if inv.Email != "carol@acme.example" || inv.Kind != store.KindEmployee || inv.InvitedBy != testActor || !near(inv.Until, time.Now().Add(7*24*time.Hour)) {
		t.Errorf("invite --json = %+v", inv)
	}
	invs, err := b.st.Invitations(b.ctx, "carol@acme.example")
	if err != nil || len(invs) != 1 || !slices.Equal(invs[0].Roles, []string{"viewer"}) || invs[0].Grants[0].Reason != "TCK-3" {
		t.Fatalf("stored invitations %+v, %v", invs, err)
	}
	if e := b.lastEvent(audit.MembershipInvited); e.Actor != testActor || e.Reason != "new hire" || e.Detail["email"] != "carol@acme.example" {
		t.Errorf("invite event %+v", e)
	}
	// It binds to the first person who signs in with the address verified.
	carol := "https://idp.example.com|carol"
	if bound, err := store.NewOrgs(b.st, nil).BindInvitations(b.ctx, "carol@acme.example", true, carol); err != nil || !slices.Equal(bound, []string{"acme"}) {
		t.Fatalf("bind = %v, %v", bound, err)
	}
	if m := b.membership("acme", carol); m.GrantedBy != testActor || m.Kind != store.KindEmployee {
		t.Errorf("bound membership %+v", m)
	}
	// Listed until used; withdrawn with a reason.
	b.ok("member", "invite", "acme", "dan@acme.example", "--kind", "employee", "--reason", "new hire")
	if out := b.ok("member", "invitations", "acme"); !strings.Contains(out, "dan@acme.example") || strings.Contains(out, "carol@") {
		t.Errorf("member invitations:\n%s", out)
	}
	b.refused(1, []string{"--reason"}, "member", "withdraw", "acme", "dan@acme.example")
	b.ok("member", "withdraw", "acme", "dan@acme.example", "--reason", "offer declined")
	if e := b.lastEvent(audit.InvitationWithdrawn); e.Actor != testActor || e.Reason != "offer declined" {
		t.Errorf("withdraw event %+v", e)
	}
	if out := b.ok("member", "invitations", "acme"); !strings.Contains(out, "no invitations") {
		t.Errorf("member invitations after the withdrawal:\n%s", out)
	}
	b.refused(1, []string{"not found"}, "member", "withdraw", "acme", "dan@acme.example", "--reason", "again")
	b.refused(1, []string{`EMAIL "carol"`}, "member", "invite", "acme", "carol", "--kind", "employee")
	b.refused(1, []string{"--kind", "required"}, "member", "invite", "acme", "carol@acme.example")
	b.refused(1, []string{"not found"}, "member", "invite", "nope", "carol@acme.example", "--kind", "employee")
}

func TestAdminPersonOffboard(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	for _, org := range []string{"acme", "globex"} {
		b.ok("org", "create", org, "--name", org)
		b.ok("member", "grant", org, alice, "--kind", "employee")
	}
	b.ok("member", "grant", "acme", bob, "--kind", "employee")
	// Two sessions of alice, one of bob.
	for _, s := range []struct{ h, user string }{{"h-alice-1", alice}, {"h-alice-2", alice}, {"h-bob", bob}} {
		if err := b.st.CreateSession(b.ctx, s.h, s.user, "https://idp.example.com", "", []byte(`{}`), time.Hour, time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	b.refused(1, []string{"--reason is required"}, "person", "offboard", alice)
	var res struct {
		User          string   `json:"user"`
		Orgs          []string `json:"orgs"`
		SessionsEnded int      `json:"sessions_ended"`
	}
	b.okJSON(&res, "person", "offboard", "--issuer", "https://idp.example.com", "--subject", "alice", "--reason", "left the company")
	if res.User != alice || !slices.Equal(res.Orgs, []string{"acme", "globex"}) || res.SessionsEnded != 2 {
		t.Errorf("offboard --json = %+v", res)
	}
	for _, h := range []string{"h-alice-1", "h-alice-2"} {
		if _, err := b.st.LoadSession(b.ctx, h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %s after offboarding: %v, want ErrNotFound", h, err)
		}
	}
	if _, err := b.st.LoadSession(b.ctx, "h-bob"); err != nil {
		t.Errorf("bob's session: %v", err)
	}
	for _, org := range []string{"acme", "globex"} {
		if m := b.membership(org, alice); m.Status != store.MembershipRevoked {
			t.Errorf("%s membership after offboarding: %s", org, m.Status)
		}
	}
	if m := b.membership("acme", bob); m.Status != store.MembershipActive {
		t.Errorf("bob's membership: %s", m.Status)
	}
	e := b.lastEvent(audit.PersonOffboarded)
	if e.Actor != testActor || e.User != alice || e.Reason != "left the company" || e.Detail["orgs"] != "acme,globex" {
		t.Errorf("offboard event %+v", e)
	}
	// Each membership's revocation carries the reason too.
	if e := b.lastEvent(audit.MembershipRevoked); e.Reason != "left the company" || e.User != alice {
		t.Errorf("revoke event %+v", e)
	}
	// Again: nothing left, and the line says so.
	if out := b.ok("person", "offboard", alice, "--reason", "again"); !strings.Contains(out, "revoked in -; 0 session(s) ended") {
		t.Errorf("second offboard printed %q", out)
	}
}

func TestAdminReviewDue(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	b.ok("member", "grant", "acme", alice, "--kind", "employee", "--review-by", "10d")
	b.ok("member", "grant", "acme", bob, "--kind", "employee", "--review-by", "40d")
	b.ok("member", "grant", "acme", "https://idp.example.com|carol", "--kind", "employee")

	if out := b.ok("review", "due"); !strings.Contains(out, "no reviews due") {
		t.Errorf("review due printed %q", out)
	}
	var due []store.Membership
	b.okJSON(&due, "review", "due", "--within", "30d")
	if len(due) != 1 || due[0].User != alice {
		t.Errorf("due within 30d = %+v", due)
	}
	b.okJSON(&due, "review", "due", "--within", "1000h")
	if len(due) != 2 || due[0].User != alice || due[1].User != bob {
		t.Errorf("due within 1000h = %+v", due)
	}
	if out := b.ok("review", "due", "--within", "60d"); !strings.Contains(out, alice) || !strings.Contains(out, bob) {
		t.Errorf("review due printed %q", out)
	}
	if out := b.ok("review", "due", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("nothing due --json = %q, want []", out)
	}
	b.refused(1, []string{`--within "soon"`}, "review", "due", "--within", "soon")
	b.refused(1, []string{`--within "-1d"`, "negative"}, "review", "due", "--within", "-1d")
}

func TestAdminErrors(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	b.ok("member", "grant", "acme", alice, "--kind", "employee")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"unknown org", []string{"member", "grant", "nope", alice, "--kind", "employee"}, 1, []string{"org nope", "not found"}},
		{"unknown org list", []string{"member", "list", "nope"}, 1, []string{"nope", "not found"}},
		{"bad kind", []string{"member", "grant", "acme", bob, "--kind", "boss"}, 1, []string{`--kind "boss"`, "employee, partner"}},
		{"missing kind", []string{"member", "grant", "acme", bob}, 1, []string{"--kind is required"}},
		{"missing reason", []string{"member", "revoke", "acme", alice}, 1, []string{"--reason is required"}},
		{"blank reason", []string{"member", "revoke", "acme", alice, "--reason", "  "}, 1, []string{"--reason is required"}},
		{"bad duration", []string{"member", "grant", "acme", bob, "--kind", "employee", "--expires", "3x"}, 1, []string{`--expires "3x"`, "RFC 3339", "30d"}},
		{"past expiry", []string{"member", "grant", "acme", bob, "--kind", "employee", "--expires", "2020-01-01T00:00:00Z"}, 1, []string{"--expires", "not in the future"}},
		{"never only in change", []string{"member", "grant", "acme", bob, "--kind", "employee", "--review-by", "never"}, 1, []string{`--review-by "never"`}},
		{"bad purpose", []string{"member", "grant", "acme", bob, "--kind", "employee", "--purpose", "Audit"}, 1, []string{`--purpose "Audit"`, "PURPOSE:REASON"}},
		{"purpose twice", []string{"member", "grant", "acme", bob, "--kind", "employee", "--purpose", "a:x", "--purpose", "a:y"}, 1, []string{"given twice"}},
		{"bad role", []string{"member", "grant", "acme", bob, "--kind", "employee", "--role", "Admin"}, 1, []string{`--role "Admin"`}},
		{"bad user key", []string{"member", "grant", "acme", "alice@example.com", "--kind", "employee"}, 1, []string{`USER "alice@example.com"`, "issuer|subject"}},
		{"empty subject", []string{"member", "show", "acme", "https://idp.example.com|"}, 1, []string{"issuer|subject"}},
		{"user twice", []string{"member", "show", "acme", alice, "--issuer", "x", "--subject", "y"}, 1, []string{"not both"}},
		{"no user", []string{"member", "show", "acme", "--issuer", "x"}, 1, []string{"--subject is required"}},
		{"bad org id", []string{"member", "list", "ACME"}, 1, []string{`ORG "ACME"`}},
		// Every problem is reported at once.
		{"all problems", []string{"member", "grant", "Bad", "nobody", "--kind", "x", "--expires", "y"}, 1,
			[]string{`ORG "Bad"`, `USER "nobody"`, `--kind "x"`, `--expires "y"`}},

		{"no command", []string{}, 2, []string{"Usage: portcullis admin"}},
		{"group only", []string{"org"}, 2, []string{"Usage: portcullis admin"}},
		{"unknown command", []string{"org", "delete", "acme"}, 2, []string{`unknown command "org delete"`}},
		{"unknown flag", []string{"org", "show", "acme", "--colour"}, 2, []string{"flag provided but not defined: -colour"}},
		{"missing argument", []string{"member", "revoke", "acme"}, 1, []string{"--issuer is required"}},
		{"too many arguments", []string{"org", "show", "acme", "extra"}, 2, []string{"want ID, got 2"}},
		{"reason on a read", []string{"org", "show", "acme", "--reason", "x"}, 2, []string{"-reason"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var code int
			var stderr string
			if len(tc.args) < 2 {
				code, _, stderr = b.raw(tc.args...)
			} else {
				code, _, stderr = b.admin(tc.args...)
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not contain %q", stderr, w)
				}
			}
		})
	}
	// The flags of every command may come before it too.
	if code, out, errOut := b.raw("--break-glass", "--config", b.cfg, "--actor="+testActor, "--json", "org", "show", "acme"); code != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("global flags first: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := b.raw("--reason", "x", "org", "show", "acme"); code != 2 || !strings.Contains(errOut, "--reason must come after the command") {
		t.Errorf("a command's flag first: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := b.raw("--config"); code != 2 || !strings.Contains(errOut, "needs an argument") {
		t.Errorf("--config without a value: exit %d, stderr %q", code, errOut)
	}
	// Group help: every command of the group with its synopsis, and nothing of other groups.
	for _, args := range [][]string{{"org", "help"}, {"org", "-h"}, {"help", "org"}, {"--config", b.cfg, "org", "help"}} {
		code, out, errOut := b.raw(args...)
		if code != 0 || !strings.Contains(out, "org create ID --name NAME") || !strings.Contains(out, "org end ID --reason WHY") ||
			strings.Contains(out, "member grant") || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if code, _, errOut := b.raw("member", "delete"); code != 2 || !strings.Contains(errOut, `unknown command "member delete"`) || !strings.Contains(errOut, "member revoke ORG USER") {
		t.Errorf("unknown command of a known group: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := b.raw("help", "nothing"); code != 2 || !strings.Contains(errOut, `unknown group "nothing"`) {
		t.Errorf("help of an unknown group: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := b.raw("org", "create", "x", "--name", "X", "--break-glass", "--config", b.cfg, "--actor", " "); code != 1 || !strings.Contains(errOut, "--actor") {
		t.Errorf("blank --actor: exit %d, stderr %q", code, errOut)
	}
	// Nothing above changed anything.
	if m := b.membership("acme", alice); m.Status != store.MembershipActive {
		t.Errorf("alice's membership: %s", m.Status)
	}
	if _, m, _ := b.st.Lookup(b.ctx, "acme", bob); m != nil {
		t.Errorf("bob got a membership: %+v", m)
	}
}

func TestAdminConfigAndRedisErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	noRedis := filepath.Join(dir, "no-redis.yaml")
	writeFile(t, noRedis, "tls: {mode: self_signed}\nroutes:\n  - name: app\n    upstream: http://127.0.0.1:9\n")
	down := filepath.Join(dir, "down.yaml")
	writeFile(t, down, adminConfig(freePort(t)))
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"missing file", []string{"org", "show", "acme", "--break-glass", "--config", filepath.Join(dir, "none.yaml")}, []string{"cannot use configuration", "none.yaml"}},
		{"no redis", []string{"org", "show", "acme", "--break-glass", "--config", noRedis}, []string{"no redis.address"}},
		{"redis down", []string{"org", "create", "acme", "--name", "A", "--break-glass", "--config", down}, []string{"store unavailable", "is Redis running"}},
		{"neither the API nor break-glass", []string{"org", "show", "acme", "--config", down}, []string{"works through the admin API", "--server", "--break-glass"}},
		{"a server that is not https", []string{"org", "show", "acme", "--server", "http://127.0.0.1:9"}, []string{"--server", "https://"}},
		{"no credential", []string{"org", "show", "acme", "--server", "https://127.0.0.1:9"}, []string{"no credential", "PORTCULLIS_ADMIN_TOKEN"}},
		{"insecure to another host", []string{"org", "show", "acme", "--server", "https://admin.example.com", "--token-file", down, "--insecure-skip-verify"}, []string{"loopback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(append([]string{"admin"}, tc.args...), &out, &errOut); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, errOut.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr %q does not contain %q", errOut.String(), w)
				}
			}
		})
	}
}

// TestAdminDefaultActor is not parallel: it sets $USER.
func TestAdminDefaultActor(t *testing.T) {
	b := newAdminBed(t)
	t.Setenv("USER", "tester")
	// An everyday $PORTCULLIS_ADMIN_SERVER does not stand in the way of break-glass.
	t.Setenv("PORTCULLIS_ADMIN_SERVER", "https://127.0.0.1:9")
	if code, _, errOut := b.raw("org", "create", "acme", "--name", "Acme", "--break-glass", "--config", b.cfg); code != 0 {
		t.Fatal(errOut)
	}
	if e := b.lastEvent(audit.OrgCreated); e.Actor != "tester" {
		t.Errorf("actor %q, want $USER", e.Actor)
	}
	t.Setenv("USER", "")
	if code, _, errOut := b.raw("org", "suspend", "acme", "--reason", "x", "--break-glass", "--config", b.cfg); code != 0 {
		t.Fatal(errOut)
	}
	if e := b.lastEvent(audit.OrgStatusChanged); e.Actor != "admin" {
		t.Errorf("actor %q, want admin", e.Actor)
	}
}

func TestAdminAuditTail(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme", "--reason", "TCK-1")
	b.ok("member", "grant", "acme", alice, "--kind", "employee")
	b.ok("member", "revoke", "acme", alice, "--reason", "left")

	// --json: one event per line, in the stable form, with ids.
	out := b.ok("audit", "tail", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("tail --json printed %d lines:\n%s", len(lines), out)
	}
	var evs []audit.Event
	for _, l := range lines {
		var e audit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	if evs[0].Type != audit.OrgCreated || evs[2].Type != audit.MembershipRevoked || evs[2].Reason != "left" || evs[2].ID == "" ||
		evs[2].Actor != testActor || field(t, evs[2].After, "status") != "revoked" {
		t.Errorf("events %+v", evs)
	}
	// Readable lines.
	out = b.ok("audit", "tail")
	if !strings.Contains(out, "membership.revoked") || !strings.Contains(out, `reason="left"`) || !strings.Contains(out, "changed=status") ||
		!strings.Contains(out, "actor="+testActor) || !strings.Contains(out, evs[2].ID) {
		t.Errorf("tail printed:\n%s", out)
	}
	// --count and --since page through.
	if out := b.ok("audit", "tail", "--json", "--count", "2"); strings.Count(out, "\n") != 2 || strings.Contains(out, evs[0].ID) || !strings.Contains(out, evs[2].ID) {
		t.Errorf("--count 2 printed, not the newest two:\n%s", out)
	}
	if out := b.ok("audit", "tail", "--json", "--count", "1", "--since", "0"); !strings.Contains(out, evs[0].ID) {
		t.Errorf("--count 1 --since 0 printed, not the oldest:\n%s", out)
	}
	if out := b.ok("audit", "tail", "--json", "--since", evs[1].ID); strings.Count(out, "\n") != 1 || !strings.Contains(out, evs[2].ID) {
		t.Errorf("--since printed:\n%s", out)
	}
	if out := b.ok("audit", "tail", "--since", "$"); out != "" {
		t.Errorf(`--since $ without --follow printed %q`, out)
	}
	b.refused(1, []string{`--since "yesterday"`}, "audit", "tail", "--since", "yesterday")
	b.refused(1, []string{"--count 0"}, "audit", "tail", "--count", "0")

	// --follow prints new events as they come, until its context ends.
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	var followOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runAdmin(ctx, []string{"audit", "tail", "--follow", "--json", "--since", evs[2].ID, "--break-glass", "--config", b.cfg}, &followOut, &followOut)
	}()
	b.waitBlocked() // the next event must reach it while it follows, not on its first read
	b.ok("org", "create", "globex", "--name", "Globex")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(followOut.String(), `"org":"globex"`) {
		if time.Now().After(deadline) {
			t.Fatalf("--follow did not print the new event; output:\n%s", followOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("--follow exit %d after its context ended; output:\n%s", code, followOut.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("--follow did not stop after its context ended")
	}
	got := 0
	for _, l := range strings.Split(followOut.String(), "\n") {
		if strings.HasPrefix(l, "{") {
			got++ // an event (the break-glass warning is the other line)
		}
	}
	if got != 1 {
		t.Errorf("--follow printed %d lines, want 1 (only the new event):\n%s", got, followOut.String())
	}
}

// waitBlocked waits until a client of the bed's Redis is blocked in a read (`audit tail
// --follow` waiting in XREAD BLOCK), as Redis counts them in INFO's blocked_clients. The
// miniredis fallback keeps no such count, so there it returns at once.
func (b *adminBed) waitBlocked() {
	b.t.Helper()
	if b.rs.Miniredis {
		return
	}
	rdb := b.rs.Client(b.t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := rdb.Info(b.ctx, "clients").Result()
		if err != nil {
			b.t.Fatalf("INFO clients: %v", err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), "blocked_clients:"); ok && n != "0" {
				return
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("no client blocked on Redis within 10s; INFO clients:\n%s", info)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"0", 0, true},
		{"-1d", -24 * time.Hour, true},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"3x", 0, false},
		{"1d-2h", 0, false},
		{"", 0, false},
		{"99999999999d", 0, false},
	} {
		got, err := parseDuration(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParsePurpose(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in             string
		purpose, reas  string
		expires        time.Time
		ok             bool
		wantProblemSub string
	}{
		{"audit:TCK-1", "audit", "TCK-1", time.Time{}, true, ""},
		{"audit:TCK-1:30d", "audit", "TCK-1", now.Add(30 * 24 * time.Hour), true, ""},
		{"audit:see: notes:2027-01-01T00:00:00Z", "audit", "see: notes", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), true, ""},
		{"audit:ticket 12:00", "audit", "ticket 12:00", time.Time{}, true, ""},
		{"audit", "", "", time.Time{}, false, "needs its reason"},
		{"audit:", "", "", time.Time{}, false, "needs its reason"},
		{"Audit:x", "", "", time.Time{}, false, "want [a-z0-9_-]"},
		{"audit:x:2020-01-01T00:00:00Z", "", "", time.Time{}, false, "not in the future"},
	} {
		a := &adminRun{now: now}
		g, ok := a.parsePurpose("--purpose", tc.in)
		if ok != tc.ok {
			t.Errorf("%q: ok=%v, problems %v", tc.in, ok, a.problems)
			continue
		}
		if !ok {
			if len(a.problems) == 0 || !strings.Contains(strings.Join(a.problems, "\n"), tc.wantProblemSub) {
				t.Errorf("%q: problems %v, want one containing %q", tc.in, a.problems, tc.wantProblemSub)
			}
			continue
		}
		if g.Purpose != tc.purpose || g.Reason != tc.reas || !g.ExpiresAt.Equal(tc.expires) {
			t.Errorf("%q: got %+v", tc.in, g)
		}
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		name string
	}{
		{[]string{"acme", "--name", "A"}, []string{"acme"}, "A"},
		{[]string{"--name", "A", "acme", "x"}, []string{"acme", "x"}, "A"},
		{[]string{"acme", "--", "--name"}, []string{"acme", "--name"}, ""},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		name := fs.String("name", "", "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || *name != tc.name {
			t.Errorf("%q: pos %q name %q err %v", tc.args, pos, *name, err)
		}
	}
}

func TestAdminHelp(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := run([]string{"admin", "help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "person offboard USER --reason WHY") {
		t.Errorf("admin help: exit %d\n%s", code, out.String())
	}
	// Every command in the table is in the usage text.
	for name := range adminCommands {
		if !strings.Contains(adminUsage, "  "+name) {
			t.Errorf("usage does not list %q", name)
		}
	}
	out.Reset()
	if code := run([]string{"help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "admin GROUP COMMAND") {
		t.Errorf("portcullis help does not list admin:\n%s", out.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"admin", "member", "grant", "-h"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "-purpose") ||
		!strings.Contains(errOut.String(), "Usage: portcullis admin member grant ORG USER") {
		t.Errorf("member grant -h: exit %d\n%s", code, errOut.String())
	}
}

func TestAdminPersonIndexes(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	const alice = "https://idp.example.com|alice"
	b.refused(1, []string{"--reason"}, "person", "email", alice, "alice@acme.example")
	b.ok("person", "email", alice, "Alice@ACME.example", "--reason", "backfill before go-live")
	p, err := b.st.PersonByEmail(b.ctx, "alice@acme.example")
	if err != nil || p.User != alice {
		t.Fatalf("person by email: %+v %v", p, err)
	}
	if e := b.lastEvent(audit.PersonEmailRecorded); e.User != alice || e.Reason != "backfill before go-live" || e.Actor == "" {
		t.Errorf("event %+v", e)
	}
	for _, ev := range b.events() {
		if strings.Contains(fmt.Sprint(ev), "acme.example") {
			t.Errorf("an audit event names the address: %+v", ev)
		}
	}
	b.ok("person", "username", alice, "ALICE01", "--reason", "portal login name")
	if p, err := b.st.PersonByUsername(b.ctx, "ALICE01"); err != nil || p.User != alice {
		t.Fatalf("person by username: %+v %v", p, err)
	}
	b.refused(1, nil, "person", "email", alice, "Alice <alice@acme.example>", "--reason", "x")
	b.refused(2, nil, "person", "email", alice, "--reason", "x")
}

// TestAdminTokens: the first admin API token of an installation is made with direct access
// to Redis; it is shown once, kept as a hash, listed without it, and revoked with a reason.
func TestAdminTokens(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.refused(1, []string{"--owner"}, "token", "create", "--name", "x")
	b.refused(1, []string{"--owner", "issuer|subject"}, "token", "create", "--name", "x", "--owner", "bob")
	b.refused(1, []string{"--lifetime"}, "token", "create", "--name", "x", "--owner", "olga", "--operator", "--lifetime", "soon")
	b.refused(1, []string{"a year"}, "token", "create", "--name", "x", "--owner", "olga", "--operator", "--lifetime", "400d")

	var made struct {
		Token  string      `json:"token"`
		Record store.Token `json:"record"`
	}
	b.okJSON(&made, "token", "create", "--name", "bootstrap", "--owner", "ops|olga", "--operator", "--lifetime", "7d", "--reason", "first operator")
	if !strings.HasPrefix(made.Token, store.TokenPrefix) || made.Record.Hash != "" || !made.Record.Operator ||
		time.Until(made.Record.Expires) > 7*24*time.Hour || time.Until(made.Record.Expires) < 7*24*time.Hour-time.Minute {
		t.Fatalf("made %+v", made)
	}
	got, err := b.st.TokenBySecret(b.ctx, made.Token)
	if err != nil || got.ID != made.Record.ID || got.Owner != "ops|olga" || got.CreatedBy != testActor {
		t.Fatalf("token by secret: %+v %v", got, err)
	}
	if e := b.lastEvent(audit.TokenCreated); e.Actor != testActor || !strings.HasPrefix(e.Via, "break-glass: portcullis admin on ") || strings.Contains(fmt.Sprint(e), made.Token) {
		t.Errorf("event %+v", e)
	}
	out := b.ok("token", "list")
	if !strings.Contains(out, made.Record.ID) || !strings.Contains(out, "live") || strings.Contains(out, made.Token[len(made.Token)-20:]) {
		t.Errorf("token list:\n%s", out)
	}
	b.refused(1, []string{"--reason"}, "token", "revoke", made.Record.ID)
	b.ok("token", "revoke", made.Record.ID, "--reason", "rotated")
	if tok, err := b.st.TokenBySecret(b.ctx, made.Token); err == nil && tok.Live(time.Now()) {
		t.Error("a revoked token is live")
	}
	if out := b.ok("token", "list"); !strings.Contains(out, "ended") {
		t.Errorf("token list after revocation:\n%s", out)
	}
	b.refused(1, nil, "token", "revoke", "nosuchtoken", "--reason", "x")
}

// TestAdminRecoveryReset: clearing a recovery rate limit with break-glass, audited.
func TestAdminRecoveryReset(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	for range 3 {
		if _, err := b.st.CountRecovery(b.ctx, "reset", "bob@acme.example", "192.0.2.9", time.Hour, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	b.refused(1, []string{"--email", "--username"}, "recovery", "reset", "reset", "--reason", "x")
	b.refused(1, []string{"--reason is required"}, "recovery", "reset", "reset", "--email", "bob@acme.example")
	if out := b.ok("recovery", "reset", "reset", "--email", "Bob@Acme.Example", "--reason", "locked out"); !strings.Contains(out, "(1 counter(s))") {
		t.Errorf("reset printed %q", out)
	}
	if e := b.lastEvent(audit.RecoveryLimitReset); e.Actor != testActor || e.Route != "reset" || !strings.HasPrefix(e.Via, "break-glass") {
		t.Errorf("event %+v", e)
	}
}

// TestAdminGrantByEmail: member grant --email names the person by the verified address they
// signed in with.
func TestAdminGrantByEmail(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	if err := b.st.RecordPerson(b.ctx, "bob@acme.example", bob, time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	b.refused(1, []string{"invite the address instead"}, "member", "grant", "acme", "--email", "carol@acme.example", "--kind", "employee")
	b.refused(1, []string{"--email", "or USER"}, "member", "grant", "acme", bob, "--email", "bob@acme.example", "--kind", "employee")
	b.ok("member", "grant", "acme", "--email", "bob@acme.example", "--kind", "employee", "--role", "viewer")
	if m := b.membership("acme", bob); m.Status != store.MembershipActive || m.Email != "bob@acme.example" {
		t.Errorf("bob: %+v", m)
	}
}

// TestAdminClientFollowsNoRedirect: a redirect from the API (or something posing as it) is
// an error, never followed: the credential would go along, in clear text to an http:// URL.
func TestAdminClientFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var leaked atomic.Bool
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Store(true)
		}
	}))
	defer plain.Close()
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer api.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, tokenFile, "pcadm_x_SECRETVALUE")
	var out, errOut bytes.Buffer
	code := run([]string{"admin", "org", "list", "--server", api.URL, "--insecure-skip-verify", "--token-file", tokenFile}, &out, &errOut)
	if code != 1 || leaked.Load() || strings.Contains(errOut.String(), "SECRETVALUE") {
		t.Errorf("exit %d, leaked %v, stderr %q", code, leaked.Load(), errOut.String())
	}
	for _, bad := range []string{api.URL + "/?x=1", api.URL + "#frag"} {
		if code := run([]string{"admin", "org", "list", "--server", bad, "--token-file", tokenFile}, &out, &errOut); code != 1 {
			t.Errorf("--server %s: exit %d", bad, code)
		}
	}
	errOut.Reset()
	if code := run([]string{"admin", "org", "list", "--server", "https://localhost:1", "--insecure-skip-verify", "--token-file", tokenFile}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "loopback address") {
		t.Errorf("--insecure-skip-verify with a name: %d %s", code, errOut.String())
	}
}

// TestAdminOrgProviders: break-glass sets an organisation's identity providers to configured
// names only; none returns it to the shared ones.
func TestAdminOrgProviders(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	// Without sign-in configured no provider is known.
	b.refused(1, []string{`"default" is not a configured identity provider`}, "org", "providers", "acme", "--provider", "default", "--reason", "x")
	writeFile(t, b.cfg, adminConfig(b.rs.Addr)+`oidc:
  issuer: https://idp.example.com
  client_id: portcullis
  redirect_url: https://portal.example.com/.portcullis/callback
`)
	b.refused(1, []string{"--reason"}, "org", "providers", "acme", "--provider", "default")
	b.refused(1, []string{`"acme-entra" is not a configured identity provider`}, "org", "providers", "acme", "--provider", "acme-entra", "--reason", "x")
	if out := b.ok("org", "providers", "acme", "--provider", "default", "--reason", "only the portal's IdP"); !strings.Contains(out, "org acme: providers default") {
		t.Errorf("providers printed %q", out)
	}
	if e := b.lastEvent(audit.OrgProvidersChanged); e.Reason != "only the portal's IdP" || e.Detail["providers"] != "default" || e.Actor != testActor {
		t.Errorf("event %+v", e)
	}
	if out := b.ok("org", "show", "acme"); !strings.Contains(out, "providers") || !strings.Contains(out, "default") {
		t.Errorf("show printed %q", out)
	}
	var o store.Org
	b.okJSON(&o, "org", "providers", "acme", "--reason", "back to the shared ones")
	if o.Providers != nil {
		t.Errorf("cleared = %+v", o.Providers)
	}
}

func TestAdminOrgSCIMToken(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	b.refused(1, []string{"--reason"}, "org", "scim-token", "acme", "--name", "Entra ID")
	b.refused(1, []string{"--name"}, "org", "scim-token", "acme", "--reason", "x")
	b.refused(1, []string{"--lifetime"}, "org", "scim-token", "acme", "--name", "Entra ID", "--lifetime", "400d", "--reason", "x")
	b.refused(1, []string{"nope"}, "org", "scim-token", "nope", "--name", "Entra ID", "--reason", "x")
	var res struct {
		Token  string      `json:"token"`
		Record store.Token `json:"record"`
	}
	b.okJSON(&res, "org", "scim-token", "acme", "--name", "Entra ID", "--reason", "provisioning from Entra")
	if !res.Record.SCIM || res.Record.Org != "acme" || res.Record.Operator || !strings.HasPrefix(res.Token, store.TokenPrefix) || res.Record.Hash != "" {
		t.Errorf("token %+v", res)
	}
	if e := b.lastEvent(audit.TokenCreated); e.Org != "acme" || e.Reason != "provisioning from Entra" {
		t.Errorf("event %+v", e)
	}
}

// TestAdminProviders: break-glass adds, lists and deletes a managed provider; the secret is a
// reference, a provider of the file cannot be replaced, and one an organisation lists cannot be
// deleted; a provider bound to acme cannot be listed by beta.
func TestAdminProviders(t *testing.T) {
	t.Parallel()
	b := newAdminBed(t)
	b.ok("org", "create", "acme", "--name", "Acme")
	b.ok("org", "create", "beta", "--name", "Beta")
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, "acme-okta"), "s3cret\n")
	file := filepath.Join(t.TempDir(), "acme.yaml")
	writeFile(t, file, "name: acme-okta\nissuer: https://acme.okta.example\nclient_id: 0oa1\nclient_secret_file: acme-okta\norg: acme\n")
	b.refused(1, []string{"oidc.managed_providers is not set"}, "provider", "put", "acme-okta", "--file", file, "--reason", "x")
	writeFile(t, b.cfg, adminConfig(b.rs.Addr)+`oidc:
  issuer: https://idp.example.com
  client_id: portcullis
  redirect_url: https://portal.example.com/.portcullis/callback
  managed_providers: {secrets_dir: `+secrets+`}
`)
	bad := filepath.Join(t.TempDir(), "bad.json")
	writeFile(t, bad, `{"name": "acme-okta", "issuer": "https://acme.okta.example", "client_id": "0oa1", "client_secret": "s3cret"}`)
	b.refused(1, []string{"by reference"}, "provider", "put", "acme-okta", "--file", bad, "--reason", "x")
	def := filepath.Join(t.TempDir(), "default.json")
	writeFile(t, def, `{"name": "default", "issuer": "https://other.example", "client_id": "c"}`)
	b.refused(1, []string{"oidc's own"}, "provider", "put", "default", "--file", def, "--reason", "x")
	if out := b.ok("provider", "put", "acme-okta", "--file", file, "--reason", "acme's Okta"); !strings.Contains(out, "provider acme-okta saved") || !strings.Contains(out, "bound to acme") {
		t.Errorf("put printed %q", out)
	}
	if e := b.lastEvent(audit.ProviderSaved); e.Reason != "acme's Okta" || e.Org != "acme" || strings.Contains(string(e.After), "s3cret") {
		t.Errorf("event %+v", e)
	}
	out := b.ok("provider", "list")
	if !strings.Contains(out, "acme-okta") || !strings.Contains(out, "admin_api") || !strings.Contains(out, "configuration") {
		t.Errorf("list printed %q", out)
	}
	b.ok("org", "providers", "acme", "--provider", "acme-okta", "--reason", "acme signs in with Okta")
	b.refused(1, []string{"bound to organisation acme"}, "org", "providers", "beta", "--provider", "acme-okta", "--reason", "x")
	b.refused(1, []string{"listed by"}, "provider", "delete", "acme-okta", "--reason", "x")
	b.ok("org", "providers", "acme", "--reason", "back to the portal's")
	if out := b.ok("provider", "delete", "acme-okta", "--reason", "contract ended"); !strings.Contains(out, "deleted") {
		t.Errorf("delete printed %q", out)
	}
	if e := b.lastEvent(audit.ProviderDeleted); e.Reason != "contract ended" {
		t.Errorf("event %+v", e)
	}
}
