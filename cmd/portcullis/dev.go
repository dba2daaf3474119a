package main

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/demoportal"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devredis"
	"github.com/portcullis-proxy/portcullis/proxy"
	"github.com/portcullis-proxy/portcullis/store"
)

// devPassword is every demo account's password; the demo prints it.
const devPassword = "portcullis-demo"

// cmdDev runs a self-contained demonstration in one process: a Redis-compatible store
// (embedded unless --redis is given), the development OpenID Provider with seeded people, the
// demo portal, and Portcullis in front of it with a self-signed certificate, on loopback.
func cmdDev(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8443", "address of the HTTPS front door")
	adminListen := fs.String("admin-listen", "127.0.0.1:9443", `address of the administration API ("off": none; ":0" ports pick a free one)`)
	redisAddr := fs.String("redis", "", "use this Redis (host:port) instead of the embedded store; the demo writes its seed data there")
	anywhere := fs.Bool("insecure-listen-anywhere", false, "allow a non-loopback listen address (the demo has built-in accounts; do not expose it)")
	verbose := fs.Bool("v", false, "log every request")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := checkLoopback(*listen, *anywhere); err != nil {
		fmt.Fprintln(stderr, "portcullis dev:", err)
		return 2
	}
	if *adminListen != "off" {
		if err := checkLoopback(*adminListen, *anywhere); err != nil {
			fmt.Fprintln(stderr, "portcullis dev: --admin-listen:", err)
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	level := new(slog.LevelVar)
	if !*verbose {
		level.Set(slog.LevelWarn)
	}
	log := newLogger(stderr, "text", level)
	fail := func(what string, err error) int {
		fmt.Fprintf(stderr, "portcullis dev: %s: %v\n", what, err)
		return 1
	}

	if *redisAddr == "" {
		rs, err := devredis.Start()
		if err != nil {
			return fail("embedded store", err)
		}
		defer rs.Close()
		*redisAddr = rs.Addr()
	}

	portal, err := serveLoopback(demoportal.New())
	if err != nil {
		return fail("demo portal", err)
	}
	defer portal.Close()

	// The provider listens before it is built, because its issuer is its own URL.
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail("identity provider", err)
	}
	issuer := "http://" + idpLn.Addr().String()
	publicURL := "https://" + *listen
	secret := randomString(24)
	totp := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte(randomString(20)))[:32]
	idp, err := devidp.New(devidp.Config{
		Issuer:              issuer,
		AllowInsecureIssuer: true, // loopback only; the demo must need nothing installed
		Clients: []devidp.Client{{ID: "portcullis-dev", Secret: secret,
			RedirectURIs:           []string{publicURL + config.CallbackPath},
			PostLogoutRedirectURIs: []string{publicURL + "/"}}},
		Users:  demoUsers(totp),
		Logger: log,
	})
	if err != nil {
		return fail("identity provider", err)
	}
	idpSrv := &http.Server{Handler: idp.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = idpSrv.Serve(idpLn) }()
	defer idpSrv.Close()

	dir, err := os.MkdirTemp("", "portcullis-dev")
	if err != nil {
		return fail("temporary directory", err)
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(devConfig(*listen, *adminListen, portal.URL, *redisAddr, issuer, secret)), 0o600); err != nil {
		return fail("write configuration", err)
	}
	cfg, _, err := config.Load(cfgPath)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	applyBrand(cfg)
	tokens, err := seedDemo(ctx, cfg.Redis, issuer)
	if err != nil {
		return fail("seed demo data", err)
	}

	opts := proxy.Options{Logger: log, Version: version, ReadyChecks: map[string]proxy.ReadyCheck{}}
	var served atomic.Pointer[proxy.Server]
	closeAll, api, err := wireRedis(ctx, cfg, log, &opts, &served)
	defer closeAll()
	if err != nil {
		return fail("start", err)
	}
	srv, err := proxy.New(proxy.SettingsOf(cfg), opts)
	if err != nil {
		return fail("start", err)
	}
	served.Store(srv)
	go reloadLoop(ctx, cfgPath, cfg, srv, api, level, log)
	err = srv.Run(ctx, func(l proxy.Listeners) {
		fmt.Fprint(stdout, walkthrough("https://"+l.Main.String(), cfgPath, totp))
		if l.Admin != nil {
			fmt.Fprint(stdout, adminWalkthrough("https://"+l.Admin.String(), "https://"+l.Main.String(), cfgPath, tokens))
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fail("serve", err)
	}
	return 0
}

// walkthrough is what a newcomer reads: where to go, as whom, and what they should see.
func walkthrough(base, cfgPath, totp string) string {
	return fmt.Sprintf(`
Portcullis demo is running. Open %[1]s/ (self-signed certificate: your browser warns once).

Every account's password is %[4]q.

  alice   Acme Corp admin (employee, roles admin+org-admin). Second factor: TOTP secret
          %[3]s
          (add it to an authenticator app: otpauth://totp/Portcullis%%20demo:alice?secret=%[3]s)
  bob     Acme Corp member (roles viewer): /billing/ and /admin/ are refused with role_missing
          (billing is held just in time: see the admin API below)
  pat     a partner acting for Acme and Globex on an incident: /support/ (org picker first)
  frank   a former Acme employee (membership revoked): refused with not_member
  lena    works for Oldcorp, whose domain oldcorp.example lapsed: email_domain_not_verified
  olga    the portal owner's operator (console.operators), with the same second factor as alice

Pages (the portal behind Portcullis is unmodified):
  %[1]s/                  public home
  %[1]s/headers           any signed-in person: the identity headers the portal receives
  %[1]s/billing/          Acme members with role admin, or billing (privileged: granted by an
                          approved request, for at most 8 hours)
  %[1]s/admin/            Acme admins, after a fresh second factor (step-up, valid 5 minutes)
  %[1]s/support/          partners/support staff with a live "incident" purpose grant
  %[1]s/reports/          a portal service that is down: Portcullis's 502 page
  %[1]s/password/reset    the portal's forgot-password form, guarded: bob@acme.example goes through;
                          lena@oldcorp.example (lapsed domain), frank@acme.example (former employee)
                          and anyone@unknown.example are stopped before the portal sees them
  %[1]s/.portcullis/whoami   who you are;   %[1]s/.portcullis/orgs   choose an organisation
  %[1]s/.portcullis/logout   sign out

Self-serve console: %[1]s/.portcullis/console/ (on every organisation host too)
  everyone  "My access": memberships with their roles, purposes and ends, raised access, this
            session, and one's own access requests
  bob       refused /billing/, follows the refusal page's "Request access" and asks Acme for
            billing; the request waits for an administrator (never for bob himself)
  alice     Acme's administrator (role org-admin): Acme's members (filter, export, revoke) and
            the requests waiting for her answer, after her second factor
  pat       a partner on support duty for Acme and Globex: both memberships, with the incident's
            end; only their administrators change them; Acme's activity shows what pat reached
  olga      an operator, after her second factor: every organisation's pages, and business
            events (contract ended, merged, offboarded...) shown as a dry run before applying

Organisation hosts: each organisation's own address, acting for it. You sign in on %[1]s
(single sign-on: once for all of them) and signing out on any of them signs you out everywhere.
  %[5]s/headers     as Acme: the portal receives X-Portcullis-Org: acme
  %[5]s/admin/      Acme admins, after a fresh second factor (confirmed on the sign-in host)
  %[6]s/headers   as Globex: alice and bob are refused with not_member

Forward-auth: beside an nginx, Caddy or Envoy you already run (examples/), Portcullis answers
questions about requests at %[1]s/.portcullis/auth (from loopback here). Signed out, the answer
is a 401 with the reason; the ingress sends the client Portcullis's sign-in:
  curl -sk %[1]s/.portcullis/auth -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: /billing/' \
       -H 'X-Forwarded-Host: %[7]s' -H 'X-Forwarded-Proto: https' -H 'Accept: application/json'

Route file: %[2]s (edit it: Portcullis reloads it). Ctrl-C stops; nothing is kept.
`, base, cfgPath, totp, devPassword, orgHostURL(base, "acme"), orgHostURL(base, "globex"), strings.TrimPrefix(base, "https://"))
}

// demoTokens are the admin API tokens the demo makes, printed in its walkthrough.
type demoTokens struct {
	operator, alice, bob string
	// apiKey is the key of Acme's invoice export, a machine identity bob sponsors (bobUser).
	apiKey, bobUser string
}

// adminWalkthrough shows the administration API with the demo's tokens: bob asks for the
// billing role, alice (Acme's administrator) approves, bob reaches /billing/ for an hour; then
// Globex's contract ends, dry run first.
func adminWalkthrough(api, base, cfgPath string, t demoTokens) string {
	return fmt.Sprintf(`
Administration API: %[1]s/api/v1/   (its OpenAPI document: %[1]s/api/v1/openapi.json)
Tokens, valid for a day (the demo made them; "portcullis admin token create" makes real ones):
  export OPS=%[2]s     # an operator
  export ALICE=%[3]s   # alice, Acme's administrator (role org-admin), Acme only
  export BOB=%[4]s     # bob, an Acme member

Access that expires instead of standing privilege: bob asks for billing for an hour,
alice approves (nobody approves their own request), and %[5]s/billing/ lets bob in until it ends.
  curl -sk %[1]s/api/v1/orgs/acme/requests -H "Authorization: Bearer $BOB" \
       --json '{"role":"billing","duration":"1h","reason":"month-end close"}'
  curl -sk %[1]s/api/v1/orgs/acme/requests -H "Authorization: Bearer $ALICE"        # Acme's requests
  curl -sk %[1]s/api/v1/orgs/acme/requests/REQUEST_ID/approve -H "Authorization: Bearer $ALICE" \
       --json '{"reason":"approved for the close"}'
  curl -sk %[1]s/api/v1/orgs/acme/members -H "Authorization: Bearer $OPS"          # who has what, until when

A business event is one change, not a series of edits: Globex's contract ends. The dry run lists
every change it would make and makes none; the real run makes exactly those, and pat's Globex
access ends at once (Acme's stays).
  curl -sk %[1]s/api/v1/events -H "Authorization: Bearer $OPS" \
       --json '{"event":"contract_ended","org":"globex","reason":"contract not renewed","dry_run":true}'
  curl -sk %[1]s/api/v1/events -H "Authorization: Bearer $OPS" \
       --json '{"event":"contract_ended","org":"globex","reason":"contract not renewed"}'
Every change is in the audit trail, with who made it and with which token (portcullis admin is
a client of the same API):
  PORTCULLIS_ADMIN_TOKEN=$OPS go run ./cmd/portcullis admin audit tail --server %[1]s --insecure-skip-verify

An integration, not a person: Acme's invoice export is a machine identity with an API key, and bob
answers for it (its sponsor). %[5]s/api/invoices takes API keys only, from the Authorization header:
  export KEY=%[6]s
  curl -sk %[5]s/api/invoices -H "Authorization: Bearer $KEY"    # as machine:acme|invoice-export, sponsor bob
  curl -sk "%[5]s/api/invoices?api_key=$KEY"                     # anywhere else it is not read: credential_missing
When bob leaves Acme, what he sponsors ends with him, on every replica:
  curl -sk %[1]s/api/v1/events -H "Authorization: Bearer $OPS" \
       --json '{"event":"offboarded","user":"%[7]s","reason":"bob left Acme"}'
  curl -sk %[5]s/api/invoices -H "Authorization: Bearer $KEY"    # credential_revoked
`, api, t.operator, t.alice, t.bob, base, t.apiKey, t.bobUser)
}

// orgHostURL is the address of organisation org's host on the demo's listener (base's port):
// {org}.localhost, which browsers resolve to loopback.
func orgHostURL(base, org string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Host = net.JoinHostPort(org+".localhost", u.Port())
	return u.String()
}

func demoUsers(totp string) []devidp.User {
	u := func(name, email, full, totp string) devidp.User {
		return devidp.User{Subject: "demo-" + name, Username: name, Password: devPassword, Email: email,
			EmailVerified: true, Name: full, TOTPSecret: totp}
	}
	return []devidp.User{
		u("alice", "alice@acme.example", "Alice Admin", totp),
		u("bob", "bob@acme.example", "Bob Member", ""),
		u("pat", "pat@partner.example", "Pat Partner", ""),
		u("frank", "frank@acme.example", "Frank Former", ""),
		u("lena", "lena@oldcorp.example", "Lena Lapsed", ""),
		u("olga", "olga@portal.example", "Olga Operator", totp),
	}
}

// seedDemo writes the demo's organisations and memberships through the store's one change
// path, so the audit stream shows them too.
func seedDemo(ctx context.Context, rc config.Redis, issuer string) (demoTokens, error) {
	var tokens demoTokens
	st, err := store.New(rc)
	if err != nil {
		return tokens, err
	}
	defer st.Close()
	orgs := store.NewOrgs(st, store.NewAudit(st, 0))
	const actor, why = "portcullis-dev", "demo seed"
	user := func(name string) string { return store.UserKey(issuer, "demo-"+name) }
	now := time.Now().UTC()
	for _, o := range []struct{ id, name, domain, status string }{
		{"acme", "Acme Corp", "acme.example", store.DomainVerified},
		{"globex", "Globex", "globex.example", store.DomainVerified},
		{"oldcorp", "Oldcorp", "oldcorp.example", store.DomainLapsed},
	} {
		if _, err := orgs.CreateOrg(ctx, store.Org{ID: o.id, Name: o.name, Status: store.OrgActive,
			Contact: "it-admin@" + o.domain}, actor, why); err != nil && !errors.Is(err, store.ErrExists) {
			return tokens, err
		}
		if _, err := orgs.AddDomain(ctx, o.id, o.domain, actor, why); err != nil && !errors.Is(err, store.ErrExists) && !errors.Is(err, store.ErrConflict) {
			return tokens, err
		}
		// Verified first, as it once was: a lapsed domain is one an organisation held.
		for _, st := range []string{store.DomainVerified, o.status} {
			if _, err := orgs.SetDomainStatus(ctx, o.id, o.domain, st, actor, why); err != nil {
				return tokens, err
			}
		}
	}
	incident := []store.Grant{{Purpose: "incident", Reason: "INC-4711", GrantedBy: "alice", ApprovedBy: "acme-secops",
		ExpiresAt: now.Add(8 * time.Hour)}}
	for _, m := range []store.Membership{
		{Org: "acme", User: user("alice"), Kind: store.KindEmployee, Roles: []string{"admin", "org-admin"}},
		{Org: "acme", User: user("bob"), Kind: store.KindEmployee, Roles: []string{"viewer"}},
		{Org: "acme", User: user("frank"), Kind: store.KindEmployee, Roles: []string{"billing"}},
		{Org: "acme", User: user("pat"), Kind: store.KindPartner, Roles: []string{"support"}, Grants: incident, ExpiresAt: now.Add(90 * 24 * time.Hour)},
		{Org: "globex", User: user("pat"), Kind: store.KindPartner, Roles: []string{"support"}, Grants: incident, ExpiresAt: now.Add(90 * 24 * time.Hour)},
		{Org: "oldcorp", User: user("lena"), Kind: store.KindEmployee, Roles: []string{"billing", "admin"}},
	} {
		m.Status = store.MembershipActive
		m.GrantedBy, m.ApprovedBy = actor, actor
		m.ReviewBy = now.Add(90 * 24 * time.Hour)
		if _, err := orgs.Grant(ctx, m, actor, why); err != nil {
			return tokens, fmt.Errorf("grant %s in %s: %w", m.User, m.Org, err)
		}
	}
	if _, err := orgs.Revoke(ctx, "acme", user("frank"), actor, "left the company (demo)"); err != nil {
		return tokens, err
	}
	// As if everyone had signed in once: the recovery guard knows whose address is whose.
	for _, u := range demoUsers("") {
		if err := st.RecordPerson(ctx, u.Email, user(u.Username), now, 0); err != nil {
			return tokens, err
		}
	}
	// An integration: Acme's invoice export, which bob answers for, with the role he holds.
	if _, err := orgs.CreateMachine(ctx, store.Membership{Org: "acme", Roles: []string{"viewer"}, ExpiresAt: now.Add(180 * 24 * time.Hour),
		ReviewBy: now.Add(90 * 24 * time.Hour), ApprovedBy: "alice",
		Machine: &store.Machine{ID: "invoice-export", Name: "Invoice export", Description: "nightly export to the accounting system", Sponsor: user("bob")}},
		actor, why); err != nil {
		return tokens, err
	}
	if tokens.apiKey, _, err = orgs.CreateAPIKey(ctx, "acme", "invoice-export", now.Add(24*time.Hour), "", 0, actor, why); err != nil {
		return tokens, err
	}
	tokens.bobUser = user("bob")
	expires := now.Add(24 * time.Hour)
	for _, tk := range []struct {
		dst *string
		t   store.Token
	}{
		{&tokens.operator, store.Token{Name: "demo operator", Owner: "portcullis-dev operator", Operator: true, Expires: expires}},
		{&tokens.alice, store.Token{Name: "demo", Owner: user("alice"), Org: "acme", Expires: expires}},
		{&tokens.bob, store.Token{Name: "demo", Owner: user("bob"), Expires: expires}},
	} {
		if *tk.dst, _, err = orgs.CreateToken(ctx, tk.t, actor, why); err != nil {
			return tokens, err
		}
	}
	return tokens, nil
}

// serveLoopback serves h on a free loopback port.
func serveLoopback(h http.Handler) (*loopbackServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &loopbackServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, URL: "http://" + ln.Addr().String()}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

type loopbackServer struct {
	srv *http.Server
	URL string
}

func (s *loopbackServer) Close() { _ = s.srv.Close() }

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// checkLoopback refuses to expose the demo beyond this machine unless asked to.
func checkLoopback(addr string, anywhere bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", addr, err)
	}
	if anywhere || host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q is not a loopback address; the demo has built-in accounts, so pass --insecure-listen-anywhere to expose it anyway", addr)
	}
	return nil
}

