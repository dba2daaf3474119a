package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// TestE2EDev runs `portcullis dev` as a newcomer would and checks that its walkthrough is
// true: the public page, sign-in through the embedded provider, the identity the portal gets,
// and the refusals the walkthrough promises.
func TestE2EDev(t *testing.T) {
	base := startDev(t)

	anon := tlsClient()
	if resp, body := doGet(t, anon, base+"/"); resp.StatusCode != 200 || !strings.Contains(body, "demo customer portal") {
		t.Errorf("home: %d %.200s", resp.StatusCode, body)
	}
	if resp, _ := doGet(t, anon, base+"/admin/"); resp.StatusCode != 401 {
		t.Errorf("admin without a session: %d", resp.StatusCode)
	}
	if resp, body := doGet(t, anon, base+"/.portcullis/jwks.json"); resp.StatusCode != 200 || !strings.Contains(body, `"kty":"EC"`) {
		t.Errorf("jwks: %d %s", resp.StatusCode, body)
	}

	browse := signIn(t, base, "bob")
	p := browse("/headers", http.Header{"X-Portcullis-User": {"mallory"}, "X_Portcullis_Org": {"evil"}})
	if p.status != 200 || !strings.Contains(p.body, "X-Portcullis-User") || !strings.Contains(p.body, "demo-bob") ||
		strings.Contains(p.body, "mallory") || strings.Contains(p.body, "evil") {
		t.Errorf("headers page as bob: %d\n%s", p.status, p.body)
	}
	if p := browse("/billing/", nil); p.status != 403 || !strings.Contains(p.body, "role_missing") {
		t.Errorf("billing as bob: %d %.300s", p.status, p.body)
	}
	alice := signIn(t, base, "alice")
	if p := alice("/billing/", nil); p.status != 200 || !strings.Contains(p.body, "Billing") {
		t.Errorf("billing as alice: %d %.300s", p.status, p.body)
	}
	// The admin area demands a fresh second factor: a page explains and offers the step-up.
	if p := alice("/admin/", nil); p.status != 401 || !strings.Contains(p.body, "step-up") {
		t.Errorf("admin as alice without step-up: %d %.500s", p.status, p.body)
	}
	// The console the walkthrough names: everyone's own access; the administration pages
	// behind the second factor.
	if p := browse("/.portcullis/console/", nil); p.status != 200 || !strings.Contains(p.body, "My access") || !strings.Contains(p.body, "viewer") {
		t.Errorf("console as bob: %d %.300s", p.status, p.body)
	}
	if p := alice("/.portcullis/console/orgs/acme/", nil); p.status != 401 || !strings.Contains(p.body, "step_up_required") {
		t.Errorf("Acme's members as alice without step-up: %d %.500s", p.status, p.body)
	}
	if p := browse("/.portcullis/console/orgs/acme/", nil); p.status != 403 || !strings.Contains(p.body, "not_permitted") {
		t.Errorf("Acme's members as bob: %d %.500s", p.status, p.body)
	}
	frank := signIn(t, base, "frank")
	if p := frank("/billing/", nil); p.status != 403 || !strings.Contains(p.body, "not_member") {
		t.Errorf("billing as frank: %d %.300s", p.status, p.body)
	}
	lena := signIn(t, base, "lena")
	if p := lena("/billing/", nil); p.status != 403 || !strings.Contains(p.body, "email_domain_not_verified") {
		t.Errorf("billing as lena: %d %.300s", p.status, p.body)
	}
	pat := signIn(t, base, "pat")
	if p := pat("/support/", nil); p.status != 200 || !strings.Contains(p.body, "Choose an organisation") {
		t.Errorf("support as pat (two orgs: picker expected): %d %.300s", p.status, p.body)
	}

	// Forward-auth on the front door, from loopback: the same decisions, as answers.
	question := func(uri string) http.Header {
		return http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {uri}, "Accept": {"application/json"},
			"X-Forwarded-Host": {strings.TrimPrefix(base, "https://")}, "X-Forwarded-Proto": {"https"}}
	}
	req, _ := http.NewRequest("GET", base+"/.portcullis/auth", nil)
	req.Header = question("/billing/")
	if resp, err := anon.Do(req); err != nil {
		t.Error(err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || resp.Header.Get("X-Portcullis-Reason") != "no_session" {
			t.Errorf("forward-auth, signed out: %d %s %s", resp.StatusCode, resp.Header.Get("X-Portcullis-Reason"), body)
		}
	}
	if p := browse("/.portcullis/auth", question("/billing/")); p.status != 403 || !strings.Contains(p.body, "role_missing") {
		t.Errorf("forward-auth, bob on billing: %d %.300s", p.status, p.body)
	}
	if p := alice("/.portcullis/auth", question("/billing/")); p.status != 200 || p.body != "" {
		t.Errorf("forward-auth, alice on billing: %d %.300s", p.status, p.body)
	}
}

