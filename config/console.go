package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Console configures the self-serve console, the pages under /.portcullis/console/ on the
// sign-in host and every organisation host: each signed-in person sees their own access and
// asks for what they lack; an organisation's administrators answer requests and manage its
// members there, through the administration API's rules, each act behind a fresh step-up.
type Console struct {
	// Enabled serves the console when sign-in is configured.
	Enabled *bool `yaml:"enabled"`
	// StepUp is what the administration pages demand (the organisation's members, the
	// requests waiting for an answer, and every change made there), as a route's step_up:
	// acr or amr, max_age, elevation. Without it, the console has no administration pages;
	// people still see and request their own access.
	StepUp *StepUp `yaml:"step_up"`
	// Operators are the people (issuer|subject, as the admin API names them) who act in the
	// console as the platform's operators, across organisations, after console.step_up:
	// the organisations' pages and the business events with their dry run. Default none.
	Operators []string `yaml:"operators"`
}

// On reports whether the console is served (with sign-in configured).
func (c *Console) On() bool { return c.Enabled == nil || *c.Enabled }

// console checks the console section.
func (v *validator) console(c *Config) {
	if su := c.Console.StepUp; su != nil {
		v.stepUp("console.step_up", su)
	}
	for i, o := range c.Console.Operators {
		iss, sub, ok := strings.Cut(o, "|")
		if u, err := url.Parse(iss); !ok || sub == "" || err != nil || u.Scheme == "" || u.Host == "" {
			v.errorf(fmt.Sprintf("console.operators[%d]", i), "must be a person as issuer|subject, such as https://idp.example.com|248289761001")
		}
	}
	if len(c.Console.Operators) > 0 && c.Console.StepUp == nil {
		v.errorf("console.operators", "needs console.step_up: operators act in the console only after a fresh, strong sign-in")
	}
}
