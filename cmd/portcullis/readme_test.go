package main

// The README's code blocks, checked as a newcomer would use them: every shell command is run
// (or, where it cannot run here, named with the test that runs it), every configuration
// snippet passes `portcullis check`, and every admin command the synopsis lists exists.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// readmeBlock is one fenced code block of a Markdown file of the repository.
type readmeBlock struct {
	file    string // relative to the repository
	line    int    // of its first line of content
	lang    string // the fence's info string: sh, yaml or text
	heading string // the section it is in
	body    string
}

func (b readmeBlock) String() string { return fmt.Sprintf("%s:%d (%s)", b.file, b.line, b.lang) }

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	blocks := markdownBlocks(t, "README.md")
	if len(blocks) < 15 {
		t.Fatalf("found %d code blocks in README.md", len(blocks))
	}
	return blocks
}

// markdownBlocks reads the fenced code blocks of file (indented ones included: a fence is
// matched after leading spaces).
func markdownBlocks(t *testing.T, file string) []readmeBlock {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", file))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	heading := ""
	for i, l := range strings.Split(string(raw), "\n") {
		fence := strings.HasPrefix(strings.TrimLeft(l, " "), "```")
		switch {
		case fence && cur == nil:
			cur = &readmeBlock{file: file, line: i + 2, lang: strings.TrimPrefix(strings.TrimLeft(l, " "), "```"), heading: heading}
		case fence:
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.body += l + "\n"
		case strings.HasPrefix(l, "#"):
			heading = strings.TrimSpace(strings.TrimLeft(l, "#"))
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: a code block is never closed", file, cur.line-1)
	}
	for _, b := range blocks {
		if b.lang != "sh" && b.lang != "yaml" && b.lang != "text" {
			t.Errorf("%s: say what the block is (sh, yaml or text), so that a test checks it", b)
		}
	}
	return blocks
}

// shellCommands splits a shell block into its commands: comments dropped, "\" continuations
// joined; each command keeps the README line it starts on.
func shellCommands(b readmeBlock) (cmds []string, lines []int) {
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(strings.TrimRight(b.body, "\n"), "\n") {
		if cur.Len() == 0 {
			if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			start = b.line + i
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s)
			continue
		}
		cur.WriteString(l)
		cmds, lines = append(cmds, strings.TrimSpace(cur.String())), append(lines, start)
		cur.Reset()
	}
	return cmds, lines
}

// TestREADMEAdminSynopsis: every "portcullis admin GROUP VERB" the README's command list
// names is a command of the binary, and every command of the binary is in the README.
func TestREADMEAdminSynopsis(t *testing.T) {
	named := map[string]bool{}  // anywhere in the README's blocks
	listed := map[string]bool{} // in the command list (the text block)
	// "portcullis admin org show|list;  org activate ID ...": the group, then each verb; in
	// the command list, later "GROUP VERB" clauses after a ";" on the same line.
	first := regexp.MustCompile(`^(?:portcullis admin|pa)\s+([a-z]+) ([a-z|-]+)`)
	later := regexp.MustCompile(`;\s+([a-z]+) ([a-z|-]+)`)
	for _, b := range readmeBlocks(t) {
		if b.lang == "yaml" {
			continue
		}
		for _, l := range strings.Split(b.body, "\n") {
			ms := first.FindAllStringSubmatch(l, -1)
			if b.lang == "text" && len(ms) > 0 {
				ms = append(ms, later.FindAllStringSubmatch(l, -1)...)
			}
			for _, m := range ms {
				for _, verb := range strings.Split(m[2], "|") {
					named[m[1]+" "+verb] = true
					listed[m[1]+" "+verb] = listed[m[1]+" "+verb] || b.lang == "text"
				}
			}
		}
	}
	for cmd := range named {
		if _, ok := adminCommands[cmd]; !ok && !strings.HasPrefix(cmd, "help") {
			t.Errorf("the README names `portcullis admin %s`, which is no command", cmd)
		}
	}
	for cmd := range adminCommands {
		if !listed[cmd] {
			t.Errorf("`portcullis admin %s` is not in the README's command list", cmd)
		}
	}
}

