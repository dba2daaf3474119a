package devidp

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func TestAuthTimeFollowsInjectedClock(t *testing.T) {
	tb := newTestbed(t, nil)
	for _, at := range []time.Time{
		time.Now().Add(-2 * time.Hour),
		time.Now().Add(-301 * time.Second),
		time.Now(),
	} {
		tb.clock.Set(at)
		c, _ := tb.login(t, "bob", "bob-pw", "")
		if c.AuthTime == nil || *c.AuthTime != at.Unix() {
			t.Errorf("auth_time = %v, want %d", c.AuthTime, at.Unix())
		}
	}
}

func TestSetAuthTimeOffset(t *testing.T) {
	tb := newTestbed(t, nil)
	now := time.Now()
	tb.clock.Set(now)
	tb.idp.SetAuthTimeOffset(-10 * time.Minute)
	c, _ := tb.login(t, "alice", "alice-pw", totpAt(t, now))
	if c.AuthTime == nil || *c.AuthTime != now.Add(-10*time.Minute).Unix() {
		t.Errorf("auth_time = %v, want %d", c.AuthTime, now.Add(-10*time.Minute).Unix())
	}
	if c.Iat < now.Unix()-5 {
		t.Errorf("iat = %d moved with the offset", c.Iat)
	}
	wantMFA(t, c) // the code is still checked at the clock's time

	tb.idp.SetAuthTimeOffset(0)
	c, _ = tb.login(t, "bob", "bob-pw", "")
	if *c.AuthTime != now.Unix() {
		t.Errorf("after reset auth_time = %d, want %d", *c.AuthTime, now.Unix())
	}
}

func TestForceClaims(t *testing.T) {
	tb := newTestbed(t, nil)
	code := func() string { return totpAt(t, tb.clock.Now()) }

	t.Run("weaker acr", func(t *testing.T) {
		tb.idp.ForceClaims("alice", func(c *Claims) { c.ACR = ACRPassword })
		c, _ := tb.login(t, "alice", "alice-pw", code())
		if c.ACR == nil || *c.ACR != ACRPassword {
			t.Errorf("acr = %v", c.ACR)
		}
		if !slices.Equal(c.AMR, []string{"pwd", "otp", "mfa"}) {
			t.Errorf("amr = %v, want it untouched", c.AMR)
		}
	})
	t.Run("one shot", func(t *testing.T) {
		c, _ := tb.login(t, "alice", "alice-pw", code())
		wantMFA(t, c)
	})
	t.Run("missing amr acr auth_time", func(t *testing.T) {
		tb.idp.ForceClaims("alice", func(c *Claims) { c.AMR, c.ACR, c.AuthTime = nil, "", time.Time{} })
		c, _ := tb.login(t, "alice", "alice-pw", code())
		for _, k := range []string{"amr", "acr", "auth_time"} {
			if _, ok := c.raw[k]; ok {
				t.Errorf("%s present: %s", k, c.raw[k])
			}
		}
	})
	t.Run("malformed via extra", func(t *testing.T) {
		tb.idp.ForceClaims("alice", func(c *Claims) {
			c.ACR, c.AuthTime = "", time.Time{}
			c.Extra = map[string]any{"acr": []string{ACRMFA}, "auth_time": "1700000000"}
		})
		c, _ := tb.login(t, "alice", "alice-pw", code())
		if string(c.raw["acr"]) != `["`+ACRMFA+`"]` || string(c.raw["auth_time"]) != `"1700000000"` {
			t.Errorf("acr, auth_time = %s, %s", c.raw["acr"], c.raw["auth_time"])
		}
	})
	t.Run("extra cannot override a set claim", func(t *testing.T) {
		tb.idp.ForceClaims("bob", func(c *Claims) { c.Extra = map[string]any{"acr": ACRMFA, "sub": "u-alice"} })
		c, _ := tb.login(t, "bob", "bob-pw", "")
		if *c.ACR != ACRPassword || c.Sub != "u-bob" {
			t.Errorf("acr, sub = %s, %s", *c.ACR, c.Sub)
		}
	})
	t.Run("extra audience", func(t *testing.T) {
		tb.idp.ForceClaims("bob", func(c *Claims) { c.Audience = []string{"other-client"} })
		c, _ := tb.login(t, "bob", "bob-pw", "")
		aud, _ := c.Aud.([]any)
		if len(aud) != 2 || string(c.raw["azp"]) != `"`+confidentialC+`"` {
			t.Errorf("aud, azp = %v, %s; want both audiences and azp", c.Aud, c.raw["azp"])
		}
	})
	t.Run("old auth_time", func(t *testing.T) {
		old := tb.clock.Now().Add(-time.Hour)
		tb.idp.ForceClaims("bob", func(c *Claims) { c.AuthTime = old })
		c, _ := tb.login(t, "bob", "bob-pw", "")
		var got int64
		_ = json.Unmarshal(c.raw["auth_time"], &got)
		if got != old.Unix() {
			t.Errorf("auth_time = %d, want %d", got, old.Unix())
		}
	})
}
