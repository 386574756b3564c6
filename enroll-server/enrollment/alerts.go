package enrollment

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
//
// The same kind of alert for the same device is raised at most once per
// AlertWindow: the repeats are counted (a metric, and the next alert raised
// says how many), so that a burst of requests cannot flood the store, the
// audit log and the webhook.
type Alerter struct {
	store   AlertStore
	log     *slog.Logger
	metrics Metrics
	notify  Notifier // may be nil
	now     func() time.Time

	mu     sync.Mutex
	recent map[alertKey]*alertWindow
	// fleetWide caps each kind of alert per fleet, whatever device each
	// names: device IDs are the requester's to choose.
	fleetWide map[alertKey]*alertWindow
}

// AlertWindow is how long an alert of one kind for one device silences its
// repeats.
const AlertWindow = time.Minute

// MaxAlertsPerKind is how many alerts of one kind one fleet raises per
// AlertWindow, across devices; the rest are counted as suppressed.
const MaxAlertsPerKind = 20

// maxAlertKeys bounds the memory of recent alerts; past it the oldest are
// forgotten (their repeats are raised again).
const maxAlertKeys = 10000

type alertKey struct{ kind, fleet, device string }

type alertWindow struct {
	since      time.Time
	raised     int
	suppressed int
}

// NewAlerter builds an Alerter; counter, suppressed and notify are
// optional.
// AlertStore keeps alerts, and their audit records.
type AlertStore interface {
	AddAlert(ctx context.Context, a inventory.Alert) (inventory.Alert, error)
	AppendAudit(ctx context.Context, r audit.Record) (audit.Record, error)
}

func NewAlerter(s AlertStore, log *slog.Logger, m Metrics, notify Notifier) *Alerter {
	if m == nil {
		m = noMetrics{}
	}
	return &Alerter{store: s, log: log, metrics: m, notify: notify, now: time.Now,
		recent: map[alertKey]*alertWindow{}, fleetWide: map[alertKey]*alertWindow{}}
}

// shouldRaise decides whether an alert is raised or counted as a repeat; a raised
// alert's detail says how many repeats were silenced before it.
func (a *Alerter) shouldRaise(al *inventory.Alert) bool {
	now := a.now()
	k := alertKey{al.Kind, al.Fleet, al.DeviceID}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w := a.recent[k]; w != nil {
		if now.Sub(w.since) < AlertWindow {
			w.suppressed++
			return false
		}
		if w.suppressed > 0 {
			al.Detail += fmt.Sprintf(" (%d more like it were suppressed before this one)", w.suppressed)
		}
	}
	fk := alertKey{kind: al.Kind, fleet: al.Fleet}
	fw := a.fleetWide[fk]
	if fw == nil || now.Sub(fw.since) >= AlertWindow {
		if fw != nil && fw.suppressed > 0 {
			al.Detail += fmt.Sprintf(" (%d more of this kind in this fleet, for any device, were suppressed before this one: over %d a minute)", fw.suppressed, MaxAlertsPerKind)
		}
		fw = &alertWindow{since: now}
		a.fleetWide[fk] = fw
	}
	if fw.raised >= MaxAlertsPerKind {
		fw.suppressed++
		return false
	}
	fw.raised++
	if len(a.recent) >= maxAlertKeys {
		for key, w := range a.recent {
			if now.Sub(w.since) >= AlertWindow {
				delete(a.recent, key)
			}
		}
		if len(a.recent) >= maxAlertKeys {
			clear(a.recent)
		}
	}
	a.recent[k] = &alertWindow{since: now}
	return true
}

// Raise records and reports an alert. The log line comes first, so that a
// failing store cannot hide an alert.
func (a *Alerter) Raise(ctx context.Context, al inventory.Alert) {
	if !a.shouldRaise(&al) {
		a.metrics.Alert(al.Kind, true)
		a.log.Debug("security alert repeated", "kind", al.Kind, "fleet", al.Fleet, "device_id", al.DeviceID)
		return
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "security alert",
		slog.Bool("security", true),
		slog.String("kind", al.Kind),
		slog.String("fleet", al.Fleet),
		slog.String("device_id", al.DeviceID),
		slog.String("enrollment_id", al.EnrollmentID),
		slog.String("detail", al.Detail))
	a.metrics.Alert(al.Kind, false)
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
