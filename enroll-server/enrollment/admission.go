package enrollment

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// Limits protect Vault from a fleet's crowd: Vault is the bottleneck by
// design, so the server sheds load with 429 and Retry-After before it
// spends a single Vault call.
type Limits struct {
	// Rate is enrollment requests per second; 0 means unlimited.
	Rate  float64
	Burst int
	// MaxConcurrent bounds requests in flight; 0 means unlimited.
	MaxConcurrent int
	// Closed refuses enrollment while the fleet's window is shut.
	Closed bool
}

type gate struct {
	limits Limits
	rate   *rate.Limiter // nil: unlimited
	slots  chan struct{} // nil: unlimited

	// sessions are the devices admitted with a ticket and not yet done
	// (acknowledged, refused, or their ticket expired): ticket → expiry.
	// At most MaxConcurrent at once, so everything they do to Vault —
	// their own logins and unwraps included — is bounded, and admission
	// slows down by itself when Vault does.
	mu       sync.Mutex
	sessions map[string]time.Time
}

func newGate(l Limits) *gate {
	g := &gate{limits: l}
	if l.Rate > 0 {
		g.rate = rate.NewLimiter(rate.Limit(l.Rate), max(l.Burst, 1))
	}
	if l.MaxConcurrent > 0 {
		g.slots = make(chan struct{}, l.MaxConcurrent)
	}
	g.sessions = map[string]time.Time{}
	return g
}

// admit opens a session for ticket until exp, under the fleet's window,
// its limit of devices enrolling at once, and its rate limit: the check
// before a device touches Vault.
func (g *gate) admit(now time.Time, ticket string, exp time.Time) error {
	if g.limits.Closed {
		return closed()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for t, e := range g.sessions {
		if now.After(e) {
			delete(g.sessions, t)
		}
	}
	if g.limits.MaxConcurrent > 0 && len(g.sessions) >= g.limits.MaxConcurrent {
		return busy()
	}
	if err := g.charge(now); err != nil {
		return err
	}
	g.sessions[ticket] = exp
	return nil
}

// done closes a ticket's session.
func (g *gate) done(ticket string) {
	g.mu.Lock()
	delete(g.sessions, ticket)
	g.mu.Unlock()
}

// enter admits a request or says when to come back. An admitted request
// (one with a valid ticket) holds a session already: it is neither charged
// nor counted again. The returned function releases the request's slot.
func (g *gate) enter(now time.Time, admitted bool) (func(), error) {
	if admitted {
		if g.limits.Closed {
			return nil, closed()
		}
		return func() {}, nil
	}
	if err := g.charge(now); err != nil {
		return nil, err
	}
	if g.slots == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	default:
		return nil, busy()
	}
}

func closed() error {
	return wire.Errorf(wire.CodeEnrollmentClosed, "enrollment for this fleet is closed; the device will check again later")
}

func busy() error {
	return &wire.Error{Code: wire.CodeRateLimited, Message: "too many enrollments in progress for this fleet; retry later",
		RetryAfterSeconds: 1}
}

// charge applies the window and takes one token from the rate limiter.
func (g *gate) charge(now time.Time) error {
	if g.limits.Closed {
		return closed()
	}
	if g.rate != nil {
		r := g.rate.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return &wire.Error{Code: wire.CodeRateLimited, Message: "too many enrollments for this fleet; retry later",
				RetryAfterSeconds: int(math.Ceil(d.Seconds()))}
		}
	}
	return nil
}
