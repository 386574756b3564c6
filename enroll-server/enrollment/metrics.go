package enrollment

import "time"

// Metrics is what the core reports about itself; enroll-server/metrics
// implements it with Prometheus. The core never imports an instrumentation
// library.
type Metrics interface {
	// Enrollment counts a device request by fleet ("" for a fleet not
	// served here), path (bootstrap, attestation, refresh, rejoin) and
	// outcome, with how long it took.
	Enrollment(fleet, path, outcome string, took time.Duration)
	// Admission counts an admission decision by fleet and outcome.
	Admission(fleet, outcome string)
	// Alert counts a security alert raised, or suppressed as a repeat.
	Alert(kind string, suppressed bool)
}

// noMetrics reports nothing.
type noMetrics struct{}

func (noMetrics) Enrollment(string, string, string, time.Duration) {}
func (noMetrics) Admission(string, string)                         {}
func (noMetrics) Alert(string, bool)                               {}
