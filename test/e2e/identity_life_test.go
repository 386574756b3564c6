package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/fleetsim"
)

// daemon is the real enroll-client running as a service would.
type daemon struct {
	t    *testing.T
	d    *deviceDir
	cmd  *exec.Cmd
	out  *logBuffer
	done chan error
}

// startDaemon runs `enroll-client run` on a device directory; env adds to
// its environment (a crash point).
func (e *env) startDaemon(bin string, d *deviceDir, env ...string) *daemon {
	e.t.Helper()
	cmd := exec.Command(bin, "run", "-config", d.config)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + d.dir}, env...)
	out := &logBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	dm := &daemon{t: e.t.(*testing.T), d: d, cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { dm.done <- cmd.Wait() }()
	e.t.Cleanup(func() { dm.stop() })
	return dm
}

// stop ends the daemon as its service manager would, and keeps its log.
func (dm *daemon) stop() {
	if dm.cmd.ProcessState == nil {
		_ = dm.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-dm.done:
		case <-time.After(15 * time.Second):
			_ = dm.cmd.Process.Kill()
			<-dm.done
		}
	}
}

// status is what the daemon last published (zero before it published).
func (d *deviceDir) status() lifecycle.Status {
	s, _ := readStatusFile(d)
	return s
}

// watchSink checks, every 250 ms until stop is called, that the token in
// the device's sink works; it returns how many checks passed and failed.
func (e *env) watchSink(d *deviceDir) (stop func() (ok, failed int)) {
	var mu sync.Mutex
	var ok, failed int
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			tok := readToken(d.sinkPath)
			if tok == "" {
				continue
			}
			e.keep(tok)
			_, err := e.clientFor(tok).Auth().Token().LookupSelf()
			mu.Lock()
			if err != nil {
				failed++
				e.t.Errorf("the token in the sink does not work: %v", err)
			} else {
				ok++
			}
			mu.Unlock()
		}
	}()
	return func() (int, int) {
		close(quit)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return ok, failed
	}
}

