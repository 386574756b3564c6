//go:build cgo

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// In a TPM-optional fleet, a device that enrolled without a TPM is not
// claimed by the first TPM to attest under its ID: the request is held
// for an administrator, nothing is bound, and the real device keeps its
// credential.
func TestTPMDoesNotBindAnEnrolledDevice(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMOptional)
	real := e.enroll(e.newDevice("sensor-plain", nil))
	e.keep(real.Token, real.SecretID)
	var before wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-plain", "", &before)

	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	thief, err := e.tpmDevice("sensor-plain", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- thief.machine.Run(ctx, true) }()
	waitFor(t, 30*time.Second, "the attested request held", func() bool { return thief.lastStatus().Phase == lifecycle.PhasePending })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var after wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-plain", "", &after)
	if after.EKHash != "" || after.HeldEnrollment == "" || after.DeviceKey != before.DeviceKey || after.Sequence != before.Sequence {
		t.Fatalf("the device record changed:\nbefore %+v\nafter  %+v", before, after)
	}
	if _, err := e.clientFor(real.Token).Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("the real device's token stopped working: %v", err)
	}
	if got := e.deviceSecretIDAccessors("sensor-plain"); len(got) != 1 || got[0] != real.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only the real device's", got)
	}
	_, alerts := e.inventory()
	n := 0
	for _, a := range alerts {
		if a.Kind == inventory.AlertIdentityClaimed && a.DeviceID == "sensor-plain" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("alerts %+v, want one identity_claimed", alerts)
	}
}

// boundEnv is a fleet where attestation is optional, with one device,
// "bound", enrolled with its TPM.
func boundEnv(t *testing.T) *env {
	t.Helper()
	e, ca := tpmEnv(t, wire.TPMOptional)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, err := e.tpmDevice("bound", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	e.enroll(d)
	return e
}

// A request for a TPM-bound device without attestation raises nothing until
// it proved the bootstrap credential; proven repeats are counted, not
// raised again.
func TestHardwareMismatchAlertsNeedProofAndAreBounded(t *testing.T) {
	e := boundEnv(t)
	for i := range 20 {
		status, body := e.post("/v1/enroll", enrollBody("hvs.bogus", "bound", fmt.Sprintf("key-bogus%011d", i)))
		if status != 401 || errorCode(t, body) != "enrollment_token_invalid" {
			t.Fatalf("bogus token: %d %s", status, body)
		}
	}
	for i := range 5 {
		status, body := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "bound", fmt.Sprintf("key-proven%010d", i)))
		if status != 403 || errorCode(t, body) != "hardware_mismatch" {
			t.Fatalf("proven request without attestation: %d %s", status, body)
		}
	}
	metrics := e.metrics()
	if !strings.Contains(metrics, `enroll_server_security_alerts_total{kind="hardware_mismatch"} 1`) ||
		!strings.Contains(metrics, `enroll_server_security_alerts_suppressed_total{kind="hardware_mismatch"} 4`) {
		t.Fatalf("alert counts:\n%s", grepLines(metrics, "enroll_server_security_alerts"))
	}
	_, alerts := e.inventory()
	if len(alerts) != 1 {
		t.Fatalf("stored alerts %+v, want 1", alerts)
	}
}

// A bootstrap token of a generation the fleet has retired proves nothing:
// sent, without attestation, for a device bound to a TPM, it is refused for
// its generation and raises no hardware alert.
func TestRetiredGenerationRaisesNoHardwareAlert(t *testing.T) {
	e := boundEnv(t)
	old := e.bootstrapLogin() // generation 1, before its retirement
	var rot wire.Rotated
	e.adminJSON("POST", "/v1/admin/fleets/acme/rotate", "", &rot)
	e.keep(rot.SecretID)
	e.adminJSON("POST", "/v1/admin/fleets/acme/generations/1/retire", "", nil)
	if _, err := e.root.Auth().Token().Lookup(old); err != nil {
		t.Fatalf("the generation 1 token ended with its generation (%v): the test proves nothing", err)
	}
	status, body := e.post("/v1/enroll", enrollBody(old, "bound", "key-retired-0000000001"))
	if status != 403 || errorCode(t, body) != "rejected" || !strings.Contains(body, "generation 1") {
		t.Fatalf("a retired generation's token for a bound device: %d %s, want 403 rejected for its generation", status, body)
	}
	if _, alerts := e.inventory(); len(alerts) != 0 {
		t.Fatalf("alerts %+v, want none", alerts)
	}
}

// With a TPM the device key is made inside it: the state keeps no key,
// only the name of its TPM-wrapped blob; the server registers the TPM's
// public key, and refreshes are signed in the TPM.
func TestDeviceKeyLivesInTheTPM(t *testing.T) {
	ca := tpmsim.NewCA(t, "Test")
	caFile := filepath.Join(t.TempDir(), "ek-cas.pem")
	writeFile(t, caFile, ca.BundlePEM())
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.TPM = config.TPM{Mode: wire.TPMOptional, EKCAFile: caFile, PCRs: []int{0, 7}, ChallengeTTL: time.Minute}
		f.DeviceSecretIDTTL = 9 * time.Second
	}})
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, err := e.tpmDevice("sensor-tk", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	e.enroll(d)
	runFor(t, d, func(s lifecycle.Status) bool { return s.Refreshes >= 1 && s.Acknowledged })
	st := d.state(t)
	e.keep(st.Token, st.SecretID)
	if len(st.DeviceKey) != 0 || st.DeviceKeyTPM == "" || st.BootstrapLogins != 1 {
		t.Fatalf("state keeps key seed %d bytes, TPM key %q, bootstrap logins %d; want no seed, a TPM key, 1",
			len(st.DeviceKey), st.DeviceKeyTPM, st.BootstrapLogins)
	}
	var dev wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/sensor-tk", "", &dev)
	if dev.DeviceKey == "" || dev.DeviceKey != identity.Fingerprint(st.DeviceKeyPublic) || dev.EKHash == "" {
		t.Fatalf("server holds key %q and EK %q; the device's TPM key is %q", dev.DeviceKey, dev.EKHash, identity.Fingerprint(st.DeviceKeyPublic))
	}
	if _, err := identity.ParsePublicKey(st.DeviceKeyPublic); err != nil || !strings.HasPrefix(st.DeviceKeyPublic, "MFkw") {
		t.Fatalf("the TPM key is not an ECDSA P-256 key: %v %q", err, st.DeviceKeyPublic)
	}
}
