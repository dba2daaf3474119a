package config

import (
	"slices"
	"testing"
)

// A preset fills the identifier locations and the flow of the framework's stock views from
// the route's path, keeps what the file sets, and compiles like a hand-written guard.
func TestRecoveryPresets(t *testing.T) {
	cfg, warnings, err := Load("testdata/recovery_flow.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 3 {
		t.Errorf("%d warnings, want 3: %v", len(warnings), warnings)
	}
	byName := map[string]*RecoveryGuard{}
	for i := range cfg.Routes {
		if g := cfg.Routes[i].RecoveryGuard; g != nil {
			byName[cfg.Routes[i].Name] = g
		}
	}
	for name, want := range map[string]struct {
		ids  []RecoveryIdentifier
		flow []string
	}{
		"django-reset": {[]RecoveryIdentifier{{From: "form", Name: "email"}},
			[]string{"/accounts/password_reset/done/", "/accounts/reset/MQ/set-password/", "/accounts/reset/done/"}},
		"devise-reset": {[]RecoveryIdentifier{{From: "form", Name: "user[email]"}, {From: "json", Name: "/user/email"}},
			[]string{"/users/password/edit"}},
		"laravel-reset": {[]RecoveryIdentifier{{From: "form", Name: "email"}, {From: "json", Name: "/email"}},
			[]string{"/reset-password/token", "/password-changed"}}, // the file's flow is kept
	} {
		g := byName[name]
		if g == nil || !slices.Equal(g.Identifier, want.ids) || !slices.Equal(g.Flow, want.flow) || g.Spec == nil {
			t.Errorf("%s: %+v", name, g)
		}
		if !slices.Equal(g.Methods, []string{"POST"}) {
			t.Errorf("%s: methods %v", name, g.Methods)
		}
	}
	// Devise's parameters are the resource's, from the route's path.
	ids, _, ok := recoveryPreset(PresetDevise, "/admins/password")
	if !ok || ids[0].Name != "admin[email]" {
		t.Errorf("devise for admins: %v %v", ids, ok)
	}
	for _, p := range []string{"/password", "/s/password", "/users/passwords"} {
		if _, _, ok := recoveryPreset(PresetDevise, p); ok {
			t.Errorf("devise took %s", p)
		}
	}
}
