package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// Browser tests: the pages people see, in a real browser. They start `portcullis dev` (the
// binary TestMain built) and drive Debian's chromium, headless, through chromedp: sign in at
// devidp, pick an organisation, reach the portal, be refused with the right reason, pass
// step-up with the second factor, and see a password-reset request blocked.
//
// Each test saves full-page PNG screenshots, always one on failure, into $PORTCULLIS_SCREENSHOTS
// when set (created if missing), else into the test's artifact directory (kept under
// -outputdir when go test runs with -artifacts, as .ci/run does); every path is logged.
// Without chromium the tests skip, unless $CI is set: CI must run them.

// browserStepTimeout bounds one browser step (a navigation, a form submitted and the page
// that follows); the race-enabled binary and a cold browser are slow, not that slow.
const browserStepTimeout = 20 * time.Second

// TestBrowserSignIn: bob opens a protected page, signs in through devidp's form, and lands on
// the portal's page showing the identity headers Portcullis sent.
func TestBrowserSignIn(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)

	b.navigate(d.base + "/")
	b.waitText("demo customer portal")
	b.navigate(d.base + "/headers")
	b.signIn("bob", devPassword, "")
	text := b.waitText("Headers received", "X-Portcullis-User", "demo-bob")
	if !strings.HasPrefix(b.location(), d.base+"/headers") {
		t.Errorf("after sign-in the browser is at %s, want %s/headers", b.location(), d.base)
	}
	if strings.Contains(text, "X-Portcullis-Roles") && !strings.Contains(text, "viewer") {
		t.Errorf("headers page: roles header without bob's role viewer:\n%s", text)
	}
	b.shot("headers")
}

// TestBrowserOrgPicker: pat (a partner of Acme and Globex) opens /support/, is asked which
// organisation to act for, picks Acme and reaches the support page as Acme.
func TestBrowserOrgPicker(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)

	b.navigate(d.base + "/support/")
	b.signIn("pat", devPassword, "")
	b.waitText("Choose an organisation", "Acme Corp", "Globex")
	b.ownPage()
	b.shot("picker")
	b.do("click Acme in the org picker", chromedp.Click(chromedp.CSS(`button[name="org"][value="acme"]`)))
	b.waitText("Support cases", "demo-pat", "acme")
	if loc := b.location(); !strings.HasPrefix(loc, d.base+"/support/") {
		t.Errorf("after choosing Acme the browser is at %s, want %s/support/", loc, d.base)
	}
	b.shot("support")
}

// TestBrowserDenied: the refusal page names the reason and what is missing: bob lacks the
// role, frank's membership was revoked.
func TestBrowserDenied(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)

	b.navigate(d.base + "/billing/")
	b.signIn("bob", devPassword, "")
	text := b.waitText("role_missing", "needs one of these roles")
	if !regexp.MustCompile(`needs one of these roles in "acme": (admin, billing|billing, admin)\.`).MatchString(text) {
		t.Errorf("role_missing page does not say which roles are needed (admin or billing, in acme):\n%s", text)
	}
	b.ownPage()
	b.supportLinks()
	b.shot("bob-role-missing")
	// Signed in now: the page itself is a 403.
	if resp := b.navigateResponse(d.base + "/billing/"); resp.Status != 403 {
		t.Errorf("billing as bob: status %d, want 403", resp.Status)
	}

	b.clearCookies()
	b.navigate(d.base + "/billing/")
	b.signIn("frank", devPassword, "")
	b.waitText("not_member")
	b.shot("frank-not-member")
}

// TestBrowserStepUp: alice, signed in with her password only, opens /admin/, gets the step-up
// interstitial, confirms, and devidp asks for her one-time code; with it she reaches the
// admin console.
func TestBrowserStepUp(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)

	b.navigate(d.base + "/admin/")
	b.signIn("alice", devPassword, "") // password only: not enough for the admin area
	b.waitText("Confirm it is you", "step_up_required")
	b.ownPage()
	b.shot("interstitial")
	b.do("click the interstitial's button", chromedp.Click(chromedp.CSS(`#portcullis-step-up button[type="submit"]`)))

	// devidp asks for the code: the field is there and required.
	b.do("wait for devidp's form asking for the one-time code (the interstitial's button must lead there)",
		chromedp.WaitVisible(chromedp.CSS(`#devidp-login input[name="otp"][required]`)))
	b.shot("otp-required")
	code, err := devidptest.TOTP(d.totp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.signIn("alice", devPassword, code)
	b.waitText("Admin console", "demo-alice")
	if loc := b.location(); !strings.HasPrefix(loc, d.base+"/admin/") {
		t.Errorf("after step-up the browser is at %s, want %s/admin/", loc, d.base)
	}
	b.shot("admin")
}

