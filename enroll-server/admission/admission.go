// Package admission sheds load before it reaches Vault: per fleet, a rate,
// a bound on devices in flight, sessions admitted by ticket (one request at
// a time each), a schedule that spreads a shed crowd over what the fleet
// gets through, and per-key limits. It decides only whether a request may
// go on now; approval of a device is enrollment's business.
package admission

import (
	"math"
	"sync"
	"sync/atomic"
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
	// MaxPerSource bounds the sessions one network address holds; 0 means
	// unlimited.
	MaxPerSource int
	// Closed refuses enrollment while the fleet's window is shut.
	Closed bool
}

// Gate is one fleet's admission.
type Gate struct {
	limits Limits
	closed atomic.Bool   // the window, which a reload may change live
	rate   *rate.Limiter // nil: unlimited
	slots  chan struct{} // nil: unlimited

	// sessions are the devices admitted with a ticket and not yet done
	// (acknowledged, refused, or their ticket expired). At most
	// MaxConcurrent at once, so everything they do to Vault — their own
	// logins and unwraps included — is bounded, and admission slows down
	// by itself when Vault does. A session carries one request at a time:
	// its ticket lets that request skip the limits, never a crowd of them.
	mu       sync.Mutex
	sessions map[string]*session
	// finished counts devices through per second, and next is the last
	// return time handed to a shed device: see retryAfter.
	finished paceMeter
	next     time.Time
	clock    func() time.Time
}

// NewGate returns the gate of a fleet with limits l.
func NewGate(l Limits) *Gate {
	g := &Gate{limits: l, clock: time.Now}
	g.closed.Store(l.Closed)
	if l.Rate > 0 {
		g.rate = rate.NewLimiter(rate.Limit(l.Rate), max(l.Burst, 1))
	}
	if l.MaxConcurrent > 0 {
		g.slots = make(chan struct{}, l.MaxConcurrent)
	}
	g.sessions = map[string]*session{}
	return g
}

// session is one admitted device's place.
type session struct {
	exp    time.Time
	busy   bool   // a request of the session is in progress
	source string // the network address that opened it
}

// admit opens a session for ticket until exp, under the fleet's window,
// its limit of devices enrolling at once, and its rate limit: the check
// before a device touches Vault.
func (g *Gate) Admit(now time.Time, ticket string, exp time.Time, source string) error {
	if g.closed.Load() {
		return closed()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for t, s := range g.sessions {
		if now.After(s.exp) {
			delete(g.sessions, t)
		}
	}
	if g.limits.MaxConcurrent > 0 && len(g.sessions) >= g.limits.MaxConcurrent {
		return busy(g.retryAfter(now))
	}
	if g.limits.MaxPerSource > 0 && source != "" {
		held := 0
		for _, s := range g.sessions {
			if s.source == source {
				held++
			}
		}
		if held >= g.limits.MaxPerSource {
			return &wire.Error{Code: wire.CodeRateLimited, RetryAfterSeconds: 5,
				Message: "too many enrollments in progress from this address; retry later"}
		}
	}
	if !g.charge(now) {
		return overRate(g.retryAfter(now))
	}
	g.sessions[ticket] = &session{exp: exp, source: source}
	return nil
}

// done closes a ticket's session.
func (g *Gate) Done(now time.Time, ticket string) {
	g.mu.Lock()
	if _, ok := g.sessions[ticket]; ok {
		delete(g.sessions, ticket)
		g.finished.add(now)
	}
	g.mu.Unlock()
}

// enter admits a request or says when to come back. A request with the
// ticket of an open session that has no other request in progress holds a
// place already: it is neither charged nor counted again. Any other request
// — no ticket, a ticket whose session closed or expired, or a second
// request on a busy session — goes through the limits like everyone. The
// returned function releases the request's place.
func (g *Gate) Enter(now time.Time, ticket string) (func(), error) {
	if g.closed.Load() {
		return nil, closed()
	}
	if ticket != "" {
		g.mu.Lock()
		s := g.sessions[ticket]
		if s != nil && !now.After(s.exp) && !s.busy {
			s.busy = true
			g.mu.Unlock()
			return func() {
				g.mu.Lock()
				s.busy = false
				g.mu.Unlock()
			}, nil
		}
		g.mu.Unlock()
	}
	return g.Pass(now)
}

// pass applies the rate and concurrency limits but not the enrollment
// window: an enrolled device refreshing or rejoining is not enrolling, and
// a closed window never cuts off devices that already belong to the fleet.
func (g *Gate) Pass(now time.Time) (func(), error) {
	if !g.charge(now) {
		g.mu.Lock()
		defer g.mu.Unlock()
		return nil, overRate(g.retryAfter(now))
	}
	if g.slots == nil {
		return func() {}, nil
	}
	select {
	case g.slots <- struct{}{}:
		return func() {
			<-g.slots
			g.mu.Lock()
			g.finished.add(g.clock())
			g.mu.Unlock()
		}, nil
	default:
		g.mu.Lock()
		defer g.mu.Unlock()
		return nil, busy(g.retryAfter(now))
	}
}

// charge takes one token from the rate limiter, or reports that there is
// none to take now.
func (g *Gate) charge(now time.Time) bool {
	if g.rate == nil {
		return true
	}
	r := g.rate.ReserveN(now, 1)
	if r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return false
	}
	return true
}

