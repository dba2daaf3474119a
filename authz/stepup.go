package authz

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// Step-up: a route with step_up needs an elevation, a recent strong authentication recorded
// in the session for the organisation the route acts for. This file holds the rules: what a
// route demands (StepUp, compiled from config), whether a session's elevations meet it
// (Elevated, on every request), and whether a provider's fresh authentication earns a new
// elevation (Grant, at the step-up's callback). Package session runs the OIDC flow and keeps
// the elevations in the session record; package proxy asks for one when a route needs it.

// StepUp is a route's step_up compiled once at configuration load. It is immutable and safe
// to share; nil demands nothing.
type StepUp struct {
	// acr and amr keep the configured order: acr_values is sent to the provider in it.
	acr, amr          []string
	maxAge, elevation time.Duration
	promptLogin       bool
}

// CompileStepUp compiles a route's step_up; nil for a route without one. The elevation
// defaults to, and is capped at, max_age: an elevation cannot outlive the freshness the
// route asks of the authentication behind it.
func CompileStepUp(su *config.StepUp) *StepUp {
	if su == nil {
		return nil
	}
	s := &StepUp{acr: slices.Clip(slices.Clone(su.ACR)), amr: slices.Clip(slices.Clone(su.AMR)),
		maxAge: su.MaxAge.D(), elevation: su.Elevation.D(), promptLogin: su.PromptLogin}
	if s.elevation <= 0 || s.elevation > s.maxAge {
		s.elevation = s.maxAge
	}
	return s
}

// ACR returns the acceptable acr values (any one), in configured order; shared, do not modify.
func (s *StepUp) ACR() []string { return s.acr }

// AMR returns the methods the authentication must all have used; shared, do not modify.
func (s *StepUp) AMR() []string { return s.amr }

// MaxAge is how recent the authentication must be.
func (s *StepUp) MaxAge() time.Duration { return s.maxAge }

// Elevation is how long a granted elevation lasts at most.
func (s *StepUp) Elevation() time.Duration { return s.elevation }

// PromptLogin reports whether the provider must authenticate the person again (prompt=login).
func (s *StepUp) PromptLogin() bool { return s.promptLogin }

// Demand is the route's demand for organisation org ("" for a route that is not
// organisation-scoped): what the session's step-up flow must meet, as it travels in the
// interstitial's ticket and the stored step-up state.
func (s *StepUp) Demand(org string) Demand {
	return Demand{Org: org, ACR: slices.Clone(s.acr), AMR: slices.Clone(s.amr), MaxAge: s.maxAge, Elevation: s.elevation}
}

// Demand is a step-up asked for one organisation. Its JSON is part of stored records (the
// step-up state beside a login, the signed ticket), so its field names do not change.
type Demand struct {
	Org       string        `json:"org"`
	ACR       []string      `json:"acr,omitempty"`
	AMR       []string      `json:"amr,omitempty"`
	MaxAge    time.Duration `json:"max_age"`
	Elevation time.Duration `json:"elevation"`
}

// Valid reports whether d is a demand a route can make: a positive max_age, an elevation
// within it, and acr or amr to meet. Anything else (a ticket or state tampered with, or
// written by a version that knew other rules) is refused rather than read leniently.
func (d Demand) Valid() bool {
	return d.MaxAge > 0 && d.Elevation > 0 && d.Elevation <= d.MaxAge && (len(d.ACR) > 0 || len(d.AMR) > 0)
}

// Elevation is a step-up a session earned for one organisation ("" for routes that are not
// organisation-scoped): the acr and amr of the strong authentication, when it happened, when
// the elevation was granted and until when it holds. It lives in the session record, so
// ending the session ends it; switching the active organisation drops it.
type Elevation struct {
	ACR       string    `json:"acr,omitempty"`
	AMR       []string  `json:"amr,omitempty"`
	Org       string    `json:"org"`
	AuthTime  time.Time `json:"auth_time"`
	GrantedAt time.Time `json:"granted_at"`
	Until     time.Time `json:"until"`
}

