package config

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v4"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// ManagedProviders lets operators add customers' OpenID Providers through the admin API
// (PUT /api/v1/providers/{name}), kept in Redis beside the organisations, instead of in this
// file. Their client secrets are never sent to, nor stored in, Redis: a provider names its
// secret by reference, a file in SecretsDir or an environment variable whose name starts with
// SecretsEnvPrefix, which each process resolves for itself. The references are confined there
// so that an operator cannot have another provider's secret (oidc.client_secret_file, say)
// sent to a token endpoint of their choosing.
type ManagedProviders struct {
	// SecretsDir is the directory that managed providers' client_secret_file and ca_root_file
	// name files in (a mounted secret volume). Absolute.
	SecretsDir string `yaml:"secrets_dir"`
	// SecretsEnvPrefix is the prefix of the environment variables managed providers'
	// client_secret_env may name, such as PORTCULLIS_IDP_.
	SecretsEnvPrefix string `yaml:"secrets_env_prefix"`
}

// Enabled reports whether providers may be managed through the admin API.
func (m ManagedProviders) Enabled() bool { return m.SecretsDir != "" || m.SecretsEnvPrefix != "" }

// ManagedProvider is a provider as the admin API takes it and Redis keeps it: the keys of an
// oidc.providers entry, with the client secret and CA bundle by reference, and the organisation
// it is bound to.
type ManagedProvider struct {
	Name                 string            `yaml:"name" json:"name"`
	DisplayName          string            `yaml:"display_name" json:"display_name,omitempty"`
	Issuer               string            `yaml:"issuer" json:"issuer"`
	ClientID             string            `yaml:"client_id" json:"client_id"`
	ClientSecretFile     string            `yaml:"client_secret_file" json:"client_secret_file,omitempty"`
	ClientSecretEnv      string            `yaml:"client_secret_env" json:"client_secret_env,omitempty"`
	CARootFile           string            `yaml:"ca_root_file" json:"ca_root_file,omitempty"`
	Scopes               []string          `yaml:"scopes" json:"scopes,omitempty"`
	ExtraParams          map[string]string `yaml:"extra_params" json:"extra_params,omitempty"`
	RequireVerifiedEmail *bool             `yaml:"require_verified_email" json:"require_verified_email,omitempty"`
	EmailDomainClaim     string            `yaml:"email_domain_claim" json:"email_domain_claim,omitempty"`
	SigningAlgs          []string          `yaml:"signing_algs" json:"signing_algs,omitempty"`
	VerifiedDomainsOnly  bool              `yaml:"verified_domains_only" json:"verified_domains_only,omitempty"`
	ACRValues            map[string]string `yaml:"acr_values" json:"acr_values,omitempty"`
	SubjectClaim         string            `yaml:"subject_claim" json:"subject_claim,omitempty"`
	Revalidate           Revalidate        `yaml:"revalidate" json:"revalidate,omitzero"`
	// Org, when set, is the one organisation the provider may sign people in for: no other
	// organisation may list it.
	Org string `yaml:"org" json:"org,omitempty"`
}

// secretRef is a file name managed providers may give: one name, no directories.
var secretRef = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ParseManagedProvider decodes a managed provider (a JSON or YAML document, called name in
// messages), checks it as oidc.providers entries are checked, and resolves its references under
// m: the result is the provider as sign-in uses it, with its secret read. Errors carry the key
// and the line of the document. A client_secret given by value is refused: secrets are given by
// reference only.
func ParseManagedProvider(name string, data []byte, m ManagedProviders) (*ManagedProvider, *OIDCProvider, error) {
	d := newDecoder(name, func(string) (string, bool) { return "", false }, func(string) ([]byte, error) {
		return nil, errors.New("files cannot be read from a managed provider")
	})
	v := &validator{file: name, d: d, stat: os.Stat}
	var mp ManagedProvider
	if root := d.parseYAML(data); root != nil {
		// client_secret is not a key of ManagedProvider; say why rather than "unknown key".
		if r := resolve(root); r != nil && r.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(r.Content); i += 2 {
				if r.Content[i].Value == "client_secret" {
					d.errorAt(nodePos(r.Content[i]), "client_secret", "secrets are given by reference: client_secret_file (a file in oidc.managed_providers.secrets_dir) or client_secret_env (a variable starting with oidc.managed_providers.secrets_env_prefix), never by value")
					r.Content = append(r.Content[:i:i], r.Content[i+2:]...)
					i -= 2
				}
			}
		}
		d.decode(root, reflect.ValueOf(&mp).Elem(), "")
	}
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, nil, d.errs
	}
	p, err := mp.Resolve(m, os.LookupEnv, v)
	if err != nil {
		return nil, nil, err
	}
	return &mp, p, nil
}

