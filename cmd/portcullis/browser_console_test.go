package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// TestBrowserConsole: the self-serve console in the demo, as its people use it. bob, refused
// /billing/ for a missing role, follows the refusal's "Request access" to the form and asks for
// billing; his request waits, and he is offered no way to approve it. alice, Acme's
// administrator, opens the requests waiting for Acme and is sent to step up first (her second
// factor); then she approves, and bob, still signed in, reaches /billing/ within the
// invalidation delay. alice cannot see Globex's pages (not her organisation), and a form
// posted without the session's CSRF token changes nothing; Acme's activity shows pat's work
// in its support area, with the incident's ticket. olga, the operator, steps up once for the
// platform, sees every organisation and ends Oldcorp's contract after its dry run. On the way
// bob withdraws a request and alice denies another, invites, changes and revokes. Every console page is checked for
// accessibility (axe-core) and photographed at desktop and phone widths.
func TestBrowserConsole(t *testing.T) {
	bob := newBrowser(t) // first: without chromium, skip before starting anything
	bob.who = "bob"
	d := startDemo(t)

	bob.navigate(d.base + "/billing/")
	bob.signIn("bob", devPassword, "")
	bob.waitText("role_missing", "Request access")
	bob.ownPage()
	bob.accessible("refusal")
	bob.do("follow the refusal's Request access", chromedp.Click(chromedp.CSS(`a.button[href^="/.portcullis/console/request?"]`)))
	bob.waitText("Request access", "What you need", "the role billing")
	bob.consolePage("request-form")
	bob.do("fill in the request", chromedp.Click(chromedp.CSS(`input[name="what"][value="role:billing"]`)),
		chromedp.Clear(chromedp.CSS(`#duration`)), chromedp.SendKeys(chromedp.CSS(`#duration`), "1h"),
		chromedp.SendKeys(chromedp.CSS(`#reason`), "month-end invoices"),
		chromedp.Click(chromedp.CSS(`form[action="/.portcullis/console/request"] button[type="submit"]`)))
	text := bob.waitText("Access request", "waiting for approval", "month-end invoices", "role billing in acme for 1 hour")
	if strings.Contains(text, "Approve") {
		t.Errorf("bob is offered to approve his own request:\n%s", text)
	}
	bob.consolePage("request-pending")
	bob.navigate(d.base + "/.portcullis/console/")
	bob.waitText("My access", "Memberships", "Waiting for approval", "Sign out of this session")
	bob.consolePage("my-access")

	alice := newBrowser(t)
	alice.who = "alice"
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/requests")
	alice.signIn("alice", devPassword, "") // password only: the administration pages want more
	alice.waitText("Confirm it is you", "step_up_required")
	alice.ownPage()
	alice.accessible("step-up")
	alice.shot("step-up")
	alice.do("click the interstitial's button", chromedp.Click(chromedp.CSS(`#portcullis-step-up button[type="submit"]`)))
	alice.do("wait for devidp's form asking for the one-time code",
		chromedp.WaitVisible(chromedp.CSS(`#devidp-login input[name="otp"][required]`)))
	code, err := devidptest.TOTP(d.totp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	alice.signIn("alice", devPassword, code)
	alice.waitText("Requests to acme", "Waiting for an answer", "month-end invoices")
	alice.consolePage("requests")

	// A form without the session's CSRF token: refused, nothing revoked.
	alice.do("post a revocation without a CSRF token", discard(chromedp.Evaluate[bool](`(() => {
		const f = document.createElement("form");
		f.method = "post"; f.action = "/.portcullis/console/orgs/acme/revoke";
		for (const [k, v] of [["user", "x"], ["confirm", "yes"], ["reason", "forged"]]) {
			const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
		}
		document.body.appendChild(f); f.submit(); return true;
	})()`)))
	alice.waitText("csrf_failed")
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/requests")
	alice.waitText("Requests to acme", "month-end invoices")

	alice.do("approve bob's request", chromedp.SendKeys(chromedp.CSS(`form.decide input[name="reason"]`), "month end"),
		chromedp.Click(chromedp.CSS(`form.decide button[id^="approve-"]`)))
	alice.waitText("approved", "No request waits for an answer")
	alice.shot("approved")

	// bob, in the session he asked from, gets through once the grant is everywhere.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := bob.navigateResponse(d.base + "/billing/")
		if resp.Status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob still refused /billing/ (status %d) 10 s after the approval", resp.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	bob.waitText("Invoices and payment methods.")

	// bob asks for admin, withdraws it, asks again; alice denies that one.
	askAdmin := func() {
		t.Helper()
		bob.navigate(d.base + "/.portcullis/console/request?org=acme&role=admin")
		bob.waitText("Request access", "the role admin")
		bob.do("ask for admin", chromedp.Clear(chromedp.CSS(`#duration`)), chromedp.SendKeys(chromedp.CSS(`#duration`), "2h"),
			chromedp.SendKeys(chromedp.CSS(`#reason`), "SSO certificate rotation"),
			chromedp.Click(chromedp.CSS(`form[action="/.portcullis/console/request"] button[type="submit"]`)))
		bob.waitText("Access request", "waiting for approval", "role admin in acme for 2 hours")
	}
	askAdmin()
	bob.do("withdraw it", chromedp.Click(chromedp.CSS(`form[action$="/cancel"] button[type="submit"]`)))
	bob.waitText("Access request", "withdrawn")
	askAdmin()
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/requests")
	alice.waitText("Requests to acme", "SSO certificate rotation")
	alice.do("deny bob's request for admin", chromedp.SendKeys(chromedp.CSS(`form.decide input[name="reason"]`), "use the change window"),
		chromedp.Click(chromedp.CSS(`form.decide button[id^="deny-"]`)))
	alice.waitText("The request was denied.", "No request waits for an answer")

	// Acme's members, the confirmation before a revocation, alice's own access.
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/")
	alice.waitText("Members of acme", "memberships", "demo-bob")
	alice.consolePage("members")
	alice.do("open the revocation of bob", chromedp.Click(chromedp.CSS(`a[href*="revoke?user="][href*="demo-bob"]`)))
	alice.waitText("Revoke a membership", "demo-bob", "cannot be undone")
	alice.consolePage("revoke-confirm")
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/machines")
	alice.waitText("Machine identities of acme", "Invoice export", "demo-bob")
	alice.consolePage("machines")
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/invite")
	alice.waitText("Invite to acme", "Email address")
	alice.consolePage("invite")
	alice.do("invite dora", chromedp.SendKeys(chromedp.CSS(`#email`), "dora@acme.example"), chromedp.SendKeys(chromedp.CSS(`#roles`), "viewer"),
		chromedp.SendKeys(chromedp.CSS(`#reason`), "new hire"), chromedp.Click(chromedp.CSS(`form[action$="/invite"] button[type="submit"]`)))
	alice.waitText("Members of acme", "The invitation is made")
	alice.do("open the change of pat's membership", chromedp.Click(chromedp.CSS(`a[href*="change?user="][href*="demo-pat"]`)))
	alice.waitText("Change a membership", "Remove roles", "demo-pat")
	alice.consolePage("change")
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/")
	alice.do("open the change of bob's membership", chromedp.Click(chromedp.CSS(`a[href*="change?user="][href*="demo-bob"]`)))
	alice.waitText("Change a membership", "demo-bob")
	alice.do("give bob reports", chromedp.SendKeys(chromedp.CSS(`#add`), "reports"), chromedp.SendKeys(chromedp.CSS(`#reason`), "monthly reporting"),
		chromedp.Click(chromedp.CSS(`form[action$="/change"] button[type="submit"]`)))
	alice.waitText("Members of acme", "The membership was changed.", "reports")

	// An access review: started, two memberships selected, kept after the confirmation.
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/reviews")
	alice.waitText("Access reviews of acme", "Start a review")
	alice.consolePage("reviews")
	alice.do("start a review", chromedp.SendKeys(chromedp.CSS(`#reason`), "quarterly review"),
		chromedp.Click(chromedp.CSS(`form[action$="/reviews"] button[type="submit"]`)))
	alice.waitText("Access review", "quarterly review", "undecided")
	alice.consolePage("review")
	alice.do("select bob and pat, keep", chromedp.Click(chromedp.CSS(`input[name="user"][value$="|demo-bob"]`)),
		chromedp.Click(chromedp.CSS(`input[name="user"][value$="|demo-pat"]`)),
		chromedp.Click(chromedp.CSS(`form[action$="/decide"] button[type="submit"]`)))
	alice.waitText("Confirm the review decisions", "Keep 2")
	alice.consolePage("review-confirm")
	alice.do("confirm", chromedp.SendKeys(chromedp.CSS(`#reason`), "still on the team"),
		chromedp.Click(chromedp.CSS(`form[action$="/decide"] button[type="submit"]`)))
	alice.waitText("Decided:", "demo-bob", "demo-pat")

	alice.navigate(d.base + "/.portcullis/console/")
	alice.waitText("My access", "Administer acme", "Raised access")
	alice.consolePage("my-access-admin")

	// pat, a partner on an incident, works in Acme's support area (in bob's browser, signed
	// in again); Acme's activity shows her there, with the incident's ticket.
	bob.clearCookies()
	bob.navigate(d.base + "/support/")
	bob.signIn("pat", devPassword, "")
	bob.waitText("Choose an organisation")
	bob.do("act for Acme", chromedp.Click(chromedp.CSS(`button[name="org"][value="acme"]`)))
	bob.waitText("Support cases", "demo-pat")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		alice.navigate(d.base + "/.portcullis/console/orgs/acme/activity?type=access.")
		text := alice.waitText("Activity of acme")
		if strings.Contains(text, "access.reached") && strings.Contains(text, "demo-pat") && strings.Contains(text, "INC-4711") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Acme's activity does not show pat's support access with its ticket:\n%s", text)
		}
	}
	alice.consolePage("activity")

	// olga, the operator: every organisation after her second factor, and a business event
	// shown as its dry run before it is applied.
	olga := newBrowser(t)
	olga.who = "olga"
	olga.navigate(d.base + "/.portcullis/console/operator/")
	olga.signIn("olga", devPassword, "")
	olga.waitText("Confirm it is you")
	olga.do("click the interstitial's button", chromedp.Click(chromedp.CSS(`#portcullis-step-up button[type="submit"]`)))
	olga.do("wait for devidp's form asking for the one-time code", chromedp.WaitVisible(chromedp.CSS(`#devidp-login input[name="otp"]`)))
	olgaCode, err := devidptest.TOTP(d.totp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	olga.signIn("olga", devPassword, olgaCode)
	olga.waitText("Organisations", "acme", "globex", "oldcorp")
	olga.consolePage("operator")
	olga.navigate(d.base + "/.portcullis/console/operator/events")
	olga.waitText("Business events", "Show what it would change")
	olga.consolePage("events")
	olga.do("dry-run oldcorp's contract end", chromedp.SetValue(chromedp.CSS(`#event`), "contract_ended"),
		chromedp.SendKeys(chromedp.CSS(`#org`), "oldcorp"), chromedp.SendKeys(chromedp.CSS(`#reason`), "not renewed"),
		chromedp.Click(chromedp.CSS(`form[action="/.portcullis/console/operator/events"] button[type="submit"]`)))
	olga.waitText("Confirm the business event", "Nothing has changed yet", "Apply contract_ended")
	olga.consolePage("event-dry-run")
	olga.do("apply it", chromedp.Click(chromedp.CSS(`form[action="/.portcullis/console/operator/events"] button[type="submit"]`)))
	olga.waitText("Business event applied", "contract_ended")
	olga.consolePage("event-applied")

	// pat's incident is over: alice revokes the partner's membership, after the confirmation.
	alice.navigate(d.base + "/.portcullis/console/orgs/acme/")
	alice.do("open the revocation of pat", chromedp.Click(chromedp.CSS(`a[href*="revoke?user="][href*="demo-pat"]`)))
	alice.waitText("Revoke a membership", "demo-pat")
	alice.do("revoke it", chromedp.SendKeys(chromedp.CSS(`#reason`), "incident closed"),
		chromedp.Click(chromedp.CSS(`form[action$="/revoke"] button[type="submit"]`)))
	alice.waitText("Members of acme", "The membership was revoked.")
	bob.navigate(d.base + "/support/")
	bob.waitText("membership_revoked")

	// Another organisation's pages, by editing the URL: refused, without a step-up.
	resp := alice.navigateResponse(d.base + "/.portcullis/console/orgs/globex/")
	text = alice.waitText("not_permitted")
	if resp.Status != 403 || strings.Contains(text, "Confirm it is you") {
		t.Errorf("alice at Globex's members: status %d\n%s", resp.Status, text)
	}
	alice.shot("other-org")
}

