package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"syscall"

	"github.com/portcullis-proxy/portcullis/admin"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/proxy"
)

// reloadLoop reloads the configuration on SIGHUP and whenever the file changes. A file that
// does not load is rejected with every error logged; the running configuration stays.
func reloadLoop(ctx context.Context, path string, running *config.Config, srv *proxy.Server, level *slog.LevelVar, log *slog.Logger) {
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
		cfg, warnings, err := config.Load(path)
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
		if err := srv.Reload(proxy.SettingsOf(cfg)); err != nil {
			log.Error("configuration rejected; still serving the previous one", slog.String("trigger", trigger), slog.Any("error", err))
			continue
		}
		if keys := restartKeys(running, cfg); len(keys) > 0 {
			log.Warn("configuration reloaded, but some changed settings are read only at start; they take effect at the next restart",
				slog.Any("keys", keys))
		}
		running = cfg
		if api, ok := srv.AdminAPI().(*admin.Server); ok {
			api.SetLifecycle(authz.CompilePolicy(&cfg.Lifecycle))
		}
		level.Set(cfg.Log.SlogLevel)
		applyBrand(cfg)
	}
}

// restartKeys names the settings that differ between a and b but are read once at start: the
// listeners and TLS (bound sockets), and what the serve command wires once (Redis, the OIDC
// client, sessions, caches, the audit stream, the assertion key, the webhooks). Routes, identity headers,
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
		{"tls", a.TLS, b.TLS},
		{"redis", a.Redis, b.Redis},
		{"oidc", oidcSettings(a), oidcSettings(b)},
		{"session", a.Session, b.Session},
		{"authz", a.Authz, b.Authz},
		{"audit", a.Audit, b.Audit},
		{"identity.assertion_key_file", a.Identity.AssertionKeyFile, b.Identity.AssertionKeyFile},
		{"admin_api", a.AdminAPI, b.AdminAPI},
		{"notifications", a.Notifications, b.Notifications},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			keys = append(keys, c.key)
		}
	}
	return keys
}

// oidcSettings is the oidc section without its parsed URLs, which are pointers.
func oidcSettings(c *config.Config) config.OIDC {
	o := c.OIDC
	o.IssuerURL, o.RedirectURI = nil, nil
	return o
}
