package config

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

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
		if msg := secretProblem(w.Secret.Reveal()); msg != "" {
			v.errorf(p+".secret", "%s", msg)
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

func (v *validator) auditSinks(c *Config) {
	a := &c.Audit
	seen := map[string]bool{}
	for i := range a.Sinks {
		k := &a.Sinks[i]
		p := fmt.Sprintf("audit.sinks[%d]", i)
		switch {
		case !syntax.Name(k.Name):
			v.errorf(p+".name", "is required: lower-case letters, digits, \"_\" and \"-\"")
		case seen[k.Name]:
			v.errorf(p+".name", "%q is used twice", k.Name)
		}
		seen[k.Name] = true
		if !v.oneOf(p+".type", k.Type, SinkFile, SinkStdout, SinkWebhook) {
			continue
		}
		only := func(key string, set bool, types string) {
			if set {
				v.errorf(p+"."+key, "applies to %s sinks only", types)
			}
		}
		file, hook := k.Type == SinkFile, k.Type == SinkWebhook
		only("path", !file && k.Path != "", "file")
		only("max_size_mb", !file && k.MaxSizeMB != 0, "file")
		only("max_files", !file && k.MaxFiles != 0, "file")
		only("fsync", !file && k.Fsync != "", "file")
		only("url", !hook && k.URL != "", "webhook")
		only("secret", !hook && k.Secret.Reveal() != "", "webhook")
		only("ca_root_file", !hook && k.CARootFile != "", "webhook")
		switch k.Type {
		case SinkFile:
			if k.Path == "" {
				v.errorf(p+".path", "is required: the file the events are appended to")
			} else if fi, err := os.Stat(filepath.Dir(k.Path)); err != nil || !fi.IsDir() {
				v.errorf(p+".path", "%s: its directory does not exist", v.show(p+".path", k.Path))
			}
			if k.MaxSizeMB < 1 {
				v.errorf(p+".max_size_mb", "must be at least 1")
			}
			if k.MaxFiles < 1 {
				v.errorf(p+".max_files", "must be at least 1")
			}
			v.oneOf(p+".fsync", k.Fsync, "batch", "off")
		case SinkWebhook:
			if k.URL == "" {
				v.errorf(p+".url", "is required: where the events are posted")
			} else {
				v.endpointURL(p+".url", k.URL)
			}
			if msg := secretProblem(k.Secret.Reveal()); msg != "" {
				v.errorf(p+".secret", "%s", msg)
			}
			if k.CARootFile != "" {
				v.fileExists(p+".ca_root_file", k.CARootFile)
			}
		}
	}
	if a.SpoolDir != "" {
		if fi, err := os.Stat(a.SpoolDir); err != nil || !fi.IsDir() {
			v.errorf("audit.spool_dir", "%s: not a directory", v.show("audit.spool_dir", a.SpoolDir))
		} else if perm := fi.Mode().Perm(); perm&0o077 != 0 || ownedByOther(fi) {
			// The spool holds events in clear: who was refused where, with their address. (A
			// symlink is followed: what is checked is the directory the files go to.)
			what := fmt.Sprintf("is open to other users (mode %04o)", perm)
			if perm&0o077 == 0 {
				what = "belongs to another user"
			}
			v.warnf("audit.spool_dir", "%s %s: the spooled events name people, their addresses and what they were refused; make it private to Portcullis (owned by its user, chmod 700)",
				v.show("audit.spool_dir", a.SpoolDir), what)
		}
		v.oneOf("audit.spool_fsync", a.SpoolFsync, "always", "off")
		if a.SpoolMaxMB < 1 {
			v.errorf("audit.spool_max_mb", "must be at least 1")
		}
	} else {
		if a.SpoolFsync != "" {
			v.errorf("audit.spool_fsync", "is used only with audit.spool_dir")
		}
		if a.SpoolMaxMB != 0 {
			v.errorf("audit.spool_max_mb", "is used only with audit.spool_dir")
		}
	}
	v.oneOf("audit.refusals", a.Refusals, "counted", "off")
	if a.RefusalInterval.D() < time.Second {
		v.errorf("audit.refusal_interval", "must be at least 1s")
	}
	v.nonNegative("audit.retention", a.Retention)
	v.nonNegative("audit.max_sink_lag", a.MaxSinkLag)
	if len(a.Sinks) > 0 && !c.Redis.Configured() {
		v.errorf("audit.sinks", "sinks read the audit stream in Redis: set redis.address (or redis.sentinel_master)")
	}
}

// secretProblem says what is wrong with a webhook signing secret, "" when nothing.
func secretProblem(s string) string {
	switch rest, whsec := strings.CutPrefix(s, "whsec_"); {
	case s == "":
		return "is required (give it as secret_file): receivers verify every delivery with it"
	case whsec:
		if b, err := base64.StdEncoding.DecodeString(rest); err != nil || len(b) < 24 {
			return "a whsec_ secret is base64 of at least 24 random bytes"
		}
	case len(s) < 32:
		return "must be at least 32 bytes (or whsec_ and base64)"
	}
	return ""
}
