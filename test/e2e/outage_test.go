package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/config"
)

// runDaemon runs a device in the background until the test ends.
func runDaemon(t testing.TB, d *device) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.machine.Run(ctx, false) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, lifecycle.ErrRejected) {
			t.Errorf("device %s: %v", d.id, err)
		}
	})
}

// waitState polls the device's state until cond holds.
func waitState(t testing.TB, d *device, timeout time.Duration, what string, cond func(lifecycle.State) bool) lifecycle.State {
	t.Helper()
	var st lifecycle.State
	waitFor(t, timeout, what, func() bool {
		st = d.state(t)
		return cond(st)
	})
	return st
}

// Vault goes away for 20 s, first while a device renews, then while another
// enrolls: both back off, recover on their own and lose nothing.
func TestVaultOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two 20 s outages")
	}
	e := newEnv(t, options{persistent: true, fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL = 6*time.Second, time.Hour
	}})
	renewing := e.newDevice("during-renewal", nil)
	runDaemon(t, renewing)
	before := waitState(t, renewing, 30*time.Second, "first enrollment", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
	})
	e.keep(before.SecretID, before.Token)

	e.pvault.Stop()
	outage := time.Now()
	time.Sleep(20 * time.Second) // the outage itself
	if during := renewing.lastStatus(); during.LastError == "" || during.NextRetry.IsZero() {
		t.Fatal("the device recorded no error while Vault was down")
	}
	if err := e.pvault.Restart(); err != nil {
		t.Fatal(err)
	}
	after := waitState(t, renewing, 90*time.Second, "recovery after the outage", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.TokenIssuedAt.After(outage.Add(20*time.Second))
	})
	e.keep(after.Token)
	if after.SecretID != before.SecretID || after.Enrollments != 1 {
		t.Fatalf("the outage cost the device its secret ID (enrollments %d)", after.Enrollments)
	}
	// The state is saved before the sinks are written: give the sink its
	// moment.
	var sinkErr error
	waitFor(t, 10*time.Second, "the token file to work after recovery", func() bool {
		_, sinkErr = e.clientFor(readToken(renewing.sinkPath)).Auth().Token().LookupSelf()
		return sinkErr == nil
	})

	// Second outage: a device boots for the first time while Vault is down.
	e.pvault.Stop()
	booting := e.newDevice("during-enrollment", nil)
	runDaemon(t, booting)
	time.Sleep(20 * time.Second) // the outage itself
	if st := booting.lastStatus(); st.LastError == "" || st.Phase == lifecycle.PhaseAuthenticated {
		t.Fatalf("while Vault was down the booting device is in %s with last error %q", st.Phase, st.LastError)
	}
	if err := e.pvault.Restart(); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, booting, 120*time.Second, "enrollment after the outage", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
	})
	e.keep(st.SecretID, st.Token)
	if st.Enrollments != 1 {
		t.Fatalf("enrollments = %d, want 1", st.Enrollments)
	}
	if got := e.deviceSecretIDAccessors(booting.id); len(got) != 1 {
		t.Fatalf("%d live secret IDs, want 1", len(got))
	}
}

// The server is down when a device needs a new credential (an administrator
// destroyed its secret IDs and revoked its token by hand): the device backs
// off, and rejoins by its key when the server is back.
func TestServerDownDuringReenrollment(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) { f.DeviceTokenTTL = 3 * time.Second }})
	d := e.newDevice("sensor-a", nil)
	runDaemon(t, d)
	first := waitState(t, d, 30*time.Second, "first enrollment", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
	})
	e.keep(first.SecretID, first.Token)

	e.stop()
	e.revokeDevice("sensor-a", first.TokenAccessor)
	waitFor(t, 30*time.Second, "the device to fail to re-enroll", func() bool {
		s := d.lastStatus()
		return (s.Phase == lifecycle.PhaseRefreshing || s.Phase == lifecycle.PhaseRejoining) && s.LastError != "" && !s.NextRetry.IsZero()
	})
	e.restartServer()
	st := waitState(t, d, 90*time.Second, "re-enrollment once the server is back", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged && s.Rejoins == 1
	})
	if st.BootstrapLogins != 1 {
		t.Fatalf("bootstrap logins %d, want 1", st.BootstrapLogins)
	}
	e.keep(st.SecretID, st.Token)
	if _, err := e.clientFor(readToken(d.sinkPath)).Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("the token file does not work: %v", err)
	}
}

// revokeDevice does what an administrator with root does by hand: destroy
// the device's secret IDs and revoke its token.
func (e *env) revokeDevice(id, tokenAccessor string) {
	e.t.Helper()
	for _, acc := range e.deviceSecretIDAccessors(id) {
		if _, err := e.root.Logical().Write("auth/edge-devices-acme/role/"+id+"/secret-id-accessor/destroy",
			map[string]any{"secret_id_accessor": acc}); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.root.Auth().Token().RevokeAccessor(tokenAccessor); err != nil {
		e.t.Fatal(err)
	}
}
