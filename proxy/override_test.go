package proxy

import (
	"testing"

	"github.com/portcullis-proxy/portcullis/config"
)

// TestCompileOverrides: a route is method-sensitive when its own settings make the method
// matter, or when an earlier method-restricted route could take the same request for another
// method; a later route never can.
func TestCompileOverrides(t *testing.T) {
	routes := []config.Route{
		{Name: "delete", Path: "/items", Methods: []string{"DELETE"}},
		{Name: "items", Path: "/items/"},                                         // overlapped by delete
		{Name: "items-case", Path: "/ITEMS/sub"},                                 // overlapped, case folded
		{Name: "other", Path: "/other"},                                          // no method route before it on this path
		{Name: "stepup", Path: "/other/x", StepUp: &config.StepUp{}},             // its own step-up
		{Name: "allow", Path: "/ok", MethodOverride: config.MethodOverrideAllow}, // allows overrides
		{Name: "hosted", Hosts: []string{"a.example"}, Path: "/h", Methods: []string{"PUT"}},
		{Name: "other-host", Hosts: []string{"b.example"}, Path: "/h"},                           // other host
		{Name: "wild-host", Hosts: []string{"*.example"}, Path: "/h"},                            // covers a.example
		{Name: "reset", Path: "/zz/reset", Public: true, RecoveryGuard: &config.RecoveryGuard{}}, // a guard inspects some methods
		{Name: "root", Path: "/"},                                                                // under every path
	}
	want := map[string]overridePolicy{
		"delete": {sensitive: true}, "items": {sensitive: true}, "items-case": {sensitive: true},
		"other": {}, "stepup": {sensitive: true}, "allow": {allow: true, sensitive: true},
		"hosted": {sensitive: true}, "other-host": {}, "wild-host": {sensitive: true}, "reset": {sensitive: true}, "root": {sensitive: true},
	}
	got := compileOverrides(routes)
	for i, r := range routes {
		if got[i] != want[r.Name] {
			t.Errorf("%s: %+v, want %+v", r.Name, got[i], want[r.Name])
		}
	}
}

func TestIsOverrideHeader(t *testing.T) {
	for _, h := range []string{"X-HTTP-Method-Override", "x-http-method-override", "X_HTTP_METHOD_OVERRIDE",
		"X.Http.Method.Override", "X-Method-Override", "X-HTTP-Method", "x-http-method"} {
		if !isOverrideHeader(h) {
			t.Errorf("%s is not recognised", h)
		}
	}
	for _, h := range []string{"X-HTTP-Methods", "X-Method", "Method", "X-HTTP-Method-Override2"} {
		if isOverrideHeader(h) {
			t.Errorf("%s is taken for an override header", h)
		}
	}
}