// maxRetryAfter bounds how far ahead a shed device is sent: one beyond it
// comes back, is shed again and gets a later time. It also bounds what a
// pace measured too low costs: in a 100,000-device storm the pace seen
// while the server was swamped with handshakes was a few devices a
// second, and with a 30-minute horizon the crowd was scheduled at it and
// the gate stood nearly idle (17.2 enrollments/s over 20 minutes, against
// 31.4/s over 33 minutes with this five-minute one, whose price is the
// crowd beyond it being shed again every five minutes).
const maxRetryAfter = 5 * time.Minute

// retryAfter gives a shed device a time of its own to come back: the times handed out follow one another at the pace devices
// can get through, so that a crowd returns spread out at the rate there
// will be room for it — not all at once, to be shed again, and not long
// after the gate went idle. The pace is the one measured over the last
// paceWindow seconds once that whole window has seen devices through
// (Vault slower than the rate limit shows there); until then it is the
// rate limit. Erring high costs little: a device back too early is only
// shed again, cheaply, while one sent away too long leaves room unused.
// Callers hold g.mu.
func (g *Gate) retryAfter(now time.Time) time.Duration {
	pace, settled := g.finished.rate(now)
	if !settled {
		pace = g.limits.Rate
		if pace == 0 {
			pace = float64(max(g.limits.MaxConcurrent, 1))
		}
	}
	if g.limits.Rate > 0 {
		pace = min(pace, g.limits.Rate)
	}
	pace = max(pace, minPace)
	if g.next.Before(now) {
		g.next = now
	}
	if g.next.Sub(now) < maxRetryAfter {
		g.next = g.next.Add(time.Duration(float64(time.Second) / pace))
	}
	return g.next.Sub(now)
}

// minPace is the slowest schedule: one device a second.
const minPace = 1.0

// paceWindow is how many seconds back the gate measures its pace.
const paceWindow = 10

// paceMeter counts events per second over the last paceWindow seconds.
type paceMeter struct {
	count [paceWindow]int
	sec   [paceWindow]int64 // the second each count is for
}

func (p *paceMeter) add(now time.Time) {
	s := now.Unix()
	i := s % paceWindow
	if p.sec[i] != s {
		p.sec[i], p.count[i] = s, 0
	}
	p.count[i]++
}

// rate is events per second over the window, and whether the window is
// settled: events in its oldest second, so that it measures a steady pace
// rather than the first seconds of one.
func (p *paceMeter) rate(now time.Time) (float64, bool) {
	s := now.Unix()
	total, settled := 0, false
	for i := range paceWindow {
		if age := s - p.sec[i]; age >= 0 && age < paceWindow && p.count[i] > 0 {
			total += p.count[i]
			settled = settled || age == paceWindow-1
		}
	}
	return float64(total) / paceWindow, settled
}

func closed() error {
	return wire.Errorf(wire.CodeEnrollmentClosed, "enrollment for this fleet is closed; the device will check again later")
}

func busy(retryAfter time.Duration) error {
	return scheduled(retryAfter, "too many enrollments in progress for this fleet; retry later")
}

func overRate(retryAfter time.Duration) error {
	return scheduled(retryAfter, "too many enrollments for this fleet; retry later")
}

// scheduled is a refusal with a return time of the device's own: to the
// millisecond for clients that keep to it, in whole seconds (rounded up)
// for the Retry-After header.
func scheduled(retryAfter time.Duration, msg string) error {
	return &wire.Error{Code: wire.CodeRateLimited, Message: msg,
		RetryAfterSeconds: max(1, int(math.Ceil(retryAfter.Seconds()))),
		RetryAfterMillis:  max(1, int(retryAfter.Milliseconds()))}
}

// KeyedLimiter rate-limits each key (a device) on its own, in memory. It
// forgets every key when it grows past maxKeys: a flood of invented keys
// costs it memory, never a refusal of a real device.
type KeyedLimiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	maxKeys int
	m       map[string]*rate.Limiter
}

// NewKeyedLimiter allows each key every per second, burst at once.
func NewKeyedLimiter(every rate.Limit, burst, maxKeys int) *KeyedLimiter {
	return &KeyedLimiter{every: every, burst: burst, maxKeys: maxKeys, m: map[string]*rate.Limiter{}}
}

// Allow reports whether key may go on at now.
func (k *KeyedLimiter) Allow(key string, now time.Time) bool {
	return k.limiter(key).AllowN(now, 1)
}

// Take takes one of key's tokens at now, if one is left, and returns the
// way to give it back (for an attempt that turned out to deserve no
// charge).
func (k *KeyedLimiter) Take(key string, now time.Time) (ok bool, giveBack func()) {
	r := k.limiter(key).ReserveN(now, 1)
	if !r.OK() || r.DelayFrom(now) > 0 {
		r.CancelAt(now)
		return false, func() {}
	}
	return true, func() { r.CancelAt(now) }
}

func (k *KeyedLimiter) limiter(key string) *rate.Limiter {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.m[key]
	if l == nil {
		if len(k.m) >= k.maxKeys {
			clear(k.m)
		}
		l = rate.NewLimiter(k.every, k.burst)
		k.m[key] = l
	}
	return l
}

// Reopen applies new limits to a running gate. The fleet's window changes
// at once; the other limits hold state (sessions, slots, tokens) and change
// only with a new gate, so Reopen reports false when they differ.
func (g *Gate) Reopen(l Limits) bool {
	g.closed.Store(l.Closed)
	l.Closed = g.limits.Closed
	return l == g.limits
}

// SetClock replaces the gate's clock; for tests.
func (g *Gate) SetClock(now func() time.Time) { g.clock = now }
