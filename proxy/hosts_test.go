package proxy

import "testing"

// ServesHost is what the sign-in handoff may post a one-time code to: only names a route lists.
func TestServesHost(t *testing.T) {
	cfg := loadConfig(t, `
tls: {mode: self_signed}
routes:
  - name: orgs
    hosts: ["*.portal.example.com", "exact.example.com"]
    path: /
    upstream: http://127.0.0.1:1
  - name: catch-all
    path: /
    upstream: http://127.0.0.1:1
`)
	s, err := New(SettingsOf(cfg), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"acme.portal.example.com":      true,
		"ACME.portal.example.com:8443": true,
		"acme.portal.example.com.":     true,
		"exact.example.com":            true,
		// The catch-all route answers any Host a client sends: it does not make a name ours.
		"evil.test":                    false,
		"portal.example.com":           false,
		"a.b.portal.example.com":       false,
		"evilportal.example.com":       false,
		"acme.portal.example.com.evil": false,
		"acme.portal.example.com@evil": false,
		"":                             false,
		"[::1]:443":                    false,
	} {
		if got := s.ServesHost(host); got != want {
			t.Errorf("ServesHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestHostOrg(t *testing.T) {
	cfg := loadConfig(t, `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
oidc: {issuer: "https://idp.example.com", client_id: c}
routes:
  - name: orgs
    hosts: ["*.portal.example.com"]
    path: /
    org: {from: host, host: "{org}.portal.example.com"}
    upstream: http://127.0.0.1:1
  - name: by-path
    hosts: ["paths.example.com"]
    path: /
    org: {from: path, path_segment: 1}
    upstream: http://127.0.0.1:1
  - name: catch-all
    path: /
    upstream: http://127.0.0.1:1
`)
	s, err := New(SettingsOf(cfg), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"acme.portal.example.com":      "acme",
		"ACME.portal.example.com:8443": "acme",
		// Not an organisation host: the org comes from elsewhere, or not at all.
		"paths.example.com":          "",
		"portal.example.com":         "",
		"evil.test":                  "",
		"a.b.portal.example.com":     "",
		"Bad_Org.portal.example.com": "",
		"":                           "",
	} {
		if got := s.HostOrg(host); got != want {
			t.Errorf("HostOrg(%q) = %q, want %q", host, got, want)
		}
	}
}
