package enrollment

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/pkg/wire"
)

func code(err error) wire.Code {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}

func TestGate(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	t.Run("rate", func(t *testing.T) {
		g := newGate(Limits{Rate: 2, Burst: 2})
		for range 2 {
			release, err := g.enter(now, "")
			if err != nil {
				t.Fatalf("within the burst: %v", err)
			}
			release()
		}
		_, err := g.enter(now, "")
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeRateLimited || we.RetryAfterSeconds != 1 {
			t.Fatalf("over the rate: %v, want rate_limited with Retry-After 1", err)
		}
		if _, err := g.enter(now.Add(time.Second), ""); err != nil {
			t.Fatalf("a second later: %v", err)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		g := newGate(Limits{MaxConcurrent: 2})
		r1, _ := g.enter(now, "")
		r2, _ := g.enter(now, "")
		if _, err := g.enter(now, ""); code(err) != wire.CodeRateLimited {
			t.Fatalf("third in flight: %v", err)
		}
		r1()
		if r3, err := g.enter(now, ""); err != nil {
			t.Fatalf("after one finished: %v", err)
		} else {
			r3()
		}
		r2()
	})
	t.Run("closed", func(t *testing.T) {
		if _, err := newGate(Limits{Closed: true}).enter(now, ""); code(err) != wire.CodeEnrollmentClosed {
			t.Fatalf("closed window: %v", err)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		g := newGate(Limits{})
		for range 1000 {
			if _, err := g.enter(now, ""); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// A ticket charges the rate limit once: at admission, not again when the
// admitted device enrolls; it still needs a free slot and an open window.
func TestAdmissionTickets(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(nil, nil, []Fleet{{Name: "acme", Limits: Limits{Rate: 1, Burst: 1, MaxConcurrent: 1}}}, nil, nil)
	s.SetClock(func() time.Time { return now })
	a, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d2"}); code(err) != wire.CodeRateLimited {
		t.Fatalf("second admission within the rate: %v", err)
	}
	if !s.admitted(a.Ticket, "acme", "d1") {
		t.Fatal("the ticket is not accepted for its device")
	}
	for name, ok := range map[string]bool{
		"another device": s.admitted(a.Ticket, "acme", "d2"),
		"another fleet":  s.admitted(a.Ticket, "other", "d1"),
		"forged":         s.admitted(a.Ticket[:len(a.Ticket)-2]+"AA", "acme", "d1"),
		"garbage":        s.admitted("!!", "acme", "d1"),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
	g := s.gates["acme"]
	release, err := g.enter(now, a.Ticket)
	if err != nil {
		t.Fatalf("an admitted device was charged again: %v", err)
	}
	// One request at a time per ticket: a second one at once is charged
	// like any other (and the rate is spent), however valid the ticket.
	if _, err := g.enter(now, a.Ticket); code(err) != wire.CodeRateLimited {
		t.Fatalf("a second request on a busy ticket passed: %v", err)
	}
	release()
	if r, err := g.enter(now, a.Ticket); err != nil {
		t.Fatalf("the ticket's next request, once the first was done: %v", err)
	} else {
		r()
	}
	// One device enrolling at once: a second waits for the first to finish,
	// however much rate there is.
	now = now.Add(10 * time.Second)
	if _, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d3"}); code(err) != wire.CodeRateLimited {
		t.Fatalf("admitted past the limit of devices enrolling at once: %v", err)
	}
	s.finish(a.Ticket, "acme", "d1")
	// A ticket whose session closed counts as none: its request is
	// charged, so the next one within the rate is refused.
	r, err := g.enter(now, a.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.enter(now, ""); code(err) != wire.CodeRateLimited {
		t.Fatalf("a closed session's ticket skipped the limits: %v", err)
	}
	r()
	now = now.Add(10 * time.Second)
	b, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d3"})
	if err != nil {
		t.Fatalf("after the first device finished: %v", err)
	}
	// A session also ends when its ticket expires, finished or not.
	now = now.Add(ticketTTL + time.Second)
	if _, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d4"}); err != nil {
		t.Fatalf("an expired session still holds its place: %v", err)
	}
	now = now.Add(-ticketTTL - time.Second)
	if !s.admitted(b.Ticket, "acme", "d3") {
		t.Fatal("the second device's ticket is not accepted")
	}
	other := New(nil, nil, []Fleet{{Name: "acme"}}, nil, nil)
	other.SetClock(func() time.Time { return now })
	if other.admitted(a.Ticket, "acme", "d1") {
		t.Fatal("another server accepted this server's ticket")
	}
	now = now.Add(ticketTTL + time.Second)
	if s.admitted(a.Ticket, "acme", "d1") {
		t.Fatal("an expired ticket is accepted")
	}
}

// A crowd shed at once is told to come back at the pace devices have been
// getting through: each second's worth of returns is about one second of
// that pace, not the whole crowd at once.
func TestShedCrowdIsScheduled(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	g := newGate(Limits{MaxConcurrent: 1})
	if err := g.admit(now, "first", now.Add(time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	// Ten devices a second got through over the last ten seconds.
	for sec := range paceWindow {
		for range 10 {
			g.finished.add(now.Add(-time.Duration(sec) * time.Second))
		}
	}
	perSecond := map[int]int{}
	for i := range 100 {
		err := g.admit(now, fmt.Sprint("t", i), now.Add(time.Minute), "")
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeRateLimited {
			t.Fatalf("device %d: %v, want rate_limited", i, err)
		}
		perSecond[we.RetryAfterSeconds]++
	}
	for s := 1; s <= 10; s++ {
		if n := perSecond[s]; n < 9 || n > 11 {
			t.Fatalf("%d devices told to come back in %d s, want about 10 (the pace): %v", n, s, perSecond)
		}
	}
	// Later, the schedule starts from now again, and never runs further
	// ahead than maxRetryAfter.
	later := now.Add(time.Hour)
	if err := g.admit(later, "second", later.Add(time.Hour), ""); err != nil {
		t.Fatal(err)
	}
	worst := 0
	for i := range 5000 {
		var we *wire.Error
		errors.As(g.admit(later, fmt.Sprint("u", i), later.Add(time.Minute), ""), &we)
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
	g := newGate(Limits{MaxConcurrent: 1, Rate: 50, Burst: 1})
	if err := g.admit(now, "first", now.Add(time.Minute), ""); err != nil {
		t.Fatal(err)
	}
	for sec := range 3 { // a trickle, just begun
		g.finished.add(now.Add(-time.Duration(sec) * time.Second))
	}
	var last int
	for i := range 200 {
		var we *wire.Error
		errors.As(g.admit(now, fmt.Sprint("t", i), now.Add(time.Minute), ""), &we)
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
