package admission

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/pkg/wire"
)

func TestGate(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Run("rate", func(t *testing.T) {
		g := NewGate(Limits{Rate: 2, Burst: 2})
		for range 2 {
			release, err := g.Enter(now, "")
			if err != nil {
				t.Fatalf("within the burst: %v", err)
			}
			release()
		}
		_, err := g.Enter(now, "")
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeRateLimited || we.RetryAfterSeconds != 1 {
			t.Fatalf("over the rate: %v, want rate_limited with Retry-After 1", err)
		}
		if _, err := g.Enter(now.Add(time.Second), ""); err != nil {
			t.Fatalf("a second later: %v", err)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		g := NewGate(Limits{MaxConcurrent: 2})
		r1, _ := g.Enter(now, "")
		r2, _ := g.Enter(now, "")
		if _, err := g.Enter(now, ""); wire.CodeOf(err) != wire.CodeRateLimited {
			t.Fatalf("third in flight: %v", err)
		}
		r1()
		if r3, err := g.Enter(now, ""); err != nil {
			t.Fatalf("after one finished: %v", err)
		} else {
			r3()
		}
		r2()
	})
	t.Run("closed", func(t *testing.T) {
		if _, err := NewGate(Limits{Closed: true}).Enter(now, ""); wire.CodeOf(err) != wire.CodeEnrollmentClosed {
			t.Fatalf("closed window: %v", err)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		g := NewGate(Limits{})
		for range 1000 {
			if _, err := g.Enter(now, ""); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// A ticket charges the rate limit once: at admission, not again when the
// admitted device enrolls; it still needs a free slot and an open window.
func TestShedCrowdIsScheduled(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g := NewGate(Limits{MaxConcurrent: 1})
	if err := g.Admit(now, "first", now.Add(time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	// Ten devices a second got through over the last ten seconds.
	for sec := range paceWindow {
		for range 10 {
			g.finished.add(now.Add(-time.Duration(sec) * time.Second))
		}
	}
	perSecond := map[int]int{}
	lastMillis := 0
	for i := range 100 {
		err := g.Admit(now, fmt.Sprint("t", i), now.Add(time.Minute), "")
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeRateLimited {
			t.Fatalf("device %d: %v, want rate_limited", i, err)
		}
		perSecond[we.RetryAfterSeconds]++
		// Each device's own slot, to the millisecond: a tenth of a second
		// after the one before (ten a second), within its whole second.
		if step := we.RetryAfterMillis - lastMillis; step < 99 || step > 101 {
			t.Fatalf("device %d: slot %d ms, %d ms after the one before, want 100", i, we.RetryAfterMillis, step)
		}
		if we.RetryAfterMillis > we.RetryAfterSeconds*1000 || we.RetryAfterMillis <= (we.RetryAfterSeconds-1)*1000 {
			t.Fatalf("device %d: slot %d ms but Retry-After %d s", i, we.RetryAfterMillis, we.RetryAfterSeconds)
		}
		lastMillis = we.RetryAfterMillis
	}
	for s := 1; s <= 10; s++ {
		if n := perSecond[s]; n < 9 || n > 11 {
			t.Fatalf("%d devices told to come back in %d s, want about 10 (the pace): %v", n, s, perSecond)
		}
	}
	// Later, the schedule starts from now again, and never runs further
	// ahead than maxRetryAfter.
	later := now.Add(time.Hour)
	if err := g.Admit(later, "second", later.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	worst := 0
	for i := range 5000 {
		var we *wire.Error
		errors.As(g.Admit(later, fmt.Sprint("u", i), later.Add(time.Minute), ""), &we)
		worst = max(worst, we.RetryAfterSeconds)
	}
	if worst > int(maxRetryAfter/time.Second)+1 {
		t.Fatalf("a device was told to come back in %d s, beyond the %v bound", worst, maxRetryAfter)
	}
	if worst < int(maxRetryAfter/time.Second)-1 {
		t.Fatalf("5000 devices with nothing getting through were spread over only %d s", worst)
	}
}

// Until devices have been getting through for a whole window, the pace is
// the rate limit: a guess on the high side, not the first seconds' trickle.
func TestShedPaceWithoutHistory(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g := NewGate(Limits{MaxConcurrent: 1, Rate: 50, Burst: 1})
	if err := g.Admit(now, "first", now.Add(time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	for sec := range 3 { // a trickle, just begun
		g.finished.add(now.Add(-time.Duration(sec) * time.Second))
	}
	var last int
	for i := range 200 {
		var we *wire.Error
		errors.As(g.Admit(now, fmt.Sprint("t", i), now.Add(time.Minute), ""), &we)
		last = we.RetryAfterSeconds
	}
	if last != 4 {
		t.Fatalf("the 200th device shed at 50/s comes back in %d s, want 4", last)
	}
}

func TestPaceMeter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var p paceMeter
	if r, settled := p.rate(now); r != 0 || settled {
		t.Fatalf("empty meter: %v, settled %v", r, settled)
	}
	for i := range 9 {
		p.add(now.Add(time.Duration(i) * time.Second / 3)) // 3 a second for 3 s
	}
	if _, settled := p.rate(now.Add(3 * time.Second)); settled {
		t.Fatal("settled after 3 s of a 10 s window")
	}
	for i := 9; i < 30; i++ {
		p.add(now.Add(time.Duration(i) * time.Second / 3)) // and on, for 10 s
	}
	end := now.Add(9 * time.Second)
	if r, settled := p.rate(end); r < 2.5 || r > 3.5 || !settled {
		t.Fatalf("3 a second for 10 s measured as %v, settled %v", r, settled)
	}
	if r, _ := p.rate(end.Add(paceWindow * time.Second)); r != 0 {
		t.Fatalf("a window later the meter still says %v", r)
	}
}

// Take charges a key's token only when the caller keeps it.
func TestKeyedLimiterTake(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	k := NewKeyedLimiter(1, 2, 10)
	for i := range 5 {
		ok, giveBack := k.Take("a", now)
		if !ok {
			t.Fatalf("take %d refused although every token was given back", i)
		}
		giveBack()
	}
	k.Take("a", now)
	k.Take("a", now)
	if ok, _ := k.Take("a", now); ok {
		t.Fatal("a third token kept within the burst of 2")
	}
	if ok, _ := k.Take("b", now); !ok {
		t.Fatal("another key was charged")
	}
}

// A reload opens or closes a fleet's window at once; other limits hold
// state, so Reopen says they need a new gate.
func TestReopenChangesTheWindowLive(t *testing.T) {
	now := time.Now()
	l := Limits{Rate: 10, Burst: 5, MaxConcurrent: 2, Closed: true}
	g := NewGate(l)
	if _, err := g.Enter(now, ""); wire.CodeOf(err) != wire.CodeEnrollmentClosed {
		t.Fatalf("closed window: %v", err)
	}
	l.Closed = false
	if !g.Reopen(l) {
		t.Fatal("opening the window alone needs no new gate")
	}
	release, err := g.Enter(now, "")
	if err != nil {
		t.Fatalf("after reopening: %v", err)
	}
	release()
	l.Closed, l.MaxConcurrent = true, 3
	if g.Reopen(l) {
		t.Fatal("a new max_concurrent was reported as applied")
	}
	if _, err := g.Enter(now, ""); wire.CodeOf(err) != wire.CodeEnrollmentClosed {
		t.Fatalf("closing the window with other changes: %v", err)
	}
}
