package e2e

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/config"
)

// healAfterVaultAway runs devices whose tokens live 10 s, stops Vault for
// 30 s and later seals it for 20 s, and returns for each outage how long
// after Vault answered again each device's sink held a working token.
func healAfterVaultAway(t testing.TB, devices int) (afterStop, afterSeal []time.Duration) {
	e := newEnv(t, options{persistent: true, fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL = 10*time.Second, time.Hour
	}})
	var ds []*device
	for i := range devices {
		d := e.newDevice(fmt.Sprintf("heal-%d", i), nil)
		runDaemon(t, d)
		ds = append(ds, d)
	}
	for _, d := range ds {
		st := waitState(t, d, 60*time.Second, "first enrollment", func(s lifecycle.State) bool {
			return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
		})
		e.keep(st.SecretID, st.Token)
	}
	heal := func(what string) []time.Duration {
		back := time.Now()
		out := make([]time.Duration, len(ds))
		left := len(ds)
		for left > 0 {
			if time.Since(back) > 60*time.Second {
				t.Fatalf("%d devices still without a working token 60s after %s", left, what)
			}
			for i, d := range ds {
				if out[i] != 0 {
					continue
				}
				tok := readToken(d.sinkPath)
				e.keep(tok)
				if _, err := e.clientFor(tok).Auth().Token().LookupSelf(); err == nil {
					out[i], left = time.Since(back), left-1
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		return out
	}
	e.pvault.Stop()
	time.Sleep(30 * time.Second)
	if err := e.pvault.Restart(); err != nil {
		t.Fatal(err)
	}
	afterStop = heal("Vault was stopped")
	e.pvault.Seal()
	time.Sleep(20 * time.Second)
	if err := e.pvault.Unseal(); err != nil {
		t.Fatal(err)
	}
	afterSeal = heal("Vault was sealed")
	for _, d := range ds {
		st := d.state(t)
		e.keep(st.Token)
		if st.Enrollments != 1 || st.BootstrapLogins != 1 {
			t.Errorf("%s: %d enrollments, %d bootstrap logins; the outages must cost nothing", d.id, st.Enrollments, st.BootstrapLogins)
		}
	}
	if _, alerts := e.inventory(); len(alerts) != 0 {
		t.Errorf("alerts: %+v", alerts)
	}
	return afterStop, afterSeal
}

// Vault is stopped for 30 s, later sealed for 20 s, while devices' tokens
// (10 s) run out: each device heals by itself once Vault answers — its
// retries capped by its token's schedule, not by a backoff grown during
// the outage — without enrolling again. How fast is measured by
// BenchmarkHealAfterVaultAway.
func TestSinksHealWhenVaultReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a 30 s and a 20 s outage")
	}
	afterStop, afterSeal := healAfterVaultAway(t, 4)
	t.Logf("sinks working again after Vault was stopped: %v; sealed: %v", afterStop, afterSeal)
}

// BenchmarkHealAfterVaultAway reports the slowest device's time from Vault
// answering again to a working token in its sink (the target: 5 s).
func BenchmarkHealAfterVaultAway(b *testing.B) {
	for range b.N {
		afterStop, afterSeal := healAfterVaultAway(b, 8)
		b.ReportMetric(slices.Max(afterStop).Seconds(), "s-heal-after-stop")
		b.ReportMetric(slices.Max(afterSeal).Seconds(), "s-heal-after-seal")
	}
}
