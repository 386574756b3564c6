// Package metrics holds enroll-server's Prometheus metrics.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the server's instruments, registered on their own registry.
type Metrics struct {
	Registry    *prometheus.Registry
	Alerts      *prometheus.CounterVec
	Enrollments *prometheus.CounterVec
}

// New registers the server's metrics.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_server_security_alerts_total",
			Help: "Secret-bridge security alerts raised, by kind.",
		}, []string{"kind"}),
		Enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "enroll_server_enrollments_total",
			Help: "Enrollment requests by outcome (wrapped, pending, replayed, refused code).",
		}, []string{"fleet", "outcome"}),
	}
	m.Registry.MustRegister(m.Alerts, m.Enrollments,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}
