package enrollment

import (
	"context"
	"log/slog"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// Alerter raises secret-bridge security alerts: a log line marked
// security=true and a durable record in the store.
type Alerter struct {
	store inventory.Store
	log   *slog.Logger
}

// NewAlerter builds an Alerter.
func NewAlerter(s inventory.Store, log *slog.Logger) *Alerter {
	return &Alerter{store: s, log: log}
}

// Raise records and logs an alert. A failure to store it is logged, never
// hidden: the log line is written first.
func (a *Alerter) Raise(ctx context.Context, al inventory.Alert) {
	a.log.LogAttrs(ctx, slog.LevelWarn, "security alert",
		slog.Bool("security", true),
		slog.String("kind", al.Kind),
		slog.String("fleet", al.Fleet),
		slog.String("device_id", al.DeviceID),
		slog.String("enrollment_id", al.EnrollmentID),
		slog.String("detail", al.Detail))
	if _, err := a.store.AddAlert(ctx, al); err != nil {
		a.log.Error("store security alert", "err", err, "kind", al.Kind, "security", true)
	}
}