// Resolve checks mp and makes it the provider sign-in uses: its defaults applied, its secret
// read from the reference under m. It runs where the provider is saved and again in every process
// that loads it. v, when not nil, is the validator to report with (positions of a document).
func (mp *ManagedProvider) Resolve(m ManagedProviders, env func(string) (string, bool), v *validator) (*OIDCProvider, error) {
	if v == nil {
		v = &validator{file: "provider " + mp.Name, d: newDecoder("", env, os.ReadFile), stat: os.Stat}
	}
	switch {
	case mp.Name == "":
		v.errorf("name", "is required")
	case !providerName.MatchString(mp.Name):
		v.errorf("name", "%q must be lower-case letters, digits and \"-\" (at most 63)", mp.Name)
	case mp.Name == DefaultProvider:
		v.errorf("name", "%q is the name of oidc's own provider", mp.Name)
	}
	if mp.Issuer == "" {
		v.errorf("issuer", "is required")
	} else if u, err := url.Parse(mp.Issuer); err == nil && u.Scheme != "https" {
		// The file may name a loopback provider over http (development); an operator may not
		// make the proxy call local services.
		v.errorf("issuer", "must use https")
	}
	p := OIDCProvider{Name: mp.Name, DisplayName: mp.DisplayName, Issuer: mp.Issuer, ClientID: mp.ClientID,
		Scopes: append([]string(nil), mp.Scopes...), ExtraParams: mp.ExtraParams, RequireVerifiedEmail: mp.RequireVerifiedEmail,
		EmailDomainClaim: mp.EmailDomainClaim, SigningAlgs: append([]string(nil), mp.SigningAlgs...),
		VerifiedDomainsOnly: mp.VerifiedDomainsOnly, ACRValues: mp.ACRValues, SubjectClaim: mp.SubjectClaim,
		Revalidate: mp.Revalidate, Org: mp.Org}
	if mp.Org != "" && !syntax.OrgID(mp.Org) {
		v.errorf("org", "%q is not an organisation id", mp.Org)
	}
	switch {
	case mp.ClientSecretFile != "" && mp.ClientSecretEnv != "":
		v.errorf("client_secret_env", "give client_secret_file or client_secret_env, not both")
	case mp.ClientSecretFile != "":
		if secretRef.MatchString(mp.ClientSecretFile) && !namedAfter(mp.ClientSecretFile, mp.Name) {
			v.errorf("client_secret_file", "%q must be named after the provider: %s, or %s.<anything>", mp.ClientSecretFile, mp.Name, mp.Name)
		} else if b, ok := v.managedFile("client_secret_file", mp.ClientSecretFile, m); ok {
			p.ClientSecret = Secret(strings.TrimRight(string(b), "\r\n"))
		}
	case mp.ClientSecretEnv != "":
		switch val, ok := env(mp.ClientSecretEnv); {
		case m.SecretsEnvPrefix == "":
			v.errorf("client_secret_env", "needs oidc.managed_providers.secrets_env_prefix")
		case mp.ClientSecretEnv != m.SecretsEnvPrefix+envName(mp.Name):
			// Exactly: "-" becomes "_" in the name, so a suffix could reach another provider's
			// variable (acme + _OKTA is acme-okta's).
			v.errorf("client_secret_env", "%q must be %s%s: a variable starting with %s, named after the provider",
				mp.ClientSecretEnv, m.SecretsEnvPrefix, envName(mp.Name), m.SecretsEnvPrefix)
		case !ok || val == "":
			v.errorf("client_secret_env", "%s is not set in this process's environment", mp.ClientSecretEnv)
		default:
			p.ClientSecret = Secret(val)
		}
	}
	if mp.CARootFile != "" {
		if b, ok := v.managedFile("ca_root_file", mp.CARootFile, m); ok {
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				v.errorf("ca_root_file", "%s holds no PEM certificate", mp.CARootFile)
			}
			p.CARootFile = filepath.Join(m.SecretsDir, mp.CARootFile)
		}
	}
	c := &Config{OIDC: OIDC{Providers: []OIDCProvider{p}}}
	ApplyDefaults(c)
	p = c.OIDC.Providers[0]
	v.provider("", &p)
	if len(v.errs) > 0 {
		sortErrors(v.errs)
		return nil, v.errs
	}
	return &p, nil
}

