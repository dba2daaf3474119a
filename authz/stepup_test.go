package authz

import (
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

func TestElevationSatisfies(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	su := CompileStepUp(&config.StepUp{ACR: []string{"gold", "platinum"}, AMR: []string{"otp", "mfa"}, MaxAge: config.Duration(5 * time.Minute)})
	good := Elevation{ACR: "gold", AMR: []string{"pwd", "otp", "mfa"}, Org: "acme",
		AuthTime: now.Add(-time.Minute), GrantedAt: now.Add(-time.Minute), Until: now.Add(time.Minute)}
	for _, c := range []struct {
		name string
		edit func(*Elevation)
		org  string
		su   *StepUp
		want bool
	}{
		{"good", func(*Elevation) {}, "acme", su, true},
		{"other acceptable acr", func(e *Elevation) { e.ACR = "platinum" }, "acme", su, true},
		{"other org", func(*Elevation) {}, "beta", su, false},
		{"no org", func(*Elevation) {}, "", su, false},
		{"weaker acr", func(e *Elevation) { e.ACR = "silver" }, "acme", su, false},
		{"acr case", func(e *Elevation) { e.ACR = "Gold" }, "acme", su, false},
		{"amr missing", func(e *Elevation) { e.AMR = []string{"pwd", "otp"} }, "acme", su, false},
		{"no amr", func(e *Elevation) { e.AMR = nil }, "acme", su, false},
		{"expired", func(e *Elevation) { e.Until = now }, "acme", su, false},
		{"auth too old for this route", func(e *Elevation) { e.AuthTime = now.Add(-5*time.Minute - time.Second) }, "acme", su, false},
		{"auth exactly max_age old", func(e *Elevation) { e.AuthTime = now.Add(-5 * time.Minute) }, "acme", su, true},
		{"no auth_time", func(e *Elevation) { e.AuthTime = time.Time{} }, "acme", su, false},
		{"amr only route", func(e *Elevation) { e.ACR = "" }, "acme", CompileStepUp(&config.StepUp{AMR: []string{"otp"}, MaxAge: config.Duration(5 * time.Minute)}), true},
	} {
		el := good
		el.AMR = append([]string(nil), good.AMR...)
		c.edit(&el)
		if got := el.Satisfies(c.org, c.su, now); got != c.want {
			t.Errorf("%s: Satisfies = %v, want %v", c.name, got, c.want)
		}
		got, ok := Elevated([]Elevation{{Org: "other", Until: now.Add(time.Hour)}, el}, c.org, c.su, time.Time{}, now)
		if ok != c.want || ok && got.ACR != el.ACR {
			t.Errorf("%s: Elevated = %v, %v, want %v", c.name, got, ok, c.want)
		}
	}
	// A role change after the elevation was granted ends it; one before it does not.
	if _, ok := Elevated([]Elevation{good}, "acme", su, good.GrantedAt.Add(time.Nanosecond), now); ok {
		t.Error("an elevation granted before the role changed still counts")
	}
	if _, ok := Elevated([]Elevation{good}, "acme", su, good.GrantedAt, now); !ok {
		t.Error("an elevation granted at the role change does not count")
	}
	if _, ok := Elevated(nil, "", su, time.Time{}, now); ok {
		t.Error("a session without elevations is elevated")
	}
	if _, ok := Elevated(nil, "", nil, time.Time{}, now); !ok {
		t.Error("a route without step_up refused")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Elevated([]Elevation{good}, "acme", su, time.Time{}, now) }); n != 0 {
		t.Errorf("Elevated allocates %v times", n)
	}
}

func TestCompileStepUpCapsElevation(t *testing.T) {
	su := &config.StepUp{ACR: []string{"x"}, MaxAge: config.Duration(time.Minute)}
	d := CompileStepUp(su).Demand("acme")
	if d.Elevation != time.Minute || d.MaxAge != time.Minute || d.Org != "acme" || !d.Valid() {
		t.Fatalf("demand: %+v", d)
	}
	su.Elevation = config.Duration(time.Hour)
	if d := CompileStepUp(su).Demand(""); d.Elevation != time.Minute {
		t.Fatalf("elevation above max_age: %v", d.Elevation)
	}
	su.Elevation = config.Duration(20 * time.Second)
	if d := CompileStepUp(su).Demand(""); d.Elevation != 20*time.Second {
		t.Fatalf("elevation: %v", d.Elevation)
	}
	if CompileStepUp(nil) != nil {
		t.Error("no step_up compiled to a demand")
	}
}

func TestDemandValid(t *testing.T) {
	ok := Demand{ACR: []string{"x"}, MaxAge: time.Minute, Elevation: time.Minute}
	for name, d := range map[string]Demand{
		"no max_age":             {ACR: []string{"x"}, Elevation: time.Minute},
		"negative max_age":       {ACR: []string{"x"}, MaxAge: -time.Minute, Elevation: time.Minute},
		"no elevation":           {ACR: []string{"x"}, MaxAge: time.Minute},
		"elevation over max_age": {ACR: []string{"x"}, MaxAge: time.Minute, Elevation: 2 * time.Minute},
		"nothing to meet":        {MaxAge: time.Minute, Elevation: time.Minute},
	} {
		if d.Valid() {
			t.Errorf("%s: valid", name)
		}
	}
	if !ok.Valid() {
		t.Error("a good demand is invalid")
	}
}