func devConfig(listen, adminListen, portal, redisAddr, issuer, secret string) string {
	return fmt.Sprintf(`# Generated by portcullis dev. Edit it: Portcullis reloads it.
server:
  listen: %[1]q
  public_url: "https://%[1]s"
  metrics_listen: "off"
  # Loopback asks forward-auth questions (the snippets in examples/ tried against the demo).
  # A demo setting, not one to copy: behind an ssh or kubectl port-forward every client comes
  # from loopback, and would be believed (X-Forwarded-For, questions about itself).
  trusted_proxies: [127.0.0.0/8, "::1/128"]
forward_auth:
  enabled: true
tls:
  mode: self_signed
  self_signed_hosts: [localhost, 127.0.0.1, "::1", acme.localhost, globex.localhost]
log:
  format: text
redis:
  address: %[3]q
oidc:
  issuer: %[4]q
  client_id: portcullis-dev
  client_secret: %[5]q
# Billing is held just in time: an approved request grants it for at most 8 hours.
lifecycle:
  privileged_roles:
    billing: {max_elevation: 8h}
admin_api:
  listen: %[6]q
# The self-serve console, /.portcullis/console/: everyone sees their own access there and
# asks for what they lack; administrators' pages ask for the second factor first.
console:
  step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 10m, elevation: 10m}
  operators: ["%[4]s|demo-olga"]   # the portal owner's staff: every organisation, business events
pages:
  product_name: Acme customer portal (demo)
  logo_url: /static/logo.svg
  support_email: it-help@acme.example
  support_url: /static/help.html
routes:
  - name: home
    path: /
    path_match: exact
    upstream: %[2]s
    public: true
  - name: static
    path: /static
    upstream: %[2]s
    public: true
  - name: recovery
    path: /password/reset
    path_match: exact
    methods: [GET, POST]
    upstream: %[2]s
    public: true
    recovery_guard:
      identifier: [{from: form, name: email}]
      blocked_response: forbidden   # the demo shows why; production keeps the default, generic
  # The portal's API for integrations: machine identities' API keys only (auth), for the
  # organisation the machine belongs to, on every host (before the organisation hosts' routes).
  - name: api
    path: /api
    upstream: %[2]s
    require: {roles: [viewer, admin]}
    auth: [api_key]
  # Each organisation's own host name: Chromium, Firefox and curl resolve every *.localhost
  # name to loopback, so these reach this listener. People sign in on the sign-in host
  # (public_url) and are handed over (session/handoff.go); the organisation is the host's.
  - name: org-admin
    hosts: [acme.localhost, globex.localhost]
    path: /admin
    case_insensitive: true
    upstream: %[2]s
    org: {from: host, host: "{org}.localhost"}
    require: {roles: [admin]}
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 10m, elevation: 5m}
  - name: org-hosts
    hosts: [acme.localhost, globex.localhost]
    path: /
    upstream: %[2]s
    org: {from: host, host: "{org}.localhost"}
  - name: billing
    path: /billing
    upstream: %[2]s
    require: {roles: [billing, admin]}
  - name: admin
    path: /admin
    case_insensitive: true
    upstream: %[2]s
    require: {roles: [admin]}
    step_up: {acr: ["urn:portcullis:acr:mfa"], amr: [otp], max_age: 10m, elevation: 5m}
  - name: support
    path: /support
    upstream: %[2]s
    org: {from: session}
    require: {kinds: [partner, support], purposes: [incident], verified_email_domain: false}
  - name: reports
    path: /reports
    upstream: http://127.0.0.1:9   # nothing listens there: shows the 502 page
    timeouts: {dial: 1s}
  - name: portal
    upstream: %[2]s
`, listen, portal, redisAddr, issuer, secret, adminListen)
}
