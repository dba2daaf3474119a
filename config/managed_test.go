package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func managedDir(t *testing.T) (ManagedProviders, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "acme-okta"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "oidc")
	if err := os.WriteFile(outside, []byte("the portal's own secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "a.escape")); err != nil {
		t.Fatal(err)
	}
	return ManagedProviders{SecretsDir: dir, SecretsEnvPrefix: "PORTCULLIS_IDP_"}, outside
}

func TestParseManagedProvider(t *testing.T) {
	m, _ := managedDir(t)
	t.Setenv("PORTCULLIS_IDP_BETA", "beta-secret")
	t.Setenv("OIDC_SECRET", "the portal's")
	mp, p, err := ParseManagedProvider("provider", []byte(`{"name": "acme-okta", "issuer": "https://acme.okta.example", "client_id": "0oa1",
  "client_secret_file": "acme-okta", "org": "acme", "verified_domains_only": true, "scopes": ["openid", "email", "offline_access"],
  "revalidate": {"interval": "15m"}}`), m)
	if err != nil {
		t.Fatal(err)
	}
	if p.ClientSecret.Reveal() != "s3cret" || p.Org != "acme" || !p.VerifiedDomainsOnly || p.Revalidate.GracePeriod() == 0 || p.Shared {
		t.Errorf("resolved %+v", p)
	}
	if mp.ClientSecretFile != "acme-okta" {
		t.Errorf("record %+v", mp)
	}
	if _, p, err := ParseManagedProvider("provider", []byte(`{"name": "beta", "issuer": "https://beta.example", "client_id": "c", "client_secret_env": "PORTCULLIS_IDP_BETA"}`), m); err != nil || p.ClientSecret.Reveal() != "beta-secret" {
		t.Errorf("env reference: %v %v", p, err)
	}

	for _, tc := range []struct{ name, doc, key, msg string }{
		{"secret by value", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret": "hunter2"}`, "client_secret", "by reference"},
		{"file with a directory", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_file": "../oidc"}`, "client_secret_file", "without directories"},
		{"absolute file", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_file": "/run/secrets/oidc"}`, "client_secret_file", "without directories"},
		{"link out of the directory", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_file": "a.escape"}`, "client_secret_file", "link out of"},
		{"another provider's file", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_file": "acme-okta"}`, "client_secret_file", "named after the provider"},
		{"a variable with a suffix (acme + _OKTA is acme-okta's)", `{"name": "acme", "issuer": "https://a.example", "client_id": "c", "client_secret_env": "PORTCULLIS_IDP_ACME_OKTA"}`, "client_secret_env", "must be PORTCULLIS_IDP_ACME:"},
		{"another provider's variable", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_env": "PORTCULLIS_IDP_BETA"}`, "client_secret_env", "named after the provider"},
		{"a loopback http issuer", `{"name": "a", "issuer": "http://127.0.0.1:6379", "client_id": "c"}`, "issuer", "must use https"},
		{"no certificate in the CA file", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "ca_root_file": "acme-okta"}`, "ca_root_file", "no PEM certificate"},
		{"missing file", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_file": "a.nope"}`, "client_secret_file", "cannot read"},
		{"variable without the prefix", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_env": "OIDC_SECRET"}`, "client_secret_env", "a variable starting with PORTCULLIS_IDP_"},
		{"the prefix alone", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_env": "PORTCULLIS_IDP_"}`, "client_secret_env", "named after the provider"},
		{"unset variable", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_env": "PORTCULLIS_IDP_A"}`, "client_secret_env", "not set"},
		{"both", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_file": "a", "client_secret_env": "PORTCULLIS_IDP_A"}`, "client_secret_env", "not both"},
		{"the default name", `{"name": "default", "issuer": "https://a.example", "client_id": "c"}`, "name", "oidc's own"},
		{"http issuer", `{"name": "a", "issuer": "http://a.example", "client_id": "c"}`, "issuer", "https"},
		{"no client id", `{"name": "a", "issuer": "https://a.example"}`, "client_id", "is required"},
		{"hmac", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "signing_algs": ["HS256"]}`, "signing_algs[0]", "not an accepted"},
		{"shared is not for managed providers", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "shared": true}`, "shared", "unknown"},
		{"bad org", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "org": "Acme Corp"}`, "org", "not an organisation id"},
		{"short grace", `{"name": "a", "issuer": "https://a.example", "client_id": "c", "revalidate": {"interval": "5m", "grace": "1s"}}`, "revalidate.grace", "at least 30s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseManagedProvider("provider", []byte(tc.doc), m)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v", err)
			}
			for _, e := range errs {
				if e.Key == tc.key && strings.Contains(e.Message, tc.msg) {
					if strings.Contains(e.Message, "hunter2") || strings.Contains(e.Message, "the portal's") {
						t.Errorf("a secret in the message: %s", e.Message)
					}
					return
				}
			}
			t.Errorf("want %s: …%s…, got %v", tc.key, tc.msg, err)
		})
	}
	// Without a secrets directory, no file can be named at all.
	if _, _, err := ParseManagedProvider("provider", []byte(`{"name": "a", "issuer": "https://a.example", "client_id": "c", "client_secret_file": "a"}`),
		ManagedProviders{SecretsEnvPrefix: "PORTCULLIS_IDP_"}); err == nil || !strings.Contains(err.Error(), "secrets_dir") {
		t.Errorf("a file without secrets_dir: %v", err)
	}
}

func TestManagedProvidersConfig(t *testing.T) {
	const head = `
server: {public_url: "https://portal.example.com"}
tls: {mode: self_signed}
redis: {address: "127.0.0.1:6379"}
routes: [{name: a, upstream: "http://10.0.0.5"}]
oidc:
  issuer: "https://d.example"
  client_id: c
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "oidc"), []byte("own"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "assertion.pem"), []byte("-----BEGIN EC PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mustParse(t, head+"  managed_providers: {secrets_dir: "+dir+", secrets_env_prefix: PORTCULLIS_IDP_}\n")
	if !cfg.OIDC.ManagedProviders.Enabled() {
		t.Fatal("not enabled")
	}
	for _, tc := range []struct{ name, yaml, key, msg string }{
		{"relative dir", "  managed_providers: {secrets_dir: secrets}\n", "oidc.managed_providers.secrets_dir", "absolute"},
		{"missing dir", "  managed_providers: {secrets_dir: " + filepath.Join(dir, "none") + "}\n", "oidc.managed_providers.secrets_dir", "cannot read"},
		{"bad prefix", "  managed_providers: {secrets_env_prefix: \"A-\"}\n", "oidc.managed_providers.secrets_env_prefix", "start of environment variable names"},
		{"short prefix", "  managed_providers: {secrets_env_prefix: IDP_}\n", "oidc.managed_providers.secrets_env_prefix", "at least 8"},
		{"a shared directory", "  managed_providers: {secrets_dir: /run/secrets}\n", "oidc.managed_providers.secrets_dir", "directory of their own"},
		{"the portal's own secret in the directory", "  client_secret_file: " + filepath.Join(dir, "oidc") + "\n  managed_providers: {secrets_dir: " + dir + "}\n",
			"oidc.managed_providers.secrets_dir", "the secret of oidc.client_secret_file"},
		{"the assertion key in the directory", "  managed_providers: {secrets_dir: " + dir + "}\nidentity: {assertion_key_file: " + filepath.Join(dir, "assertion.pem") + "}\n",
			"oidc.managed_providers.secrets_dir", "identity.assertion_key_file"},
		{"a prefix covering the second of two variables", "  client_secret: \"${LISTEN_HOST}${PORTCULLIS_IDP_OWN}\"\n  managed_providers: {secrets_env_prefix: PORTCULLIS_IDP_}\n",
			"oidc.managed_providers.secrets_env_prefix", "covers PORTCULLIS_IDP_OWN"},
		{"a prefix covering the file's variables", "  client_secret: ${PORTCULLIS_IDP_OWN}\n  managed_providers: {secrets_env_prefix: PORTCULLIS_IDP_}\n",
			"oidc.managed_providers.secrets_env_prefix", "covers PORTCULLIS_IDP_OWN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parse(t, head+tc.yaml)
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("want %s: %s, got %v", tc.key, tc.msg, err)
			}
		})
	}
}
