package config

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Notifications configures where governance events are sent so a chat or ticket system can
// route them (requests waiting for approval, their decisions, business events).
type Notifications struct {
	// Webhooks receive the audit events they list, signed as the Standard Webhooks
	// specification says (webhook-id, webhook-timestamp, webhook-signature) and retried until
	// they are delivered or max_attempts is reached.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Webhook is one receiver of events.
type Webhook struct {
	// Name identifies the webhook in logs and audit events and keeps its place in the event
	// stream. Required, unique; renaming it starts from the newest event.
	Name string `yaml:"name"`
	// URL receives a POST per event: https, or http for a loopback host.
	URL string `yaml:"url"`
	// Secret signs the deliveries: "whsec_" and base64 (the Standard Webhooks form), or any
	// string of at least 32 bytes. Give it as secret_file.
	Secret Secret `yaml:"secret"`
	// Events lists the event types sent: exact types ("request.created") or a prefix with
	// ".*" ("request.*"). Default [request.*].
	Events []string `yaml:"events"`
	// MaxAttempts is how many deliveries of one event are tried before it is given up (and
	// recorded so, as webhook.failed). Default 12 (about a day with the backoff).
	MaxAttempts int `yaml:"max_attempts"`
	// CARootFile is a PEM bundle trusted for the receiver's certificate. Default: the system
	// roots.
	CARootFile string `yaml:"ca_root_file"`
}

// SigningKey is the webhook's HMAC key: the bytes of a "whsec_" secret, or the secret itself.
func (w *Webhook) SigningKey() []byte {
	s := w.Secret.Reveal()
	if rest, ok := strings.CutPrefix(s, "whsec_"); ok {
		if b, err := base64.StdEncoding.DecodeString(rest); err == nil {
			return b
		}
	}
	return []byte(s)
}

var eventPattern = regexp.MustCompile(`^[a-z_]+(\.[a-z_]+|\.\*)$`)

func (v *validator) notifications(c *Config) {
	seen := map[string]bool{}
	for i := range c.Notifications.Webhooks {
		w := &c.Notifications.Webhooks[i]
		p := fmt.Sprintf("notifications.webhooks[%d]", i)
		switch {
		case !syntax.Name(w.Name):
			v.errorf(p+".name", "is required: lower-case letters, digits, \"_\" and \"-\"")
		case seen[w.Name]:
			v.errorf(p+".name", "%q is used twice", w.Name)
		}
		seen[w.Name] = true
		if w.URL == "" {
			v.errorf(p+".url", "is required: where the events are posted")
		} else {
			v.endpointURL(p+".url", w.URL)
		}
		s := w.Secret.Reveal()
		switch rest, whsec := strings.CutPrefix(s, "whsec_"); {
		case s == "":
			v.errorf(p+".secret", "is required (give it as secret_file): receivers verify every delivery with it")
		case whsec:
			if b, err := base64.StdEncoding.DecodeString(rest); err != nil || len(b) < 24 {
				v.errorf(p+".secret", "a whsec_ secret is base64 of at least 24 random bytes")
			}
		case len(s) < 32:
			v.errorf(p+".secret", "must be at least 32 bytes (or whsec_ and base64)")
		}
		for j, e := range w.Events {
			if e != "*" && !eventPattern.MatchString(e) {
				v.errorf(fmt.Sprintf("%s.events[%d]", p, j), "%s: want an event type such as request.created, or request.*", v.show(fmt.Sprintf("%s.events[%d]", p, j), e))
			}
		}
		if w.MaxAttempts < 1 || w.MaxAttempts > 100 {
			v.errorf(p+".max_attempts", "must be from 1 to 100, got %d", w.MaxAttempts)
		}
		if w.CARootFile != "" {
			v.fileExists(p+".ca_root_file", w.CARootFile)
		}
	}
	if len(c.Notifications.Webhooks) > 0 && !c.Redis.Configured() {
		v.errorf("notifications.webhooks", "deliveries are read from the audit stream in Redis: set redis.address (or redis.sentinel_master)")
	}
}
