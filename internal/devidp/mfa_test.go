package devidp

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"
)

// totpAt is the code alice's authenticator shows at t.
func totpAt(t *testing.T, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(totpSecret, at, totpOpts)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func wantMFA(t *testing.T, c idClaims) {
	t.Helper()
	if c.ACR == nil || *c.ACR != ACRMFA {
		t.Errorf("acr = %v, want %s", c.ACR, ACRMFA)
	}
	if !slices.Equal(c.AMR, []string{"pwd", "otp", "mfa"}) {
		t.Errorf("amr = %v, want [pwd otp mfa]", c.AMR)
	}
}

func TestTOTPGivesMFA(t *testing.T) {
	tb := newTestbed(t, nil)
	c, _ := tb.login(t, "alice", "alice-pw", totpAt(t, tb.clock.Now()))
	wantMFA(t, c)
}

// The code is checked at the provider's clock, not the wall clock: a code
// for the wall clock fails when the provider's clock is an hour behind.
func TestTOTPUsesInjectedClock(t *testing.T) {
	tb := newTestbed(t, nil)
	tb.clock.Set(time.Now().Add(-time.Hour))
	c, _ := tb.login(t, "alice", "alice-pw", totpAt(t, tb.clock.Now()))
	wantMFA(t, c)

	f := tb.start(t)
	if loc, _ := f.submit(t, "alice", "alice-pw", totpAt(t, time.Now())); loc != nil {
		t.Fatal("a code for another time was accepted")
	}
}

func TestWrongTOTPFails(t *testing.T) {
	tb := newTestbed(t, nil)
	good := totpAt(t, tb.clock.Now())
	for _, code := range []string{"000000", "12345", "abcdef", good + "0"} {
		if code == good {
			continue
		}
		f := tb.start(t)
		loc, page := f.submit(t, "alice", "alice-pw", code)
		if loc != nil {
			t.Fatalf("code %q: redirected to %s", code, loc)
		}
		if page.status != http.StatusUnauthorized {
			t.Errorf("code %q: status %d, want 401", code, page.status)
		}
	}
}

// A TOTP user who does not enter a code, when the RP did not ask for MFA,
// gets the password level only.
func TestTOTPUserWithoutCodeGetsPassword(t *testing.T) {
	tb := newTestbed(t, nil)
	c, _ := tb.login(t, "alice", "alice-pw", "")
	if c.ACR == nil || *c.ACR != ACRPassword || !slices.Equal(c.AMR, []string{"pwd"}) {
		t.Errorf("acr, amr = %v, %v; want pwd", c.ACR, c.AMR)
	}
}

func TestACRValuesMFARequiresCode(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t, oauth2.SetAuthURLParam("acr_values", ACRMFA))

	// Password alone: no code issued, the form asks for the one-time code.
	loc, page := f.submit(t, "alice", "alice-pw", "")
	if loc != nil {
		t.Fatalf("redirected without a second factor: %s", loc)
	}
	if page.status != http.StatusOK || !page.hasOTP || page.username != "alice" {
		t.Fatalf("status %d, otp field %v, username %q; want the form asking for the code", page.status, page.hasOTP, page.username)
	}

	// With the code the login completes at the MFA level.
	loc, _ = f.submit(t, "alice", "alice-pw", totpAt(t, tb.clock.Now()))
	_, raw := tb.exchange(t, f, f.code(t, loc))
	wantMFA(t, tb.verify(t, f, raw))
}

// A user without a second factor cannot reach MFA; the provider answers with
// the password level and leaves the refusal to the relying party.
func TestACRValuesMFAUserWithoutTOTP(t *testing.T) {
	tb := newTestbed(t, nil)
	c, _ := tb.login(t, "bob", "bob-pw", "", oauth2.SetAuthURLParam("acr_values", ACRMFA))
	if c.ACR == nil || *c.ACR != ACRPassword {
		t.Errorf("acr = %v, want %s", c.ACR, ACRPassword)
	}
}
