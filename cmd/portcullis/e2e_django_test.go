package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// djangoPython is Debian's python3 with python3-django, or "" when there is none.
func djangoPython(t *testing.T) string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import django").Run() == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("python3-django is not installed; .ci/run installs it")
	}
	t.Skip("python3-django is not installed (apt-get install python3-django)")
	return ""
}

// TestE2EDjango puts the Django example (its own password reset views, examples/django)
// behind the real binary with a recovery guard in mirror mode, and checks what #22 asks: a
// reset for a blocked address is answered exactly as one for an address Django does not know
// (status, Location, headers, body), nobody is mailed for it, an allowed person gets the mail,
// its link names the public host and the reset completes through Portcullis, an existing user
// Portcullis has only an invitation for can reset, a person signed in through the provider is
// logged in by Django from the header, and no spelling of a spoofed identity header reaches
// Django's RemoteUserMiddleware.
func TestE2EDjango(t *testing.T) {
	t.Parallel()
	py := djangoPython(t)
	dir := t.TempDir()
	mailDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(mailDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The example README's run steps, as a reader runs them from the repository's root, with
	// this test's database, mail directory and address; the last (runserver) is exec'd, so
	// the process is Django's. PORTAL_HOSTS lets Django answer on 127.0.0.1 too.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, b := range markdownBlocks(t, "examples/django/README.md") {
		if b.lang == "sh" && strings.Contains(b.body, "runserver") {
			steps, _ = shellCommands(b)
		}
	}
	if len(steps) < 4 || !strings.HasPrefix(steps[0], "cd examples/django") || !strings.Contains(steps[len(steps)-1], "runserver") {
		t.Fatalf("examples/django/README.md: no run steps from cd to runserver: %q", steps)
	}
	djangoAddr := freePort(t)
	steps[len(steps)-1] = "exec " + steps[len(steps)-1]
	script := replacePlaceholders(t, "examples/django/README.md", "set -e\n"+strings.Join(steps, "\n"),
		"/tmp/portal.sqlite3", filepath.Join(dir, "db.sqlite3"), "/tmp/portal-mail", mailDir,
		"127.0.0.1:8000", djangoAddr, "python3 ", py+" ")
	dj := exec.Command("bash", "-c", script)
	dj.Env, dj.Dir = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PORTAL_HOSTS=127.0.0.1"), root
	var djMu sync.Mutex
	var djBuf bytes.Buffer
	djLog := &lockedBuf{mu: &djMu, b: &djBuf}
	dj.Stdout, dj.Stderr = djLog, djLog
	if err := dj.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = dj.Process.Kill()
		_ = dj.Wait()
		if t.Failed() {
			djMu.Lock()
			t.Logf("django:\n%s", djBuf.String())
			djMu.Unlock()
		}
	})
	waitServing(t, "django", djangoAddr, func() string { djMu.Lock(); defer djMu.Unlock(); return djBuf.String() })

	rs := redistest.Start(t)
	st, err := store.New(config.Redis{Address: rs.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	o := store.NewOrgs(st, nil)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, org := range []struct{ id, domain string }{{"acme", "fresh.example"}, {"stale", "stale.example"}} {
		must(o.CreateOrg(ctx, store.Org{ID: org.id, Name: org.id}, "seed", "seed"))
		must(o.AddDomain(ctx, org.id, org.domain, "seed", "seed"))
		must(o.SetDomainStatus(ctx, org.id, org.domain, store.DomainVerified, "seed", "seed"))
	}
	// Day one behind Portcullis: bob has used the portal for years, Portcullis has only his
	// invitation (he has never signed in through it).
	must(o.Invite(ctx, store.Invitation{Org: "acme", Email: "bob@fresh.example", Kind: store.KindEmployee}, "seed", "existing users imported"))

	listen := freePort(t)
	base := "https://" + listen
	idp := devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis", Secret: "e2e-secret", RedirectURIs: []string{base + "/.portcullis/callback"}}},
		Users:   azUsers,
	})
	writeFile(t, filepath.Join(dir, "oidc-secret"), "e2e-secret\n")
	// People the portal knows, of the provider Portcullis trusts (a membership of another
	// issuer's person is not live: the trust rule).
	for _, p := range []struct{ org, user, email string }{{"acme", store.UserKey(idp.URL, "portal-alice"), "alice@fresh.example"}, {"stale", store.UserKey(idp.URL, "portal-victim"), "victim@stale.example"}} {
		must(o.Grant(ctx, store.Membership{Org: p.org, User: p.user, Kind: store.KindEmployee}, "seed", "seed"))
		if err := st.RecordPerson(ctx, p.email, p.user, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
	}
	must(o.SetDomainStatus(ctx, "stale", "stale.example", store.DomainLapsed, "seed", "the domain expired"))
	// The example as it is, with the test's addresses; the unknown address is let through so
	// that Django's own answer for it can be compared with the blocked one's.
	cfg := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfg, renderExample(t, filepath.Join("..", "..", "examples", "django", "portcullis.yaml"),
		"listen: 127.0.0.1:8443", "listen: "+listen,
		"https://portal.example.com", base,
		"address: 127.0.0.1:6379", "address: "+rs.Addr,
		"issuer: https://idp.example.com", "issuer: "+idp.URL+"\n  ca_root_file: "+idp.CAFile(t),
		"/etc/portcullis/oidc-secret", filepath.Join(dir, "oidc-secret"),
		"http://127.0.0.1:8000", "http://"+djangoAddr,
		"unknown_domains: block", "unknown_domains: allow",
		"rate_limit: {per_identifier: 5, per_client: 20, window: 1h}", "rate_limit: {per_identifier: 50, per_client: 500, window: 1h}"))
	pc := startBinary(t, cfg)
	if n := pc.countLog("configuration warning"); n != 0 {
		t.Errorf("%d configuration warnings: the preset's flow is served by the public accounts route", n)
	}

	// Signed in through the provider, Django logs the person in from Portcullis's header,
	// whatever the client sends in its name.
	person := (&azBed{t: t}).newClient()
	person.signIn(&azProxy{name: "django", base: base}, "alice")
	who := person.do("GET", base+"/accounts/whoami/", "", nil, http.Header{"X-Portcullis-Email": {"mallory@fresh.example"}})
	if who.status != 200 || who.body != "alice@acme.example" {
		t.Errorf("Django's whoami for alice: %d %q", who.status, who.body)
	}

	// One reset as a browser makes it: the form (its CSRF cookie and token), then the POST.
	reset := func(email string) (*http.Response, string, time.Duration) {
		t.Helper()
		jar, _ := cookiejar.New(nil)
		c := tlsClient()
		c.Jar = jar
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		fr, err := c.Get(base + "/accounts/password_reset/")
		if err != nil {
			t.Fatal(err)
		}
		fb, _ := io.ReadAll(fr.Body)
		fr.Body.Close()
		form := string(fb)
		m := regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`).FindStringSubmatch(form)
		if m == nil {
			t.Fatalf("no CSRF token in the form: %s", form)
		}
		body := url.Values{"csrfmiddlewaretoken": {m[1]}, "email": {email}}.Encode()
		req, _ := http.NewRequest("POST", base+"/accounts/password_reset/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Referer", base+"/accounts/password_reset/")
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b), took
	}
	mails := func() int {
		es, _ := os.ReadDir(mailDir)
		return len(es)
	}
	shape := func(resp *http.Response) string {
		var names []string
		for k := range resp.Header {
			switch k {
			// Content-Length is framing, and random here: Django's dev server sends no length
			// (it closes the connection instead), so httputil.ReverseProxy flushes at once from
			// a timer; whether that flush or the end of the empty body comes first decides
			// between chunked and "Content-Length: 0", whatever the guard decided.
			case "Date", "X-Request-Id", "Set-Cookie", "Content-Length":
			default:
				names = append(names, k+"="+strings.Join(resp.Header[k], ","))
			}
		}
		sort.Strings(names)
		return fmt.Sprintf("%d %s", resp.StatusCode, strings.Join(names, " "))
	}

	// The answer Django gives for an address it does not know (allowed through: an unknown
	// domain), for a blocked one (a lapsed domain, mirrored), and for nobody we know.
	unknown, unknownBody, _ := reset("someone@gmail.example")
	blocked, blockedBody, _ := reset("victim@stale.example")
	nobody, nobodyBody, _ := reset("nobody@fresh.example")
	if unknown.StatusCode != http.StatusFound || unknown.Header.Get("Location") != "/accounts/password_reset/done/" {
		t.Fatalf("django's answer for an unknown address: %s %.600s", shape(unknown), unknownBody)
	}
	for name, r := range map[string]struct {
		resp *http.Response
		body string
	}{"blocked": {blocked, blockedBody}, "nobody": {nobody, nobodyBody}} {
		if shape(r.resp) != shape(unknown) || r.body != unknownBody {
			t.Errorf("%s: %s %q, unknown: %s %q", name, shape(r.resp), r.body, shape(unknown), unknownBody)
		}
	}
	if n := mails(); n != 0 {
		t.Fatalf("%d mail(s) sent for addresses that must get none", n)
	}

	// An allowed person gets Django's mail, whose link names the public host.
	alice, _, _ := reset("alice@fresh.example")
	if shape(alice) != shape(unknown) || mails() != 1 {
		t.Fatalf("alice: %s, %d mail(s)", shape(alice), mails())
	}
	es, _ := os.ReadDir(mailDir)
	mail, _ := os.ReadFile(filepath.Join(mailDir, es[0].Name()))
	if !strings.Contains(string(mail), "To: alice@fresh.example") || !strings.Contains(string(mail), "https://"+listen+"/accounts/reset/") {
		t.Errorf("the reset mail:\n%s", mail)
	}

	// The whole reset completes through Portcullis: the link, Django's set-password form, the
	// new password.
	link := regexp.MustCompile(`https://\S+/accounts/reset/\S+/`).FindString(string(mail))
	jar, _ := cookiejar.New(nil)
	bc := tlsClient()
	bc.Jar = jar
	page, err := bc.Get(link) // redirects to .../set-password/, the token kept in Django's session
	if err != nil {
		t.Fatal(err)
	}
	if page.StatusCode == http.StatusFound {
		page.Body.Close()
		next, _ := page.Request.URL.Parse(page.Header.Get("Location"))
		if page, err = bc.Get(next.String()); err != nil {
			t.Fatal(err)
		}
	}
	pb, _ := io.ReadAll(page.Body)
	page.Body.Close()
	tok := regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`).FindStringSubmatch(string(pb))
	if page.StatusCode != 200 || tok == nil {
		t.Fatalf("the reset link: %d %s", page.StatusCode, pb)
	}
	set := url.Values{"csrfmiddlewaretoken": {tok[1]}, "new_password1": {"A-new-passw0rd!"}, "new_password2": {"A-new-passw0rd!"}}.Encode()
	req, _ := http.NewRequest("POST", page.Request.URL.String(), strings.NewReader(set))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", page.Request.URL.String())
	done, err := bc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	done.Body.Close()
	if done.StatusCode != http.StatusFound || done.Header.Get("Location") != "/accounts/reset/done/" {
		t.Fatalf("setting the new password: %d %v", done.StatusCode, done.Header)
	}
	if _, body := doGet(t, bc, base+"/accounts/reset/done/"); !strings.Contains(body, "Your password has been set") {
		t.Fatalf("the reset's last page: %s", body)
	}

	// About the same time: the median of a blocked reset is within a bound of the median of
	// an unknown address's (both: Django finds nobody and mails nobody).
	var tBlocked, tUnknown []time.Duration
	for range 7 {
		_, _, d := reset("victim@stale.example")
		tBlocked = append(tBlocked, d)
		_, _, d = reset("someone@gmail.example")
		tUnknown = append(tUnknown, d)
	}
	slices.Sort(tBlocked)
	slices.Sort(tUnknown)
	mb, mu := tBlocked[3], tUnknown[3]
	if mb > 3*mu+50*time.Millisecond || mu > 3*mb+50*time.Millisecond {
		t.Errorf("median blocked %v, median unknown %v: distinguishable by time", mb, mu)
	}
	if n := mails(); n != 1 {
		t.Errorf("%d mails after the timing runs, want alice's only", n)
	}

	// An invited person who never signed in through Portcullis can reset.
	if bob, _, _ := reset("bob@fresh.example"); shape(bob) != shape(unknown) || mails() != 2 {
		t.Errorf("bob (invited): %s, %d mails", shape(bob), mails())
	}

	// A spoofed identity header never reaches Django, in any spelling: its RemoteUserMiddleware
	// would log the request in as that address, as it does when asked directly.
	direct, _ := http.NewRequest("GET", "http://"+djangoAddr+"/accounts/whoami/", nil)
	direct.Header.Set("X-Portcullis-Email", "alice@fresh.example")
	if resp, err := http.DefaultClient.Do(direct); err != nil {
		t.Fatal(err)
	} else {
		who, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(who) != "alice@fresh.example" {
			t.Fatalf("Django's RemoteUserMiddleware does not read the header: %q", who)
		}
	}
	for _, name := range []string{"X-Portcullis-Email", "X_Portcullis_Email", "x-portcullis-email", "X.Portcullis.Email"} {
		req, _ := http.NewRequest("GET", base+"/public/whoami/", nil)
		req.Header[name] = []string{"alice@fresh.example"}
		resp, err := tlsClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		who, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(who) != "anonymous" {
			t.Errorf("%s: Django took the request to be from %q (%d)", name, who, resp.StatusCode)
		}
	}
}