// TestREADMEConfigSnippets: each YAML block of the README and of the guides in docs/ passes
// check as a reader would use it (see snippetDir.write).
func TestREADMEConfigSnippets(t *testing.T) {
	t.Parallel()
	sn := newSnippetDir(t)
	blocks := readmeBlocks(t)
	for _, f := range []string{"docs/first-deployment.md"} {
		blocks = append(blocks, markdownBlocks(t, f)...)
	}
	for _, b := range blocks {
		if b.lang == "yaml" {
			t.Run(fmt.Sprintf("%s:%d", b.file, b.line), func(t *testing.T) { sn.check(t, b) })
		}
	}
}

// snippetDir holds the files the documentation's snippets name (/run/secrets/..., the
// audit log's directory), made for real so that check reads them.
type snippetDir struct{ dir, secrets string }

func newSnippetDir(t *testing.T) *snippetDir {
	t.Helper()
	sn := &snippetDir{dir: t.TempDir()}
	sn.secrets = filepath.Join(sn.dir, "secrets")
	if err := os.MkdirAll(sn.secrets, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"oidc", "siem-webhook", "webhook", "redis", "oidc-secret", "redis-password", "acme-entra"} {
		writeFile(t, filepath.Join(sn.secrets, f), "whsec_"+strings.Repeat("c2VjcmV0IHNlY3JldCBzZWNyZXQh", 2))
	}
	if _, k := writeTestCert(t, sn.secrets); os.Rename(k, filepath.Join(sn.secrets, "assertion.pem")) != nil {
		t.Fatal("assertion key")
	}
	return sn
}

// write writes the YAML block b into a file that has the rest (a listener, Redis, a provider,
// a catch-all route), as a reader would paste it, and returns its path. A list is routes; a block of route keys ("recovery_guard:") is one route's
// part; a section the block shows in part keeps the rest of the base's.
func (sn *snippetDir) write(t *testing.T, b readmeBlock) string {
	t.Helper()
	var top any
	if err := yaml.Unmarshal([]byte(b.body), &top); err != nil {
		t.Fatalf("%s: not YAML: %v", b, err)
	}
	base := map[string]any{
		"server": map[string]any{"listen": "127.0.0.1:8443", "public_url": "https://portal.example.com"},
		"tls":    map[string]any{"mode": "self_signed"},
		"redis":  map[string]any{"address": "127.0.0.1:6379"},
		"oidc": map[string]any{"issuer": "https://idp.example.com", "client_id": "portcullis",
			"client_secret_file": filepath.Join(sn.secrets, "oidc")},
	}
	var routes []any
	switch v := top.(type) {
	case []any:
		routes = v
	case map[string]any:
		if _, ok := v["recovery_guard"]; ok {
			routes = []any{map[string]any{"name": "recovery", "path": "/password/reset", "public": true,
				"recovery_guard": v["recovery_guard"]}}
			break
		}
		for k, val := range v {
			into, ok1 := base[k].(map[string]any)
			from, ok2 := val.(map[string]any)
			switch {
			case k == "routes":
				routes = val.([]any)
			case (k == "oidc" || k == "redis") && ok2:
				base[k] = from // a provider or a Redis of its own: none of the base's
			case ok1 && ok2:
				for kk, vv := range from {
					into[kk] = vv
				}
			default:
				base[k] = val
			}
		}
	default:
		t.Fatalf("%s: neither a list of routes nor a map", b)
	}
	catchAll := true // unless the snippet has its own
	for _, r := range routes {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		if m["upstream"] == nil {
			m["upstream"] = "http://127.0.0.1:9000" // a route's part, shown without its upstream
		}
		if (m["path"] == nil || m["path"] == "/") && m["hosts"] == nil && m["methods"] == nil {
			catchAll = false
		}
	}
	if catchAll {
		routes = append(routes, map[string]any{"name": "catch-all", "upstream": "http://127.0.0.1:9000"})
	}
	base["routes"] = routes
	out, err := yaml.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("/run/secrets/", sn.secrets+"/", "/etc/portcullis/", sn.secrets+"/",
		"/var/log/portcullis/", sn.dir+"/", "/var/lib/portcullis/", sn.dir+"/").Replace(string(out))
	path := filepath.Join(sn.dir, fmt.Sprintf("%s-%d.yaml", strings.ReplaceAll(b.file, "/", "-"), b.line))
	writeFile(t, path, text)
	return path
}

