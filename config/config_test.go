package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func parse(t *testing.T, yaml string) (*Config, Errors, error) {
	t.Helper()
	return testLoader().Parse("test.yaml", []byte(yaml))
}

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	cfg, _, err := parse(t, yaml)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return cfg
}

const minimal = `
tls:
  mode: self_signed
routes:
  - name: app
    upstream: http://10.0.0.5:8080
`

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  Error
		want string
	}{
		{"full", Error{"p.yaml", 42, 5, "routes[3].upstream", "must use http or https"}, "p.yaml:42:5: routes[3].upstream: must use http or https"},
		{"no key", Error{"p.yaml", 1, 1, "", "the file is empty"}, "p.yaml:1:1: the file is empty"},
		{"no position", Error{"p.yaml", 0, 0, "tls", "x"}, "p.yaml: tls: x"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	es := Errors{{File: "a", Line: 1, Column: 2, Message: "one"}, {File: "a", Line: 3, Column: 4, Key: "k", Message: "two"}}
	if got, want := es.Error(), "a:1:2: one\na:3:4: k: two"; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

// TestDefaults checks that a minimal file gets every documented default.
func TestDefaults(t *testing.T) {
	cfg := mustParse(t, minimal)
	yes := true
	want := &Config{
		File: "test.yaml",
		Server: Server{
			Listen: ":8443", MetricsListen: "127.0.0.1:9090",
			ReadHeaderTimeout: Duration(10 * time.Second), ReadTimeout: Duration(60 * time.Second),
			IdleTimeout: Duration(120 * time.Second), MaxHeaderBytes: 32768,
			ShutdownTimeout: Duration(15 * time.Second), PathParams: "reject", BodyInspectionLimit: 1 << 20, MaxBufferedBody: 1 << 20,
		},
		TLS: TLS{Mode: TLSModeSelfSigned, MinVersion: "1.2", ACME: ACME{
			CA: LetsEncryptProduction, Storage: "./portcullis-acme", Challenges: []string{"http-01", "tls-alpn-01"},
		}},
		Log: Log{Level: "info", Format: "json", AccessLog: &yes, SlogLevel: slog.LevelInfo},
		Redis: Redis{KeyPrefix: "pc", DialTimeout: Duration(2 * time.Second),
			ReadTimeout: Duration(time.Second), WriteTimeout: Duration(time.Second)},
		Identity: Identity{Headers: IdentityHeaders{
			User: "X-Portcullis-User", Email: "X-Portcullis-Email", Org: "X-Portcullis-Org", Roles: "X-Portcullis-Roles",
			Purpose: "X-Portcullis-Purpose", Kind: "X-Portcullis-Kind", Assertion: "X-Portcullis-Assertion", Sponsor: "X-Portcullis-Sponsor",
		}, AssertionLifetime: Duration(60 * time.Second), AssertionAlg: "ES256", Forward: ForwardFull},
		Authz: Authz{Cache: &yes, CacheTTL: Duration(2 * time.Second)},
		Audit: Audit{MaxLen: 100000, Retention: Duration(24 * time.Hour), Refusals: "counted", RefusalInterval: Duration(time.Minute)},
		Pages: Pages{ProductName: "Portcullis"},
		Lifecycle: Lifecycle{
			Kinds: KindPolicies{
				Employee: KindPolicy{MaxDuration: days(0), ReviewEvery: days(365), Approvers: []string{"org_admin", "operator"}, ApprovalsRequired: 1, RequiresTicket: new(bool)},
				Partner:  KindPolicy{MaxDuration: days(365), ReviewEvery: days(90), Approvers: []string{"org_admin", "operator"}, ApprovalsRequired: 1, RequiresTicket: new(bool)},
				Reseller: KindPolicy{MaxDuration: days(365), ReviewEvery: days(90), Approvers: []string{"org_admin", "operator"}, ApprovalsRequired: 1, RequiresTicket: new(bool)},
				Support:  KindPolicy{MaxDuration: days(30), ReviewEvery: days(30), Approvers: []string{"org_admin"}, ApprovalsRequired: 1, RequiresTicket: &yes},
				Service:  KindPolicy{MaxDuration: days(365), ReviewEvery: days(90), Approvers: []string{"org_admin", "operator"}, ApprovalsRequired: 1, RequiresTicket: new(bool)},
			},
			AdminRole: "org-admin", RequestTTL: Duration(72 * time.Hour),
			APIKeys: APIKeyPolicy{MaxLifetime: *days(90), MaxOverlap: *days(7), DisableUnusedAfter: days(30)},
		},
		AdminAPI: AdminAPI{Listen: "off"},
		Tracing:  Tracing{Endpoint: "http://127.0.0.1:4318", ServiceName: "portcullis"},
		Console:  Console{Enabled: &yes},
		Routes: []Route{{
			Name: "app", Path: "/", PathMatch: PathPrefix, MethodOverride: MethodOverrideRefuse, Upstream: "http://10.0.0.5:8080", PreserveHost: &yes, Auth: []string{"session"},
			Timeouts: UpstreamTimeouts{Dial: Duration(5 * time.Second), ResponseHeader: Duration(60 * time.Second), IdleConn: Duration(90 * time.Second)},
			Line:     5, Column: 5,
		}},
	}
	if diff := cmp.Diff(want, cfg, cmpopts.IgnoreFields(Route{}, "UpstreamURL")); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if u := cfg.Routes[0].UpstreamURL; u == nil || u.String() != "http://10.0.0.5:8080" {
		t.Errorf("UpstreamURL = %v", u)
	}

	off := mustParse(t, strings.Replace(minimal, "self_signed", `"off"`, 1))
	if off.Server.Listen != ":8080" {
		t.Errorf("listen with tls off = %q, want :8080", off.Server.Listen)
	}

	again := *cfg
	ApplyDefaults(&again)
	if diff := cmp.Diff(cfg, &again, cmpopts.IgnoreFields(Route{}, "UpstreamURL")); diff != "" {
		t.Errorf("ApplyDefaults is not idempotent:\n%s", diff)
	}
}

// TestDefaultsTable keeps the documentation table honest: every key it names exists.
func TestDefaultsTable(t *testing.T) {
	ds := Defaults()
	if len(ds) < 20 {
		t.Fatalf("only %d defaults documented", len(ds))
	}
	for _, d := range ds {
		typ := reflect.TypeFor[Config]()
		for _, part := range strings.Split(d.Key, ".") {
			part = strings.TrimSuffix(part, "[]")
			found := false
			for _, f := range structFields(typ) {
				if f.name == part {
					typ = typ.Field(f.index).Type
					if typ.Kind() == reflect.Slice || typ.Kind() == reflect.Pointer {
						typ = typ.Elem()
					}
					found = true
					break
				}
			}
			if !found {
				t.Errorf("Defaults key %q: no key %q in the schema", d.Key, part)
				break
			}
		}
		if d.Value == "" {
			t.Errorf("Defaults key %q has no value", d.Key)
		}
	}
}

// TestValidFull checks the parsed values of a complete file.
func TestValidFull(t *testing.T) {
	data, err := os.ReadFile("testdata/valid_full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := testLoader().Parse("valid_full.yaml", data)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("Parse: %v, warnings %v", err, warnings)
	}
	if got := cfg.Server.PublicBase.String(); got != "https://portal.example.com/" {
		t.Errorf("PublicBase = %s", got)
	}
	wantPrefixes := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("2001:db8::/32"),
	}
	if diff := cmp.Diff(wantPrefixes, cfg.Server.TrustedPrefixes, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("TrustedPrefixes (-want +got):\n%s", diff)
	}
	if cfg.Log.SlogLevel != slog.LevelDebug || *cfg.Log.AccessLog {
		t.Errorf("log = %+v", cfg.Log)
	}
	if cfg.Redis.Address != "redis.internal:6379" || cfg.Redis.Password.Reveal() != "file-secret-0xC0FFEE" {
		t.Errorf("redis address %q, password from file not read", cfg.Redis.Address)
	}
	type routeSummary struct {
		Name, Upstream  string
		Line, Column    int
		Dial, RespHdr   time.Duration
		CAFile, Scheme  string
		RequestHeaders  map[string]string
		CaseInsensitive bool
	}
	var got []routeSummary
	for _, r := range cfg.Routes {
		got = append(got, routeSummary{r.Name, r.Upstream, r.Line, r.Column, r.Timeouts.Dial.D(), r.Timeouts.ResponseHeader.D(),
			r.UpstreamTLS.CAFile, r.UpstreamURL.Scheme, r.RequestHeaders, r.CaseInsensitive})
	}
	want := []routeSummary{
		{"health", "http://10.0.0.5:8080", 41, 5, 5 * time.Second, time.Minute, "", "http", nil, false},
		// The merged anchor supplies timeouts and upstream_tls.
		{"admin", "https://10.0.0.6:8443/base/", 46, 5, 3 * time.Second, 2 * time.Minute, "testdata/ca.pem", "https",
			map[string]string{"X-Portal-Tenant": "acme", "X-Remove-Me": ""}, true},
		// Its own timeouts mapping wins over the merged one, as a whole.
		{"portal", "http://10.0.0.7:8080", 58, 5, time.Second, time.Minute, "testdata/ca.pem", "http", nil, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
}

func TestMerge(t *testing.T) {
	cfg := mustParse(t, `
x-common: &common
  upstream: http://10.0.0.5
  timeouts: {dial: 2s}
  <<: {public: true}
tls: {mode: self_signed}
routes:
  - name: a
    <<: *common
  - name: b
    <<: [*common, {preserve_host: true}]
    upstream: http://10.0.0.6
`)
	a, b := cfg.Routes[0], cfg.Routes[1]
	if a.Upstream != "http://10.0.0.5" || a.Timeouts.Dial.D() != 2*time.Second || !a.Public {
		t.Errorf("route a = %+v", a)
	}
	if b.Upstream != "http://10.0.0.6" || !*b.PreserveHost || !b.Public {
		t.Errorf("route b = %+v", b)
	}
	// A merge that includes itself must end.
	_, _, err := parse(t, "a: &a\n  <<: *a\ntls: {mode: self_signed}\n")
	if err == nil {
		t.Error("unknown key a accepted")
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "1", "B": "two", "EMPTY": "", "_X9": "x"}
	lookup := func(n string) (string, bool) { v, ok := env[n]; return v, ok }
	for _, tc := range []struct {
		in, want string
		expanded bool
		err      string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "1", expanded: true},
		{in: "x${A}y${B}z", want: "x1ytwoz", expanded: true},
		{in: "${EMPTY}", want: "", expanded: true},
		{in: "${_X9}", want: "x", expanded: true},
		{in: "$${A}", want: "${A}"},
		// Only "$${" is an escape, read left to right: a lone "$" before it stays.
		{in: "$$${A}", want: "$${A}"},
		{in: "$A and $ and $$", want: "$A and $ and $$"},
		{in: "${MISSING}", err: "environment variable MISSING is not set"},
		{in: "${A", err: `unterminated "${"`},
		{in: "${}", err: `invalid environment variable name ""`},
		{in: "${A-B}", err: `invalid environment variable name "A-B"`},
		{in: "${9A}", err: `invalid environment variable name "9A"`},
	} {
		got, expanded, err := expandEnv(tc.in, lookup)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("expandEnv(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want || expanded != tc.expanded {
			t.Errorf("expandEnv(%q) = %q, %v, %v; want %q, %v", tc.in, got, expanded, err, tc.want, tc.expanded)
		}
	}
}

// TestEnvTypes checks that expansion happens before type conversion.
func TestEnvTypes(t *testing.T) {
	l := testLoader()
	l.LookupEnv = func(n string) (string, bool) {
		return map[string]string{"BYTES": "8192", "PUBLIC": "true", "TIMEOUT": "3s", "MODE": "files", "DIR": "testdata"}[n], true
	}
	cfg, _, err := l.Parse("env.yaml", []byte(`
server: {max_header_bytes: "${BYTES}", read_timeout: "${TIMEOUT}"}
tls: {mode: "${MODE}", cert_file: "${DIR}/cert.pem", key_file: "${DIR}/key.pem"}
routes: [{name: app, upstream: "http://10.0.0.5", public: "${PUBLIC}"}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.MaxHeaderBytes != 8192 || cfg.Server.ReadTimeout.D() != 3*time.Second || !cfg.Routes[0].Public || cfg.TLS.CertFile != "testdata/cert.pem" {
		t.Errorf("got %+v %+v", cfg.Server, cfg.Routes[0])
	}
}

const secretValue = "s3cr3t-VALUE-must-not-leak"

// TestSecrets reads secrets from the environment and from files, and checks that the value
// never shows in formatting, logs or JSON.
func TestSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte(secretValue+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, redis string }{
		{"env", "password: ${PW}"},
		{"file", "password_file: " + file},
		{"file from env", "password_file: ${PW_FILE}"},
		{"inline", "password: " + secretValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := Loader{LookupEnv: func(n string) (string, bool) {
				return map[string]string{"PW": secretValue, "PW_FILE": file}[n], true
			}}
			cfg, _, err := l.Parse("s.yaml", []byte("tls: {mode: self_signed}\nredis:\n  address: localhost:6379\n  "+tc.redis+
				"\nroutes: [{name: app, upstream: 'http://10.0.0.5'}]\n"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Redis.Password.Reveal(); got != secretValue {
				t.Fatalf("password = %q", got)
			}
			var out bytes.Buffer
			fmt.Fprintf(&out, "%v %+v %#v %s %v", cfg, cfg, cfg, cfg.Redis.Password, cfg.Redis)
			slog.New(slog.NewJSONHandler(&out, nil)).Info("cfg", "cfg", cfg, "redis", cfg.Redis, "pw", cfg.Redis.Password)
			slog.New(slog.NewTextHandler(&out, nil)).Info("cfg", "cfg", cfg, "redis", cfg.Redis, "pw", cfg.Redis.Password)
			js, err := json.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			out.Write(js)
			if strings.Contains(out.String(), secretValue) {
				t.Errorf("secret leaks:\n%s", out.String())
			}
			if !strings.Contains(out.String(), "[redacted]") {
				t.Errorf("no redaction marker in output:\n%s", out.String())
			}
		})
	}
}

// TestSecretsNeverInErrors gives secrets to keys that reject them and checks every message.
func TestSecretsNeverInErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pw")
	if err := os.WriteFile(file, []byte(secretValue), 0o600); err != nil {
		t.Fatal(err)
	}
	l := Loader{LookupEnv: func(n string) (string, bool) {
		return map[string]string{"PW": secretValue, "URL": "http://u:" + secretValue + "@h"}[n], true
	}}
	_, warnings, err := l.Parse("s.yaml", []byte(`
server:
  listen: ${PW}
  max_header_bytes: ${PW}
  read_timeout: ${PW}
  trusted_proxies: ["${PW}"]
  public_url: ${URL}
tls: {mode: "${PW}", min_version: "${PW}"}
log: {level: "${PW}", access_log: "${PW}"}
redis:
  address: ${PW}
  password: ${PW}
  password_file: `+file+`
  key_prefix: "{${PW}}"
routes:
  - name: ${PW}
    hosts: ["${PW}"]
    methods: ["${PW} x"]
    path: ${PW}
    upstream: ${URL}
    request_headers: {X-A: "${PW}\n"}
    upstream_tls: {ca_file: "${PW}"}
`))
	if err == nil {
		t.Fatal("no error")
	}
	all := err.Error() + "\n" + warnings.Error()
	if strings.Contains(all, secretValue) {
		t.Errorf("secret in messages:\n%s", all)
	}
	if n := len(err.(Errors)); n < 15 {
		t.Errorf("only %d errors:\n%s", n, all)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte(minimal), 0o600)
	os.WriteFile(bad, []byte("tls: {mode: nope}\nroutes: []\n"), 0o600)

	cfg, _, err := Load(good)
	if err != nil || cfg.File != good {
		t.Fatalf("Load(good) = %v, %v", cfg, err)
	}
	cfg, _, err = Load(bad)
	var errs Errors
	if cfg != nil || !errors.As(err, &errs) || len(errs) != 2 || errs[0].File != bad || errs[0].Line != 1 {
		t.Errorf("Load(bad) = %v, %#v", cfg, err)
	}
	if _, _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestInjectedFiles(t *testing.T) {
	files := map[string]string{"/etc/pc/pw": "from-fake-fs\n", "/etc/pc/ca.pem": "pem"}
	l := Loader{
		LookupEnv: func(string) (string, bool) { return "", false },
		ReadFile: func(name string) ([]byte, error) {
			if s, ok := files[name]; ok {
				return []byte(s), nil
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
		Stat: func(name string) (fs.FileInfo, error) {
			if _, ok := files[name]; ok {
				return fakeInfo{}, nil
			}
			return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
		},
	}
	files["/etc/pc/portcullis.yaml"] = `
tls: {mode: self_signed}
redis: {address: "unix:/run/redis.sock", password_file: /etc/pc/pw}
routes: [{name: app, upstream: "https://10.0.0.5", upstream_tls: {ca_file: /etc/pc/ca.pem}}]
`
	cfg, _, err := l.Load("/etc/pc/portcullis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Redis.Password.Reveal() != "from-fake-fs" {
		t.Errorf("password = %q", cfg.Redis.Password.Reveal())
	}
}

type fakeInfo struct{ fs.FileInfo }

func (fakeInfo) IsDir() bool { return false }

// TestRoutePositions checks Route.Line/Column in flow and block style.
func TestRoutePositions(t *testing.T) {
	cfg := mustParse(t, "tls: {mode: self_signed}\nroutes:\n- name: a\n  path: /a\n  upstream: http://h\n- {name: b, upstream: 'http://h'}\n")
	got := [][2]int{{cfg.Routes[0].Line, cfg.Routes[0].Column}, {cfg.Routes[1].Line, cfg.Routes[1].Column}}
	if want := [][2]int{{3, 3}, {6, 3}}; !reflect.DeepEqual(got, want) {
		t.Errorf("positions = %v, want %v", got, want)
	}
}

func TestCovers(t *testing.T) {
	r := func(hosts []string, path, match string, ci bool, methods ...string) *Route {
		return &Route{Hosts: hosts, Path: path, PathMatch: match, CaseInsensitive: ci, Methods: methods}
	}
	any := []string(nil)
	for _, tc := range []struct {
		name string
		a, b *Route
		want bool
	}{
		{"catch-all covers all", r(any, "/", "prefix", false), r([]string{"x.com"}, "/a", "exact", true, "GET"), true},
		{"prefix covers deeper prefix", r(any, "/a", "prefix", false), r(any, "/a/b", "prefix", false), true},
		{"prefix covers exact below", r(any, "/a", "prefix", false), r(any, "/a/b", "exact", false), true},
		{"prefix covers same exact", r(any, "/a", "prefix", false), r(any, "/a", "exact", false), true},
		{"segment-aligned", r(any, "/a", "prefix", false), r(any, "/ab", "prefix", false), false},
		{"exact does not cover prefix", r(any, "/a", "exact", false), r(any, "/a", "prefix", false), false},
		{"exact covers same exact", r(any, "/a", "exact", false), r(any, "/a", "exact", false), true},
		{"exact other path", r(any, "/a", "exact", false), r(any, "/b", "exact", false), false},
		{"trailing slash prefix", r(any, "/a/", "prefix", false), r(any, "/a/b", "prefix", false), true},
		{"trailing slash prefix misses bare", r(any, "/a/", "prefix", false), r(any, "/a", "exact", false), false},
		{"ci covers other case", r(any, "/Admin", "prefix", true), r(any, "/ADMIN/x", "prefix", false), true},
		{"cs misses ci", r(any, "/admin", "prefix", false), r(any, "/admin/x", "prefix", true), false},
		{"cs without letters covers ci", r(any, "/1", "prefix", false), r(any, "/1/x", "prefix", true), true},
		{"cs misses other case", r(any, "/admin", "prefix", false), r(any, "/Admin", "prefix", false), false},
		{"host list covers subset", r([]string{"a.com", "b.com"}, "/", "prefix", false), r([]string{"b.com"}, "/", "prefix", false), true},
		{"host list misses one", r([]string{"a.com"}, "/", "prefix", false), r([]string{"a.com", "c.com"}, "/", "prefix", false), false},
		{"specific host misses any host", r([]string{"a.com"}, "/", "prefix", false), r(any, "/", "prefix", false), false},
		{"wildcard covers one label", r([]string{"*.x.com"}, "/", "prefix", false), r([]string{"a.x.com"}, "/", "prefix", false), true},
		{"wildcard misses two labels", r([]string{"*.x.com"}, "/", "prefix", false), r([]string{"a.b.x.com"}, "/", "prefix", false), false},
		{"wildcard misses apex", r([]string{"*.x.com"}, "/", "prefix", false), r([]string{"x.com"}, "/", "prefix", false), false},
		{"wildcard covers same wildcard", r([]string{"*.x.com"}, "/", "prefix", false), r([]string{"*.x.com"}, "/", "prefix", false), true},
		{"wildcard misses deeper wildcard", r([]string{"*.x.com"}, "/", "prefix", false), r([]string{"*.a.x.com"}, "/", "prefix", false), false},
		{"exact host misses wildcard", r([]string{"a.x.com"}, "/", "prefix", false), r([]string{"*.x.com"}, "/", "prefix", false), false},
		{"methods superset", r(any, "/", "prefix", false, "GET", "POST"), r(any, "/", "prefix", false, "POST"), true},
		{"methods subset", r(any, "/", "prefix", false, "GET"), r(any, "/", "prefix", false, "GET", "POST"), false},
		{"some methods miss all", r(any, "/", "prefix", false, "GET"), r(any, "/", "prefix", false), false},
	} {
		if got := covers(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: covers = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestShadowSkipsBrokenRoutes: a route with errors gets errors, not also a shadow warning.
func TestShadowSkipsBrokenRoutes(t *testing.T) {
	_, warnings, err := parse(t, "tls: {mode: self_signed}\nroutes:\n- {name: a, upstream: 'http://h'}\n- {name: b, upstream: 'ftp://h'}\n")
	if err == nil || len(warnings) != 0 {
		t.Errorf("err %v, warnings %v", err, warnings)
	}
}

// TestExpansionBounded: aliases cannot make a small file decode into a huge tree, and big
// route tables stay fast.
func TestExpansionBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("x-hosts: &h [")
	for i := range 1000 {
		fmt.Fprintf(&b, "h%d.example.com, ", i)
	}
	b.WriteString("]\nx-route: &r {name: r, hosts: *h, upstream: 'http://u'}\ntls: {mode: self_signed}\nroutes: [")
	for range 1000 {
		b.WriteString("*r, ")
	}
	b.WriteString("]\n")
	_, _, err := parse(t, b.String())
	if err == nil || !strings.Contains(err.Error(), "expands to more than") {
		t.Errorf("err = %.300v", err)
	}

	b.Reset()
	b.WriteString("tls: {mode: self_signed}\nroutes:\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "- {name: r%d, hosts: [h%d.example.com], path: /p%d, methods: [GET, POST], upstream: 'http://u'}\n", i, i, i)
	}
	if _, _, err := parse(t, b.String()); err != nil {
		t.Fatal(err)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30s": 30 * time.Second, "90d": 90 * 24 * time.Hour, "1d12h": 36 * time.Hour, "0d": 0, "1m30s": 90 * time.Second,
	} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"d", "-1d", "+1d", "1.5d", "1dx", "1d-1h", "99999999d", "1d1d"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
}
