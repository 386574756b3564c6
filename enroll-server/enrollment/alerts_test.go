package enrollment

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

type countingNotifier struct{ n int }

// alertCounts records what the alerter reports, by kind.
type alertCounts struct {
	noMetrics
	raised, suppressed map[string]int
}

func (c *alertCounts) Alert(kind string, suppressed bool) {
	if suppressed {
		c.suppressed[kind]++
	} else {
		c.raised[kind]++
	}
}

func (c *countingNotifier) Enqueue(any) { c.n++ }

// A burst of one kind of alert for one device is raised once per window;
// the repeats are counted, and the next alert raised says how many there
// were. Another device, or another kind, is raised at once.
func TestAlertsAreRateLimitedPerDeviceAndKind(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	counts := &alertCounts{raised: map[string]int{}, suppressed: map[string]int{}}
	hook := &countingNotifier{}
	a := NewAlerter(store, slog.New(slog.DiscardHandler), counts, hook)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	ctx := context.Background()
	alert := func(kind, device string) {
		a.Raise(ctx, inventory.Alert{Time: now, Kind: kind, Fleet: "acme", DeviceID: device, Detail: "d"})
	}
	for range 20 {
		alert(inventory.AlertHardwareMismatch, "victim")
	}
	alert(inventory.AlertHardwareMismatch, "other")
	alert(inventory.AlertClonedState, "victim")
	if got := counts.raised[inventory.AlertHardwareMismatch]; got != 2 {
		t.Fatalf("hardware_mismatch raised %v times, want 2 (one per device)", got)
	}
	if got := counts.suppressed[inventory.AlertHardwareMismatch]; got != 19 {
		t.Fatalf("suppressed %v, want 19", got)
	}
	if hook.n != 3 {
		t.Fatalf("webhook got %d alerts, want 3", hook.n)
	}
	now = now.Add(AlertWindow)
	alert(inventory.AlertHardwareMismatch, "victim")
	stored, err := store.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 4 || !strings.Contains(stored[len(stored)-1].Detail, "19 more like it") {
		t.Fatalf("stored %d alerts, last %+v; want 4, the last naming the 19 suppressed", len(stored), stored[len(stored)-1])
	}
}

// Alerts naming a different device each (device IDs are the requester's
// to choose) are capped per fleet and kind; the rest are counted, and the
// next alert after the window says how many.
func TestAlertsAreCappedPerFleetAndKind(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	counts := &alertCounts{raised: map[string]int{}, suppressed: map[string]int{}}
	a := NewAlerter(store, slog.New(slog.DiscardHandler), counts, nil)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	ctx := context.Background()
	for i := range 1000 {
		a.Raise(ctx, inventory.Alert{Time: now, Kind: inventory.AlertEnrollmentTokenReuse, Fleet: "acme", DeviceID: fmt.Sprint("flood-", i)})
	}
	a.Raise(ctx, inventory.Alert{Time: now, Kind: inventory.AlertEnrollmentTokenReuse, Fleet: "other", DeviceID: "d"})
	if r, s := counts.raised[inventory.AlertEnrollmentTokenReuse], counts.suppressed[inventory.AlertEnrollmentTokenReuse]; r != MaxAlertsPerKind+1 || s != 1000-MaxAlertsPerKind {
		t.Fatalf("raised %d, suppressed %d; want %d (one for the other fleet) and %d", r, s, MaxAlertsPerKind+1, 1000-MaxAlertsPerKind)
	}
	now = now.Add(AlertWindow)
	a.Raise(ctx, inventory.Alert{Time: now, Kind: inventory.AlertEnrollmentTokenReuse, Fleet: "acme", DeviceID: "next"})
	stored, err := store.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := stored[len(stored)-1]; len(stored) != MaxAlertsPerKind+2 || !strings.Contains(last.Detail, "980 more of this kind") {
		t.Fatalf("stored %d alerts, the last: %+v", len(stored), last)
	}
}
