//go:build cgo

package e2e

import (
	"bytes"
	"context"
	"encoding/hex"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goattest "github.com/google/go-attestation/attest"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/strictyaml"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// bootEnv is a TPM-required fleet with a boot policy (nil: none).
func bootEnv(t *testing.T, policy *config.BootPolicy) (*env, *tpmsim.CA) {
	t.Helper()
	ca := tpmsim.NewCA(t, "Test")
	caFile := filepath.Join(t.TempDir(), "ek-cas.pem")
	writeFile(t, caFile, ca.BundlePEM())
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.TPM = config.TPM{Mode: wire.TPMRequired, EKCAFile: caFile, PCRs: []int{0, 7}, ChallengeTTL: time.Minute, BootPolicy: policy}
		f.DeviceSecretIDTTL = 9 * time.Second
	}})
	return e, ca
}

// bootDevice is a device whose TPM measured the boot log describes and
// whose client reads the log from the file returned.
func (e *env) bootDevice(t *testing.T, id string, sim transport.TPM, log []byte) (*device, string) {
	t.Helper()
	tpmsim.MeasureBoot(t, sim, log)
	path := filepath.Join(t.TempDir(), "binary_bios_measurements")
	writeFile(t, path, log)
	var buildErr error
	d := e.newDeviceWith(id, nil, "", func(c *lifecycle.Config, st *state.Store) {
		dev, err := tpm.New(tpmsim.NopCloser{TPM: sim}, st, tpm.EKAuto)
		if err != nil {
			buildErr = err
			return
		}
		dev.SetEventLog(path)
		s, err := dev.NewSealer(id + "/" + fleet)
		if err != nil {
			buildErr = err
			return
		}
		c.Attestor, c.Sealer, c.DeviceKeys = dev, s, dev
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return d, path
}

// bootApps are the boot applications the test log measures into PCR 4.
func bootApps(t *testing.T, log []byte) []string {
	t.Helper()
	el, err := goattest.ParseEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range el.Events(goattest.HashSHA256) {
		if ev.Index == 4 && ev.Type == 0x80000003 {
			out = append(out, hex.EncodeToString(ev.Digest))
		}
	}
	if len(out) != 3 {
		t.Fatalf("the test log has %d boot applications, want 3", len(out))
	}
	return out
}

func alertsOf(alerts []inventory.Alert, kind, device string) int {
	n := 0
	for _, a := range alerts {
		if a.Kind == kind && a.DeviceID == device {
			n++
		}
	}
	return n
}

// A device whose event log replays to its quoted PCRs and whose boot the
// fleet's policy allows enrolls; the admin API shows the boot.
func TestBootLogMatchingIsAccepted(t *testing.T) {
	log := tpmsim.BootLog(t)
	e, ca := bootEnv(t, &config.BootPolicy{SecureBoot: "required", PCR4Allowed: bootApps(t, log)})
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, _ := e.bootDevice(t, "booted", sim, log)
	e.enroll(d)
	var dev wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/booted", "", &dev)
	if dev.Boot == nil || dev.Boot.Result != "policy_passed" || dev.Boot.SecureBoot != "enabled" || len(dev.Boot.PCR4) != 3 {
		t.Fatalf("device boot %+v, want policy_passed, Secure Boot enabled, three boot applications", dev.Boot)
	}
}

// A log edited after the quote (one byte of a measured digest) does not
// replay: refused event_log_mismatch, with an alert.
func TestBootLogEditedIsRefused(t *testing.T) {
	log := tpmsim.BootLog(t)
	e, ca := bootEnv(t, nil)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, path := e.bootDevice(t, "edited", sim, log)
	apps := bootApps(t, log)
	edited := bytes.Clone(log)
	at := bytes.Index(edited, unhex(t, apps[1]))
	if at < 0 {
		t.Fatal("boot application digest not found in the log")
	}
	edited[at] ^= 0x01
	writeFile(t, path, edited)
	refused(t, d, "event_log_mismatch", "an edited event log")
	devs, alerts := e.inventory()
	if len(devs) != 0 || alertsOf(alerts, inventory.AlertEventLogMismatch, "edited") != 1 {
		t.Fatalf("devices %+v, alerts %+v; want none recorded and one event_log_mismatch alert", devs, alerts)
	}
}

// A policy that does not allow one of the boot applications refuses the
// device.
func TestBootPolicyRefusesUnlistedBootApp(t *testing.T) {
	log := tpmsim.BootLog(t)
	apps := bootApps(t, log)
	e, ca := bootEnv(t, &config.BootPolicy{SecureBoot: "any", PCR4Allowed: apps[:2]})
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, _ := e.bootDevice(t, "unlisted", sim, log)
	refused(t, d, "boot_policy_violation", "a boot application the policy does not list")
	if _, alerts := e.inventory(); alertsOf(alerts, inventory.AlertBootPolicyViolation, "unlisted") != 1 {
		t.Fatalf("alerts %+v, want one boot_policy_violation", alerts)
	}
}

// A device whose boot changes after it enrolled (another boot loader,
// honestly logged and measured) is refused at its next refresh, with an
// alert.
func TestBootChangeRefusedAtRefresh(t *testing.T) {
	log := tpmsim.BootLog(t)
	e, ca := bootEnv(t, &config.BootPolicy{SecureBoot: "required", PCR4Allowed: bootApps(t, log)})
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, path := e.bootDevice(t, "changed", sim, log)
	e.enroll(d)
	other := bytes.Repeat([]byte{0x5a}, 32)
	tpmsim.ExtendPCR(t, sim, 4, other)
	writeFile(t, path, append(bytes.Clone(log), tpmsim.BootApp(other)...))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.machine.Run(ctx, false) }()
	waitFor(t, 30*time.Second, "the refresh refused", func() bool { return d.lastStatus().Refused != "" })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := d.lastStatus(); st.Refused != "boot_policy_violation" || st.Refreshes != 0 || !strings.Contains(st.Reason, hex.EncodeToString(other)) {
		t.Fatalf("device status %+v, want its first refresh refused boot_policy_violation naming the new boot application", st)
	}
	var dev wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/changed", "", &dev)
	if dev.Boot == nil || len(dev.Boot.PCR4) != 3 {
		t.Fatalf("device boot %+v, want the boot it enrolled with kept", dev.Boot)
	}
	_, alerts := e.inventory()
	if alertsOf(alerts, inventory.AlertBootPolicyViolation, "changed") != 1 {
		t.Fatalf("alerts %+v, want one boot_policy_violation", alerts)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A policy learned from a reference device (enrollctl boot-policy learn)
// and pasted into the configuration accepts a device with the same boot
// and refuses one with another boot application in PCR 4.
func TestBootPolicyLearnedFromDevice(t *testing.T) {
	log := tpmsim.BootLog(t)
	e, ca := bootEnv(t, nil)
	// Each device has its own simulator, closed when its subtest ends.
	enrollWith := func(t *testing.T, id string, log []byte) *device {
		sim := tpmsim.Open(t)
		ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
		d, _ := e.bootDevice(t, id, sim, log)
		return d
	}
	t.Run("reference", func(t *testing.T) {
		e.enroll(enrollWith(t, "reference", log))
	})
	r := e.enrollctl(nil, nil, "boot-policy", "learn", "-fleet", "acme", "-from-device", "reference")
	if r.code != 0 {
		t.Fatalf("learn: exit %d: %s", r.code, r.errOut)
	}
	var learned struct {
		BootPolicy config.BootPolicy `yaml:"boot_policy"`
	}
	if err := strictyaml.Decode(strings.NewReader(r.out), &learned); err != nil {
		t.Fatalf("the learned policy is not YAML the server reads: %v\n%s", err, r.out)
	}
	if p := learned.BootPolicy; p.SecureBoot != "required" || !slices.Equal(p.PCR4Allowed, bootApps(t, log)) {
		t.Fatalf("learned %+v, want Secure Boot required and the log's three boot applications\n%s", p, r.out)
	}
	e.cfg.Fleets[0].TPM.BootPolicy = &learned.BootPolicy
	e.restartServer()
	t.Run("same boot", func(t *testing.T) {
		e.enroll(enrollWith(t, "same-boot", log))
	})
	t.Run("other boot loader", func(t *testing.T) {
		other := append(bytes.Clone(log), tpmsim.BootApp(bytes.Repeat([]byte{0x42}, 32))...)
		refused(t, enrollWith(t, "other-boot", other), "boot_policy_violation", "a boot application the reference device did not boot")
	})
	if r := e.enrollctl(nil, nil, "boot-policy", "learn", "-fleet", "acme", "-from-device", "other-boot"); r.code == 0 {
		t.Fatalf("learned from a device without an accepted boot: %s", r.out)
	}
}