// The issue's own scenario, with the real client: a device enrolled with
// generation 1; the fleet rotates and retires generation 1; then three of
// the device's secret IDs run out in a row. The device refreshes each by
// its identity, the token in its sink works the whole time, and it never
// logs in with the bootstrap credential again.
func TestRotateRetireThenSecretIDsExpireWithRealClient(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = 20*time.Second, time.Hour, 12*time.Second
	}})
	bin := clientBinary(t)
	d := e.deviceDir("sensor-life")
	dm := e.startDaemon(bin, d)
	waitFor(t, 30*time.Second, "first enrollment", func() bool { s := d.status(); return s.Acknowledged && s.Phase == lifecycle.PhaseAuthenticated })
	stopWatch := e.watchSink(d)

	var gens wire.Generations
	e.adminJSON("GET", "/v1/admin/fleets/acme/generations", "", &gens)
	if g := gens.Generations[0]; g.Devices != 1 || g.Dependents != 0 {
		t.Fatalf("generation 1 before the rotation: %+v; the enrolled device holds a key and depends on nothing", g)
	}
	var rot wire.Rotated
	e.adminJSON("POST", "/v1/admin/fleets/acme/rotate", "", &rot)
	e.keep(rot.SecretID)
	var ended wire.GenerationEnded
	e.adminJSON("POST", "/v1/admin/fleets/acme/generations/1/retire", "", &ended)
	if ended.State != "retired" || ended.Dependents != 0 {
		t.Fatalf("retire = %+v", ended)
	}
	retired := time.Now()

	waitFor(t, 60*time.Second, "three refreshes after the retire", func() bool {
		s := d.status()
		return s.Refreshes >= 3 && s.Acknowledged && s.Phase == lifecycle.PhaseAuthenticated
	})
	ok, failed := stopWatch()
	dm.stop()
	t.Logf("three secret-ID lives in %v; %d sink checks passed", time.Since(retired).Round(time.Second), ok)
	if ok < 40 || failed != 0 {
		t.Fatalf("sink checks: %d passed, %d failed", ok, failed)
	}
	st, err := d.readState()
	if err != nil {
		t.Fatal(err)
	}
	e.keep(st.Token, st.SecretID)
	if st.BootstrapLogins != 1 || st.Rejoins != 0 || st.Sequence != uint64(1+st.Refreshes) {
		t.Fatalf("bootstrap logins %d, rejoins %d, sequence %d after %d refreshes; want 1, 0, refreshes+1",
			st.BootstrapLogins, st.Rejoins, st.Sequence, st.Refreshes)
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only the device's %s", got, st.SecretIDAccessor)
	}
	metrics := e.metrics()
	if !strings.Contains(metrics, `enroll_server_enrollments_total{fleet="acme",outcome="wrapped",path="bootstrap"} 1`) ||
		!strings.Contains(metrics, `enroll_server_enrollments_total{fleet="acme",outcome="wrapped",path="refresh"}`) {
		t.Errorf("enrollments by path are not counted:\n%s", grepLines(metrics, "enroll_server_enrollments_total"))
	}
	if strings.Contains(dm.out.String(), `"bootstrap credential`) && strings.Contains(dm.out.String(), "refused") {
		t.Error("the client's log shows a refused bootstrap credential")
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A device switched off for longer than its token's max TTL and its secret
// ID's TTL, while its generation was retired, rejoins by its key as soon as
// it starts again: no bootstrap credential, one rejoin.
func TestStoppedPastEveryTTLRejoinsByKey(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = 3*time.Second, 4*time.Second, 6*time.Second
	}})
	d := e.newDevice("sensor-off", nil)
	st := e.enroll(d)
	var rot wire.Rotated
	e.adminJSON("POST", "/v1/admin/fleets/acme/rotate", "", &rot)
	e.keep(rot.SecretID)
	e.adminJSON("POST", "/v1/admin/fleets/acme/generations/1/retire", "", nil)
	time.Sleep(time.Until(st.SecretIDExpiresAt.Add(time.Second)))
	if _, err := e.clientFor(st.Token).Auth().Token().LookupSelf(); err == nil {
		t.Fatal("the token should have expired")
	}

	start := time.Now()
	d.store.Close()
	d2 := e.newDeviceWith("sensor-off", nil, d.statePath, nil) // the same device, started again
	runFor(t, d2, func(s lifecycle.Status) bool { return s.Rejoins == 1 && s.Acknowledged })
	took := time.Since(start)
	after := d2.state(t)
	e.keep(after.Token, after.SecretID)
	if after.BootstrapLogins != 1 || after.Refreshes != 0 || after.Sequence != 2 {
		t.Fatalf("bootstrap logins %d, refreshes %d, sequence %d; want 1, 0, 2", after.BootstrapLogins, after.Refreshes, after.Sequence)
	}
	if len(e.logs.lines("step failed; will retry")) != 0 || took > 5*time.Second {
		t.Fatalf("the rejoin took %v and %d retries; want it at the first attempt", took, len(e.logs.lines("step failed; will retry")))
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 {
		t.Fatalf("%d live secret IDs, want 1", len(got))
	}
}

