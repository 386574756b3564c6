package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/health"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/swtpm"
)

// The real enroll-client binary enrolls a device through swtpm's socket
// and the real enroll-server against the real Vault, in a fleet that
// requires attestation and trusts swtpm's local CA. Its disk copied onto
// another swtpm does not start there, and the copy, started over, is
// refused with a hardware-mismatch alert.
func TestSwtpmEndToEnd(t *testing.T) {
	a, b := swtpm.Start(t), swtpm.Start(t)
	caFile := filepath.Join(t.TempDir(), "ek-cas.pem")
	// Both TPMs are genuine: the fleet trusts both local CAs.
	writeFile(t, caFile, append(append([]byte{}, a.CABundle...), b.CABundle...))
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.TPM = config.TPM{Mode: wire.TPMRequired, EKCAFile: caFile, PCRs: []int{0, 7}, ChallengeTTL: time.Minute}
	}})
	bin := clientBinary(t)
	withTPM := func(p *swtpm.TPM) string { return "tpm:\n  mode: required\n  path: " + p.Socket + "\n" }

	d := e.deviceDirWith("sw-1", withTPM(a))
	if err := runClient(t, bin, d, 0); err != nil {
		t.Fatalf("enroll through swtpm: %v", err)
	}
	// run -once has exited: status shows its last state, and that no
	// daemon runs.
	code, out, errOut := e.cli("status", "-config", d.config)
	if code != health.ExitNotRunning || !strings.Contains(out, "authenticated") || !strings.Contains(out, "NOT RUNNING") {
		t.Fatalf("status: %d %s %s", code, out, errOut)
	}
	code, out, _ = e.cli("tpm-info", "-config", d.config)
	want := ekHash(t, a)
	if code != 0 || !strings.Contains(out, "ek_hash: "+want) || !strings.Contains(out, "ek_certificate: true") {
		t.Fatalf("tpm-info: %d %s", code, out)
	}
	code, out, _ = e.cli("tpm-info", "-config", d.config, "-json")
	var info struct {
		EKHash        string `json:"ek_hash"`
		EKCertificate bool   `json:"ek_certificate"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.EKHash != want || !info.EKCertificate {
		t.Fatalf("tpm-info -json: %d %s", code, out)
	}
	// -json exits as the text form does: the daemon is not running.
	code, out, _ = e.cli("status", "-config", d.config, "-json")
	var st lifecycle.Status
	if code != health.ExitNotRunning || json.Unmarshal([]byte(out), &st) != nil || st.DeviceID != "sw-1" {
		t.Fatalf("status -json: %d %s", code, out)
	}
	raw, err := os.ReadFile(d.statePath)
	if err != nil {
		t.Fatal(err)
	}
	if tok := readToken(d.sinkPath); tok == "" || strings.Contains(string(raw), tok) {
		t.Fatal("the token is readable in the state file")
	}

	// The disk is copied into a device on other hardware.
	clone := e.deviceDirWith("sw-1", withTPM(b))
	writeFile(t, clone.statePath, raw)
	cmd := exec.Command(bin, "run", "-once", "-config", clone.config)
	msg, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "made on other hardware") {
		t.Fatalf("the copied state started on other hardware: %v\n%s", err, msg)
	}
	if code, _, errOut := e.cli("reset-state", "-force", "-config", clone.config); code != 0 {
		t.Fatalf("reset-state: %s", errOut)
	}
	cmd = exec.Command(bin, "run", "-once", "-config", clone.config)
	msg, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "hardware_mismatch") {
		t.Fatalf("the clone enrolled: %v\n%s", err, msg)
	}
	devs, alerts := e.inventory()
	if len(devs) != 1 || devs[0].EKHash != want || devs[0].State != inventory.DeviceEnrolled {
		t.Fatalf("devices %+v, want sw-1 enrolled and bound to %s", devs, want)
	}
	n := 0
	for _, al := range alerts {
		if al.Kind == inventory.AlertHardwareMismatch && al.DeviceID == "sw-1" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("alerts %+v, want one hardware mismatch", alerts)
	}
}

func ekHash(t *testing.T, p *swtpm.TPM) string {
	t.Helper()
	d, err := tpm.Open(p.Socket, nil, tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h, err := d.EKHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A client told to require a TPM refuses to start without one, and says
// which setting and path.
func TestClientRequiresTPM(t *testing.T) {
	e := newEnv(t)
	d := e.deviceDirWith("needs-tpm", "tpm:\n  mode: required\n  path: /nonexistent/tpmrm0\n")
	code, _, errOut := e.cli("run", "-once", "-config", d.config)
	if code == 0 || !strings.Contains(errOut, "tpm.mode required, tpm.path /nonexistent/tpmrm0") {
		t.Fatalf("run without the required TPM: code %d\n%s", code, errOut)
	}
	if _, err := os.Stat(d.sinkPath); err == nil {
		t.Fatal("a token was written")
	}
}