// TestGrant is the step-up callback's decision, with the attacks of SU-01..SU-04: another
// person's token, a weaker or differently spelt acr, a missing method, an authentication from
// before the step-up (a replayed or cached token) or too old for the route.
func TestGrant(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)
	started := now.Add(-20 * time.Second) // 10:00:10
	d := Demand{Org: "acme", ACR: []string{"urn:x:mfa", "urn:x:hwk"}, AMR: []string{"otp"}, MaxAge: 5 * time.Minute, Elevation: 2 * time.Minute}
	good := Authentication{Issuer: "https://idp", Subject: "alice", ACR: "urn:x:mfa", AMR: []string{"pwd", "otp"}, AuthTime: now.Add(-10 * time.Second)}
	for _, c := range []struct {
		name  string
		edit  func(*Authentication)
		d     func(*Demand)
		want  reason.Code
		until time.Time
	}{
		{"good", nil, nil, "", now.Add(2 * time.Minute)},
		{"other acceptable acr", func(a *Authentication) { a.ACR = "urn:x:hwk" }, nil, "", now.Add(2 * time.Minute)},
		{"other subject", func(a *Authentication) { a.Subject = "mallory" }, nil, reason.StepUpWrongUser, time.Time{}},
		{"other issuer, same subject", func(a *Authentication) { a.Issuer = "https://evil" }, nil, reason.StepUpWrongUser, time.Time{}},
		{"weaker acr", func(a *Authentication) { a.ACR = "urn:x:pwd" }, nil, reason.StepUpACR, time.Time{}},
		{"acr case", func(a *Authentication) { a.ACR = "URN:X:MFA" }, nil, reason.StepUpACR, time.Time{}},
		{"no acr", func(a *Authentication) { a.ACR = "" }, nil, reason.StepUpACR, time.Time{}},
		{"amr missing", func(a *Authentication) { a.AMR = []string{"pwd"} }, nil, reason.StepUpAMR, time.Time{}},
		{"amr case", func(a *Authentication) { a.AMR = []string{"OTP"} }, nil, reason.StepUpAMR, time.Time{}},
		{"no auth_time", func(a *Authentication) { a.AuthTime = time.Time{} }, nil, reason.StepUpStale, time.Time{}},
		{"auth before the step-up", func(a *Authentication) { a.AuthTime = started.Add(-time.Second) }, nil, reason.StepUpStale, time.Time{}},
		{"auth in the second the step-up began", func(a *Authentication) { a.AuthTime = started.Truncate(time.Second) }, nil, "", now.Add(2 * time.Minute)},
		{"auth older than max_age", func(a *Authentication) { a.AuthTime = started }, func(d *Demand) { d.MaxAge, d.Elevation = 10*time.Second, 10*time.Second }, reason.StepUpStale, time.Time{}},
		{"until is auth_time + max_age when sooner", nil, func(d *Demand) { d.MaxAge, d.Elevation = time.Minute, time.Minute }, "", good.AuthTime.Add(time.Minute)},
		{"amr-only route", func(a *Authentication) { a.ACR = "" }, func(d *Demand) { d.ACR = nil }, "", now.Add(2 * time.Minute)},
	} {
		a, dd := good, d
		a.AMR = append([]string(nil), good.AMR...)
		if c.edit != nil {
			c.edit(&a)
		}
		if c.d != nil {
			c.d(&dd)
		}
		el, code, cause := Grant(dd, started, "https://idp", "alice", a, now)
		if code != c.want {
			t.Errorf("%s: code %q (%s), want %q", c.name, code, cause, c.want)
			continue
		}
		if code != "" {
			if cause == "" || !el.Until.IsZero() {
				t.Errorf("%s: refused without a cause, or with an elevation %+v", c.name, el)
			}
			continue
		}
		if !el.Until.Equal(c.until) || el.Org != "acme" || el.ACR != a.ACR || !el.AuthTime.Equal(a.AuthTime) || !el.GrantedAt.Equal(now) {
			t.Errorf("%s: elevation %+v, want until %v", c.name, el, c.until)
		}
		// What was granted meets the demand it was granted for, and only for its org.
		su := &StepUp{acr: dd.ACR, amr: dd.AMR, maxAge: dd.MaxAge, elevation: dd.Elevation}
		if !el.Satisfies("acme", su, now) || el.Satisfies("beta", su, now) || el.Satisfies("acme", su, el.Until) {
			t.Errorf("%s: granted elevation does not meet its own demand, or meets another org's", c.name)
		}
	}
}

func TestLive(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	got := Live([]Elevation{{Org: "a", Until: now}, {Org: "b", Until: now.Add(time.Second)}, {Org: "c", Until: now.Add(-time.Second)}}, now)
	if len(got) != 1 || got[0].Org != "b" {
		t.Errorf("Live = %+v", got)
	}
}
