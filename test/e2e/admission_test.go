package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// A fleet whose enrollment window is closed tells its devices so; they stop
// with that reason instead of retrying.
func TestClosedFleetStopsDevices(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) { f.Enrollment = "closed" }})
	d := e.newDevice("sensor-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.machine.Run(ctx, true)
	if !errors.Is(err, lifecycle.ErrRejected) || !strings.Contains(err.Error(), "enrollment_closed") {
		t.Fatalf("device of a closed fleet: %v", err)
	}
	if s := d.lastStatus(); !s.NextRetry.IsZero() {
		t.Fatalf("a closed answer scheduled a retry at %v", s.NextRetry)
	}
}

// Over its rate the server sheds load with 429 and Retry-After before any
// Vault call; devices honour it and all enroll.
func TestRateLimitSheds429WithRetryAfter(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) { f.RateLimit, f.RateBurst = 2, 2 }})
	tokens := make([]string, 6)
	for i := range tokens {
		tokens[i] = e.bootstrapLogin()
	}
	var mu sync.Mutex
	shed := 0
	var retryAfter []int
	var wg sync.WaitGroup
	for i, tok := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body := e.post("/v1/enroll", enrollBody(tok, "burst-"+string(rune('a'+i)), "key-burst00000000"+string(rune('a'+i))))
			if status == http.StatusTooManyRequests {
				mu.Lock()
				shed++
				mu.Unlock()
				if errorCode(t, body) != "rate_limited" {
					t.Errorf("429 body: %s", body)
				}
				var b wire.ErrorBody
				if err := json.Unmarshal([]byte(body), &b); err != nil {
					t.Error(err)
				}
				mu.Lock()
				retryAfter = append(retryAfter, b.Error.RetryAfterSeconds)
				mu.Unlock()
				return
			}
			e.keep(jsonField(t, body, "wrapping_token"))
		}()
	}
	wg.Wait()
	if shed == 0 {
		t.Fatal("six requests at once against a rate of 2/s: none was shed")
	}
	// Each is told a time of its own to come back, on a schedule no
	// faster than the rate (two a second) and no slower than one a second.
	slices.Sort(retryAfter)
	for i, ra := range retryAfter {
		if ra < i/2+1 || ra > i+1 {
			t.Fatalf("Retry-After of the shed requests: %v; want them a second or half a second apart", retryAfter)
		}
	}
	if len(retryAfter) >= 3 && retryAfter[0] == retryAfter[len(retryAfter)-1] {
		t.Fatalf("all %d shed requests were told to come back together: %v", len(retryAfter), retryAfter)
	}
	// A shed request never reached Vault: its enrollment token still works.
	// (A token the server looked up would have been revoked.)
	live := 0
	for _, tok := range tokens {
		if _, err := e.root.Auth().Token().Lookup(tok); err == nil {
			live++
		}
	}
	if live != shed {
		t.Fatalf("%d enrollment tokens still live, want the %d of the shed requests", live, shed)
	}
	// Devices arriving together all enroll, spreading out on Retry-After.
	var devices []*device
	for _, id := range []string{"dev-1", "dev-2", "dev-3", "dev-4", "dev-5"} {
		devices = append(devices, e.newDevice(id, nil))
	}
	wg = sync.WaitGroup{}
	for _, d := range devices {
		wg.Add(1)
		go func() { defer wg.Done(); e.enroll(d) }()
	}
	wg.Wait()
}
