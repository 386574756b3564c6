// Package metrics holds enroll-server's Prometheus metrics.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the server's instruments, registered on their own registry.
type Metrics struct {
	Registry    *prometheus.Registry
	Alerts      *prometheus.CounterVec
	Suppressed  *prometheus.CounterVec
	Enrollments *prometheus.CounterVec
	// EnrollLatency is how long enrollment requests take, by fleet.
	EnrollLatency *prometheus.HistogramVec
	// Admissions counts admission decisions by fleet and outcome
	// (admitted, rate_limited, enrollment_closed).
	Admissions *prometheus.CounterVec
	// VaultRequests is the duration of the server's Vault requests, by
	// status class (2xx, 4xx, 5xx, or error when none came back).
	VaultRequests *prometheus.HistogramVec
	// VaultCalls counts the server's requests to Vault by operation (see
	// vault.Operation) and status class: what each enrollment costs Vault.
	VaultCalls *prometheus.CounterVec
}

// ObserveVault records one Vault request.
func (m *Metrics) ObserveVault(op string, status int, took time.Duration) {
	class := "error"
	if status > 0 {
		class = strconv.Itoa(status/100) + "xx"
	}
	m.VaultRequests.WithLabelValues(class).Observe(took.Seconds())
	m.VaultCalls.WithLabelValues(op, class).Inc()
}

// Enrollment implements enrollment.Metrics.
func (m *Metrics) Enrollment(fleet, path, outcome string, took time.Duration) {
	m.Enrollments.WithLabelValues(fleet, path, outcome).Inc()
	m.EnrollLatency.WithLabelValues(fleet).Observe(took.Seconds())
}

// Admission implements enrollment.Metrics.
func (m *Metrics) Admission(fleet, outcome string) {
	m.Admissions.WithLabelValues(fleet, outcome).Inc()
}

// Alert implements enrollment.Metrics.
func (m *Metrics) Alert(kind string, suppressed bool) {
	if suppressed {
		m.Suppressed.WithLabelValues(kind).Inc()
		return
	}
	m.Alerts.WithLabelValues(kind).Inc()
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// New registers the server's metrics.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_server_security_alerts_total",
			Help: "Secret-bridge security alerts raised, by kind.",
		}, []string{"kind"}),
		Suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_server_security_alerts_suppressed_total",
			Help: "Security alerts not raised, by kind: a repeat for the same device within a minute, or one past the cap of alerts of one kind per fleet a minute (the next raised alert of the kind says how many).",
		}, []string{"kind"}),
		Enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_server_enrollments_total",
			Help: "Enrollment requests by path (bootstrap, attestation, refresh, rejoin) and outcome (wrapped, pending, enrolled: a replay; or the refusal's code).",
		}, []string{"fleet", "path", "outcome"}),
		EnrollLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "enroll_server_enrollment_duration_seconds",
			Help:    "Duration of enrollment requests, whatever their outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"fleet"}),
		Admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_server_admissions_total",
			Help: "Admission decisions before devices touch Vault, by outcome (admitted, rate_limited, enrollment_closed).",
		}, []string{"fleet", "outcome"}),
		VaultRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "enroll_server_vault_request_duration_seconds",
			Help:    "Duration of the server's requests to Vault, by status class (2xx, 4xx, 5xx; error: no answer).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"status"}),
		VaultCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_server_vault_requests_total",
			Help: "The server's requests to Vault, by operation (method and path, names starred) and status class.",
		}, []string{"op", "status"}),
	}
	m.Registry.MustRegister(m.Alerts, m.Suppressed, m.Enrollments, m.EnrollLatency, m.Admissions, m.VaultRequests, m.VaultCalls,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
