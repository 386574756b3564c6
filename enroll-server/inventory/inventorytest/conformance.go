// Package inventorytest is the conformance suite every inventory.Store
// implementation must pass.
package inventorytest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) inventory.Store) {
	tests := map[string]func(*testing.T, inventory.Store){
		"idempotent begin":     testIdempotentBegin,
		"busy device":          testBusyDevice,
		"concurrent begins":    testConcurrentBegins,
		"record and awaiting":  testRecordAndAwaiting,
		"claim awaiting":       testClaimAwaiting,
		"consumed tokens":      testConsumedTokens,
		"token spent by begin": testSpendWithBegin,
		"alerts":               testAlerts,
		"audit chain":          testAuditChain,
		"generation use":       testGenerationUse,
		"devices by fleet":     testDevicesByFleet,
		"devices page":         testDevicesPage,
		"alert acknowledged":   testAcknowledgeAlert,
		"device counts":        testCountDevices,
		"missing records":      testMissing,
		"challenges":           testChallenges,
		"exclusive jobs":       testExclusive,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			fn(t, s)
		})
	}
}

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func enrollment(id, device, key string) inventory.Enrollment {
	return inventory.Enrollment{ID: id, Fleet: "acme", DeviceID: device, IdempotencyKey: key,
		State: inventory.EnrollmentMinting, CreatedAt: t0, UpdatedAt: t0}
}

func testIdempotentBegin(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	got, claimed, err := s.BeginEnrollment(ctx, enrollment("e1", "d1", "k1"), t0.Add(-time.Minute), nil)
	if err != nil || !claimed || got.ID != "e1" {
		t.Fatalf("first begin = %v %v %v", got.ID, claimed, err)
	}
	got, claimed, err = s.BeginEnrollment(ctx, enrollment("e2", "d1", "k1"), t0.Add(-time.Minute), nil)
	if err != nil || claimed || got.ID != "e1" {
		t.Fatalf("same key again = %v %v %v, want e1 unclaimed", got.ID, claimed, err)
	}
	d, err := s.Device(ctx, "acme", "d1")
	if err != nil || d.InFlight != "e1" {
		t.Fatalf("device in flight = %q, %v", d.InFlight, err)
	}
}

