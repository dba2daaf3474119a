package config

import (
	"fmt"
	"strings"
)

// Recovery flows. A reset is several requests: the request (the guarded route), then the
// "check your mail" page, the link in the mail and the form it opens, each served by the
// portal to someone who cannot sign in. recovery_guard.flow names those paths, and a preset
// fills the identifier locations and the flow of a framework's stock reset views from the
// guarded route's path; the validator warns when a route that requires sign-in (or none)
// would serve a path of the flow, which otherwise shows up only as a reset link that asks
// the person to sign in with the password they forgot.

// Recovery presets (RecoveryGuard.Preset).
const (
	PresetDjango  = "django"  // django.contrib.auth's PasswordResetView and the views after it
	PresetDevise  = "devise"  // Devise's passwords controller (Rails)
	PresetLaravel = "laravel" // Laravel's password broker routes (Breeze, Fortify, Jetstream)
)

// recoveryPreset is what a preset fills in for a guard on path, or ok false when the path is
// not the preset's request route (the validator then says so).
func recoveryPreset(preset, path string) (ids []RecoveryIdentifier, flow []string, ok bool) {
	trimmed := strings.TrimSuffix(path, "/")
	switch preset {
	case PresetDjango:
		// /accounts/password_reset/ → /accounts/password_reset/done/,
		// /accounts/reset/<uidb64>/<token>/, /accounts/reset/done/
		base, found := strings.CutSuffix(trimmed, "/password_reset")
		if !found {
			return nil, nil, false
		}
		return []RecoveryIdentifier{{From: RecoveryFromForm, Name: "email"}},
			[]string{base + "/password_reset/done/", base + "/reset/MQ/set-password/", base + "/reset/done/"}, true
	case PresetDevise:
		// /users/password (POST: request, PUT/PATCH: the new password) → /users/password/edit
		// (the link's form); the parameters are the resource's: user[email].
		base, found := strings.CutSuffix(trimmed, "/password")
		resource := base[strings.LastIndexByte(base, '/')+1:]
		if !found || len(resource) < 2 || !strings.HasSuffix(resource, "s") {
			return nil, nil, false
		}
		one := strings.TrimSuffix(resource, "s")
		return []RecoveryIdentifier{{From: RecoveryFromForm, Name: one + "[email]"}, {From: RecoveryFromJSON, Name: "/" + one + "/email"}},
			[]string{trimmed + "/edit"}, true
	case PresetLaravel:
		// /forgot-password → /reset-password/<token> (the link's form, and its POST).
		base, found := strings.CutSuffix(trimmed, "/forgot-password")
		if !found {
			return nil, nil, false
		}
		return []RecoveryIdentifier{{From: RecoveryFromForm, Name: "email"}, {From: RecoveryFromJSON, Name: "/email"}},
			[]string{base + "/reset-password/token"}, true
	}
	return nil, nil, false
}

// applyRecoveryPresets fills, for every guard with a known preset on a path it fits, the
// identifier locations and the flow the file leaves unset. Run before the defaults.
func applyRecoveryPresets(c *Config) {
	for i := range c.Routes {
		g := c.Routes[i].RecoveryGuard
		if g == nil || g.Preset == "" {
			continue
		}
		ids, flow, ok := recoveryPreset(g.Preset, c.Routes[i].Path)
		if !ok {
			continue
		}
		if len(g.Identifier) == 0 {
			g.Identifier = ids
		}
		if g.Flow == nil {
			g.Flow = flow
		}
	}
}

// recoveryPresetCheck reports an unknown preset, or a path that is not the preset's, and a
// flow path that is not a path.
func (v *validator) recoveryPresetCheck(gp string, r *Route) {
	for i, f := range r.RecoveryGuard.Flow {
		if !strings.HasPrefix(f, "/") || strings.ContainsAny(f, "?#") {
			v.errorf(fmt.Sprintf("%s.flow[%d]", gp, i), "must be a path such as \"/accounts/reset/MQ/set-password/\", without a query")
		}
	}
	preset := r.RecoveryGuard.Preset
	if preset == "" {
		return
	}
	if !v.oneOf(gp+".preset", preset, PresetDjango, PresetDevise, PresetLaravel) {
		return
	}
	if _, _, ok := recoveryPreset(preset, r.Path); !ok {
		want := map[string]string{PresetDjango: ".../password_reset/", PresetDevise: ".../users/password (the resource's, plural)", PresetLaravel: ".../forgot-password"}[preset]
		v.errorf(gp+".preset", "%s is for the route of the reset request, whose path is %s; this route's is %s: list identifier and flow instead",
			preset, want, v.show("routes[].path", r.Path))
	}
}

// recoveryFlows warns about every path of a recovery flow that a route requiring sign-in, or
// no route, would serve. Routes with errors are left out, as by shadows.
func (v *validator) recoveryFlows(rs []Route, bad []bool) {
	for k := range rs {
		g := rs[k].RecoveryGuard
		if bad[k] || g == nil {
			continue
		}
		for j, path := range g.Flow { // valid paths: a route with an invalid one is bad
			// The request a person makes: GET of the path, on the guard's hosts.
			probe := &Route{Path: path, PathMatch: PathExact, Hosts: rs[k].Hosts, Methods: []string{"GET"}}
			key := fmt.Sprintf("routes[%d].recovery_guard.flow[%d]", k, j)
			served := -1
			for i := range rs {
				if !bad[i] && covers(&rs[i], probe) {
					served = i
					break
				}
			}
			switch {
			case served < 0:
				v.warnf(key, "%s (a step of the reset after the request) is served by no route: the person gets 404 no_route", v.show(key, path))
			case !rs[served].Public:
				v.warnf(key, "%s (a step of the reset after the request) is served by route %s (line %d), which requires sign-in: the person who forgot their password cannot finish; give the flow a public route before it",
					v.show(key, path), v.show(fmt.Sprintf("routes[%d].name", served), rs[served].Name), rs[served].Line)
			}
		}
	}
}