// TestBrowserRecovery: the portal's forgot-password form, behind the recovery guard (the demo
// answers blocked requests with the forbidden page, which names the reason). A live member's
// request reaches the portal; one for an address whose domain lapsed, or whose membership was
// revoked, is stopped.
func TestBrowserRecovery(t *testing.T) {
	b := newBrowser(t)
	d := startDemo(t)

	request := func(email string) string {
		t.Helper()
		b.navigate(d.base + "/password/reset")
		b.waitText("Forgot password")
		b.do("request a password reset for "+email,
			chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), email),
			chromedp.Click(chromedp.CSS(`form[action="/password/reset"] button`)))
		return b.waitText("Reason:") // the problem page; the portal's answer has none
	}

	b.navigate(d.base + "/password/reset")
	b.waitText("Forgot password")
	b.shot("form")
	b.do("request a password reset for bob@acme.example",
		chromedp.SendKeys(chromedp.CSS(`input[name="email"]`), "bob@acme.example"),
		chromedp.Click(chromedp.CSS(`form[action="/password/reset"] button`)))
	b.waitText("Check your inbox") // the portal's own answer: the request reached it
	b.shot("bob-allowed")

	if text := request("lena@oldcorp.example"); !strings.Contains(text, "stale_domain") ||
		!strings.Contains(text, "no longer verified") || strings.Contains(text, "Check your inbox") {
		t.Errorf("reset for lena@oldcorp.example (lapsed domain): want the stale_domain refusal, page shows:\n%s", text)
	}
	b.ownPage()
	b.shot("lena-stale-domain")
	if text := request("frank@acme.example"); !strings.Contains(text, "no_active_membership") {
		t.Errorf("reset for frank@acme.example (revoked): want no_active_membership, page shows:\n%s", text)
	}
	b.shot("frank-no-active-membership")
}

// TestBrowserStepUpRefused: alice starts a step-up but completes it at the provider as bob
// (someone else at her desk, or a mix-up of accounts). The elevation is refused with a page
// saying why, offering the way back; the admin area stays closed.
func TestBrowserStepUpRefused(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)

	b.navigate(d.base + "/admin/")
	b.signIn("alice", devPassword, "")
	b.waitText("Confirm it is you")
	b.do("click the interstitial's button", chromedp.Click(chromedp.CSS(`#portcullis-step-up button[type="submit"]`)))
	// The form was drawn for alice (login hint), so it requires a code; bob has no second
	// factor, and devidp ignores the code of a person without one.
	b.signIn("bob", devPassword, "000000")
	text := b.waitText("step_up_wrong_user", "Back to the page")
	if strings.Contains(text, "Admin console") {
		t.Errorf("refused step-up shows the admin console:\n%s", text)
	}
	b.ownPage()
	b.supportLinks()
	b.shot("refused")
	b.do("follow the refusal's link back", chromedp.Click(chromedp.CSS(`a.button`)))
	b.waitText("Confirm it is you", "step_up_required") // still not elevated
}

// TestBrowserErrorPageAndSignOut: a portal service that is down gets Portcullis's 502 page
// (branded, no Go error text, where to get help); then bob signs out through the confirmation
// page and protected pages ask for a sign-in again.
func TestBrowserErrorPageAndSignOut(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)

	b.navigate(d.base + "/reports/")
	b.signIn("bob", devPassword, "")
	text := b.waitText("Bad Gateway", "Reason:")
	for _, leak := range []string{"dial tcp", "connection refused", "127.0.0.1:9", "goroutine"} {
		if strings.Contains(text, leak) {
			t.Errorf("502 page shows %q:\n%s", leak, text)
		}
	}
	b.ownPage()
	b.supportLinks()
	b.shot("bad-gateway")

	b.navigate(d.base + "/.portcullis/logout")
	b.waitText("Sign out?")
	b.ownPage()
	b.shot("sign-out")
	b.do("confirm sign-out", chromedp.Click(chromedp.CSS(`#portcullis-logout button[type="submit"]`)))
	b.waitText("Customer portal", "Welcome to the demo") // devidp's end-session returns to the home page
	b.navigate(d.base + "/billing/")
	b.do("wait for devidp's login form after signing out", chromedp.WaitVisible(chromedp.CSS(`#devidp-login`)))
}

