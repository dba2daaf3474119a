package config

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
}

// On reports whether the console is served (with sign-in configured).
func (c *Console) On() bool { return c.Enabled == nil || *c.Enabled }

// console checks the console section.
func (v *validator) console(c *Config) {
	if su := c.Console.StepUp; su != nil {
		v.stepUp("console.step_up", su)
	}
}
