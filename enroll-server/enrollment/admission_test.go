package enrollment

import (
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
			release, err := g.enter(now)
			if err != nil {
				t.Fatalf("within the burst: %v", err)
			}
			release()
		}
		_, err := g.enter(now)
		var we *wire.Error
		if !errors.As(err, &we) || we.Code != wire.CodeRateLimited || we.RetryAfterSeconds != 1 {
			t.Fatalf("over the rate: %v, want rate_limited with Retry-After 1", err)
		}
		if _, err := g.enter(now.Add(time.Second)); err != nil {
			t.Fatalf("a second later: %v", err)
		}
	})
	t.Run("concurrency", func(t *testing.T) {
		g := newGate(Limits{MaxConcurrent: 2})
		r1, _ := g.enter(now)
		r2, _ := g.enter(now)
		if _, err := g.enter(now); code(err) != wire.CodeRateLimited {
			t.Fatalf("third in flight: %v", err)
		}
		r1()
		if r3, err := g.enter(now); err != nil {
			t.Fatalf("after one finished: %v", err)
		} else {
			r3()
		}
		r2()
	})
	t.Run("closed", func(t *testing.T) {
		if _, err := newGate(Limits{Closed: true}).enter(now); code(err) != wire.CodeEnrollmentClosed {
			t.Fatalf("closed window: %v", err)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		g := newGate(Limits{})
		for range 1000 {
			if _, err := g.enter(now); err != nil {
				t.Fatal(err)
			}
		}
	})
}