// ownPage checks that the page on screen is one of Portcullis's own, whole: the demo's brand
// (product name, and its logo actually loaded) and the embedded stylesheet actually applied.
// Both are allowed by the page's Content-Security-Policy only, so a hash or source that does
// not match what the page carries shows up here as an unstyled page or a missing logo.
func (b *browser) ownPage() {
	b.t.Helper()
	b.waitText("Acme customer portal (demo)")
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	var state string
	for {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
			const img = document.querySelector("header.brand img");
			const main = document.querySelector("main");
			return [img && img.complete ? img.naturalWidth : -1, main ? getComputedStyle(main).maxWidth : "none"].join(" ");
		})()`))
		if err == nil {
			state = s
			if state == "32 640px" { // the logo's width; main's max-width of 40rem
				break
			}
		}
		if ctx.Err() != nil {
			b.t.Fatalf("own page at %s is not whole: logo width and main max-width are %q, want \"32 640px\" (stylesheet or logo blocked?)", b.location(), state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, line := range b.console {
		if strings.Contains(line, "Content Security Policy") {
			b.t.Errorf("the browser reports a CSP violation: %s", line)
		}
	}
}

// supportLinks checks the support contact the demo configures is offered on the page.
func (b *browser) supportLinks() {
	b.t.Helper()
	b.waitText("Need help?", "it-help@acme.example", "the support page")
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	hrefs, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll("footer a")].map(a => a.getAttribute("href")).join(" ")`))
	if err != nil || hrefs != "mailto:it-help@acme.example /static/help.html" {
		b.t.Errorf("support links are %q (%v), want the demo's mailto and help page", hrefs, err)
	}
}

// demo is a running `portcullis dev`.
type demo struct {
	base string // https://127.0.0.1:port
	totp string // alice's TOTP secret, from the walkthrough
}

var reTOTPSecret = regexp.MustCompile(`otpauth://totp/[^?\s]*\?secret=([A-Z2-7]+)`)

// startDemo starts `portcullis dev` on a free loopback port and reads its walkthrough. The
// process is killed when the test ends; its output is logged if the test failed.
func startDemo(t *testing.T) *demo {
	t.Helper()
	for attempt := 1; ; attempt++ {
		d, out, err := tryStartDemo(t)
		if err == nil {
			return d
		}
		// A port picked free can be taken before dev binds it: try another one.
		if attempt < 3 && strings.Contains(out, "address already in use") {
			continue
		}
		t.Fatalf("portcullis dev: %v\n%s", err, out)
	}
}

func tryStartDemo(t *testing.T) (*demo, string, error) {
	listen := freePort(t)
	cmd := exec.Command(binPath, "dev", "--listen", listen, "--admin-listen", "127.0.0.1:0")
	var mu sync.Mutex
	var buf bytes.Buffer
	cmd.Stdout = &lockedBuf{mu: &mu, b: &buf}
	cmd.Stderr = cmd.Stdout
	output := func() string { mu.Lock(); defer mu.Unlock(); return buf.String() }
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() { _ = cmd.Process.Kill(); <-exited }
	// The walkthrough is written at once; its last line says how to stop.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(output(), "Ctrl-C stops"); {
		select {
		case <-exited:
			return nil, output(), errors.New("exited before it was ready")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, output(), errors.New("not ready within 30s")
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("portcullis dev output:\n%s", output())
		}
	})
	m := reTOTPSecret.FindStringSubmatch(output())
	if m == nil {
		return nil, output(), errors.New("no TOTP secret (otpauth://…?secret=) in the walkthrough")
	}
	return &demo{base: "https://" + listen, totp: m[1]}, output(), nil
}

// chromiumPath finds Debian's chromium; without it the test skips, or fails under CI.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("chromium is not installed (%v), and CI is set: the browser tests must run in CI (.ci/run installs Debian's chromium)", err)
	}
	t.Skipf("chromium is not installed (%v): skipping the browser tests (apt-get install chromium to run them)", err)
	return ""
}

// browser is one headless chromium with one tab, for one test.
type browser struct {
	t     *testing.T
	ctx   context.Context // the tab's context: no deadline, or a deadline would close the tab
	shots string          // directory of the screenshots
	n     int             // screenshots taken
	// who, when set, names the person using this browser in its screenshots' names (a test
	// with two browsers).
	who string

	mu      sync.Mutex
	console []string // the browser's log entries
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromiumPath(t)
	shots := os.Getenv("PORTCULLIS_SCREENSHOTS")
	if shots == "" {
		shots = t.ArtifactDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(t.TempDir(), "chromium-profile")
	var mu sync.Mutex
	var out bytes.Buffer
	allocCtx, allocCancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers have a small /dev/shm
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("disable-breakpad", true), // no crash reports under $HOME
		chromedp.Flag("disable-crash-reporter", true),
		chromedp.IgnoreCertErrors, // the demo's certificate is self-signed
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 900),
		chromedp.CombinedOutput(&lockedBuf{mu: &mu, b: &out}),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		allocCancel() // waits for the browser process to exit
		// Children of chromium (zygote, network service) can outlive it and keep writing in
		// the profile: stop them before the temporary directory is removed.
		killProfileProcesses(profile)
		if t.Failed() {
			mu.Lock()
			t.Logf("chromium output (D-Bus noise left out):\n%s", withoutDBus(out.String()))
			mu.Unlock()
		}
	})

	// The first action starts the browser and binds its life to ctx, which must therefore
	// have no deadline; a watchdog bounds the start instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v", err)
		}
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("chromium did not start within 30s")
	}
	b := &browser{t: t, ctx: ctx, shots: shots}
	// The browser's console (CSP violations, blocked navigations, certificate errors) says
	// why a page did not come: keep it for a failure's log.
	entries := chromedp.Events(ctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if e := ev.Entry; e != nil {
				b.mu.Lock()
				b.console = append(b.console, fmt.Sprintf("%s %s: %s (%s)", e.Source, e.Level, e.Text, e.URL))
				b.mu.Unlock()
			}
		}
	}()
	// Registered last, so it runs first: the browser is still there to photograph.
	t.Cleanup(func() {
		if t.Failed() {
			b.shot("failure")
			b.mu.Lock()
			t.Logf("browser console:\n%s", strings.Join(b.console, "\n"))
			b.mu.Unlock()
		}
	})
	return b
}