// TestE2EDevOrgHosts checks the walkthrough's organisation hosts: a person opening
// acme.localhost signs in on the sign-in host (127.0.0.1, another site) and is handed over,
// acting for Acme; globex.localhost needs no second sign-in and refuses a non-member; signing
// out on acme.localhost signs out on the sign-in host too.
func TestE2EDevOrgHosts(t *testing.T) {
	base := startDev(t)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "https://"))
	acme, globex := "https://acme.localhost:"+port, "https://globex.localhost:"+port

	dc := newDevClient(t, base, "alice")
	alice := dc.get
	p := alice(acme+"/headers", nil)
	if p.status != 200 || !strings.Contains(p.body, "demo-alice") || !strings.Contains(p.body, "X-Portcullis-Org</th><td><code>acme</code>") {
		t.Fatalf("acme.localhost/headers as alice: %d\n%s", p.status, p.body)
	}
	if p := alice(base+"/.portcullis/whoami", http.Header{"Accept": {"application/json"}}); p.status != 200 {
		t.Errorf("whoami on the sign-in host after the handoff: %d %s", p.status, p.body)
	}
	if p := alice(globex+"/headers", nil); p.status != 403 || !strings.Contains(p.body, "not_member") {
		t.Errorf("globex.localhost/headers as alice: %d %.300s", p.status, p.body)
	}
	// Acme's admin area on its own host asks for a step-up (done through the sign-in host:
	// TestBrowserHandoffStepUp, with the second factor).
	if p := alice(acme+"/admin/", nil); p.status != 401 || !strings.Contains(p.body, "step_up_required") ||
		!strings.Contains(p.body, `action="/.portcullis/step-up"`) {
		t.Errorf("acme.localhost/admin/ as alice: %d %.500s", p.status, p.body)
	}
	bob := signIn(t, base, "bob")
	if p := bob(globex+"/headers", nil); p.status != 403 || !strings.Contains(p.body, "not_member") {
		t.Errorf("globex.localhost/headers as bob: %d %.300s", p.status, p.body)
	}
	if p := bob(acme+"/admin/", nil); p.status != 403 || !strings.Contains(p.body, "role_missing") {
		t.Errorf("acme.localhost/admin/ as bob: %d %.300s", p.status, p.body)
	}
	// Sign out on acme.localhost: the confirmation page, then its form.
	p = alice(acme+"/.portcullis/logout", nil)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("logout page on acme.localhost: %d %s", p.status, p.body)
	}
	if p := dc.post(acme+"/.portcullis/logout", url.Values{"csrf": {m[1]}}); p.status != 200 || !strings.Contains(p.body, "Signed out") {
		t.Errorf("sign out on acme.localhost: %d %.300s", p.status, p.body)
	}
	for _, o := range []string{base, acme, globex} {
		if p := alice(o+"/.portcullis/whoami", http.Header{"Accept": {"application/json"}}); p.status != 401 {
			t.Errorf("whoami on %s after signing out on acme.localhost: %d", o, p.status)
		}
	}
}

