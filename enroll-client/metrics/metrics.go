// Package metrics is enroll-client's optional Prometheus listener: the
// device's phase, credential expiry and failures, from the status the
// state machine publishes. No secret and no accessor is ever a label.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
)

var phases = []lifecycle.Phase{
	lifecycle.PhaseUnenrolled, lifecycle.PhaseEnrolling, lifecycle.PhasePending, lifecycle.PhaseWrapped,
	lifecycle.PhaseUnwrapped, lifecycle.PhaseAuthenticated, lifecycle.PhaseRefreshing, lifecycle.PhaseRejoining,
	lifecycle.PhaseRejected,
}

// Metrics are the client's instruments on their own registry.
type Metrics struct {
	Registry       *prometheus.Registry
	phase          *prometheus.GaugeVec
	tokenExpiry    prometheus.Gauge
	secretIDExpiry prometheus.Gauge
	enrollments    prometheus.Gauge
	acknowledged   prometheus.Gauge
	lastRenewal    prometheus.Gauge
	failures       prometheus.Counter
	credentials    *prometheus.GaugeVec
	sequence       prometheus.Gauge
}

// New registers the client's metrics.
func New() *Metrics {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		phase: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "enroll_client_phase", Help: "1 for the phase the device is in, 0 for the others.",
		}, []string{"phase"}),
		tokenExpiry:    g("enroll_client_token_expiry_timestamp_seconds", "When the device's Vault token expires (Unix time; 0: none)."),
		secretIDExpiry: g("enroll_client_secret_id_expiry_timestamp_seconds", "When the device's secret ID expires (Unix time; 0: none or never)."),
		enrollments:    g("enroll_client_enrollments", "Enrollments the device has made, first and recoveries."),
		acknowledged:   g("enroll_client_acknowledged", "1 when the server confirmed the device's current credential."),
		lastRenewal:    g("enroll_client_last_renewal_timestamp_seconds", "When the token was last renewed or obtained (Unix time)."),
		credentials: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "enroll_client_credentials",
			Help: "Credentials the device obtained over its life, by path: bootstrap (logins with the fleet's shared credential), refresh, rejoin.",
		}, []string{"path"}),
		sequence: g("enroll_client_join_sequence", "The device's join-state sequence."),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "enroll_client_step_failures_total", Help: "Failed steps the device retried (network, Vault, server).",
		}),
	}
	m.Registry.MustRegister(m.phase, m.tokenExpiry, m.secretIDExpiry, m.enrollments, m.acknowledged, m.lastRenewal,
		m.failures, m.credentials, m.sequence, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, p := range phases {
		m.phase.WithLabelValues(string(p)).Set(0)
	}
	return m
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.Unix())
}

// WriteStatus updates the metrics from a published status; it implements
// lifecycle.StatusSink.
func (m *Metrics) WriteStatus(s lifecycle.Status) error {
	for _, p := range phases {
		v := 0.0
		if p == s.Phase {
			v = 1
		}
		m.phase.WithLabelValues(string(p)).Set(v)
	}
	m.tokenExpiry.Set(unix(s.TokenExpiresAt))
	m.secretIDExpiry.Set(unix(s.SecretIDExpiresAt))
	m.enrollments.Set(float64(s.Enrollments))
	ack := 0.0
	if s.Acknowledged {
		ack = 1
	}
	m.acknowledged.Set(ack)
	m.lastRenewal.Set(unix(s.LastRenewal))
	m.credentials.WithLabelValues("bootstrap").Set(float64(s.BootstrapLogins))
	m.credentials.WithLabelValues("refresh").Set(float64(s.Refreshes))
	m.credentials.WithLabelValues("rejoin").Set(float64(s.Rejoins))
	m.sequence.Set(float64(s.Sequence))
	if !s.NextRetry.IsZero() && s.LastError != "" && s.Phase != lifecycle.PhaseRejected {
		m.failures.Inc()
	}
	return nil
}

// Handler serves the metrics in Prometheus's format (for the diagnostics
// listener).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// Serve serves /metrics on addr until ctx ends.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