// runFor runs an in-process device until its status satisfies done.
func runFor(t *testing.T, d *device, done func(lifecycle.Status) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- d.machine.Run(ctx, false) }()
	waitFor(t, 30*time.Second, "device status", func() bool { return done(d.lastStatus()) })
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A copy of an enrolled device's state directory, running beside the
// original: within one refresh interval one copy is refused cloned_state,
// the alert reaches the log, the metric, the webhook and the audit log, and
// both copies stop without retrying. The operator keeps one — here the copy
// refused first, whose join state is the stale one — has the device
// re-admitted and restarts it: it comes back.
func TestClonedStateDirectoryIsCaught(t *testing.T) {
	hook := newWebhookReceiver(t)
	e := newEnv(t, options{
		fleet: func(f *config.Fleet) {
			f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = 30*time.Second, time.Hour, 12*time.Second
		},
		server: func(c *config.File) { c.Alerts.WebhookURL = hook.srv.URL },
	})
	bin := clientBinary(t)
	orig := e.deviceDir("sensor-twin")
	if err := runClient(t, bin, orig, 0); err != nil {
		t.Fatal(err)
	}
	clone := e.deviceDir("sensor-twin")
	raw, err := os.ReadFile(orig.statePath)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, clone.statePath, raw)

	a, b := e.startDaemon(bin, orig), e.startDaemon(bin, clone)
	var caught, other *deviceDir
	for deadline := time.Now().Add(60 * time.Second); caught == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, p := range [][2]*deviceDir{{orig, clone}, {clone, orig}} {
			if p[0].status().Refused == string(wire.CodeClonedState) {
				caught, other = p[0], p[1]
				break
			}
		}
	}
	if caught == nil {
		t.Fatalf("no copy refused cloned_state within 60s:\noriginal %+v\n%s\ncopy %+v\n%s", orig.status(), a.out, clone.status(), b.out)
	}
	t.Logf("caught the copy at %s", caught.dir)

	// The alert, everywhere.
	waitFor(t, 10*time.Second, "the alert at the webhook", func() bool { return hook.has(inventory.AlertClonedState) })
	metrics := e.metrics()
	if !strings.Contains(metrics, `enroll_server_security_alerts_total{kind="cloned_state"} 1`) {
		t.Errorf("no cloned_state alert counted:\n%s", grepLines(metrics, "enroll_server_security_alerts_total"))
	}
	logged := false
	for _, l := range e.logs.lines("security alert") {
		logged = logged || l["kind"] == inventory.AlertClonedState
	}
	if !logged {
		t.Error("no cloned_state alert in the server's log")
	}
	_, auditLog := e.get("/v1/admin/audit", e.vault.RootToken)
	if !strings.Contains(auditLog, `"action":"quarantine"`) || !strings.Contains(auditLog, "cloned state") {
		t.Error("the audit log does not record the lockout")
	}
	var dev wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-twin", "", &dev)
	if dev.State != inventory.DeviceQuarantined {
		t.Fatalf("device state %s, want quarantined", dev.State)
	}
	// Both copies are locked out and stop for good: the other one is
	// refused cloned_state too.
	otherDaemon := a
	if other == clone {
		otherDaemon = b
	}
	for deadline := time.Now().Add(45 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if s := other.status(); s.Phase == lifecycle.PhaseRejected && s.Refused == string(wire.CodeClonedState) {
			break
		}
		if time.Now().After(deadline) {
			otherDaemon.stop()
			t.Fatalf("the other copy was not locked out within 45s: %+v\n%s", other.status(), otherDaemon.out)
		}
	}

	// The operator removes one copy, re-admits the device, and restarts
	// the one kept.
	a.stop()
	b.stop()
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-twin/readmit", e.vault.RootToken, ""); status != 200 {
		t.Fatalf("readmit: %d %s", status, body)
	}
	kept := caught
	real := e.startDaemon(bin, kept)
	waitFor(t, 30*time.Second, "the kept device back", func() bool {
		s := kept.status()
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged && s.Rejoins == 1
	})
	real.stop()
	st, err := kept.readState()
	if err != nil {
		t.Fatal(err)
	}
	e.keep(st.Token, st.SecretID)
	if _, err := e.clientFor(st.Token).Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("the re-admitted device's token does not work: %v", err)
	}
	if st.BootstrapLogins != 1 {
		t.Fatalf("bootstrap logins %d, want 1", st.BootstrapLogins)
	}
}

