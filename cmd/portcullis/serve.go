package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/proxy"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "portcullis.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, warnings, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	level := new(slog.LevelVar)
	level.Set(cfg.Log.SlogLevel)
	log := newLogger(stdout, cfg.Log.Format, level)
	for _, w := range warnings {
		log.Warn("configuration warning", slog.String("warning", w.Error()))
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	opts := proxy.Options{Logger: log, Version: version, ReadyChecks: map[string]proxy.ReadyCheck{}}
	if cfg.Redis.Address != "" {
		st, err := store.New(cfg.Redis)
		if err != nil {
			log.Error("redis", slog.Any("error", err))
			return 1
		}
		defer st.Close()
		opts.ReadyChecks["redis"] = st.Ping
		if cfg.OIDC.Issuer != "" {
			// Sign-in and sessions (config requires redis when oidc is set).
			sm, err := session.NewManager(cfg.OIDC, cfg.Session, cfg.Server.PublicBase, st, session.Options{Logger: log})
			if err != nil {
				log.Error("oidc", slog.Any("error", err))
				return 1
			}
			defer sm.Close()
			opts.Gate, opts.Endpoints = sm, sm.Endpoints()
		}
	}
	srv, err := proxy.New(cfg, opts)
	if err != nil {
		log.Error("start", slog.Any("error", err))
		return 1
	}
	go reloadLoop(ctx, *path, srv, level, log)

	if err := srv.Run(ctx, nil); err != nil {
		log.Error("serve", slog.Any("error", err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// reloadLoop reloads the configuration on SIGHUP and whenever the file changes. A file that
// does not load is rejected with every error logged; the running configuration stays.
func reloadLoop(ctx context.Context, path string, srv *proxy.Server, level *slog.LevelVar, log *slog.Logger) {
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
		if err := srv.Reload(cfg); err != nil {
			log.Error("configuration rejected; still serving the previous one", slog.String("trigger", trigger), slog.Any("error", err))
			continue
		}
		level.Set(cfg.Log.SlogLevel)
	}
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