// check writes b (see write) and wants `portcullis check` to accept it without a warning; it
// returns the file.
func (sn *snippetDir) check(t *testing.T, b readmeBlock) string {
	t.Helper()
	path := sn.write(t, b)
	if out, err := runCheck(path); err != nil || !strings.Contains(out, "valid:") || !strings.Contains(out, " 0 warnings") {
		raw, _ := os.ReadFile(path)
		t.Errorf("%s does not pass check: %v\n%s\nas the file:\n%s", b, err, out, raw)
	}
	return path
}

func runCheck(path string) (string, error) {
	cmd := exec.Command(binPath, "check", "--config", path)
	cmd.Env = append(os.Environ(), "OIDC_SECRET=s3cret", "OIDC_CLIENT_SECRET=s3cret")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// readmeSetAside are the README's commands that do not run in this test, each with what runs
// it instead. Every other shell command in the README runs in TestREADMECommands.
var readmeSetAside = map[string]string{
	"go run ./cmd/portcullis dev":                        "runs until stopped: TestE2EDev and the other TestE2EDev* tests run the same binary's dev",
	"go test -race -count=1 -timeout 15m ./...":          "what .ci/run runs (checked below)",
	"go install ./cmd/portcullis":                        "TestMain builds the same package; the session's portcullis is that binary",
	"portcullis serve --config examples/portcullis.yaml": "runs until stopped: TestE2EExamples serves each example",
	"docker compose -f docker/compose.yaml up --build":   "no Docker engine in CI: TestComposeConfigIsValid checks its configuration; pa runs the same commands with the binary",
	"go run ./bench -duration 10s -rounds 5":             "minutes of load beside the suite's other tests: its flags are checked below",
}

// TestREADMECommands runs the README's shell blocks in order, as one reader's session in a
// directory of its own: `portcullis` is the binary under test, serving the admin API over TLS
// on a certificate curl and the CLI trust (as a deployment's would be), against a test Redis.
// Before a block, the organisations and people it speaks of are made as the README's earlier
// steps would have; the tokens it prints are kept as the variables it then uses. curl fails on
// an HTTP error (--fail-with-body), so a refused call fails the test.
func TestREADMECommands(t *testing.T) {
	t.Parallel()
	sess := newShellSession(t)
	dir, cert, key := sess.dir, sess.cert, sess.key
	ci, err := os.ReadFile(filepath.Join("..", "..", ".ci", "run"))
	if err != nil || !strings.Contains(string(ci), "go test -race -count=1 -timeout 15m ./...") {
		t.Errorf(".ci/run does not run the README's test command: %v", err)
	}
	// The reader's checkout: the session runs in a directory of its own with the examples.
	examples, err := filepath.Abs(filepath.Join("..", "..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(examples, filepath.Join(dir, "examples")); err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	adminListen := freePort(t)
	writeFile(t, filepath.Join(dir, "portcullis.yaml"), fmt.Sprintf(`server: {listen: %s, metrics_listen: "off"}
tls: {mode: files, cert_file: %s, key_file: %s}
redis: {address: %s}
admin_api: {listen: %s}
client_jwt:
  issuers:
    - {issuer: https://login.acme.example, audience: portal-api, orgs: [acme]}
routes:
  - {name: app, path: /app, upstream: "http://127.0.0.1:9", public: true}
`, freePort(t), cert, key, rs.Addr, adminListen))
	p := startBinary(t, filepath.Join(dir, "portcullis.yaml"))
	p.waitLog(t, "portcullis serving", 10*time.Second)

	// The README's addresses and Docker wrapper, for this machine's.
	local := strings.NewReplacer("127.0.0.1:9443", adminListen,
		"docker compose -f docker/compose.yaml run --rm portcullis admin", "portcullis admin",
		"/etc/portcullis/portcullis.yaml", "portcullis.yaml")
	vars, sh := sess.vars, sess.run
	breakGlass := func(args string) string {
		t.Helper()
		return sh("setup", "portcullis admin "+args+" --break-glass --config portcullis.yaml")
	}
	token := func(out string) string { t.Helper(); return printedToken(t, out) }
	// What the README's reader has made by the time of each block, keyed by the block's first
	// command.
	before := map[string]func(){
		"portcullis admin token create --break-glass": func() {
			breakGlass(`org create globex --name "Globex" --reason "a customer"`)
			breakGlass(`member grant acme "https://idp.acme.example|ann" --kind employee --role org-admin --reason "Acme's administrator"`)
			breakGlass(`member grant acme "https://idp.acme.example|bob" --kind employee --role viewer --reason hired`)
			vars["BOB"] = token(breakGlass(`token create --name bob --owner "https://idp.acme.example|bob" --org acme --lifetime 1d --reason "bob's own"`))
		},
		"curl -s $API/events": func() {
			for _, org := range []string{"bigco", "oldpartner", "newpartner"} {
				breakGlass("org create " + org + " --name " + org + " --reason setup")
			}
			breakGlass(`member grant oldpartner "https://idp.oldpartner.example|otto" --kind employee --role support --reason hired`)
			breakGlass(`member grant acme "https://idp.oldpartner.example|otto" --kind partner --role viewer --reason "support contract"`)
			breakGlass(`member grant newpartner "https://idp.newpartner.example|nina" --kind employee --role support --reason hired`)
		},
		"portcullis admin machine create": func() {
			breakGlass(`member grant acme "https://idp.acme.example|erin" --kind employee --role user --reason hired`)
		},
	}
	// The outputs the README's later commands use: tokens, a request's id, a key's id.
	after := func(cmd, out string) {
		switch {
		case strings.Contains(cmd, "token create") && strings.Contains(cmd, "--name ops-console"):
			vars["OPS"] = token(out)
		case strings.Contains(cmd, "token create") && strings.Contains(cmd, "--name ann"):
			vars["ANN"] = token(out)
		case strings.Contains(cmd, "/requests -H") && strings.Contains(cmd, "--json"):
			var req struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal([]byte(out), &req); err != nil || req.ID == "" {
				t.Fatalf("%s: no request id in %s", cmd, out)
			}
			vars["REQ_ID"] = req.ID
		case strings.Contains(cmd, "key create"):
			m := regexp.MustCompile(`API key (\S+) of`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("%s: no key id in %s", cmd, out)
			}
			vars["KEY_ID"] = m[1]
		}
	}
	ran := 0
	setAside := map[string]bool{}
	for _, b := range readmeBlocks(t) {
		if b.lang != "sh" {
			continue
		}
		cmds, lines := shellCommands(b)
		for prefix, f := range before {
			if len(cmds) > 0 && strings.HasPrefix(cmds[0], prefix) {
				f()
			}
		}
		for i, cmd := range cmds {
			where := fmt.Sprintf("README.md:%d", lines[i])
			cmd = trailingComment.ReplaceAllString(cmd, "")
			if why, ok := readmeSetAside[cmd]; ok {
				setAside[cmd] = true
				t.Logf("%s: %s: not run here: %s", where, cmd, why)
				continue
			}
			cmd = local.Replace(cmd)
			cmd = strings.NewReplacer("REQ_ID", "$REQ_ID", "KEY-ID", "$KEY_ID").Replace(cmd)
			if isDefinition(cmd) {
				sess.defs = append(sess.defs, cmd)
				continue
			}
			out := sess.runExpecting(where, cmd, readmeExpect)
			after(cmd, out)
			ran++
		}
	}
	if ran < 25 {
		t.Errorf("ran %d README commands", ran)
	}
	for cmd := range readmeSetAside {
		if !setAside[cmd] {
			t.Errorf("readmeSetAside names %q, which is no longer in the README", cmd)
		}
	}
	// The benchmark's command, without its load: the flags it gives exist.
	c := exec.Command("go", "run", "./bench", "-h")
	c.Dir = filepath.Join("..", "..")
	out, _ := c.CombinedOutput()
	for _, f := range []string{"-duration", "-rounds"} {
		if !strings.Contains(string(out), "  "+f) {
			t.Errorf("go run ./bench -h lists no %s flag:\n%s", f, out)
		}
	}
}

// readmeExpect: what a README command's output shows when it did what the README says.
var readmeExpect = map[string]string{
	"portcullis check":   "valid:",
	"org list":           "acme.example(verified)",
	"--dry-run":          "dry run, nothing changed",
	"/approve":           `"state":"approved"`,
	"/me/requests":       `"state":"approved"`,
	"event offboarded":   "membership.revoked",
	"event support-move": "request.created",
	"machine list":       "live",
	"machine bind":       "bound to acme/billing-export",
}

// trailingComment is a shell comment after a command.
var trailingComment = regexp.MustCompile(`\s+#\s.*$`)

// shellSession is one reader's shell, command after command, in a directory of its own:
// `portcullis` on PATH is the binary under test; curl and the CLI trust the test certificate
// (cert, key: for 127.0.0.1), and curl fails on an HTTP error (--fail-with-body). Variables
// and functions the reader defined (defs) and values the test carries (vars) are in force for
// every later command.
type shellSession struct {
	t              *testing.T
	dir, cert, key string
	env, defs      []string
	vars           map[string]string
}

func newShellSession(t *testing.T) *shellSession {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed; .ci/run installs it")
		}
		t.Skip("curl is not installed (apt-get install curl)")
	}
	s := &shellSession{t: t, dir: t.TempDir(), vars: map[string]string{}}
	bin := filepath.Join(s.dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binPath, filepath.Join(bin, "portcullis")); err != nil {
		t.Fatal(err)
	}
	s.cert, s.key = writeTestCert(t, s.dir)
	writeFile(t, filepath.Join(s.dir, ".curlrc"), "--fail-with-body\n")
	// CURL_HOME: curl reads this .curlrc, whatever the machine's XDG_CONFIG_HOME says.
	s.env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+s.dir, "CURL_HOME="+s.dir,
		"SSL_CERT_FILE="+s.cert, "CURL_CA_BUNDLE="+s.cert, "PORTCULLIS_ADMIN_SERVER=", "PORTCULLIS_ADMIN_TOKEN=")
	return s
}

