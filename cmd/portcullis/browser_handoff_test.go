package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// orgHost is the demo's host for organisation org on d's port: {org}.localhost, which
// Chromium resolves to loopback by itself.
func (d *demo) orgHost(org string) string {
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(d.base, "https://"))
	return "https://" + org + ".localhost:" + port
}

// TestBrowserHandoff: the sign-in handoff to organisation hosts in a real browser. alice opens
// acme.localhost/headers; the sign-in happens on the sign-in host 127.0.0.1 (another site), whose
// page posts the one-time code across sites to acme.localhost, bound to the SameSite=None nonce
// cookie set there; she lands on the page, acting for Acme. globex.localhost needs no second
// sign-in (single sign-on) and refuses her: she is no member of Globex. Signing out on
// acme.localhost signs her out on the sign-in host too.
func TestBrowserHandoff(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)
	acme, globex := d.orgHost("acme"), d.orgHost("globex")

	b.navigate(acme + "/headers")
	b.do("wait for devidp's login form (reached through the sign-in host)",
		chromedp.WaitVisible(chromedp.CSS(`#devidp-login`)))
	b.shot("devidp-from-acme")
	b.signIn("alice", devPassword, "")
	text := b.waitText("Headers received", "demo-alice", "X-Portcullis-Org")
	if loc := b.location(); !strings.HasPrefix(loc, acme+"/headers") {
		t.Errorf("after the handoff the browser is at %s, want %s/headers", loc, acme)
	}
	if !strings.Contains(text, "X-Portcullis-Org\tacme") {
		t.Errorf("acme.localhost/headers: the portal did not receive X-Portcullis-Org: acme:\n%s", text)
	}
	b.shot("acme-headers")
	// What Chromium kept from the cross-site post: a host-only session cookie on acme.localhost,
	// and no handoff nonce any more (spent with the code).
	cookies := b.cookies(acme + "/")
	if c := cookies["__Host-portcullis"]; c == nil || c.Domain != "acme.localhost" || !c.Secure || !c.HTTPOnly {
		t.Errorf("session cookie on acme.localhost after the handoff: %+v", c)
	}
	if c := cookies["__Host-portcullis-handoff"]; c != nil {
		t.Errorf("handoff nonce cookie left on acme.localhost after the handoff: %+v", c)
	}
	// The session on acme.localhost is its own (host-only): its cookie was set there.
	b.navigate(acme + "/.portcullis/whoami")
	b.waitText(`"user_key"`, "demo-alice")

	// Another organisation host: no trip to the provider, and alice is refused there.
	b.navigate(globex + "/headers")
	text = b.waitText("not_member")
	if strings.Contains(text, "Headers received") {
		t.Errorf("globex.localhost/headers shows the portal's page to a non-member:\n%s", text)
	}
	if loc := b.location(); !strings.HasPrefix(loc, globex+"/headers") {
		t.Errorf("refusal on globex is at %s, want %s/headers (no provider sign-in on the way)", loc, globex)
	}
	b.ownPage()
	b.shot("globex-not-member")

	// Sign out on acme.localhost: the sign-in host's session ends too.
	b.navigate(acme + "/.portcullis/logout")
	b.waitText("Sign out?")
	b.ownPage()
	b.shot("acme-sign-out")
	b.do("confirm sign-out on acme.localhost", chromedp.Click(chromedp.CSS(`#portcullis-logout button[type="submit"]`)))
	// devidp's end-session returns to the sign-in host's home page, the one address registered.
	b.waitText("Customer portal", "Welcome to the demo")
	b.shot("signed-out-home")
	for _, origin := range []string{d.base, acme, globex} {
		if resp := b.navigateResponse(origin + "/.portcullis/whoami"); resp.Status != 401 {
			t.Errorf("whoami on %s after signing out on acme.localhost: status %d, want 401", origin, resp.Status)
		}
	}
	b.navigate(d.base + "/headers")
	b.do("wait for devidp's login form on the sign-in host after signing out",
		chromedp.WaitVisible(chromedp.CSS(`#devidp-login`)))
	b.shot("signed-out-everywhere")
}

// cookies returns the cookies the browser would send to url, by name.
func (b *browser) cookies(url string) map[string]*network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{url}})
	if err != nil {
		b.t.Fatalf("cookies of %s: %v", url, err)
	}
	out := map[string]*network.Cookie{}
	for _, c := range res.Cookies {
		out[c.Name] = c
	}
	return out
}

// TestBrowserHandoffStepUp: alice, handed over to acme.localhost with her password only, opens
// /admin/ there, gets the step-up interstitial, and confirms: the step-up runs on the sign-in
// host (127.0.0.1), where devidp asks for her one-time code, and the elevation is handed back
// to her session on acme.localhost, which reaches the admin console.
func TestBrowserHandoffStepUp(t *testing.T) {
	b := newBrowser(t) // first: without chromium, skip before starting anything
	d := startDemo(t)
	acme := d.orgHost("acme")

	b.navigate(acme + "/admin/")
	b.signIn("alice", devPassword, "") // password only: not enough for the admin area
	b.waitText("Confirm it is you", "step_up_required")
	if loc := b.location(); !strings.HasPrefix(loc, acme+"/admin/") {
		t.Errorf("interstitial at %s, want %s/admin/", loc, acme)
	}
	b.ownPage()
	b.shot("acme-interstitial")
	before := b.cookies(acme + "/")["__Host-portcullis"]
	b.do("click the interstitial's button", chromedp.Click(chromedp.CSS(`#portcullis-step-up button[type="submit"]`)))
	b.do("wait for devidp's form asking for the one-time code",
		chromedp.WaitVisible(chromedp.CSS(`#devidp-login input[name="otp"][required]`)))
	b.shot("otp-required")
	code, err := devidptest.TOTP(d.totp, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b.signIn("alice", devPassword, code)
	text := b.waitText("Admin console", "demo-alice")
	if loc := b.location(); !strings.HasPrefix(loc, acme+"/admin/") {
		t.Errorf("after step-up the browser is at %s, want %s/admin/", loc, acme)
	}
	if strings.Contains(text, "Confirm it is you") {
		t.Errorf("admin page after step-up still asks for it:\n%s", text)
	}
	b.shot("acme-admin")
	after := b.cookies(acme + "/")
	if c := after["__Host-portcullis"]; c == nil || before == nil || c.Value == before.Value {
		t.Errorf("the session id on acme.localhost did not change at step-up")
	}
	for _, name := range []string{"__Host-portcullis-elevate", "__Host-portcullis-handoff"} {
		if c := after[name]; c != nil {
			t.Errorf("cookie %s left on acme.localhost after the step-up", name)
		}
	}
	// The elevation is acme.localhost's session's: the sign-in host's admin area still asks.
	b.navigate(d.base + "/admin/")
	b.waitText("Confirm it is you", "step_up_required")
	b.shot("sign-in-host-not-elevated")
}
