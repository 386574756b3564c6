package httpapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// BenchmarkInventoryPages lists a fleet of a million devices
// (BENCH_INVENTORY_DEVICES changes it) through the admin API's service
// (store, filter, the wire form), 100 devices a page, from cursors spread
// over the whole fleet: every device, by state (9% pending, 0.1%
// quarantined), by generation, by ID prefix, and seen in the last day. It
// reports the 95th percentile of a page's time for each, in bbolt and in
// PostgreSQL (skipped without a PostgreSQL server).
func BenchmarkInventoryPages(b *testing.B) {
	inEachStore(b, benchInventoryPages)
}

func benchInventoryPages(b *testing.B, name string, s bulkStore) {
	n := benchCount("BENCH_INVENTORY_DEVICES", 1_000_000)
	now := time.Now().UTC()
	ids := loadInventory(b, s, n, now)
	svc := admin.New(grantingVault{}, servingCore{}, s, nil, slog.New(slog.DiscardHandler))
	filters := []struct {
		name string
		f    admin.ListFilter
	}{
		{"every device", admin.ListFilter{}},
		{"pending", admin.ListFilter{State: inventory.DevicePending}},
		{"quarantined", admin.ListFilter{State: inventory.DeviceQuarantined}},
		{"generation 2", admin.ListFilter{Generation: 2}},
		{"ID prefix", admin.ListFilter{Prefix: "dev-05"}},
		{"seen in a day", admin.ListFilter{SeenSince: now.Add(-24 * time.Hour)}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, fl := range filters {
		b.Run(fl.name, func(b *testing.B) {
			// Cursors where a listing of this filter can be: an ID search
			// pages through the IDs it matches.
			from := ids
			if p := fl.f.Prefix; p != "" {
				lo, _ := slices.BinarySearch(ids, p)
				hi, _ := slices.BinarySearch(ids, p+"\xff")
				from = ids[lo:hi]
			}
			var took []time.Duration
			for b.Loop() {
				f := fl.f
				f.Fleet, f.Limit = "acme", 100
				if i := rng.IntN(len(from) + 1); i < len(from) { // else: the first page
					f.After = from[i]
				}
				start := time.Now()
				list, err := svc.Devices(context.Background(), "bench-token", f)
				took = append(took, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if len(list.Devices) == 0 && list.Next != "" {
					b.Fatal("an empty page with a next cursor")
				}
			}
			slices.Sort(took)
			p95 := took[len(took)*95/100]
			b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
			fmt.Printf("bench: inventory of %d devices, %s, %s: p95 %.1f ms a page of 100 (%d pages)\n",
				n, name, fl.name, float64(p95.Microseconds())/1000, len(took))
		})
	}
}

// loadInventory stores n devices of fleet acme in chunks and returns
// their IDs in order.
func loadInventory(b *testing.B, s bulkStore, n int, now time.Time) []string {
	b.Helper()
	ids := make([]string, n)
	const chunk = 20_000
	devs := make([]inventory.Device, 0, chunk)
	for i := range n {
		state := inventory.DeviceEnrolled
		switch {
		case i%1000 == 7:
			state = inventory.DeviceQuarantined
		case i%100 < 9:
			state = inventory.DevicePending
		}
		ids[i] = fmt.Sprintf("dev-%07d", i)
		devs = append(devs, inventory.Device{Fleet: "acme", ID: ids[i], State: state, Generation: 1 + i%3,
			Enrollments: 1, Facts: wire.Facts{Hostname: "host-" + ids[i], OS: "linux", Arch: "arm64", ClientVersion: "1.4.2"},
			// Heard from over the last twelve days, in no order of ID.
			CreatedAt: now, UpdatedAt: now.Add(-time.Duration((i*7919)%n) * time.Second), EnrolledAt: now})
		if len(devs) == chunk || i == n-1 {
			if err := s.SaveDevices(context.Background(), devs); err != nil {
				b.Fatal(err)
			}
			devs = devs[:0]
		}
	}
	return ids
}
