// Package backoff computes retry delays: capped exponential backoff with full
// jitter, reset on success, and a server's Retry-After honoured and spread.
//
// It only computes delays; callers sleep with their own (injectable) clock,
// so tests never sleep for real.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the retry state of one call path. The zero value is not
// usable; use New.
type Backoff struct {
	base, cap time.Duration
	rand      func() float64
	attempt   int
}

// New returns a backoff starting at base and never exceeding cap. rnd
// returns values in [0, 1); nil uses math/rand/v2.
func New(base, cap time.Duration, rnd func() float64) *Backoff {
	if rnd == nil {
		rnd = rand.Float64
	}
	return &Backoff{base: base, cap: cap, rand: rnd}
}

// Next returns the delay before the next attempt. With full jitter the
// delay is uniform in [0, min(cap, base·2^attempt)), which spreads a crowd
// of clients that failed together. A server's retryAfter is a floor: the
// delay is at least retryAfter plus a jitter of up to half of it, so that
// clients told the same Retry-After do not return in lockstep, and grows
// with the backoff when the same answer keeps coming.
func (b *Backoff) Next(retryAfter time.Duration) time.Duration {
	ceiling := b.cap
	if b.attempt < 62 {
		if c := b.base << b.attempt; c > 0 && c < ceiling {
			ceiling = c
		}
	}
	b.attempt++
	d := time.Duration(b.rand() * float64(ceiling))
	if retryAfter > 0 {
		// Retry-After is a floor, not a schedule: a crowd told "1 s" again
		// and again still spreads out as its backoff grows.
		d = max(d, retryAfter+time.Duration(b.rand()*float64(retryAfter)/2))
	}
	return d
}

// Scheduled returns the delay before the next attempt when the server gave
// this client a return time of its own (a slot in a schedule that already
// spreads the crowd): the slot, plus a jitter of at most a twentieth of it
// and never more than maxSlotJitter, which keeps the order the server
// chose. It counts as an attempt for the backoff that follows.
func (b *Backoff) Scheduled(slot time.Duration) time.Duration {
	b.attempt++
	return slot + time.Duration(b.rand()*float64(min(slot/20, maxSlotJitter)))
}

// maxSlotJitter bounds the jitter added to a scheduled return time.
const maxSlotJitter = 200 * time.Millisecond

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits d or until ctx ends, and reports whether the full wait
// elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
