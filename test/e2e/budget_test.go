package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/health"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/sink"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// An administrator destroys a device's secret ID: the device enrolls again
// within its fleet's recovery budget; past the budget it stops, quarantined,
// and `enroll-client status` explains why.
func TestSecretIDDestroyedRecoveryBudget(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		one := 1
		f.DeviceTokenTTL, f.RecoveryBudget = 3*time.Second, &one
	}})
	dd := e.deviceDir("sensor-a")
	// The device runs on dd's state file, as its daemon would (status
	// tells a running daemon by the lock it holds on that file), and
	// publishes its status where the real CLI reads it.
	d := e.newDeviceWith("sensor-a", nil, dd.statePath, nil)
	statusFile := sink.StatusFile{Path: filepath.Join(filepath.Dir(dd.statePath), "status.json")}
	d.machine = rebuildWithStatus(t, e, d, statusFile)
	runDaemon(t, d)

	first := waitState(t, d, 30*time.Second, "first enrollment", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
	})
	e.keep(first.SecretID, first.Token)

	e.revokeDevice("sensor-a", first.TokenAccessor)
	second := waitState(t, d, 30*time.Second, "re-enrollment within the budget", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged && s.Enrollments == 2
	})
	e.keep(second.SecretID, second.Token)

	e.revokeDevice("sensor-a", second.TokenAccessor)
	stopped := waitState(t, d, 30*time.Second, "the device to stop past its budget", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseRejected
	})
	if !strings.Contains(stopped.Reason, "device_quarantined") || !strings.Contains(stopped.Reason, "recovery budget") {
		t.Fatalf("reason = %q, want it to name the quarantine and the budget", stopped.Reason)
	}
	// The status file follows the state a moment later: wait for it, as a
	// person running status would.
	var out string
	var code int
	waitFor(t, 10*time.Second, "status to show the stop", func() bool {
		c, o, errOut := e.cli("status", "-config", dd.config)
		if c != health.ExitReady && c != health.ExitNotReady {
			t.Fatalf("status: exit %d: %s%s", c, o, errOut)
		}
		code, out = c, o
		return strings.Contains(out, "rejected")
	})
	if code != health.ExitNotReady {
		t.Errorf("status of a running, quarantined device: exit %d, want %d", code, health.ExitNotReady)
	}
	for _, want := range []string{"rejected", "recovery budget", "enrollctl readmit", "daemon:                running", "ready:                 no: quarantined: device_quarantined"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output does not say %q:\n%s", want, out)
		}
	}
	devs, alerts := e.inventory()
	if len(devs) != 1 || devs[0].State != inventory.DeviceQuarantined {
		t.Fatalf("inventory: %+v", devs)
	}
	if len(alerts) != 1 || alerts[0].Kind != inventory.AlertRecoveryBudget {
		t.Fatalf("alerts: %+v", alerts)
	}
	if got := e.deviceSecretIDAccessors("sensor-a"); len(got) != 0 {
		t.Fatalf("a quarantined device has %d live secret IDs", len(got))
	}
}

// rebuildWithStatus rebuilds a device's machine so that it also publishes
// its status to a file.
func rebuildWithStatus(t *testing.T, e *env, d *device, f sink.StatusFile) *lifecycle.Machine {
	t.Helper()
	b := e.bundle
	return lifecycle.New(lifecycle.Config{
		Bundle: &b, DeviceID: d.id, Vault: mustClientVault(t, b), Store: d.store, Log: jsonLogger(e.logs),
		Server: serverClient(t, b), Sinks: []lifecycle.Sink{sink.File{Path: d.sinkPath}},
		Status: lifecycle.StatusFunc(func(s lifecycle.Status) error { return f.WriteStatus(s) }),
	})
}

// A power cut leaves the state file damaged: the client refuses to run,
// says how to recover, and never starts over silently. reset-state moves
// the file aside, and the device enrolls again under the same ID.
func TestDamagedStateFileIsRefused(t *testing.T) {
	e := newEnv(t)
	d := e.deviceDir("sensor-a")
	if code, _, errOut := e.cli("run", "-once", "-config", d.config); code != 0 {
		t.Fatalf("first run: %s", errOut)
	}
	st, err := d.readState()
	if err != nil {
		t.Fatal(err)
	}
	e.keep(st.SecretID, st.Token)
	fi, err := os.Stat(d.statePath)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the file short, as a power cut during a write could.
	if err := os.Truncate(d.statePath, fi.Size()/3); err != nil {
		t.Fatal(err)
	}
	damaged, _ := os.ReadFile(d.statePath)

	code, _, errOut := e.cli("run", "-once", "-config", d.config)
	if code == 0 {
		t.Fatal("the client ran on a damaged state file")
	}
	for _, want := range []string{"corrupt", "reset-state"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error output does not mention %q:\n%s", want, errOut)
		}
	}
	if now, _ := os.ReadFile(d.statePath); string(now) != string(damaged) {
		t.Fatal("the client changed the damaged state file")
	}
	if code, _, errOut := e.cli("reset-state", "-config", d.config); code != 0 {
		t.Fatalf("reset-state: %s", errOut)
	}
	if matches, _ := filepath.Glob(d.statePath + ".reset-*"); len(matches) != 1 {
		t.Fatalf("the damaged file was not kept aside: %v", matches)
	}
	// A device whose state was reset has lost its identity: the server
	// holds its request for an administrator, who approves it once.
	ran := make(chan string, 1)
	go func() {
		code, _, errOut := e.cli("run", "-once", "-config", d.config)
		if code != 0 {
			errOut = "failed: " + errOut
		} else {
			errOut = ""
		}
		ran <- errOut
	}()
	var dev wire.Device
	waitFor(t, 30*time.Second, "the reset device's request held", func() bool {
		e.adminJSON("GET", "/v1/admin/devices/acme/sensor-a", "", &dev)
		return dev.HeldEnrollment != ""
	})
	e.adminJSON("POST", "/v1/admin/devices/acme/sensor-a/approve", `{"enrollment":"`+dev.HeldEnrollment+`"}`, nil)
	if errOut := <-ran; errOut != "" {
		t.Fatalf("run after reset: %s", errOut)
	}
	again, err := d.readState()
	if err != nil {
		t.Fatal(err)
	}
	e.keep(again.SecretID, again.Token)
	devs, _ := e.inventory()
	if len(devs) != 1 || devs[0].ID != "sensor-a" || devs[0].Enrollments != 2 {
		t.Fatalf("inventory after reset: %+v", devs)
	}
}