func testBusyDevice(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	if _, _, err := s.BeginEnrollment(ctx, enrollment("e1", "d1", "k1"), t0.Add(-time.Minute), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.BeginEnrollment(ctx, enrollment("e2", "d1", "k2"), t0.Add(-time.Minute), nil); !errors.Is(err, inventory.ErrBusy) {
		t.Fatalf("a second key while the first mints = %v, want ErrBusy", err)
	}
	// Once the first is stale, another may take over.
	if _, claimed, err := s.BeginEnrollment(ctx, enrollment("e3", "d1", "k3"), t0.Add(time.Second), nil); err != nil || !claimed {
		t.Fatalf("after the first went stale = %v %v", claimed, err)
	}
}

func testConcurrentBegins(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	claims := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, claimed, err := s.BeginEnrollment(ctx, enrollment("e"+string(rune('a'+i)), "d1", "same-key"), t0.Add(-time.Minute), nil)
			if err != nil {
				t.Error(err)
			}
			if claimed {
				mu.Lock()
				claims++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if claims != 1 {
		t.Fatalf("%d concurrent requests with one key claimed it, want 1", claims)
	}
}

func testRecordAndAwaiting(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	e := enrollment("e1", "d1", "k1")
	e.State = inventory.EnrollmentWrapped
	d := inventory.Device{Fleet: "acme", ID: "d1", State: inventory.DeviceEnrolling}
	if err := s.Record(ctx, e, d, nil); err != nil {
		t.Fatal(err)
	}
	aw, err := s.AwaitingAck(ctx)
	if err != nil || len(aw) != 1 || aw[0].ID != "e1" {
		t.Fatalf("awaiting = %+v %v", aw, err)
	}
	e.State = inventory.EnrollmentAcknowledged
	d.State = inventory.DeviceEnrolled
	if err := s.Record(ctx, e, d, &audit.Record{Time: t0, Actor: "device:acme/d1", Action: "enroll:acknowledged"}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.Audit(ctx); len(recs) != 1 || recs[0].Action != "enroll:acknowledged" || audit.Verify(recs, nil) != nil {
		t.Fatalf("Record's audit record: %+v", recs)
	}
	if aw, _ := s.AwaitingAck(ctx); len(aw) != 0 {
		t.Fatalf("still awaiting after acknowledgement: %+v", aw)
	}
	got, err := s.Enrollment(ctx, "e1")
	if err != nil || got.State != inventory.EnrollmentAcknowledged {
		t.Fatalf("enrollment = %+v %v", got, err)
	}
}

// One decision per enrollment: of many concurrent claims one wins; a
// claim blocks others until it is released, goes stale, or the decision
// is recorded.
func testClaimAwaiting(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	if won, err := s.ClaimAwaiting(ctx, "nothing", t0, t0); err != nil || won {
		t.Fatalf("claim of an unknown enrollment = %v %v", won, err)
	}
	e := enrollment("e1", "d1", "k1")
	e.State = inventory.EnrollmentWrapped
	d := inventory.Device{Fleet: "acme", ID: "d1", State: inventory.DeviceEnrolling}
	if err := s.Record(ctx, e, d, nil); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			won, err := s.ClaimAwaiting(ctx, "e1", t0, t0.Add(-time.Minute))
			if err != nil {
				t.Error(err)
			}
			if won {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent claims won, want 1", wins.Load())
	}
	// Recording it wrapped again (a reissue) keeps the claim.
	if err := s.Record(ctx, e, d, nil); err != nil {
		t.Fatal(err)
	}
	if won, _ := s.ClaimAwaiting(ctx, "e1", t0.Add(time.Second), t0.Add(-time.Minute)); won {
		t.Fatal("a fresh claim was taken over")
	}
	if aw, _ := s.AwaitingAck(ctx); len(aw) != 1 {
		t.Fatalf("a claimed enrollment still awaits: %+v", aw)
	}
	if won, _ := s.ClaimAwaiting(ctx, "e1", t0.Add(2*time.Minute), t0.Add(time.Minute)); !won {
		t.Fatal("a stale claim could not be taken over")
	}
	if err := s.ReleaseAwaiting(ctx, "e1"); err != nil {
		t.Fatal(err)
	}
	if won, _ := s.ClaimAwaiting(ctx, "e1", t0.Add(2*time.Minute), t0); !won {
		t.Fatal("a released enrollment could not be claimed")
	}
	e.State = inventory.EnrollmentAcknowledged
	if err := s.Record(ctx, e, d, nil); err != nil {
		t.Fatal(err)
	}
	if won, _ := s.ClaimAwaiting(ctx, "e1", t0.Add(time.Hour), t0.Add(time.Hour)); won {
		t.Fatal("a decided enrollment was claimed")
	}
}

// A token consumed with a claim: once only, with nothing written for a
// second presentation, and kept consumed when the device is busy or the
// key was claimed before.
func testSpendWithBegin(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	spend := func(h string) *inventory.TokenSpend {
		return &inventory.TokenSpend{Hash: h, Expires: t0.Add(time.Hour), Fleet: "acme", Generation: 2}
	}
	if _, claimed, err := s.BeginEnrollment(ctx, enrollment("e1", "d1", "k1"), t0.Add(-time.Minute), spend("h1")); err != nil || !claimed {
		t.Fatalf("begin with a token = %v %v", claimed, err)
	}
	if seen, err := s.TokenConsumed(ctx, "h1"); err != nil || !seen {
		t.Fatalf("the token spent with the claim is not recorded: %v %v", seen, err)
	}
	if use, _ := s.GenerationUse(ctx, "acme"); len(use) != 1 || use[0].Generation != 2 || use[0].Attempts != 1 {
		t.Fatalf("the claim did not count the token's generation: %+v", use)
	}
	// The same token again, for another device: refused, nothing written.
	if _, _, err := s.BeginEnrollment(ctx, enrollment("e2", "d2", "k2"), t0.Add(-time.Minute), spend("h1")); !errors.Is(err, inventory.ErrConsumed) {
		t.Fatalf("begin with a spent token = %v, want ErrConsumed", err)
	}
	if _, err := s.Device(ctx, "acme", "d2"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("a begin refused for its token wrote device d2: %v", err)
	}
	if err := s.ConsumeToken(ctx, inventory.TokenSpend{Hash: "h1", Expires: t0.Add(time.Hour), Fleet: "acme", Generation: 2}); !errors.Is(err, inventory.ErrConsumed) {
		t.Fatalf("ConsumeToken after the claim spent it = %v, want ErrConsumed", err)
	}
	// Busy: the claim fails, the token is spent all the same.
	if _, _, err := s.BeginEnrollment(ctx, enrollment("e3", "d1", "k3"), t0.Add(-time.Minute), spend("h2")); !errors.Is(err, inventory.ErrBusy) {
		t.Fatalf("begin for a busy device = %v, want ErrBusy", err)
	}
	if seen, _ := s.TokenConsumed(ctx, "h2"); !seen {
		t.Fatal("a token presented for a busy device was not consumed")
	}
	// A retry of a claimed key: the earlier enrollment, the token spent.
	if got, claimed, err := s.BeginEnrollment(ctx, enrollment("e4", "d1", "k1"), t0.Add(-time.Minute), spend("h3")); err != nil || claimed || got.ID != "e1" {
		t.Fatalf("retry with a new token = %v %v %v, want e1 unclaimed", got.ID, claimed, err)
	}
	if seen, _ := s.TokenConsumed(ctx, "h3"); !seen {
		t.Fatal("the token of a retried request was not consumed")
	}
	if use, _ := s.GenerationUse(ctx, "acme"); len(use) != 1 || use[0].Attempts != 3 {
		t.Fatalf("generation use after three spent tokens = %+v, want 3 attempts", use)
	}
}

func testConsumedTokens(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	if err := s.ConsumeToken(ctx, inventory.TokenSpend{Hash: "h1", Expires: t0.Add(time.Minute), Fleet: "acme", Generation: 3}); err != nil {
		t.Fatal(err)
	}
	if use, _ := s.GenerationUse(ctx, "acme"); len(use) != 1 || use[0].Generation != 3 || use[0].Attempts != 1 {
		t.Fatalf("consuming a token did not count its generation: %+v", use)
	}
	if err := s.ConsumeToken(ctx, inventory.TokenSpend{Hash: "h1", Expires: t0.Add(time.Minute), Fleet: "acme", Generation: 3}); !errors.Is(err, inventory.ErrConsumed) {
		t.Fatalf("second consume = %v, want ErrConsumed", err)
	}
	if seen, _ := s.TokenConsumed(ctx, "h1"); !seen {
		t.Fatal("consumed token not remembered")
	}
	if n, err := s.PurgeTokens(ctx, t0.Add(2*time.Minute)); err != nil || n != 1 {
		t.Fatalf("purge = %d %v", n, err)
	}
	if seen, _ := s.TokenConsumed(ctx, "h1"); seen {
		t.Fatal("purged token still remembered")
	}
}

func testAlerts(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if _, err := s.AddAlert(ctx, inventory.Alert{Kind: k, Time: t0}); err != nil {
			t.Fatal(err)
		}
	}
	al, err := s.Alerts(ctx)
	if err != nil || len(al) != 2 || al[0].Kind != "a" || al[1].Seq <= al[0].Seq {
		t.Fatalf("alerts = %+v %v", al, err)
	}
}

func testAuditChain(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	for _, a := range []string{"enroll", "acknowledge", "admin:revoke"} {
		if _, err := s.AppendAudit(ctx, audit.Record{Time: t0, Actor: "server", Action: a}); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.Audit(ctx)
	if err != nil || len(recs) != 3 {
		t.Fatalf("audit = %d records, %v", len(recs), err)
	}
	if err := audit.Verify(recs, nil); err != nil {
		t.Fatalf("a fresh log does not verify: %v", err)
	}
}

func testGenerationUse(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	for i, g := range []int{1, 1, 2} {
		if err := s.ConsumeToken(ctx, inventory.TokenSpend{Hash: fmt.Sprintf("h%d", i), Expires: t0.Add(time.Hour), Fleet: "acme", Generation: g}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.ConsumeToken(ctx, inventory.TokenSpend{Hash: "h-other", Expires: t0.Add(time.Hour), Fleet: "other", Generation: 1})
	use, err := s.GenerationUse(ctx, "acme")
	if err != nil || len(use) != 2 || use[0].Attempts != 2 || use[1].Attempts != 1 {
		t.Fatalf("use = %+v %v", use, err)
	}
}

func testDevicesByFleet(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	for _, d := range []inventory.Device{{Fleet: "acme", ID: "a"}, {Fleet: "acme", ID: "b"}, {Fleet: "acme-2", ID: "c"}} {
		if err := s.SaveDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.Devices(ctx, "acme"); len(got) != 2 {
		t.Fatalf("fleet acme has %d devices, want 2 (a fleet's prefix must not match another's)", len(got))
	}
	if got, _ := s.Devices(ctx, ""); len(got) != 3 {
		t.Fatalf("all fleets: %d devices, want 3", len(got))
	}
}

func testMissing(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	if err := s.SaveDevice(ctx, inventory.Device{Fleet: "acme", ID: "pre", Admission: inventory.AdmissionPreauthorized}); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Device(ctx, "acme", "pre"); err != nil || d.Admission != inventory.AdmissionPreauthorized {
		t.Fatalf("saved device = %+v %v", d, err)
	}
	if _, err := s.Device(ctx, "acme", "nope"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("Device = %v, want ErrNotFound", err)
	}
	if _, err := s.Enrollment(ctx, "nope"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("Enrollment = %v, want ErrNotFound", err)
	}
}

func testChallenges(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	c := inventory.Challenge{ID: "c1", Fleet: "acme", DeviceID: "d1", EKHash: "ab", AKPublic: []byte{1, 2},
		SecretHash: []byte{3}, Nonce: []byte{4}, PCRs: []int{0, 7}, ExpiresAt: t0.Add(time.Minute)}
	if err := s.PutChallenge(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := s.PutChallenge(ctx, inventory.Challenge{ID: "c2", ExpiresAt: t0}); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeChallenge(ctx, "c1")
	if err != nil || got.DeviceID != "d1" || string(got.AKPublic) != "\x01\x02" || len(got.PCRs) != 2 || !got.ExpiresAt.Equal(c.ExpiresAt) {
		t.Fatalf("take = %+v %v", got, err)
	}
	if _, err := s.TakeChallenge(ctx, "c1"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("a challenge was taken twice: %v", err)
	}
	if n, err := s.PurgeChallenges(ctx, t0.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("purge = %d %v", n, err)
	}
	if _, err := s.TakeChallenge(ctx, "c2"); !errors.Is(err, inventory.ErrNotFound) {
		t.Fatalf("a purged challenge was taken: %v", err)
	}
	// Concurrent takes: exactly one wins.
	if err := s.PutChallenge(ctx, inventory.Challenge{ID: "c3", ExpiresAt: t0}); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := s.TakeChallenge(ctx, "c3"); err == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d concurrent takes of one challenge succeeded", wins.Load())
	}
}

func testExclusive(t *testing.T, s inventory.Store) {
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		ran, err := s.Exclusive(ctx, "sweep", func(context.Context) error {
			close(started)
			<-release
			return nil
		})
		if err == nil && !ran {
			err = errors.New("the first holder did not run")
		}
		done <- err
	}()
	<-started
	ran, err := s.Exclusive(ctx, "sweep", func(context.Context) error { return nil })
	if err != nil || ran {
		t.Fatalf("a second run of a running job: ran=%v err=%v", ran, err)
	}
	ran, err = s.Exclusive(ctx, "other", func(context.Context) error { return nil })
	if err != nil || !ran {
		t.Fatalf("another job was kept out: ran=%v err=%v", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := errors.New("job failed")
	ran, err = s.Exclusive(ctx, "sweep", func(context.Context) error { return want })
	if !ran || !errors.Is(err, want) {
		t.Fatalf("after release: ran=%v err=%v", ran, err)
	}
}
