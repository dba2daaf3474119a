package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis-proxy/portcullis/admin"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/proxy"
)

// reloadLoop reloads the configuration on SIGHUP and whenever the file changes. A file that
// does not load is rejected with every error logged; the running configuration stays. api,
// when not nil, is the administration API (its listener's and the console's), whose
// lifecycle policy follows the file.
func reloadLoop(ctx context.Context, path string, running *config.Config, srv *proxy.Server, api *admin.Server, level *slog.LevelVar, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	changed, err := config.Watch(ctx, path)
	if err != nil {
		log.Warn("cannot watch the configuration file; reload with SIGHUP", slog.Any("error", err))
	}
	for {
		var trigger string
		select {
		case <-ctx.Done():
			return
		case <-hup:
			trigger = "sighup"
		case _, ok := <-changed:
			if !ok {
				changed = nil
				continue
			}
			trigger = "file_change"
		}
		var cfg *config.Config
		var warnings config.Errors
		if trigger == "file_change" {
			// A file written in place (cat >, a slow copy, an editor saving in chunks) can
			// be caught half-written, and the first half of a route table is valid YAML that
			// grants more than the whole. Apply only what reads the same twice, settle apart.
			data, ok := settledRead(ctx, path, reloadSettle)
			if !ok {
				log.Warn("configuration file still changing; waiting for the next change before reloading", slog.String("file", path))
				continue
			}
			cfg, warnings, err = config.Parse(path, data)
		} else {
			cfg, warnings, err = config.Load(path)
		}
		if err != nil {
			srv.ReloadFailed()
			attrs := []any{slog.String("trigger", trigger), slog.String("file", path)}
			log.Error("configuration rejected; still serving the previous one", attrs...)
			for _, line := range configErrorLines(err) {
				log.Error("configuration error", slog.String("error", line))
			}
			continue
		}
		for _, w := range warnings {
			log.Warn("configuration warning", slog.String("warning", w.Error()))
		}
		for _, w := range weakenedRoutes(running.Routes, cfg.Routes) {
			log.Warn("configuration reload weakens a route", slog.String("route", w.route), slog.Any("changes", w.why))
		}
		if err := srv.Reload(proxy.SettingsOf(cfg)); err != nil {
			log.Error("configuration rejected; still serving the previous one", slog.String("trigger", trigger), slog.Any("error", err))
			continue
		}
		if keys := restartKeys(running, cfg); len(keys) > 0 {
			log.Warn("configuration reloaded, but some changed settings are read only at start; they take effect at the next restart",
				slog.Any("keys", keys))
		}
		running = cfg
		if api != nil {
			api.SetLifecycle(authz.CompilePolicy(&cfg.Lifecycle))
		}
		level.Set(cfg.Log.SlogLevel)
		applyBrand(cfg)
	}
}

// reloadSettle is how long a changed file must read the same before it is applied.
const reloadSettle = time.Second