// run runs cmd (the README line where) and returns its output; a failure fails the test.
func (s *shellSession) run(where, cmd string) string {
	s.t.Helper()
	script := "set -eo pipefail\n"
	for k, v := range s.vars {
		script += k + "=" + shellQuote(v) + "\n"
	}
	script += strings.Join(s.defs, "\n") + "\n" + cmd + "\n"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-c", script)
	c.Dir, c.Env, c.WaitDelay = s.dir, s.env, time.Second
	out, err := c.CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s: %s\n%v\n%s", where, cmd, err, out)
	}
	return string(out)
}

// runExpecting is run, with the output logged and checked: for each command fragment of
// expect that cmd contains, the output must contain its text.
func (s *shellSession) runExpecting(where, cmd string, expect map[string]string) string {
	s.t.Helper()
	out := s.run(where, cmd)
	s.t.Logf("%s: %s\n%s", where, cmd, out)
	for what, want := range expect {
		if strings.Contains(cmd, what) && !strings.Contains(out, want) {
			s.t.Errorf("%s: %s: want %q in its output:\n%s", where, cmd, want, out)
		}
	}
	return out
}

// printedToken is the admin API token `portcullis admin token create` printed in out.
func printedToken(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^(pcadm_\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no token printed:\n%s", out)
	}
	return m[1]
}