// The real client is killed with SIGKILL right after each durable
// transition of a refresh and of a rejoin, then started again. Each ends
// with exactly one live secret ID, one credential more than before, and no
// alert: nothing burned.
func TestCrashAfterEveryRefreshAndRejoinTransition(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = time.Hour, time.Hour, 9*time.Second
	}})
	bin := clientBinary(t)
	// Refresh: refreshing, wrapped, unwrapped, authenticated, acknowledged.
	// Rejoin (its token revoked while it was off): refreshing, refused,
	// rejoining, then the same four.
	flows := []struct {
		name        string
		transitions int
		prepare     func(d *deviceDir)
		done        func(s lifecycle.Status) bool
	}{
		{"refresh", 5, func(*deviceDir) {}, func(s lifecycle.Status) bool { return s.Refreshes >= 1 }},
		{"rejoin", 6, func(d *deviceDir) {
			st, err := d.readState()
			if err != nil {
				t.Error(err)
				return
			}
			if err := e.root.Auth().Token().RevokeAccessor(st.TokenAccessor); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Until(st.SecretIDExpiresAt.Add(time.Second)))
		}, func(s lifecycle.Status) bool { return s.Rejoins >= 1 }},
	}
	var wg sync.WaitGroup
	for _, f := range flows {
		for n := 1; n <= f.transitions+1; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("crash-%s-%d", f.name, n)
				d := e.deviceDir(id)
				if err := runClient(t, bin, d, 0); err != nil {
					t.Errorf("%s: first enrollment: %v", id, err)
					return
				}
				f.prepare(d)
				if n <= f.transitions {
					dm := e.startDaemon(bin, d, "ENROLL_CLIENT_TEST_CRASH_AFTER="+strconv.Itoa(n))
					select {
					case err := <-dm.done:
						var exit *exec.ExitError
						if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
							t.Errorf("%s: exited with %v, want SIGKILL\n%s", id, err, dm.out)
							return
						}
					case <-time.After(40 * time.Second):
						t.Errorf("%s: no crash within 40s", id)
						return
					}
				}
				dm := e.startDaemon(bin, d)
				deadline := time.Now().Add(40 * time.Second)
				for !(f.done(d.status()) && d.status().Acknowledged && d.status().Phase == lifecycle.PhaseAuthenticated) {
					if time.Now().After(deadline) {
						t.Errorf("%s: not back within 40s: %+v\n%s", id, d.status(), dm.out)
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
				dm.stop()
				st, err := d.readState()
				if err != nil {
					t.Error(err)
					return
				}
				e.keep(st.Token, st.SecretID)
				if st.BootstrapLogins != 1 || st.Sequence != uint64(1+st.Refreshes+st.Rejoins) {
					t.Errorf("%s: bootstrap logins %d, sequence %d with %d refreshes and %d rejoins",
						id, st.BootstrapLogins, st.Sequence, st.Refreshes, st.Rejoins)
				}
				if f.name == "rejoin" && st.Rejoins != 1 {
					t.Errorf("%s: %d rejoins, want 1", id, st.Rejoins)
				}
				if got := e.deviceSecretIDAccessors(id); len(got) != 1 || got[0] != st.SecretIDAccessor {
					t.Errorf("%s: live secret IDs %v, want only %s", id, got, st.SecretIDAccessor)
				}
			}()
		}
	}
	wg.Wait()
	_, alerts := e.inventory()
	if len(alerts) != 0 {
		t.Fatalf("crashes raised alerts: %+v", alerts)
	}
}

