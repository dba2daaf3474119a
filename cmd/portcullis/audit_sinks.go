package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// auditStream is the audit stream as the configuration wants it: bounded by audit.max_len,
// or, with sinks, trimmed only past what every sink has (sinkMonitor).
func auditStream(st *store.Store, c config.Audit) *store.Audit {
	a := store.NewAudit(st, int64(c.MaxLen))
	if len(c.Sinks) > 0 {
		return a.Untrimmed()
	}
	return a
}

// sinkMonitorEvery is how often the sinks' progress is read, the metrics updated and the
// delivered events trimmed.
const sinkMonitorEvery = 15 * time.Second

// sinkMonitor watches the audit sinks' consumer groups: it exports how far each is behind,
// answers the readiness check audit_sinks, and trims the stream past what all of them have.
// Every process runs one; trimming twice is harmless.
type sinkMonitor struct {
	aud       *store.Audit
	groups    []string
	retention time.Duration
	maxLag    time.Duration
	log       *slog.Logger
	every     time.Duration

	lag, oldest, pending *prometheus.GaugeVec

	mu     sync.Mutex
	status []store.GroupStatus
	read   time.Time // when status was read
	err    error
}

func newSinkMonitor(aud *store.Audit, groups []string, c config.Audit, log *slog.Logger) *sinkMonitor {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"sink"})
	}
	return &sinkMonitor{aud: aud, groups: groups, retention: c.Retention.D(), maxLag: c.MaxSinkLag.D(), log: log, every: sinkMonitorEvery,
		lag:     gauge("portcullis_audit_sink_lag_events", "Audit events not yet delivered to the sink (-1: unknown), by sink."),
		pending: gauge("portcullis_audit_sink_pending_events", "Audit events delivered to the sink and not yet acknowledged, by sink."),
		oldest:  gauge("portcullis_audit_sink_oldest_undelivered_seconds", "Age of the oldest audit event the sink does not have yet (0: none), by sink."),
	}
}

// collectors are the monitor's metrics, for the proxy's registry.
func (m *sinkMonitor) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lag, m.pending, m.oldest}
}

// run checks at once and then every m.every until ctx ends.
func (m *sinkMonitor) run(ctx context.Context) {
	t := time.NewTicker(m.every)
	defer t.Stop()
	for {
		m.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *sinkMonitor) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := m.aud.Groups(ctx, m.groups...)
	now := time.Now()
	m.mu.Lock()
	m.status, m.err, m.read = st, err, now
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("audit sinks: cannot read their progress", slog.Any("error", err))
		return
	}
	for _, g := range st {
		name := strings.TrimPrefix(g.Group, "sink:")
		m.lag.WithLabelValues(name).Set(float64(g.Lag))
		m.pending.WithLabelValues(name).Set(float64(g.Pending))
		m.oldest.WithLabelValues(name).Set(age(g.Oldest, now).Seconds())
	}
	if at, err := m.aud.TrimDelivered(ctx, m.retention, m.groups...); err != nil {
		m.log.Warn("audit sinks: trimming the delivered events failed", slog.Any("error", err))
	} else if at != "" {
		m.log.Debug("audit stream trimmed before", slog.String("id", at))
	}
}

// age is how old the event with stream id is (its id starts with its append time in ms).
func age(id string, now time.Time) time.Duration {
	ms, _, ok := strings.Cut(id, "-")
	if id == "" || !ok {
		return 0
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return 0
	}
	return max(0, now.Sub(time.UnixMilli(n)))
}

// ready is the readiness check audit_sinks: it fails while a sink's oldest undelivered event
// is older than audit.max_sink_lag, or when the progress could not be read lately.
func (m *sinkMonitor) ready(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.read.IsZero() {
		return nil // not checked yet: the redis check says whether Redis answers
	}
	if m.err != nil {
		return fmt.Errorf("audit sinks: %w", m.err)
	}
	for _, g := range m.status {
		if a := age(g.Oldest, m.read); a > m.maxLag {
			return fmt.Errorf("audit sink %s is %v behind (audit.max_sink_lag %v)", strings.TrimPrefix(g.Group, "sink:"), a.Round(time.Second), m.maxLag)
		}
	}
	return nil
}
