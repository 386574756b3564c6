package enrollment

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// Notifier delivers alerts to an operator (a webhook).
type Notifier interface {
	Enqueue(v any)
}

// Alerter raises secret-bridge security alerts: a log line marked
// security=true, a counter, a stored alert, an audit record and, when
// configured, a webhook.
type Alerter struct {
	store   inventory.Store
	log     *slog.Logger
	counter *prometheus.CounterVec // may be nil
	notify  Notifier               // may be nil
}

// NewAlerter builds an Alerter; counter and notify are optional.
func NewAlerter(s inventory.Store, log *slog.Logger, counter *prometheus.CounterVec, notify Notifier) *Alerter {
	return &Alerter{store: s, log: log, counter: counter, notify: notify}
}

// Raise records and reports an alert. The log line comes first, so that a
// failing store cannot hide an alert.
func (a *Alerter) Raise(ctx context.Context, al inventory.Alert) {
	a.log.LogAttrs(ctx, slog.LevelWarn, "security alert",
		slog.Bool("security", true),
		slog.String("kind", al.Kind),
		slog.String("fleet", al.Fleet),
		slog.String("device_id", al.DeviceID),
		slog.String("enrollment_id", al.EnrollmentID),
		slog.String("detail", al.Detail))
	if a.counter != nil {
		a.counter.WithLabelValues(al.Kind).Inc()
	}
	stored, err := a.store.AddAlert(ctx, al)
	if err != nil {
		a.log.Error("store security alert", "err", err, "kind", al.Kind, "security", true)
		stored = al
	}
	if _, err := a.store.AppendAudit(ctx, audit.Record{Time: al.Time, Actor: "server", Action: "alert:" + al.Kind,
		Fleet: al.Fleet, DeviceID: al.DeviceID, Detail: al.Detail}); err != nil {
		a.log.Error("audit security alert", "err", err, "security", true)
	}
	if a.notify != nil {
		a.notify.Enqueue(stored)
	}
}
