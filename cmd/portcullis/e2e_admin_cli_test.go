package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// TestE2EAdminCLIThroughTheAPI: `portcullis admin` against the real binary's admin API over
// HTTPS. The first operator token comes from break-glass (recorded as such); from then on
// every command goes through the API: the actor recorded is the token's owner (not a claimed
// --actor), the server's permissions apply (a person's token without rights is refused with
// the API's reason), and nothing reaches Redis except through the API.
func TestE2EAdminCLIThroughTheAPI(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	dir := t.TempDir()
	listen, adminListen := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfg, fmt.Sprintf(`server: {listen: %s, metrics_listen: "off"}
tls: {mode: self_signed}
redis: {address: %s}
admin_api: {listen: %s}
routes:
  - {name: app, path: /app, upstream: "http://127.0.0.1:9", public: true}
`, listen, rs.Addr, adminListen))
	startBinary(t, cfg)

	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"admin"}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	token := func(args ...string) string {
		t.Helper()
		code, out, errOut := cli(append([]string{"token", "create", "--lifetime", "1d", "--reason", "install", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("token create: %d %s", code, errOut)
		}
		var made struct {
			Token string `json:"token"`
		}
		if err := json.Unmarshal([]byte(out), &made); err != nil {
			t.Fatal(err)
		}
		return made.Token
	}
	ops := token("--break-glass", "--config", cfg, "--actor", "installer", "--name", "ops", "--owner", "ops-olga", "--operator")
	const viewer = "https://idp.example.com|vic"
	vicTok := token("--break-glass", "--config", cfg, "--actor", "installer", "--name", "vic", "--owner", viewer)
	opsFile, vicFile := filepath.Join(dir, "ops.token"), filepath.Join(dir, "vic.token")
	writeFile(t, opsFile, ops+"\n")
	writeFile(t, vicFile, vicTok)
	server := "https://" + adminListen
	api := func(tokenFile string, args ...string) (int, string, string) {
		return cli(append([]string{"--server", server, "--insecure-skip-verify", "--token-file", tokenFile}, args...)...)
	}
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := api(opsFile, args...)
		if code != 0 {
			t.Fatalf("admin %s: %d\n%s", strings.Join(args, " "), code, errOut)
		}
		if strings.Contains(errOut, "BREAK-GLASS") {
			t.Errorf("admin %s through the API said break-glass: %s", strings.Join(args, " "), errOut)
		}
		return out
	}

	ok("org", "create", "acme", "--name", "Acme", "--reason", "new customer")
	ok("domain", "add", "acme", "acme.example", "--reason", "DNS")
	ok("domain", "verify", "acme", "acme.example", "--reason", "TXT record checked")
	ok("member", "grant", "acme", viewer, "--kind", "employee", "--role", "viewer", "--reason", "starter")
	ok("member", "change", "acme", viewer, "--add-role", "billing", "--reason", "month end")
	if out := ok("member", "show", "acme", viewer); !strings.Contains(out, "billing,viewer") && !strings.Contains(out, "viewer,billing") {
		t.Errorf("member show: %s", out)
	}
	if out := ok("org", "list"); !strings.Contains(out, "acme") || !strings.Contains(out, "acme.example(verified)") {
		t.Errorf("org list: %s", out)
	}
	if out := ok("event", "contract-ended", "acme", "--reason", "not renewed", "--dry-run"); !strings.Contains(out, "dry run, nothing changed") {
		t.Errorf("dry run: %s", out)
	}
	csvFile := filepath.Join(dir, "users.csv")
	writeFile(t, csvFile, "email,kind,roles\ncarla@acme.example,employee,viewer billing\ndan@acme.example,employee,\n")
	if out := ok("member", "import", "acme", csvFile, "--reason", "go-live"); !strings.Contains(out, "invited 2 address(es) to acme") {
		t.Errorf("member import: %s", out)
	}
	writeFile(t, csvFile, "email,kind\nerin@acme.example,employee\nerin@elsewhere.example,employee\n")
	if code, _, errOut := api(opsFile, "member", "import", "acme", csvFile, "--reason", "x"); code != 1 || !strings.Contains(errOut, "row 2") {
		t.Errorf("an import with a bad row: %d %s", code, errOut)
	}
	if out := ok("member", "invitations", "acme"); strings.Contains(out, "erin@") || !strings.Contains(out, "carla@acme.example") {
		t.Errorf("invitations after a refused import: %s", out)
	}
	ok("person", "email", viewer, "vic@acme.example", "--reason", "backfill")
	if out := ok("recovery", "reset", "reset", "--email", "Vic@Acme.Example", "--reason", "HD-1: locked out"); !strings.Contains(out, "recovery limit of sha256:") {
		t.Errorf("recovery reset: %s", out)
	}
	out := ok("audit", "tail", "--json", "--count", "1000")
	var evs []audit.Event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e audit.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		evs = append(evs, e)
	}
	var created, changed bool
	for _, e := range evs {
		switch {
		case e.Type == audit.TokenCreated:
			if e.Actor != "installer" || !strings.HasPrefix(e.Via, "break-glass: ") {
				t.Errorf("break-glass token event %+v", e)
			}
		case e.Type == audit.OrgCreated:
			created = e.Actor == "ops-olga" && strings.HasPrefix(e.Via, "token ")
		case e.Type == audit.MembershipChanged:
			changed = e.Actor == "ops-olga" && strings.HasPrefix(e.Via, "token ")
		}
	}
	if !created || !changed {
		t.Errorf("the API's changes are not recorded as the token's owner's: %+v", evs)
	}

	// The server decides who may: vic's own token administers nothing.
	code, _, errOut := api(vicFile, "org", "create", "evil", "--name", "Evil", "--reason", "x")
	if code != 1 || !strings.Contains(errOut, "not_permitted") {
		t.Errorf("vic creating an org: %d %s", code, errOut)
	}
	code, _, errOut = api(vicFile, "member", "change", "acme", viewer, "--add-role", "admin", "--reason", "x")
	if code != 1 || (!strings.Contains(errOut, "not_permitted") && !strings.Contains(errOut, "policy_violation")) {
		t.Errorf("vic raising himself: %d %s", code, errOut)
	}
	// Through the API a token is made for its caller only.
	if code, _, errOut := api(opsFile, "token", "create", "--name", "x", "--owner", "someone-else", "--operator", "--lifetime", "1d", "--reason", "x"); code != 1 ||
		!strings.Contains(errOut, "made for its caller") {
		t.Errorf("a token for someone else through the API: %d %s", code, errOut)
	}
	if out := ok("token", "create", "--name", "ci", "--owner", "ops-olga", "--operator", "--lifetime", "12h", "--reason", "ci job"); !strings.Contains(out, "shown only now") {
		t.Errorf("token create through the API: %s", out)
	}
	// --actor is not taken through the API: the actor is the credential's.
	if code, _, errOut := api(opsFile, "org", "list", "--actor", "someone-else"); code != 1 || !strings.Contains(errOut, "--actor") {
		t.Errorf("--actor through the API: %d %s", code, errOut)
	}
	// A wrong token: the API's refusal.
	bad := filepath.Join(dir, "bad.token")
	writeFile(t, bad, store.TokenPrefix+"nope")
	if code, _, errOut := api(bad, "org", "list"); code != 1 || !strings.Contains(errOut, "unauthenticated") {
		t.Errorf("a bad token: %d %s", code, errOut)
	}
	// Without --insecure-skip-verify, the self-signed certificate is not trusted.
	if code, _, errOut := cli("--server", server, "--token-file", opsFile, "org", "list"); code != 1 || !strings.Contains(errOut, "certificate") {
		t.Errorf("an unverified server: %d %s", code, errOut)
	}
}