// startDev runs `portcullis dev` on a free port until the test ends and returns its base URL.
func startDev(t *testing.T) string {
	t.Helper()
	base, _ := startDevOutput(t)
	return base
}

// startDevOutput is startDev, with what the demo has printed so far.
func startDevOutput(t *testing.T) (base string, output func() string) {
	t.Helper()
	listen := freePort(t)
	cmd := exec.Command(binPath, "dev", "--listen", listen, "--admin-listen", "127.0.0.1:0")
	var mu sync.Mutex
	var buf bytes.Buffer
	out := &lockedBuf{mu: &mu, b: &buf}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	output = func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(output(), "admin audit tail --server"); {
		if time.Now().After(deadline) {
			t.Fatalf("dev did not start:\n%s", output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "https://" + listen, output
}

type devPage struct {
	status int
	body   string
}

// signIn signs in as user through the demo's provider and returns a browser that follows
// redirects from a path (or an absolute URL) and returns the final page.
func signIn(t *testing.T, base, user string) func(path string, hdr http.Header) devPage {
	t.Helper()
	return newDevClient(t, base, user).get
}

// devClient is a cookie-keeping client that signs in as user wherever it is asked to, posts the
// sign-in handoff's code as the page's script would, and reaches the demo's organisation hosts
// (*.localhost) on loopback, as browsers do.
type devClient struct {
	t          *testing.T
	base, user string
	c          *http.Client
}

func newDevClient(t *testing.T, base, user string) *devClient {
	jar, _ := cookiejar.New(nil)
	var d net.Dialer
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if h, port, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(h, ".localhost") {
					addr = net.JoinHostPort("127.0.0.1", port)
				}
				return d.DialContext(ctx, network, addr)
			}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &devClient{t: t, base: base, user: user, c: c}
}

func (dc *devClient) send(method, target string, form url.Values, hdr http.Header) *http.Response {
	dc.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, target, body)
	req.Header.Set("Accept", "text/html")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req.Header.Set("Sec-Fetch-Mode", "navigate")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := dc.c.Do(req)
	if err != nil {
		dc.t.Fatalf("%s %s: %v", method, target, err)
	}
	return resp
}

// get opens path (on base) or an absolute URL and follows where it leads.
func (dc *devClient) get(path string, hdr http.Header) devPage {
	dc.t.Helper()
	target := path
	if !strings.HasPrefix(path, "https://") {
		target = dc.base + path
	}
	return dc.follow(dc.send("GET", target, nil, hdr), hdr)
}

// post submits form to target, as a page of target's origin would, and follows the answer.
func (dc *devClient) post(target string, form url.Values) devPage {
	dc.t.Helper()
	u, _ := url.Parse(target)
	return dc.follow(dc.send("POST", target, form, http.Header{"Origin": {u.Scheme + "://" + u.Host},
		"Sec-Fetch-Site": {"same-origin"}}), nil)
}

func (dc *devClient) follow(resp *http.Response, hdr http.Header) devPage {
	dc.t.Helper()
	for range 20 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 3:
			u, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
			resp = dc.send("GET", u.String(), nil, hdr)
		case resp.StatusCode == 200 && e2eHandoffCode.Match(b):
			// The sign-in host's handoff page: post the code cross-site, as its script does.
			resp = dc.send("POST", string(e2eHandoffAction.FindSubmatch(b)[1]),
				url.Values{"code": {string(e2eHandoffCode.FindSubmatch(b)[1])}},
				http.Header{"Origin": {dc.base}, "Sec-Fetch-Site": {"cross-site"}})
		case resp.StatusCode == 200 && bytes.Contains(b, []byte("devidp-login")):
			resp.Body = io.NopCloser(bytes.NewReader(b))
			r, err := devidptest.Login(context.Background(), dc.c, resp, dc.user, devPassword, "")
			if err != nil {
				dc.t.Fatalf("login as %s: %v", dc.user, err)
			}
			resp = r
		default:
			return devPage{resp.StatusCode, string(b)}
		}
	}
	dc.t.Fatal("too many redirects")
	return devPage{}
}

