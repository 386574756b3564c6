package enrollment

import (
	"context"
	"errors"
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
			release, err := g.enter(now, false)
			if err != nil {
				t.Fatalf("within the burst: %v", err)
			}
			release()
		}
		_, err := g.enter(now, false)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeRateLimited || we.RetryAfterSeconds != 1 {
			t.Fatalf("over the rate: %v, want rate_limited with Retry-After 1", err)
		}
		if _, err := g.enter(now.Add(time.Second), false); err != nil {
			t.Fatalf("a second later: %v", err)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		g := newGate(Limits{MaxConcurrent: 2})
		r1, _ := g.enter(now, false)
		r2, _ := g.enter(now, false)
		if _, err := g.enter(now, false); code(err) != wire.CodeRateLimited {
			t.Fatalf("third in flight: %v", err)
		}
		r1()
		if r3, err := g.enter(now, false); err != nil {
			t.Fatalf("after one finished: %v", err)
		} else {
			r3()
		}
		r2()
	})
	t.Run("closed", func(t *testing.T) {
		if _, err := newGate(Limits{Closed: true}).enter(now, false); code(err) != wire.CodeEnrollmentClosed {
			t.Fatalf("closed window: %v", err)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		g := newGate(Limits{})
		for range 1000 {
			if _, err := g.enter(now, false); err != nil {
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
	if _, err := g.enter(now, true); err != nil {
		t.Fatalf("an admitted device was charged again: %v", err)
	}
	// One device enrolling at once: a second waits for the first to finish,
	// however much rate there is.
	now = now.Add(10 * time.Second)
	if _, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d3"}); code(err) != wire.CodeRateLimited {
		t.Fatalf("admitted past the limit of devices enrolling at once: %v", err)
	}
	s.finish(a.Ticket, "acme", "d1")
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
