package proxy

import (
	"slices"
	"strings"
	"testing"
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
	base := loadConfig(t, baseConfig(up, "")+oidc("s1", "1h"))
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"same", baseConfig(up, "") + oidc("s1", "1h"), nil},
		{"routes and pages apply at once", strings.Replace(baseConfig(up, ""), "path: /public", "path: /open", 1) +
			oidc("s1", "1h") + "pages: {product_name: Acme}\nlog: {level: debug}\n", nil},
		{"secrets rotated", baseConfig(up, "") + oidc("s2", "1h"), []string{"redis", "oidc"}},
		{"session and cache", baseConfig(up, "") + oidc("s1", "2h") + "authz: {cache: false}\n", []string{"session", "authz"}},
		{"listener and TLS", strings.Replace(strings.Replace(baseConfig(up, ""), "127.0.0.1:0", "127.0.0.1:1", 1),
			"self_signed", "off", 1) + oidc("s1", "1h"), []string{"server.listen", "tls"}},
	} {
		got := restartKeys(base, loadConfig(t, tc.yaml))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: restartKeys = %q, want %q", tc.name, got, tc.want)
		}
	}
}
