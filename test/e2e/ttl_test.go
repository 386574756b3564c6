package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/config"
)

// With short TTLs the device renews, logs in again at its token's max TTL,
// refreshes its secret ID before it expires — and the token file always
// holds a token that works. The bootstrap credential is used once.
func TestShortTTLsRenewReloginReenroll(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about a minute")
	}
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = 5*time.Second, 15*time.Second, 30*time.Second
	}})
	d := e.newDevice("sensor-ttl", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 65*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.machine.Run(ctx, false) }()

	// Check the token file every 250 ms, from the first token on.
	var mu sync.Mutex
	var checks, failures int
	var seen = map[string]bool{}
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			tok := readToken(d.sinkPath)
			if tok == "" {
				continue
			}
			_, err := e.clientFor(tok).Auth().Token().LookupSelf()
			mu.Lock()
			checks++
			seen[tok] = true
			if err != nil && ctx.Err() == nil {
				failures++
				t.Errorf("the token file holds a token that does not work: %v", err)
			}
			mu.Unlock()
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("device stopped: %v", err)
	}
	<-pollDone
	for tok := range seen {
		e.keep(tok)
	}
	st := d.state(t)
	e.keep(st.SecretID)
	renewals := len(e.logs.lines("token renewed"))
	logins := len(e.logs.lines("logged in"))
	enrollments := len(e.logs.lines("received wrapped secret ID"))
	t.Logf("%d checks of the token file, %d distinct tokens, %d renewals, %d logins, %d enrollments",
		checks, len(seen), renewals, logins, enrollments)
	if checks < 100 || failures > 0 {
		t.Fatalf("%d checks, %d failures", checks, failures)
	}
	if renewals < 3 || logins < 3 || enrollments < 2 || st.Refreshes < 1 || st.BootstrapLogins != 1 || st.Enrollments != 1 {
		t.Fatalf("want renewals, several logins and refreshes; got %d renewals, %d logins, %d credentials (state: %d refreshes, %d bootstrap logins, %d enrollments)",
			renewals, logins, enrollments, st.Refreshes, st.BootstrapLogins, st.Enrollments)
	}
	if got := e.deviceSecretIDAccessors("sensor-ttl"); len(got) > 1 {
		t.Fatalf("%d live secret IDs, want at most 1", len(got))
	}
}
