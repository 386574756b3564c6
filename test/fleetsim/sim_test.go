package fleetsim

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/vault"
)

// A device's failed Vault call is counted: the storm's "no Vault failure
// at the devices" rests on it.
func TestCountedVaultCountsFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	c, err := vault.New(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int64
	v := countedVault{Client: c, failures: &failures}
	if _, err := v.Login(context.Background(), "edge-enroll", "r", "s"); err == nil {
		t.Fatal("login against nothing succeeded")
	}
	if _, err := v.UnwrapSecretID(context.Background(), "w"); err == nil {
		t.Fatal("unwrap against nothing succeeded")
	}
	if n := failures.Load(); n != 2 {
		t.Fatalf("%d failures counted, want 2", n)
	}
}

// The steady rate is the middle 80% of finishing times; the overall rate
// counts the whole run, so a slow start shows as a ratio below one.
func TestRatesSeparateTheStartFromTheSteadyState(t *testing.T) {
	var done []time.Duration
	// Ten devices finish in the first 5 s (a slow start), then ninety at
	// ten a second.
	for i := range 10 {
		done = append(done, time.Duration(i)*500*time.Millisecond)
	}
	for i := range 90 {
		done = append(done, 5*time.Second+time.Duration(i+1)*100*time.Millisecond)
	}
	r := Report{Done: done, Elapsed: 14 * time.Second}
	overall, steady := r.Rates()
	if overall < 7.1 || overall > 7.2 {
		t.Errorf("overall %.2f/s, want 100/14", overall)
	}
	// From the 10th (5.1 s) to the 89th (13 s): 79 in 7.9 s.
	if steady < 9.99 || steady > 10.01 {
		t.Errorf("steady %.2f/s, want 10", steady)
	}
	if o, s := (Report{}).Rates(); o != 0 || s != 0 {
		t.Errorf("empty run: %v %v", o, s)
	}
}