// isDefinition: only shell variable assignments (exported or not, with no command after
// them and no command substitution) or a function definition.
func isDefinition(cmd string) bool { return definition.MatchString(cmd) }

var definition = regexp.MustCompile(`^(export )?([A-Za-z_][A-Za-z0-9_]*=[^\s$(` + "`" + `]*(\$[A-Z_]+)?[^\s$(` + "`" + `]*\s*)+$|^[a-z_]+\(\) \{.*\}$`)

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestFirstDeploymentGuide runs docs/first-deployment.md's commands in order, as an operator
// following it would. The configuration is the guide's own snippets, with this machine's
// provider, Redis and addresses, and a files certificate for 127.0.0.1 instead of ACME; its
// snippets as written pass check in TestREADMEConfigSnippets. serve is started by the test
// where the guide starts it; go install is TestMain's build.
func TestFirstDeploymentGuide(t *testing.T) {
	t.Parallel()
	sess := newShellSession(t)
	listen, adminListen := freePort(t), freePort(t)
	base := "https://" + listen
	idp := devidptest.Start(t, devidp.Config{Clients: []devidp.Client{{ID: "portcullis", Secret: "guide-secret",
		RedirectURIs: []string{base + "/.portcullis/callback"}}}})
	rs := redistest.Start(t)
	up := upstream(t, "portal")

	cfg := map[string]any{}
	for _, b := range markdownBlocks(t, "docs/first-deployment.md") {
		if b.lang != "yaml" {
			continue
		}
		var part map[string]any
		if err := yaml.Unmarshal([]byte(b.body), &part); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		for k, v := range part {
			cfg[k] = v
		}
	}
	for _, k := range []string{"oidc", "redis", "server", "tls", "admin_api"} {
		if _, ok := cfg[k].(map[string]any); !ok {
			t.Fatalf("docs/first-deployment.md shows no %s section", k)
		}
	}
	secret := filepath.Join(sess.dir, "oidc-secret")
	writeFile(t, secret, "guide-secret\n")
	oidc := cfg["oidc"].(map[string]any)
	oidc["issuer"], oidc["client_secret_file"], oidc["ca_root_file"] = idp.URL, secret, idp.CAFile(t)
	cfg["redis"] = map[string]any{"address": rs.Addr} // the guide's has a password; the test's has none
	server := cfg["server"].(map[string]any)
	server["listen"], server["public_url"], server["metrics_listen"] = listen, base, "off"
	delete(server, "redirect_listen")
	cfg["tls"] = map[string]any{"mode": "files", "cert_file": sess.cert, "key_file": sess.key}
	cfg["admin_api"].(map[string]any)["listen"] = adminListen
	cfg["routes"] = []any{map[string]any{"name": "portal", "upstream": up.URL}}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(sess.dir, "portcullis.yaml")
	writeFile(t, cfgPath, string(raw))
	writeFile(t, filepath.Join(sess.dir, "users.csv"), "email,kind,roles\nbob@acme.example,employee,viewer\ncarol@acme.example,employee,viewer;billing\n")

	local := strings.NewReplacer("/etc/portcullis/portcullis.yaml", "portcullis.yaml",
		"https://portal.example.com:9443", "https://"+adminListen, "https://portal.example.com", base,
		"pcadm_...", "$FIRST_TOKEN",
		// -q: not the session's .curlrc, whose --fail-with-body curl refuses beside the guide's -f.
		"curl -fsS", "curl -q -fsS")
	expect := map[string]string{
		"portcullis check":    "valid:",
		"portcullis version":  "portcullis",
		"org create":          "created org acme",
		"domain verify":       "verified",
		"member invite":       "invited alice@acme.example",
		"member import":       "invited 2 address(es) to acme",
		"/.portcullis/readyz": "ok",
	}
	ran := 0
	for _, b := range markdownBlocks(t, "docs/first-deployment.md") {
		if b.lang != "sh" {
			continue
		}
		cmds, lines := shellCommands(b)
		for i, cmd := range cmds {
			where := fmt.Sprintf("docs/first-deployment.md:%d", lines[i])
			cmd = local.Replace(trailingComment.ReplaceAllString(cmd, ""))
			switch {
			case cmd == "go install ./cmd/portcullis":
				continue
			case strings.HasPrefix(cmd, "portcullis serve --config portcullis.yaml"):
				startBinary(t, cfgPath).waitLog(t, "portcullis serving", 10*time.Second)
				continue
			case isDefinition(cmd):
				sess.defs = append(sess.defs, cmd)
				continue
			}
			out := sess.runExpecting(where, cmd, expect)
			if strings.Contains(cmd, "token create") {
				sess.vars["FIRST_TOKEN"] = printedToken(t, out)
			} else if strings.Contains(out, "BREAK-GLASS") {
				t.Errorf("%s: %s went straight to Redis, not through the admin API the guide set up:\n%s", where, cmd, out)
			}
			ran++
		}
	}
	if ran < 8 {
		t.Errorf("ran %d of the guide's commands", ran)
	}
}
