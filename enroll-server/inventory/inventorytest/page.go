package inventorytest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// testDevicesPage walks every listing to its end page by page and checks
// it yields exactly the matching devices, each once.
func testDevicesPage(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 25 {
		d := inventory.Device{Fleet: "acme", ID: fmt.Sprintf("sensor-%02d", i), State: inventory.DeviceEnrolled,
			Generation: 1 + i%2, UpdatedAt: t0.Add(time.Duration(i) * time.Minute)}
		if i%5 == 0 {
			d.State = inventory.DevicePending
		}
		if i >= 20 {
			d.ID = fmt.Sprintf("gate-%02d", i)
		}
		if err := s.SaveDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		want[inventory.Cursor(d)] = true
	}
	// Another fleet whose name the first one's is a prefix of.
	if err := s.SaveDevice(ctx, inventory.Device{Fleet: "acme-2", ID: "sensor-99", State: inventory.DeviceEnrolled, Generation: 1}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		q    inventory.DeviceQuery
		want int
	}{
		{"a fleet", inventory.DeviceQuery{Fleet: "acme"}, 25},
		{"every fleet", inventory.DeviceQuery{}, 26},
		{"an ID prefix in a fleet", inventory.DeviceQuery{Fleet: "acme", Prefix: "sensor-1"}, 10},
		{"an ID prefix in every fleet", inventory.DeviceQuery{Prefix: "sensor-"}, 21},
		{"a state", inventory.DeviceQuery{Fleet: "acme", State: inventory.DevicePending}, 5},
		{"a state in every fleet", inventory.DeviceQuery{State: inventory.DeviceEnrolled}, 21},
		{"a state and an ID prefix", inventory.DeviceQuery{Fleet: "acme", State: inventory.DevicePending, Prefix: "sensor-1"}, 2},
		{"a state no device is in", inventory.DeviceQuery{Fleet: "acme", State: inventory.DeviceQuarantined}, 0},
		{"a generation", inventory.DeviceQuery{Fleet: "acme", Generation: 2}, 12},
		{"seen since", inventory.DeviceQuery{Fleet: "acme", SeenSince: t0.Add(15 * time.Minute)}, 10},
		{"nothing matches", inventory.DeviceQuery{Fleet: "acme", Prefix: "nosuch"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { walkPages(t, s, tt.q, tt.want) })
	}
	// A device that changes state is listed under its new state only.
	moved := inventory.Device{Fleet: "acme", ID: "sensor-05", State: inventory.DeviceQuarantined, Generation: 2, UpdatedAt: t0}
	if err := s.SaveDevice(ctx, moved); err != nil {
		t.Fatal(err)
	}
	walkPages(t, s, inventory.DeviceQuery{Fleet: "acme", State: inventory.DevicePending}, 4)
	walkPages(t, s, inventory.DeviceQuery{Fleet: "acme", State: inventory.DeviceQuarantined}, 1)
	walkPages(t, s, inventory.DeviceQuery{Fleet: "acme"}, 25)
}

// walkPages lists q to its end, four devices a page, and checks it yields
// want matching devices, each once.
func walkPages(t *testing.T, s inventory.Store, q inventory.DeviceQuery, want int) {
	t.Helper()
	seen := map[string]bool{}
	page := q
	page.Limit = 4
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatalf("%+v: the listing never ends", q)
		}
		devs, next, err := s.DevicesPage(context.Background(), page)
		if err != nil {
			t.Fatal(err)
		}
		if len(devs) > page.Limit {
			t.Fatalf("page of %d, limit %d", len(devs), page.Limit)
		}
		for _, d := range devs {
			c := inventory.Cursor(d)
			if seen[c] || !q.Match(d) {
				t.Fatalf("%+v: device %s listed twice or not matching", q, c)
			}
			seen[c] = true
		}
		if next == "" {
			break
		}
		page.After = next
	}
	if len(seen) != want {
		t.Fatalf("%+v: listed %d devices, want %d", q, len(seen), want)
	}
}

func testAcknowledgeAlert(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	a, err := s.AddAlert(ctx, inventory.Alert{Kind: inventory.AlertClonedState, Time: t0})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.AcknowledgeAlert(ctx, a.Seq, "admin:alice", t0.Add(time.Hour))
	if err != nil || got.AckedBy != "admin:alice" || !got.AckedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("acknowledged = %+v, %v", got, err)
	}
	// A second acknowledgement keeps the first.
	if got, err = s.AcknowledgeAlert(ctx, a.Seq, "admin:bob", t0.Add(2*time.Hour)); err != nil || got.AckedBy != "admin:alice" {
		t.Fatalf("acknowledged again = %+v, %v", got, err)
	}
	al, err := s.Alerts(ctx)
	if err != nil || len(al) != 1 || al[0].AckedBy != "admin:alice" {
		t.Fatalf("alerts = %+v, %v", al, err)
	}
	if _, err := s.AcknowledgeAlert(ctx, a.Seq+100, "admin:alice", t0); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("unknown alert: %v, want ErrNotFound", err)
	}
}

func testCountDevices(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	devs := []inventory.Device{
		{Fleet: "acme", ID: "a", State: inventory.DeviceEnrolled, Generation: 1, Enrollments: 1, EnrolledAt: t0},
		{Fleet: "acme", ID: "b", State: inventory.DeviceEnrolled, Generation: 1, Enrollments: 2, DeviceKey: "key", EnrolledAt: t0.Add(-2 * time.Hour)},
		{Fleet: "acme", ID: "c", State: inventory.DevicePending},
		{Fleet: "acme-2", ID: "a", State: inventory.DeviceEnrolled, Generation: 1, Enrollments: 1, EnrolledAt: t0.Add(time.Minute)},
	}
	for _, d := range devs {
		if err := s.SaveDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	counts, recent, err := s.CountDevices(ctx, t0.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if recent != 2 {
		t.Errorf("enrolled since: %d, want 2", recent)
	}
	got := map[string]inventory.DeviceCount{}
	for _, c := range counts {
		got[fmt.Sprintf("%s/%s/%d", c.Fleet, c.State, c.Generation)] = c
	}
	want := map[string][2]int{"acme/enrolled/1": {2, 1}, "acme/pending/0": {1, 0}, "acme-2/enrolled/1": {1, 1}}
	if len(got) != len(want) {
		t.Fatalf("counts = %+v", counts)
	}
	for k, w := range want {
		if c := got[k]; c.N != w[0] || c.Keyless != w[1] {
			t.Errorf("%s: %d devices, %d keyless; want %d, %d", k, c.N, c.Keyless, w[0], w[1])
		}
	}
}
