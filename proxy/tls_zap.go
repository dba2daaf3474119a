package proxy

import (
	"context"
	"log/slog"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog returns a zap logger that writes through h, so certmagic's log lines (issuance,
// renewal, challenge and handshake errors) land in the same structured log, with the same
// level filter, as everything else instead of on a second, unconfigured output.
func zapToSlog(h slog.Handler) *zap.Logger {
	return zap.New(&slogZapCore{h: h})
}

// slogZapCore is a zapcore.Core writing to a slog.Handler. zap fields become slog attributes
// (through zap's map encoder, so every field type zap knows is rendered as zap would); the
// zap logger name, if any, becomes the attribute "logger".
type slogZapCore struct {
	h slog.Handler
}

var _ zapcore.Core = (*slogZapCore)(nil)

func (c *slogZapCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), zapLevelToSlog(l))
}

func (c *slogZapCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogZapCore{h: c.h.WithAttrs(zapFieldsToAttrs(fields))}
}

func (c *slogZapCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogZapCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, zapLevelToSlog(e.Level), e.Message, 0)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(zapFieldsToAttrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogZapCore) Sync() error { return nil }

// zapLevelToSlog maps zap's levels; DPanic, Panic and Fatal are errors to slog (zap itself
// still panics or exits after writing, as the caller asked).
func zapLevelToSlog(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// zapFieldsToAttrs renders fields with zap's own map encoder and returns them sorted by key,
// so the output is stable.
func zapFieldsToAttrs(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	slices.SortFunc(attrs, func(a, b slog.Attr) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return attrs
}
