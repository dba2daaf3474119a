package devidp

import (
	"net/http"
	"testing"

	"golang.org/x/oauth2"
)

// OIDC-02: the code is bound to the code_challenge; a wrong verifier is
// refused, and the code is then spent.
func TestPKCEVerifierMismatchRefused(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	code := f.code(t, loc)

	if _, err := tb.conf.Exchange(tb.ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("exchange with another flow's verifier succeeded")
	}
	if _, err := tb.conf.Exchange(tb.ctx, code, oauth2.VerifierOption(f.verifier)); err == nil {
		t.Fatal("code still redeemable after a failed attempt")
	}
}

func TestPKCEVerifierMissingRefused(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	if _, err := tb.conf.Exchange(tb.ctx, f.code(t, loc)); err == nil {
		t.Fatal("exchange without code_verifier succeeded")
	}
}

// OIDC-01 (d): a code is single-use.
func TestCodeReplayRefused(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	code := f.code(t, loc)
	tb.exchange(t, f, code)
	if _, err := tb.conf.Exchange(tb.ctx, code, oauth2.VerifierOption(f.verifier)); err == nil {
		t.Fatal("code redeemed twice")
	}
}

func TestCodeBoundToClientAndRedirect(t *testing.T) {
	tb := newTestbed(t, nil)
	for name, mutate := range map[string]func(*oauth2.Config){
		"other client":       func(c *oauth2.Config) { c.ClientID, c.ClientSecret = publicC, "" },
		"other redirect_uri": func(c *oauth2.Config) { c.RedirectURL = "https://rp.example.test/other" },
	} {
		t.Run(name, func(t *testing.T) {
			f := tb.start(t)
			loc, _ := f.submit(t, "bob", "bob-pw", "")
			conf := tb.conf
			mutate(&conf)
			if _, err := conf.Exchange(tb.ctx, f.code(t, loc), oauth2.VerifierOption(f.verifier)); err == nil {
				t.Fatal("exchange succeeded")
			}
		})
	}
}

// The authorization endpoint refuses a request without S256 PKCE, and says
// so to the registered redirect URI, never showing a login form.
func TestAuthorizeRequiresS256(t *testing.T) {
	tb := newTestbed(t, nil)
	v := oauth2.GenerateVerifier()
	for name, opts := range map[string][]oauth2.AuthCodeOption{
		"no challenge": nil,
		"plain":        {oauth2.SetAuthURLParam("code_challenge", v), oauth2.SetAuthURLParam("code_challenge_method", "plain")},
		"no method":    {oauth2.SetAuthURLParam("code_challenge", v)},
		"unknown":      {oauth2.SetAuthURLParam("code_challenge", v), oauth2.SetAuthURLParam("code_challenge_method", "S512")},
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := tb.browser(t).Get(tb.conf.AuthCodeURL("st", opts...))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := resp.Location()
			if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("error") != "invalid_request" || loc.Query().Get("state") != "st" {
				t.Fatalf("status %d, location %v; want a redirect with error=invalid_request", resp.StatusCode, loc)
			}
		})
	}
}

// An unregistered redirect_uri gets an error page, not a redirect to it.
func TestAuthorizeUnregisteredRedirectURI(t *testing.T) {
	tb := newTestbed(t, nil)
	for _, uri := range []string{"https://evil.example/cb", rpRedirect + "/", rpRedirect + "?x=1", "https://rp.example.test.evil.example/oauth2/callback"} {
		conf := tb.conf
		conf.RedirectURL = uri
		resp, err := tb.browser(t).Get(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			loc, _ := resp.Location()
			t.Errorf("%s: status %d location %v, want 400", uri, resp.StatusCode, loc)
		}
	}
}

// The state is returned exactly, whatever it contains.
func TestStateReturnedVerbatim(t *testing.T) {
	tb := newTestbed(t, nil)
	f := &flow{verifier: oauth2.GenerateVerifier(), state: "a b&c=d/é+%", nonce: "n", browser: tb.browser(t)}
	resp, err := f.browser.Get(tb.conf.AuthCodeURL(f.state, oauth2.S256ChallengeOption(f.verifier), oauth2.SetAuthURLParam("nonce", "n")))
	if err != nil {
		t.Fatal(err)
	}
	f.form = parseLoginForm(t, resp)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	f.code(t, loc) // checks state
}

func s256(t *testing.T) oauth2.AuthCodeOption {
	t.Helper()
	return oauth2.S256ChallengeOption(oauth2.GenerateVerifier())
}