// discard is a in the steps of browser.do, its value dropped.
func discard[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// consolePage checks the console page on screen: whole (brand and stylesheet, no CSP
// violation), accessible, and photographed at a desktop and at a phone width.
func (b *browser) consolePage(name string) {
	b.t.Helper()
	b.ownPage()
	b.accessible(name)
	b.shot(name)
	b.do("narrow the window to a phone's", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	b.shot(name + "-phone")
	b.do("widen the window again", func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Call(ctx, emulation.ClearDeviceMetricsOverride, cdp.Empty{})
		if err == nil {
			_, err = chromedp.Call(ctx, emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{})
		}
		return chromedp.Void{}, err
	})
}

// axeSource is axe-core's script, from $PORTCULLIS_AXE (.ci/run installs it from the npm
// registry); "" when that is not set.
var axeSource = sync.OnceValues(func() (string, error) {
	p := os.Getenv("PORTCULLIS_AXE")
	if p == "" {
		return "", nil
	}
	b, err := os.ReadFile(p)
	return string(b), err
})

// axeViolation is one rule a page breaks, as axe-core reports it.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// accessible runs axe-core in the page on screen (WCAG 2.1 A and AA, and axe's best
// practices) and fails the test on any serious or critical violation; lesser ones are
// logged. Without $PORTCULLIS_AXE the check is logged as not run, unless $CI is set: CI must
// run it.
func (b *browser) accessible(name string) {
	b.t.Helper()
	src, err := axeSource()
	switch {
	case err != nil:
		b.t.Fatalf("axe-core: %v", err)
	case src == "" && os.Getenv("CI") != "":
		b.t.Fatal("PORTCULLIS_AXE is not set: CI must check the pages' accessibility (see .ci/run)")
	case src == "":
		b.t.Logf("%s: accessibility not checked: set PORTCULLIS_AXE to axe-core's axe.min.js", name)
		return
	}
	b.do("load axe-core into the page", discard(chromedp.Evaluate[bool](src+"\n;true")))
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, {runOnly: {type: "tag",
		values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}}).then(r => JSON.stringify({passes: r.passes.length,
		violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))}))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: axe-core at %s: %v", name, b.location(), err)
	}
	var res struct {
		Passes     int            `json:"passes"`
		Violations []axeViolation `json:"violations"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		b.t.Fatalf("%s: axe-core's answer: %v\n%s", name, err, out)
	}
	if res.Passes < 10 {
		b.t.Fatalf("%s: axe-core passed only %d rules: did it see the page?", name, res.Passes)
	}
	b.t.Logf("%s: axe-core: %d rules passed, %d violated", name, res.Passes, len(res.Violations))
	for _, v := range res.Violations {
		msg := name + ": " + v.Impact + " accessibility violation " + v.ID + " (" + v.Help + ") at " + strings.Join(v.Nodes, ", ")
		if v.Impact == "serious" || v.Impact == "critical" {
			b.t.Error(msg)
		} else {
			b.t.Log(msg)
		}
	}
}
