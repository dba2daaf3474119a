package devidp

import (
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestCodeFlow(t *testing.T) {
	tb := newTestbed(t, nil)
	before := tb.clock.Now().Unix()
	c, _ := tb.login(t, "bob", "bob-pw", "")

	if c.Iss != tb.srv.URL || c.Sub != "u-bob" {
		t.Errorf("iss, sub = %q, %q", c.Iss, c.Sub)
	}
	if aud, ok := c.Aud.(string); ok && aud != confidentialC {
		t.Errorf("aud = %v", c.Aud)
	}
	if c.Exp <= time.Now().Unix() || c.Iat == 0 {
		t.Errorf("exp, iat = %d, %d", c.Exp, c.Iat)
	}
	if c.Email != "bob@acme.example" || c.EmailVerified == nil || *c.EmailVerified || c.Name != "Bob Example" {
		t.Errorf("email, email_verified, name = %q, %v, %q", c.Email, c.EmailVerified, c.Name)
	}
	if c.AuthTime == nil || *c.AuthTime < before || *c.AuthTime > tb.clock.Now().Unix() {
		t.Errorf("auth_time = %v, want within [%d, now]", c.AuthTime, before)
	}
	if c.SID == "" {
		t.Error("no sid")
	}
	if c.ACR == nil || *c.ACR != ACRPassword {
		t.Errorf("acr = %v, want %s", c.ACR, ACRPassword)
	}
	if len(c.AMR) != 1 || c.AMR[0] != "pwd" {
		t.Errorf("amr = %v, want [pwd]", c.AMR)
	}
}

func TestDiscovery(t *testing.T) {
	tb := newTestbed(t, nil)
	var d struct {
		EndSession         string   `json:"end_session_endpoint"`
		Userinfo           string   `json:"userinfo_endpoint"`
		JWKS               string   `json:"jwks_uri"`
		PKCE               []string `json:"code_challenge_methods_supported"`
		TokenAuth          []string `json:"token_endpoint_auth_methods_supported"`
		Backchannel        bool     `json:"backchannel_logout_supported"`
		BackchannelSession bool     `json:"backchannel_logout_session_supported"`
		Algs               []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := tb.rp.Claims(&d); err != nil {
		t.Fatal(err)
	}
	if d.EndSession == "" || d.Userinfo == "" || d.JWKS == "" {
		t.Errorf("endpoints missing: %+v", d)
	}
	if !contains(d.PKCE, "S256") || !contains(d.TokenAuth, "client_secret_basic") || !contains(d.TokenAuth, "client_secret_post") {
		t.Errorf("pkce %v, auth methods %v", d.PKCE, d.TokenAuth)
	}
	if !d.Backchannel || !d.BackchannelSession {
		t.Error("back-channel logout not advertised")
	}
	if len(d.Algs) != 1 || d.Algs[0] != "RS256" {
		t.Errorf("algs = %v", d.Algs)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestUserinfo(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	tok, _ := tb.exchange(t, f, f.code(t, loc))
	ui, err := tb.rp.UserInfo(tb.ctx, tb.conf.TokenSource(tb.ctx, tok))
	if err != nil {
		t.Fatalf("UserInfo: %v", err)
	}
	var extra map[string]any
	if err := ui.Claims(&extra); err != nil {
		t.Fatal(err)
	}
	if ui.Subject != "u-bob" || ui.Email != "bob@acme.example" {
		t.Errorf("userinfo = %+v", ui)
	}
	// Assurance comes only from the signed ID token (SU-04).
	for _, k := range []string{"acr", "amr", "auth_time"} {
		if _, ok := extra[k]; ok {
			t.Errorf("userinfo carries %s", k)
		}
	}
}

func TestClientSecretPost(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	tb.login(t, "bob", "bob-pw", "")
}

func TestClientSecretBasicExplicit(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	tb.login(t, "bob", "bob-pw", "")
}

func TestWrongClientSecretRefused(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	tb.conf.ClientSecret = "wrong"
	if _, err := tb.conf.Exchange(tb.ctx, f.code(t, loc), oauth2.VerifierOption(f.verifier)); err == nil {
		t.Fatal("exchange with a wrong client secret succeeded")
	}
}

func TestPublicClientNeedsPKCE(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.conf.ClientID, tb.conf.ClientSecret = publicC, ""
	c, _ := tb.login(t, "bob", "bob-pw", "")
	if c.Sub != "u-bob" {
		t.Errorf("sub = %q", c.Sub)
	}
}

func TestWrongPasswordGivesNoCode(t *testing.T) {
	tb := newTestbed(t, nil)
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", "bob", "nope"},
		{"unknown user", "mallory", "bob-pw"},
		{"empty password", "bob", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tb.start(t)
			loc, page := f.submit(t, tc.user, tc.pw, "")
			if loc != nil {
				t.Fatalf("redirected to %s", loc)
			}
			if page.status != http.StatusUnauthorized || page.action == "" {
				t.Fatalf("status %d, want 401 with the form again", page.status)
			}
		})
	}
}

func TestTooManyFailuresEndTheRequest(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	var page loginForm
	for i := 0; i < maxLoginFailures; i++ {
		_, page = f.submit(t, "bob", "nope", "")
	}
	if page.status != http.StatusForbidden {
		t.Fatalf("after %d failures status = %d, want 403", maxLoginFailures, page.status)
	}
	if loc, _ := f.submit(t, "bob", "bob-pw", ""); loc != nil {
		t.Fatal("the right password still worked on an ended request")
	}
}

func TestLoginHintPrefills(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t, oauth2.SetAuthURLParam("login_hint", "alice"))
	if f.form.username != "alice" || !f.form.hasOTP {
		t.Errorf("username %q, otp field %v; want alice, true", f.form.username, f.form.hasOTP)
	}
	f = tb.start(t, oauth2.SetAuthURLParam("login_hint", "bob"))
	if f.form.username != "bob" || f.form.hasOTP {
		t.Errorf("username %q, otp field %v; want bob, false", f.form.username, f.form.hasOTP)
	}
}

func TestPromptLoginAndMaxAgeShowTheForm(t *testing.T) {
	tb := newTestbed(t, nil)
	for _, opt := range [][2]string{{"prompt", "login"}, {"max_age", "0"}, {"max_age", "300"}} {
		t.Run(opt[0]+"="+opt[1], func(t *testing.T) {
			tb.clock.Set(time.Now())
			c, _ := tb.login(t, "bob", "bob-pw", "", oauth2.SetAuthURLParam(opt[0], opt[1]))
			if c.AuthTime == nil || *c.AuthTime != tb.clock.Now().Unix() {
				t.Errorf("auth_time = %v, want %d", c.AuthTime, tb.clock.Now().Unix())
			}
		})
	}
}

func TestPromptNoneRefused(t *testing.T) {
	tb := newTestbed(t, nil)
	b := tb.browser(t)
	resp, err := b.Get(tb.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := resp.Location()
	if loc == nil || loc.Query().Get("error") != "login_required" || loc.Query().Get("code") != "" {
		t.Fatalf("prompt=none: %d %v, want redirect with error=login_required", resp.StatusCode, loc)
	}
}
