package backoff_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/pkg/backoff"
)

func TestCeilingGrowsAndCaps(t *testing.T) {
	one := func() float64 { return 0.999999 } // the top of each range
	b := backoff.New(time.Second, 30*time.Second, one)
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i, w := range want {
		got := b.Next(0)
		if got > w*time.Second || got < w*time.Second*99/100 {
			t.Fatalf("attempt %d: delay %v, want just under %v", i, got, w*time.Second)
		}
	}
	b.Reset()
	if got := b.Next(0); got > time.Second {
		t.Fatalf("after Reset: delay %v, want at most 1s", got)
	}
}

func TestRetryAfterIsAFloor(t *testing.T) {
	b := backoff.New(time.Second, time.Minute, rand.New(rand.NewPCG(1, 2)).Float64)
	for i := range 100 {
		d := b.Next(10 * time.Second)
		if d < 10*time.Second || d > time.Minute+15*time.Second {
			t.Fatalf("delay %v outside [10s, cap + 15s]", d)
		}
		if i < 3 && d >= 15*time.Second {
			t.Fatalf("attempt %d: delay %v, want Retry-After plus jitter while the backoff is small", i, d)
		}
	}
}

// A client shed again and again backs off further than the Retry-After it
// is told each time, so a crowd thins out.
func TestRepeatedRetryAfterGrows(t *testing.T) {
	b := backoff.New(time.Second, 5*time.Minute, rand.New(rand.NewPCG(3, 4)).Float64)
	var late time.Duration
	for i := range 20 {
		d := b.Next(time.Second)
		if i >= 10 {
			late += d
		}
	}
	if avg := late / 10; avg < 30*time.Second {
		t.Fatalf("after 10 sheds the average delay is %v; the crowd would not thin out", avg)
	}
}

// TestCrowdIsSpread: 200 clients that fail at the same instant must not
// retry at the same instants.
func TestCrowdIsSpread(t *testing.T) {
	src := rand.New(rand.NewPCG(42, 7))
	const clients = 200
	for _, retryAfter := range []time.Duration{0, 5 * time.Second} {
		var at []time.Duration
		for range clients {
			b := backoff.New(time.Second, time.Minute, src.Float64)
			var now time.Duration
			for range 4 { // four failed attempts each
				now += b.Next(retryAfter)
			}
			at = append(at, now)
		}
		slices.Sort(at)
		// Count clients landing in each 250 ms slot: no slot may hold more
		// than a tenth of the crowd.
		slots := map[time.Duration]int{}
		for _, a := range at {
			slots[a/(250*time.Millisecond)]++
		}
		for slot, n := range slots {
			if n > clients/10 {
				t.Fatalf("retryAfter=%v: %d of %d clients retry in the slot at %v", retryAfter, n, clients, slot*250*time.Millisecond)
			}
		}
		if spread := at[len(at)-1] - at[0]; spread < 5*time.Second {
			t.Fatalf("retryAfter=%v: retries spread over only %v", retryAfter, spread)
		}
	}
}

// A return time the server gave this client alone is kept to: never
// early, late by at most a twentieth of it and never by more than 200 ms,
// so the order of a schedule survives (a plain Retry-After of 100 s could
// become 150 s).
func TestScheduledSlotIsKept(t *testing.T) {
	one := func() float64 { return 0.999999 }
	for _, c := range []struct{ slot, most time.Duration }{
		{100 * time.Second, 100*time.Second + 200*time.Millisecond},
		{time.Second, time.Second + 50*time.Millisecond},
		{10 * time.Millisecond, 10*time.Millisecond + 500*time.Microsecond},
	} {
		b := backoff.New(time.Second, time.Minute, one)
		if got := b.Scheduled(c.slot); got < c.slot || got > c.most {
			t.Errorf("slot %v: waits %v, want within [%v, %v]", c.slot, got, c.slot, c.most)
		}
	}
	zero := func() float64 { return 0 }
	if got := backoff.New(time.Second, time.Minute, zero).Scheduled(3 * time.Second); got != 3*time.Second {
		t.Errorf("slot 3s with no jitter: %v", got)
	}
}