// namedAfter reports whether ref is name, or name followed by "." or "_" and more: a secret
// reference is tied to its provider's name, so one provider cannot be given another's secret.
func namedAfter(ref, name string) bool {
	rest, ok := strings.CutPrefix(ref, name)
	return ok && (rest == "" || len(rest) > 1 && (rest[0] == '.' || rest[0] == '_'))
}

// envName is a provider's name as a variable name's part: upper case, "-" as "_".
func envName(name string) string { return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) }

// managedFile reads the file name in m's secrets directory.
func (v *validator) managedFile(key, name string, m ManagedProviders) ([]byte, bool) {
	switch {
	case m.SecretsDir == "":
		v.errorf(key, "needs oidc.managed_providers.secrets_dir")
		return nil, false
	case !secretRef.MatchString(name) || name == "." || name == "..":
		v.errorf(key, "%q must be a file name in %s, without directories", name, m.SecretsDir)
		return nil, false
	}
	path := filepath.Join(m.SecretsDir, name)
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		v.errorf(key, "cannot read %s in %s: %s", name, m.SecretsDir, fileReason(err))
		return nil, false
	case fi.Mode()&fs.ModeSymlink != 0 && !within(m.SecretsDir, path):
		v.errorf(key, "%s is a link out of %s", name, m.SecretsDir)
		return nil, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		v.errorf(key, "cannot read %s in %s: %s", name, m.SecretsDir, fileReason(err))
		return nil, false
	}
	return b, true
}

// within reports whether the link at path resolves inside dir. Kubernetes mounts secrets as
// links into a hidden directory of the volume, which is fine; a link to /etc is not.
func within(dir, path string) bool {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	rel, err := filepath.Rel(d, real)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// managedProviders checks oidc.managed_providers.
func (v *validator) managedProviders(c *Config) {
	m := c.OIDC.ManagedProviders
	if !m.Enabled() || !c.OIDC.Configured() {
		return
	}
	const dirKey, prefixKey = "oidc.managed_providers.secrets_dir", "oidc.managed_providers.secrets_env_prefix"
	if m.SecretsDir != "" {
		switch fi, err := v.stat(m.SecretsDir); {
		case !filepath.IsAbs(m.SecretsDir):
			v.errorf(dirKey, "must be an absolute path")
		case sharedDirs[filepath.Clean(m.SecretsDir)]:
			v.errorf(dirKey, "%s holds more than managed providers' secrets: use a directory of their own, such as /run/secrets/idp", m.SecretsDir)
		case err != nil:
			v.errorf(dirKey, "cannot read %s: %s", m.SecretsDir, fileReason(err))
		case !fi.IsDir():
			v.errorf(dirKey, "%s is not a directory", m.SecretsDir)
		default:
			// A secret of this file read from there could be sent to any token endpoint.
			for key, f := range v.d.secretFiles {
				if insideDir(m.SecretsDir, f) {
					v.errorf(dirKey, "holds %s, the secret of %s: managed providers could have it sent to a token endpoint of their choosing; keep their secrets in a directory of their own", f, key)
				}
			}
		}
	}
	if p := m.SecretsEnvPrefix; p != "" {
		if !validEnvName(p) || len(p) < 8 || !strings.HasSuffix(p, "_") {
			v.errorf(prefixKey, "%q must be the start of environment variable names of their own, ending in \"_\", such as PORTCULLIS_IDP_ (at least 8 characters)", p)
		}
		for key, names := range v.d.envNames {
			for _, name := range names {
				if strings.HasPrefix(name, p) {
					v.errorf(prefixKey, "covers %s, which %s reads: managed providers could have it sent to a token endpoint of their choosing", name, key)
				}
			}
		}
	}
}

// sharedDirs hold other secrets or the system: never a managed providers' secrets directory.
var sharedDirs = map[string]bool{"/": true, "/etc": true, "/run": true, "/run/secrets": true, "/var/run": true, "/var/run/secrets": true,
	"/proc": true, "/sys": true, "/dev": true, "/root": true, "/home": true, "/var": true, "/tmp": true, "/usr": true}

// insideDir reports whether file (as a configuration names it) is in dir or below it, links
// resolved where they can be.
func insideDir(dir, file string) bool {
	abs, err := filepath.Abs(file)
	if err != nil {
		return false
	}
	for _, f := range []string{abs, evalOr(abs)} {
		for _, d := range []string{filepath.Clean(dir), evalOr(dir)} {
			if rel, err := filepath.Rel(d, f); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return true
			}
		}
	}
	return false
}

func evalOr(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return filepath.Clean(p)
}