// do runs actions (the step what, for the failure message), failing the test on error.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: browser at %s: %v", what, b.location(), err)
	}
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	b.do("navigate to "+url, chromedp.Navigate(url))
}

// navigateResponse navigates and returns the response of the final document.
func (b *browser) navigateResponse(url string) *network.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		b.t.Fatalf("navigate to %s: %v", url, err)
	}
	return resp
}

// location is the current URL ("" when the page cannot tell, as during a navigation).
func (b *browser) location() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	return loc
}

// waitText waits until a loaded page's visible text contains every one of want, and returns
// that text. It survives the navigations and redirects on the way.
func (b *browser) waitText(want ...string) string {
	b.t.Helper()
	deadline := time.Now().Add(browserStepTimeout)
	var text string
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](
			`document.readyState === "complete" && document.body ? document.body.innerText : ""`))
		cancel()
		if err == nil {
			text = s
			missing := false
			for _, w := range want {
				if !strings.Contains(text, w) {
					missing = true
					break
				}
			}
			if !missing {
				return text
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("page at %s does not show %q within %v (last error: %v); it shows:\n%s",
				b.location(), want, browserStepTimeout, err, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signIn fills devidp's login form as a person would (typing) and submits it; otp may be
// empty. The form must be on its way: it waits for it.
func (b *browser) signIn(user, password, otp string) {
	b.t.Helper()
	const form = `#devidp-login`
	field := func(name string) string { return fmt.Sprintf(`%s input[name=%q]`, form, name) }
	b.do("wait for devidp's login form", chromedp.WaitVisible(chromedp.CSS(form)))
	actions := []chromedp.Action[chromedp.Void]{
		// The username may be pre-filled (login_hint, or a step-up): replace it.
		chromedp.Clear(chromedp.CSS(field("username"))),
		chromedp.SendKeys(chromedp.CSS(field("username")), user),
		chromedp.SendKeys(chromedp.CSS(field("password")), password),
	}
	if otp != "" {
		actions = append(actions, chromedp.SendKeys(chromedp.CSS(field("otp")), otp))
	}
	actions = append(actions, chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)))
	b.do("fill in and submit devidp's login form as "+user, actions...)
}

// clearCookies signs the browser out of everything (devidp keeps no session of its own).
func (b *browser) clearCookies() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
		b.t.Fatalf("clear cookies: %v", err)
	}
}

// shot saves a full-page PNG screenshot and logs its path. Failing to take one is logged,
// not fatal: the screenshot is evidence, not the test.
func (b *browser) shot(name string) {
	b.n++
	prefix := strings.NewReplacer("/", "_", " ", "_").Replace(b.t.Name())
	if b.who != "" {
		prefix += "-" + b.who
	}
	file := filepath.Join(b.shots, fmt.Sprintf("%s-%02d-%s.png", prefix, b.n, name))
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err == nil {
		err = os.WriteFile(file, png, 0o644)
	}
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", file)
}

// withoutDBus drops chromium's complaints that there is no D-Bus, as in every container.
func withoutDBus(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.Contains(line, "dbus/") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// killProfileProcesses kills the processes (chromium's children) that run with the user
// data directory dir, which is unique to one test's browser, until none is left.
func killProfileProcesses(dir string) {
	want := []byte("--user-data-dir=" + dir)
	deadline := time.Now().Add(2 * time.Second)
	for quiet := 0; quiet < 3 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		found := 0
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil {
				continue
			}
			for arg := range bytes.SplitSeq(cmdline, []byte{0}) {
				if bytes.Equal(arg, want) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					found++
					break
				}
			}
		}
		if found == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}
