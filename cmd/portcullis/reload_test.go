package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
)

// TestRestartKeys: a reload names every changed setting that only a restart applies (so an
// operator who rotates the OIDC client secret or the Redis password is told it is not in force
// yet), and none of those that apply at once.
func TestRestartKeys(t *testing.T) {
	const up = "http://127.0.0.1:9"
	oidc := func(secret, idle string) string {
		return `
redis: {address: 127.0.0.1:6379, password: ` + secret + `}
oidc: {issuer: https://idp.example, client_id: portal, client_secret: ` + secret + `, redirect_url: https://portal.example/.portcullis/callback}
session: {idle_timeout: ` + idle + `}
`
	}
	base := reloadConfig(t, reloadBase(up, "")+oidc("s1", "1h"))
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"same", reloadBase(up, "") + oidc("s1", "1h"), nil},
		{"routes and pages apply at once", strings.Replace(reloadBase(up, ""), "path: /public", "path: /open", 1) +
			oidc("s1", "1h") + "pages: {product_name: Acme}\nlog: {level: debug}\n", nil},
		{"secrets rotated", reloadBase(up, "") + oidc("s2", "1h"), []string{"redis", "oidc"}},
		{"session and cache", reloadBase(up, "") + oidc("s1", "2h") + "authz: {cache: false}\n", []string{"session", "authz"}},
		{"listener and TLS", strings.Replace(strings.Replace(reloadBase(up, ""), "127.0.0.1:0", "127.0.0.1:1", 1),
			"self_signed", "off", 1) + oidc("s1", "1h"), []string{"server.listen", "tls"}},
		{"forward-auth on the main listener applies at once", withTrusted(reloadBase(up, "")) + oidc("s1", "1h") +
			"forward_auth: {enabled: true}\n", nil},
		{"forward-auth listeners", withTrusted(reloadBase(up, "")) + oidc("s1", "1h") +
			"forward_auth: {enabled: true, listen: 127.0.0.1:9091, envoy_listen: 127.0.0.1:9001}\n",
			[]string{"forward_auth.listen", "forward_auth.envoy_listen"}},
		{"what portals are told applies at once", reloadBase(up, "") + oidc("s1", "1h") + "identity: {forward: headers}\n", nil},
		{"the assertion's signing", reloadBase(up, "") + oidc("s1", "1h") +
			"identity: {assertion_alg: HS256, assertion_secret: 0123456789abcdef0123456789abcdef, assertion_lifetime: 30s}\n",
			[]string{"identity.assertion_alg", "identity.assertion_secret", "identity.assertion_lifetime"}},
	} {
		got := restartKeys(base, reloadConfig(t, tc.yaml))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: restartKeys = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// withTrusted adds server.trusted_proxies to a reloadBase configuration.
func withTrusted(yaml string) string {
	return strings.Replace(yaml, "  metrics_listen:", "  trusted_proxies: [127.0.0.1/32]\n  metrics_listen:", 1)
}

// reloadConfig parses yaml as the binary loads a file.
func reloadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, _, err := config.Parse("portcullis.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

// reloadBase is a small valid configuration with a route table and room for more sections.
func reloadBase(upstream string, _ string) string {
	return fmt.Sprintf(`
server:
  listen: 127.0.0.1:0
  metrics_listen: "off"
tls:
  mode: self_signed
routes:
  - name: public
    path: /public
    upstream: %[1]s
    public: true
  - name: admin
    path: /admin
    upstream: %[1]s
`, upstream)
}

func TestWeakenedRoutes(t *testing.T) {
	f := false
	base := func() []config.Route {
		return []config.Route{
			{Name: "billing", Path: "/billing", Methods: []string{"GET"}, Org: &config.OrgSource{From: "path"},
				Require: &config.Require{Roles: []string{"admin"}, Kinds: []string{"employee"}}, StepUp: &config.StepUp{MaxAge: config.Duration(time.Minute)}},
			{Name: "reset", Path: "/reset", Public: true, RecoveryGuard: &config.RecoveryGuard{}},
			{Name: "app", Path: "/"},
		}
	}
	if w := weakenedRoutes(base(), base()); len(w) != 0 {
		t.Errorf("the same table: %v", w)
	}
	// Stricter is not weaker.
	stricter := base()
	stricter[2].Require = &config.Require{Roles: []string{"user"}}
	stricter[0].Require.Roles = nil
	stricter[0].Require.Roles = []string{"admin"}
	if w := weakenedRoutes(base(), stricter); len(w) != 0 {
		t.Errorf("a stricter table: %v", w)
	}
	weaker := base()
	weaker[0].Require = &config.Require{Roles: []string{"admin", "viewer"}, VerifiedEmailDomain: &f}
	weaker[0].StepUp = nil
	weaker[0].Methods = nil
	weaker[0].MethodOverride = config.MethodOverrideAllow
	weaker[1].RecoveryGuard = nil
	weaker = weaker[:2] // app removed
	got := weakenedRoutes(base(), weaker)
	want := []weakening{
		{"billing", []string{"roles required: admin → admin,viewer", "kinds admitted: employee → ", "verified email domain no longer required",
			"step-up removed", "method overrides allowed", "more methods accepted"}},
		{"reset", []string{"recovery guard removed"}},
		{"app", []string{"removed: its requests may now match a broader route"}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("weakened\n%v\nwant\n%v", got, want)
	}
	public := base()
	public[0].Public, public[0].Org, public[0].Require = true, nil, nil
	if got := weakenedRoutes(base(), public); len(got) != 1 || !slices.Contains(got[0].why, "now public") || !slices.Contains(got[0].why, "no longer org-scoped") {
		t.Errorf("made public: %v", got)
	}
}
