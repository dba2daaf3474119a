package main

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// idpSignIns are what each provider of docs/identity-providers.md sends in its ID token, as
// its own documentation describes it: after its second factor (strong) and after a password
// alone (weak). No provider sends anything for step-up where the guide says it cannot.
var idpSignIns = map[string]struct {
	strong, weak []authz.Authentication
	stepUp       bool // the guide's snippet has a step-up route
}{
	"Keycloak": {stepUp: true,
		strong: []authz.Authentication{{ACR: "mfa"}, {ACR: "mfa", AMR: []string{"pwd", "otp"}}},
		// Keycloak's level 1, by its name or by its number (no mapping for the value asked).
		weak: []authz.Authentication{{ACR: "pwd"}, {ACR: "1"}, {ACR: "2"}, {}}},
	"Okta": {stepUp: true,
		strong: []authz.Authentication{{ACR: "urn:okta:loa:2fa:any", AMR: []string{"pwd", "mfa", "otp"}}},
		weak: []authz.Authentication{{ACR: "urn:okta:loa:1fa:any", AMR: []string{"pwd"}},
			// "if possible": met by a password when the person has no factor enrolled.
			{ACR: "urn:okta:loa:2fa:any:ifpossible", AMR: []string{"pwd"}},
			// The label without the methods: refused on amr.
			{ACR: "urn:okta:loa:2fa:any", AMR: []string{"pwd"}}}},
	"Microsoft Entra ID": {},
	"Google":             {},
	"Dex":                {},
}

// TestIdentityProviderSnippets: every snippet of docs/identity-providers.md passes check; a
// provider's step-up route is granted for what it sends after its second factor and refused
// for what it sends after a password alone; where the guide says a provider cannot prove a
// second factor, its snippet has no step-up and a step-up without acr or amr is refused by
// check.
func TestIdentityProviderSnippets(t *testing.T) {
	t.Parallel()
	sn := newSnippetDir(t)
	seen := map[string]bool{}
	for _, b := range markdownBlocks(t, "docs/identity-providers.md") {
		if b.lang != "yaml" {
			continue
		}
		want, ok := idpSignIns[b.heading]
		if !ok {
			t.Errorf("%s: a snippet under %q, a provider this test does not know", b, b.heading)
			continue
		}
		seen[b.heading] = true
		t.Run(b.heading, func(t *testing.T) {
			path := sn.check(t, b)
			cfg, errs, err := config.Load(path)
			if err != nil || len(errs) > 0 {
				t.Fatalf("load %s: %v %v", path, err, errs)
			}
			var su *config.StepUp
			for _, r := range cfg.Routes {
				if r.StepUp != nil {
					su = r.StepUp
				}
			}
			if (su != nil) != want.stepUp {
				t.Fatalf("%s: step-up route in the snippet: %v, the guide says %v", b, su != nil, want.stepUp)
			}
			if su == nil {
				withoutStrength := b
				withoutStrength.body += "routes:\n  - {name: admin, path: /admin, step_up: {max_age: 5m}}\n"
				if !strings.Contains(b.body, "routes:") {
					checkFails(t, sn, withoutStrength, "needs acr or amr")
				}
				return
			}
			if !su.PromptLogin {
				t.Errorf("%s: the guide asks for prompt_login with every provider", b)
			}
			d := authz.CompileStepUp(su).Demand("")
			started := time.Now().Add(-10 * time.Second).Truncate(time.Second)
			now := started.Add(20 * time.Second)
			const iss, sub = "https://idp.example.com", "person"
			for _, a := range want.strong {
				a.Issuer, a.Subject, a.AuthTime = iss, sub, started.Add(5*time.Second)
				if _, code, why := authz.Grant(d, started, iss, sub, a, now); code != "" {
					t.Errorf("%s: %+v after the second factor: refused %s (%s)", b.heading, a, code, why)
				}
				// The same sign-in, but from before the step-up began: a provider's
				// remembered session, which prompt_login exists to avoid.
				a.AuthTime = started.Add(-time.Minute)
				if _, code, _ := authz.Grant(d, started, iss, sub, a, now); code != reason.StepUpStale {
					t.Errorf("%s: %+v from an earlier sign-in: %q, want %s", b.heading, a, code, reason.StepUpStale)
				}
			}
			for _, a := range want.weak {
				a.Issuer, a.Subject, a.AuthTime = iss, sub, started.Add(5*time.Second)
				if _, code, _ := authz.Grant(d, started, iss, sub, a, now); code != reason.StepUpACR && code != reason.StepUpAMR {
					t.Errorf("%s: %+v after a password alone: %q, want it refused on acr or amr", b.heading, a, code)
				}
			}
		})
	}
	for p := range idpSignIns {
		if !seen[p] {
			t.Errorf("docs/identity-providers.md has no snippet for %s", p)
		}
	}
}

// checkFails writes b as snippetDir.write does and wants check to refuse it with msg.
func checkFails(t *testing.T, sn *snippetDir, b readmeBlock, msg string) {
	t.Helper()
	b.line = -b.line // a file of its own beside the snippet's
	out, err := runCheck(sn.write(t, b))
	if err == nil || !strings.Contains(out, msg) {
		t.Errorf("%s with a step-up that names no acr or amr: %v\n%s\nwant it refused: %s", b, err, out, msg)
	}
}
