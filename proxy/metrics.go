package proxy

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// Route labels for requests that never reached a configured route.
const (
	labelNoRoute = "_none"
	labelOwn     = "_portcullis"
)

// metrics holds the proxy's Prometheus collectors in a registry of its own, so tests and
// several servers in one process never collide on a global registry.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	upstream  *prometheus.CounterVec
	rejected  *prometheus.CounterVec
	denied    *prometheus.CounterVec
	recovery  *prometheus.CounterVec
	reloads   *prometheus.CounterVec
	reloadTS  prometheus.Gauge
	codeNames [600]string
}

// counter is a counter vector with the given labels.
func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func newMetrics(version string, extra ...prometheus.Collector) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = counter("portcullis_requests_total", "Requests handled, by route and HTTP status.", "route", "code")
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "portcullis_request_duration_seconds",
		Help:    "Time from request received to response written, by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"})
	m.upstream = counter("portcullis_upstream_errors_total", "Requests that failed on the way to or from the upstream, by route and reason.", "route", "reason")
	m.rejected = counter("portcullis_rejected_requests_total", "Requests the proxy refused before routing, by reason code.", "reason")
	m.denied = counter("portcullis_access_denied_total", "Requests refused by the access decision, by route and reason code.", "route", "reason")
	m.recovery = counter("portcullis_recovery_total", "Account-recovery requests inspected by a recovery guard, by route, result (allowed, blocked, rejected) and reason code.", "route", "result", "reason")
	m.reloads = counter("portcullis_config_reloads_total", "Configuration reload attempts, by result (success, failure).", "result")
	m.reloadTS = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portcullis_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last configuration successfully loaded.",
	})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "portcullis_build_info",
		Help:        "Always 1; the version label says which build is running.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.reg.MustRegister(m.requests, m.duration, m.upstream, m.rejected, m.denied, m.recovery, m.reloads, m.reloadTS, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(extra...)
	// The request-level codes are known in advance: their series exist from the start, so a
	// dashboard sees zeros rather than nothing (package reason's table is the one list).
	for _, c := range reason.InArea(reason.AreaRequest) {
		m.rejected.WithLabelValues(string(c))
	}
	for i := range m.codeNames {
		m.codeNames[i] = strconv.Itoa(i)
	}
	return m
}

// code returns the label for a status without allocating.
func (m *metrics) code(status int) string {
	if status >= 0 && status < len(m.codeNames) {
		return m.codeNames[status]
	}
	return strconv.Itoa(status)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