// settledRead reads path until two reads reloadSettle apart find the same content, size and
// modification time, for at most about 20 tries; false when it never settled or cannot be
// read (Load reports why, at the next change).
func settledRead(ctx context.Context, path string, settle time.Duration) ([]byte, bool) {
	read := func() ([]byte, os.FileInfo, error) {
		st, err := os.Stat(path)
		if err != nil {
			return nil, nil, err
		}
		b, err := os.ReadFile(path)
		return b, st, err
	}
	prev, prevSt, err := read()
	for range 20 {
		if err != nil {
			return nil, false
		}
		t := time.NewTimer(settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
		cur, st, rerr := read()
		if rerr == nil && bytes.Equal(prev, cur) && st.Size() == prevSt.Size() && st.ModTime().Equal(prevSt.ModTime()) {
			return cur, true
		}
		prev, prevSt, err = cur, st, rerr
	}
	return nil, false
}

// weakening is a route a reload makes admit more, and how.
type weakening struct {
	route string
	why   []string
}

// weakenedRoutes compares two route tables by route name and lists every route the new one
// admits more to: gone (a broader route may now match its requests), public, no longer
// org-scoped or requiring anything, more roles, purposes or kinds accepted (any one suffices),
// no verified domain required, no step-up or a laxer one, method overrides allowed, the
// recovery guard gone.
func weakenedRoutes(old, cur []config.Route) []weakening {
	byName := map[string]*config.Route{}
	for i := range cur {
		byName[cur[i].Name] = &cur[i]
	}
	var out []weakening
	for i := range old {
		o := &old[i]
		n, ok := byName[o.Name]
		var why []string
		add := func(s string) { why = append(why, s) }
		switch {
		case !ok:
			add("removed: its requests may now match a broader route")
		default:
			if n.Public && !o.Public {
				add("now public")
			}
			if (o.Org != nil || o.Require != nil) && n.Org == nil && n.Require == nil {
				add("no longer org-scoped")
			}
			if o.Require != nil {
				nr := n.Require
				if nr == nil {
					nr = &config.Require{}
				}
				if grows(o.Require.Roles, nr.Roles) {
					add("roles required: " + strings.Join(o.Require.Roles, ",") + " → " + strings.Join(nr.Roles, ","))
				}
				if grows(o.Require.Purposes, nr.Purposes) {
					add("purposes required: " + strings.Join(o.Require.Purposes, ",") + " → " + strings.Join(nr.Purposes, ","))
				}
				if grows(o.Require.Kinds, nr.Kinds) {
					add("kinds admitted: " + strings.Join(o.Require.Kinds, ",") + " → " + strings.Join(nr.Kinds, ","))
				}
				if on(o.Require.VerifiedEmailDomain) && !on(nr.VerifiedEmailDomain) {
					add("verified email domain no longer required")
				}
			}
			switch {
			case o.StepUp != nil && n.StepUp == nil:
				add("step-up removed")
			case o.StepUp != nil && n.StepUp.MaxAge > o.StepUp.MaxAge:
				add("step-up max_age longer")
			}
			if n.MethodOverride == config.MethodOverrideAllow && o.MethodOverride != config.MethodOverrideAllow {
				add("method overrides allowed")
			}
			if o.RecoveryGuard != nil && n.RecoveryGuard == nil {
				add("recovery guard removed")
			}
			if len(o.Methods) > 0 && (len(n.Methods) == 0 || grows(o.Methods, n.Methods)) {
				add("more methods accepted")
			}
		}
		if len(why) > 0 {
			out = append(out, weakening{o.Name, why})
		}
	}
	return out
}

// grows reports whether an any-of list admits more after the change: a value added, or the
// list emptied (empty requires nothing).
func grows(before, after []string) bool {
	if len(before) == 0 {
		return false // nothing was required
	}
	if len(after) == 0 {
		return true
	}
	for _, a := range after {
		if !slices.Contains(before, a) {
			return true
		}
	}
	return false
}

// on reads a default-true boolean.
func on(b *bool) bool { return b == nil || *b }

// restartKeys names the settings that differ between a and b but are read once at start: the
// listeners and TLS (bound sockets), and what the serve command wires once (Redis, the OIDC
// client, sessions, caches, the audit stream, the assertion key, the webhooks, the tracer,
// the client token issuers).
// Routes, identity headers,
// pages and the log level apply at reload.
func restartKeys(a, b *config.Config) []string {
	var keys []string
	for _, c := range []struct {
		key  string
		x, y any
	}{
		{"server.listen", a.Server.Listen, b.Server.Listen},
		{"server.redirect_listen", a.Server.RedirectListen, b.Server.RedirectListen},
		{"server.metrics_listen", a.Server.MetricsListen, b.Server.MetricsListen},
		{"forward_auth.listen", forwardAuthListen(a), forwardAuthListen(b)},
		{"forward_auth.envoy_listen", forwardAuthEnvoyListen(a), forwardAuthEnvoyListen(b)},
		{"tls", a.TLS, b.TLS},
		{"redis", a.Redis, b.Redis},
		{"oidc", oidcSettings(a), oidcSettings(b)},
		{"session", a.Session, b.Session},
		{"authz", a.Authz, b.Authz},
		{"audit", a.Audit, b.Audit},
		{"identity.assertion_key_file", a.Identity.AssertionKeyFile, b.Identity.AssertionKeyFile},
		{"identity.assertion_alg", a.Identity.AssertionAlg, b.Identity.AssertionAlg},
		{"identity.assertion_secret", a.Identity.AssertionSecret, b.Identity.AssertionSecret},
		{"identity.assertion_lifetime", a.Identity.AssertionLifetime, b.Identity.AssertionLifetime},
		{"admin_api", a.AdminAPI, b.AdminAPI},
		{"notifications", a.Notifications, b.Notifications},
		{"tracing", a.Tracing, b.Tracing},
		{"client_jwt", a.ClientJWT, b.ClientJWT},
		{"console", a.Console, b.Console},
		{"scim", a.SCIM, b.SCIM},
		{"ssf", a.SSF, b.SSF},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			keys = append(keys, c.key)
		}
	}
	return keys
}

// forwardAuthListen is the forward-auth listener bound at start ("" for none); enabling or
// disabling forward-auth on the main listener applies at reload.
func forwardAuthListen(c *config.Config) string {
	if !c.ForwardAuth.Enabled {
		return ""
	}
	return c.ForwardAuth.Listen
}

// forwardAuthEnvoyListen is the ext_authz listener bound at start ("" for none).
func forwardAuthEnvoyListen(c *config.Config) string {
	if !c.ForwardAuth.Enabled {
		return ""
	}
	return c.ForwardAuth.EnvoyListen
}

// oidcSettings is the oidc section without its parsed URLs, which are pointers.
func oidcSettings(c *config.Config) config.OIDC {
	o := c.OIDC
	o.IssuerURL, o.RedirectURI = nil, nil
	return o
}