// Satisfies reports whether e meets s for organisation org at now: unexpired, for this
// organisation, an acceptable acr (when s lists any), every required amr, and an underlying
// authentication no older than s's max_age. A nil s demands nothing. It allocates nothing.
func (e *Elevation) Satisfies(org string, s *StepUp, now time.Time) bool {
	if s == nil {
		return true
	}
	if e.Org != org || !now.Before(e.Until) || e.AuthTime.IsZero() || now.Sub(e.AuthTime) > s.maxAge {
		return false
	}
	return acrOK(s.acr, e.ACR) && amrOK(s.amr, e.AMR)
}

// Elevated returns the first of els that meets s for org at now and was granted no earlier
// than since (the membership's ElevationsAfter: a role change ends elevations; zero: no
// bound), and whether there is one. Only the session's server-side record counts: nothing the
// client sends is consulted. A nil s is met by any session (nil, true).
func Elevated(els []Elevation, org string, s *StepUp, since, now time.Time) (*Elevation, bool) {
	if s == nil {
		return nil, true
	}
	for i := range els {
		if els[i].Satisfies(org, s, now) && !els[i].GrantedAt.Before(since) {
			return &els[i], true
		}
	}
	return nil, false
}

// Live returns the elevations of els that still hold at now, in a new slice.
func Live(els []Elevation, now time.Time) []Elevation {
	var out []Elevation
	for _, e := range els {
		if now.Before(e.Until) {
			out = append(out, e)
		}
	}
	return out
}

// Authentication is what a provider asserted about one sign-in: the ID token's issuer,
// subject, acr, amr and auth_time.
type Authentication struct {
	Issuer, Subject string
	ACR             string
	AMR             []string
	AuthTime        time.Time
}

// Grant decides whether auth, the authentication a step-up started at started came back
// with, earns the session of person (issuer, subject) the elevation d demands, at now. It
// checks what the provider returned, never what was asked of it (the request's parameters
// may have been stripped on the way, SU-03): the same person, an acceptable acr, every
// required amr, and an authentication after the step-up began and within max_age.
//
// It returns the elevation, lasting until the earlier of auth_time + max_age and now +
// elevation; or the refusal code and a short cause for the log.
func Grant(d Demand, started time.Time, issuer, subject string, auth Authentication, now time.Time) (Elevation, reason.Code, string) {
	switch {
	case auth.Issuer != issuer || auth.Subject != subject:
		return Elevation{}, reason.StepUpWrongUser, "id token names another person than the session"
	case !acrOK(d.ACR, auth.ACR):
		return Elevation{}, reason.StepUpACR, "acr " + strconv.Quote(auth.ACR) + " is not acceptable"
	case !amrOK(d.AMR, auth.AMR):
		return Elevation{}, reason.StepUpAMR, "amr " + strconv.Quote(strings.Join(auth.AMR, " ")) + " lacks a required method"
	case auth.AuthTime.IsZero():
		return Elevation{}, reason.StepUpStale, "no auth_time"
	// auth_time has whole seconds: the second in which the step-up began is the earliest it
	// can say "after"; no allowance for skew beyond that.
	case auth.AuthTime.Before(started.Truncate(time.Second)):
		return Elevation{}, reason.StepUpStale, "auth_time is before the step-up began"
	case now.Sub(auth.AuthTime) > d.MaxAge:
		return Elevation{}, reason.StepUpStale, "auth_time is older than max_age"
	}
	until := min(auth.AuthTime.Add(d.MaxAge).UnixNano(), now.Add(d.Elevation).UnixNano())
	el := Elevation{ACR: auth.ACR, AMR: slices.Clone(auth.AMR), Org: d.Org, AuthTime: auth.AuthTime, GrantedAt: now,
		Until: time.Unix(0, until).UTC()}
	if !now.Before(el.Until) {
		return Elevation{}, reason.StepUpStale, "elevation would already be over"
	}
	return el, "", ""
}

func acrOK(want []string, got string) bool { return len(want) == 0 || slices.Contains(want, got) }

func amrOK(want, got []string) bool {
	for _, m := range want {
		if !slices.Contains(got, m) {
			return false
		}
	}
	return true
}