// Someone holding only the fleet's image (its bootstrap bundle) runs the
// real client under an enrolled device's ID: it gets no credential, the
// real device's token and secret ID are untouched, and the attempt raises
// an alert. A report about the request it just made quarantines nobody.
func TestImageHolderCannotTakeOverEnrolledID(t *testing.T) {
	e := newEnv(t)
	bin := clientBinary(t)
	real := e.deviceDir("sensor-victim")
	dm := e.startDaemon(bin, real)
	waitFor(t, 30*time.Second, "the real device enrolled", func() bool { s := real.status(); return s.Acknowledged && s.Phase == lifecycle.PhaseAuthenticated })
	var before wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-victim", "", &before)
	liveBefore := e.deviceSecretIDAccessors("sensor-victim")
	token := readToken(real.sinkPath)
	e.keep(token)

	thief := e.deviceDir("sensor-victim") // the same image, another machine
	tm := e.startDaemon(bin, thief)
	waitFor(t, 30*time.Second, "the thief's request held", func() bool { return thief.status().Phase == lifecycle.PhasePending })
	tm.stop()
	if tok := readToken(thief.sinkPath); tok != "" {
		t.Fatal("the thief holds a token")
	}
	var after wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-victim", "", &after)
	if after.HeldEnrollment == "" || after.State != before.State || after.DeviceKey != before.DeviceKey ||
		after.Sequence != before.Sequence || after.SecretIDAccessor != before.SecretIDAccessor {
		t.Fatalf("the device record changed:\nbefore %+v\nafter  %+v", before, after)
	}
	if _, err := e.clientFor(token).Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("the real device's token stopped working: %v", err)
	}
	if got := e.deviceSecretIDAccessors("sensor-victim"); strings.Join(got, ",") != strings.Join(liveBefore, ",") {
		t.Fatalf("live secret IDs changed: %v → %v", liveBefore, got)
	}
	var alerts struct {
		Alerts []inventory.Alert `json:"alerts"`
	}
	e.adminJSON("GET", "/v1/admin/alerts", "", &alerts)
	claimed := 0
	for _, a := range alerts.Alerts {
		if a.Kind == inventory.AlertIdentityClaimed && a.DeviceID == "sensor-victim" {
			claimed++
		}
	}
	if claimed != 1 {
		t.Fatalf("alerts %+v, want one identity_claimed for sensor-victim", alerts.Alerts)
	}

	// By hand: the thief's own held request (its idempotency key is the
	// thief's to know), then a report about it: nothing to report on.
	thiefState, err := thief.readState()
	if err != nil {
		t.Fatal(err)
	}
	report := fmt.Sprintf(`{"fleet":"acme","device_id":"sensor-victim","enrollment_id":%q,"idempotency_key":%q,"problem":"wrapping_token_invalid"}`,
		thiefState.EnrollmentID, thiefState.IdempotencyKey)
	if status, body := e.post(wire.PathReport, report); status != 403 || errorCode(t, body) != "rejected" {
		t.Fatalf("report about the thief's own request: %d %s, want it refused", status, body)
	}
	// A second request while the first is held is turned away.
	status, body := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-victim", "key-thief000000000001"))
	if status != 409 || jsonField(t, body, "wrapping_token") != "" {
		t.Fatalf("a second request for the enrolled ID: %d %s, want it turned away", status, body)
	}
	// And about the real device's current enrollment, without its key.
	st, _ := readStatusFile(real)
	report = fmt.Sprintf(`{"fleet":"acme","device_id":"sensor-victim","enrollment_id":%q,"idempotency_key":"key-guess00000000001","problem":"wrapping_token_invalid"}`, st.EnrollmentID)
	if status, body := e.post(wire.PathReport, report); status != 403 || errorCode(t, body) != "proof_invalid" {
		t.Fatalf("report about the real enrollment with a guessed key: %d %s", status, body)
	}
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-victim", "", &after)
	if after.State != inventory.DeviceEnrolled {
		t.Fatalf("the real device is %s", after.State)
	}
	if _, err := e.clientFor(token).Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("the real device's token stopped working: %v", err)
	}
	if s := real.status(); s.Phase != lifecycle.PhaseAuthenticated || s.LastError != "" {
		t.Fatalf("the real device: %+v", s)
	}
	dm.stop()
}

func readStatusFile(d *deviceDir) (lifecycle.Status, error) {
	var s lifecycle.Status
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(d.statePath), "status.json"))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(raw, &s)
}

