package enrollment

import (
	"context"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admission"
	"github.com/edge-enroll/enroll/pkg/wire"
)

func TestAdmissionTickets(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(nil, nil, []Fleet{{Name: "acme", Limits: admission.Limits{Rate: 1, Burst: 1, MaxConcurrent: 1}}}, nil, nil)
	s.SetClock(func() time.Time { return now })
	a, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d2"}); wire.CodeOf(err) != wire.CodeRateLimited {
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
	release, err := g.Enter(now, a.Ticket)
	if err != nil {
		t.Fatalf("an admitted device was charged again: %v", err)
	}
	// One request at a time per ticket: a second one at once is charged
	// like any other (and the rate is spent), however valid the ticket.
	if _, err := g.Enter(now, a.Ticket); wire.CodeOf(err) != wire.CodeRateLimited {
		t.Fatalf("a second request on a busy ticket passed: %v", err)
	}
	release()
	if r, err := g.Enter(now, a.Ticket); err != nil {
		t.Fatalf("the ticket's next request, once the first was done: %v", err)
	} else {
		r()
	}
	// One device enrolling at once: a second waits for the first to finish,
	// however much rate there is.
	now = now.Add(10 * time.Second)
	if _, err := s.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d3"}); wire.CodeOf(err) != wire.CodeRateLimited {
		t.Fatalf("admitted past the limit of devices enrolling at once: %v", err)
	}
	s.finish(a.Ticket, "acme", "d1")
	// A ticket whose session closed counts as none: its request is
	// charged, so the next one within the rate is refused.
	r, err := g.Enter(now, a.Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Enter(now, ""); wire.CodeOf(err) != wire.CodeRateLimited {
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
