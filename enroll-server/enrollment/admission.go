package enrollment

import (
	"math"
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
}

func newGate(l Limits) *gate {
	g := &gate{limits: l}
	if l.Rate > 0 {
		g.rate = rate.NewLimiter(rate.Limit(l.Rate), max(l.Burst, 1))
	}
	if l.MaxConcurrent > 0 {
		g.slots = make(chan struct{}, l.MaxConcurrent)
	}
	return g
}

// enter admits a request or says when to come back. The returned function
// releases the request's slot.
func (g *gate) enter(now time.Time) (func(), error) {
	if g.limits.Closed {
		return nil, wire.Errorf(wire.CodeEnrollmentClosed, "enrollment for this fleet is closed; the device will check again later")
	}
	if g.rate != nil {
		r := g.rate.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return nil, &wire.Error{Code: wire.CodeRateLimited, Message: "too many enrollments for this fleet; retry later",
				RetryAfterSeconds: int(math.Ceil(d.Seconds()))}
		}
	}
	if g.slots == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots }, nil
	default:
		return nil, &wire.Error{Code: wire.CodeRateLimited, Message: "too many enrollments in progress for this fleet; retry later",
			RetryAfterSeconds: 1}
	}
}