// The fleet over time: 200 devices whose secret IDs live 30 s, while the
// fleet rotates its bootstrap credential and retires the previous
// generation every 20 s, for 3 minutes. No device is lost, none logs in
// with the bootstrap credential after its first enrollment, and at the end
// each has exactly one live secret ID in Vault: its own.
func TestFleetOverTime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for three minutes")
	}
	const devices, life, every = 200, 3 * time.Minute, 20 * time.Second
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = time.Minute, 10*time.Minute, 30*time.Second
	}})
	b := e.bundle
	var rotations, retired int
	next := 1 // the oldest generation not yet retired
	stop := make(chan struct{})
	admin := make(chan error, 1)
	go func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				admin <- nil
				return
			case <-tick.C:
			}
			var rot wire.Rotated
			status, body := e.adminCall("POST", "/v1/admin/fleets/acme/rotate", e.vault.RootToken, "")
			if status != 200 || json.Unmarshal([]byte(body), &rot) != nil {
				admin <- fmt.Errorf("rotate: %d %s", status, body)
				return
			}
			e.keep(rot.SecretID)
			rotations++
			// Retire every generation but the new one; a retire refused
			// because a device is mid-enrollment waits for the next round.
		retire:
			for ; next < rot.Generation; next++ {
				status, body := e.adminCall("POST", fmt.Sprintf("/v1/admin/fleets/acme/generations/%d/retire", next), e.vault.RootToken, "")
				switch {
				case status == 200:
					retired++
				case strings.Contains(body, string(wire.CodeGenerationInUse)):
					break retire
				default:
					admin <- fmt.Errorf("retire %d: %d %s", next, status, body)
					return
				}
			}
		}
	}()
	res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &b, Devices: devices, Prefix: "life",
		LiveFor: life, Timeout: life + 2*time.Minute})
	close(stop)
	if err := <-admin; err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rotations, %d retires; %s", rotations, retired, res)
	if res.Enrolled != devices {
		t.Fatalf("%d of %d devices hold an acknowledged credential at the end", res.Enrolled, devices)
	}
	if rotations < 8 || retired < 6 {
		t.Fatalf("only %d rotations and %d retires", rotations, retired)
	}
	refreshes := 0
	for id, st := range res.States {
		e.keep(st.Token, st.SecretID)
		refreshes += st.Refreshes
		if st.BootstrapLogins != 1 || st.Rejoins != 0 || st.Refreshes < 5 {
			t.Errorf("%s: %d bootstrap logins, %d rejoins, %d refreshes; want 1, 0 and one every 20 s", id, st.BootstrapLogins, st.Rejoins, st.Refreshes)
		}
		if got := e.deviceSecretIDAccessors(id); len(got) != 1 || got[0] != st.SecretIDAccessor {
			t.Errorf("%s: live secret IDs %v, want only its own %s", id, got, st.SecretIDAccessor)
		}
	}
	t.Logf("%d refreshes in all", refreshes)
	_, alerts := e.inventory()
	if len(alerts) != 0 {
		t.Fatalf("alerts: %+v", alerts)
	}
}

// A device locked out while its acknowledgement is on its way (the other
// copy of a cloned state caught meanwhile, or an administrator's revoke)
// hears why it stopped, not that its proof was invalid: the lockout
// destroyed the secret ID its acknowledgement names.
func TestAcknowledgementAfterALockoutSaysWhy(t *testing.T) {
	e := newEnv(t)
	st := e.enroll(e.newDevice("sensor-lk", nil))
	status, body := e.call(identityCall{purpose: identity.PurposeRefresh, device: "sensor-lk", key: deviceKey(t, st), token: st.Token, sequence: st.Sequence})
	if status != 200 {
		t.Fatalf("refresh: %d %s", status, body)
	}
	var resp wire.EnrollResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	unwrapped, err := e.root.Logical().Unwrap(resp.WrappingToken)
	if err != nil {
		t.Fatal(err)
	}
	secretID, _ := unwrapped.Data["secret_id"].(string)
	accessor, _ := unwrapped.Data["secret_id_accessor"].(string)
	login, err := e.clientFor("").Logical().Write("auth/"+resp.LoginMount+"/login", map[string]any{"role_id": resp.RoleID, "secret_id": secretID})
	if err != nil {
		t.Fatal(err)
	}
	e.keep(secretID, login.Auth.ClientToken)

	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-lk/revoke", e.vault.RootToken, `{"reason":"stolen"}`); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	status, body = e.post(wire.PathAck, fmt.Sprintf(`{"fleet":"acme","device_id":"sensor-lk","enrollment_id":%q,"token":%q,"secret_id_accessor":%q}`,
		resp.EnrollmentID, login.Auth.ClientToken, accessor))
	if status == 200 || errorCode(t, body) != string(wire.CodeRejected) || !strings.Contains(body, "revoked") {
		t.Fatalf("acknowledgement after the revoke: %d %s; want the refusal naming the revocation", status, body)
	}
	// Proof is still needed to hear it: a token of no enrollment hears
	// nothing about the device.
	status, body = e.post(wire.PathAck, fmt.Sprintf(`{"fleet":"acme","device_id":"sensor-lk","enrollment_id":%q,"token":%q,"secret_id_accessor":%q}`,
		resp.EnrollmentID, e.bootstrapLogin(), accessor))
	if status == 200 || errorCode(t, body) != string(wire.CodeProofInvalid) {
		t.Fatalf("acknowledgement with a foreign token: %d %s; want proof_invalid", status, body)
	}
}