// TestE2EDevRecovery checks the walkthrough's promise about the guarded forgot-password form.
func TestE2EDevRecovery(t *testing.T) {
	base := startDev(t)
	c := tlsClient()
	for _, tc := range []struct {
		email, want string
		status      int
	}{
		{"bob@acme.example", "Check your inbox", 200},
		{"lena@oldcorp.example", "stale_domain", 403},
		{"frank@acme.example", "no_active_membership", 403},
		{"anyone@unknown.example", "unknown_domain", 403},
		{"Bob <bob@acme.example>", "identifier_invalid", 400},
	} {
		req, _ := http.NewRequest("POST", base+"/password/reset", strings.NewReader("email="+url.QueryEscape(tc.email)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d, want %d with %q:\n%s", tc.email, resp.StatusCode, tc.status, tc.want, body)
		}
	}
}

// TestE2EDevGovernance runs the walkthrough's administration API commands as printed (with
// curl, as a newcomer would paste them): bob asks for billing for an hour, cannot approve it
// himself, alice approves, and /billing/ lets him in; alice's token is Acme's only.
func TestE2EDevGovernance(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed; .ci/run installs it")
		}
		t.Skip("curl is not installed (apt-get install curl)")
	}
	base, output := startDevOutput(t)
	out := output()
	env := map[string]string{}
	for _, name := range []string{"OPS", "ALICE", "BOB"} {
		m := regexp.MustCompile(`export ` + name + `=(pcadm_\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the walkthrough prints no %s token:\n%s", name, out)
		}
		env[name] = m[1]
	}
	if m := regexp.MustCompile(`export KEY=(pc_\S+)`).FindStringSubmatch(out); m != nil {
		env["KEY"] = m[1]
	} else {
		t.Fatalf("the walkthrough prints no API key:\n%s", out)
	}
	api := regexp.MustCompile(`Administration API: (https://\S+)/api/v1/`).FindStringSubmatch(out)
	if api == nil {
		t.Fatalf("the walkthrough names no admin API:\n%s", out)
	}
	// The commands as printed: "curl ..." lines, with their "\" continuations; the
	// forward-auth question apart.
	var cmds, question, machine []string
	lines := strings.Split(out, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(l, "curl ") {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(lines[i])
		}
		if c, _, ok := strings.Cut(l, " # "); ok {
			l = c
		}
		if strings.Contains(l, "/.portcullis/auth") {
			question = append(question, l)
			continue
		}
		if strings.Contains(l, "/api/invoices") || strings.Contains(l, `"offboarded"`) {
			machine = append(machine, l)
			continue
		}
		cmds = append(cmds, l)
	}
	if len(cmds) != 6 {
		t.Fatalf("want the 6 curl commands of the walkthrough, found %q", cmds)
	}
	shell := func(cmdline string) map[string]any {
		t.Helper()
		c := exec.Command("sh", "-c", cmdline)
		c.Env = append(os.Environ(), "OPS="+env["OPS"], "ALICE="+env["ALICE"], "BOB="+env["BOB"], "KEY="+env["KEY"])
		b, err := c.Output()
		if err != nil {
			t.Fatalf("%s: %v", cmdline, err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: not JSON: %s", cmdline, b)
		}
		return v
	}

	if len(question) != 1 {
		t.Fatalf("want the walkthrough's forward-auth question, found %q", question)
	}
	if v := shell(question[0]); v["error"] != "no_session" {
		t.Errorf("the forward-auth question, signed out: %v", v)
	}

	bob := signIn(t, base, "bob")
	if p := bob("/billing/", nil); p.status != 403 || !strings.Contains(p.body, "role_missing") {
		t.Fatalf("billing as bob before his request: %d %.300s", p.status, p.body)
	}
	req := shell(cmds[0])
	id, _ := req["id"].(string)
	if req["state"] != "pending" || id == "" {
		t.Fatalf("bob's request: %v", req)
	}
	pending := shell(cmds[1])
	if items, _ := pending["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != id {
		t.Errorf("alice's list of requests: %v", pending)
	}
	own := strings.ReplaceAll(strings.ReplaceAll(cmds[2], "REQUEST_ID", id), "$ALICE", "$BOB")
	if v := shell(own); v["error"] != "self_approval" {
		t.Errorf("bob approving his own request: %v", v)
	}
	if v := shell(strings.ReplaceAll(cmds[2], "REQUEST_ID", id)); v["state"] != "approved" {
		t.Fatalf("alice's approval: %v", v)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := bob("/billing/", nil)
		if p.status == 200 && strings.Contains(p.body, "Billing") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("billing as bob after the approval: %d %.300s", p.status, p.body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := shell(cmds[3]); len(v["items"].([]any)) == 0 {
		t.Errorf("members: %v", v)
	}
	if v := shell(`curl -sk ` + api[1] + `/api/v1/orgs/globex/members -H "Authorization: Bearer $ALICE"`); v["error"] != "not_permitted" {
		t.Errorf("alice's token on globex: %v", v)
	}

	// The business event: the dry run changes nothing and lists what the real run changes.
	globex := `curl -sk ` + api[1] + `/api/v1/orgs/globex -H "Authorization: Bearer $OPS"`
	dry := shell(cmds[4])
	if dry["dry_run"] != true || shell(globex)["status"] != "active" {
		t.Fatalf("the dry run: %v", dry)
	}
	real := shell(cmds[5])
	if fmt.Sprint(real["changes"]) != fmt.Sprint(dry["changes"]) || real["dry_run"] != false {
		t.Errorf("the dry run listed %v, the real run changed %v", dry["changes"], real["changes"])
	}
	if ends, _ := real["ends"].([]any); len(ends) == 0 {
		t.Errorf("no membership ends with Globex: %v", real)
	}
	if v := shell(globex); v["status"] != "ended" {
		t.Errorf("globex after its contract ended: %v", v)
	}

	// The audit trail, with the CLI as the walkthrough prints it (a client of the same API,
	// with the operator's token): the contract's end is there, made by the demo's operator.
	tail := regexp.MustCompile(`go run ./cmd/portcullis admin audit tail (.*)`).FindStringSubmatch(out)
	if tail == nil {
		t.Fatalf("the walkthrough prints no audit tail command:\n%s", out)
	}
	t.Setenv("PORTCULLIS_ADMIN_TOKEN", env["OPS"])
	var stdout, stderr strings.Builder
	if code := run(append([]string{"admin", "audit", "tail", "--count", "1000"}, strings.Fields(tail[1])...), &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "business.contract_ended") || strings.Contains(stderr.String(), "BREAK-GLASS") {
		t.Errorf("audit tail as printed: %d\n%s\n%s", code, stdout.String(), stderr.String())
	}

	// The integration: its key reaches the portal's API as the machine, naming bob; a key in a
	// query string is not read; bob's offboarding ends it.
	if len(machine) != 4 {
		t.Fatalf("want the 4 machine identity commands of the walkthrough, found %q", machine)
	}
	if v := shell(machine[0]); v["caller"] != "machine:acme|invoice-export" || v["kind"] != "service" || !strings.HasSuffix(fmt.Sprint(v["sponsor"]), "|demo-bob") {
		t.Errorf("the API key: %v", v)
	}
	if v := shell(machine[1]); v["error"] != "credential_missing" {
		t.Errorf("the key in a query string: %v", v)
	}
	if v := shell(machine[2]); v["event"] != "offboarded" {
		t.Fatalf("bob's offboarding: %v", v)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		v := shell(machine[3])
		if v["error"] == "credential_revoked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key after bob's offboarding: %v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
