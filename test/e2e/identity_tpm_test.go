//go:build cgo

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
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

// A request for a TPM-bound device without attestation raises nothing until
// it proved the bootstrap credential; proven repeats are counted, not
// raised again.
func TestHardwareMismatchAlertsNeedProofAndAreBounded(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMOptional)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, err := e.tpmDevice("bound", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	e.enroll(d)
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
	_, metrics := e.get("/metrics", "")
	if !strings.Contains(metrics, `enroll_server_security_alerts_total{kind="hardware_mismatch"} 1`) ||
		!strings.Contains(metrics, `enroll_server_security_alerts_suppressed_total{kind="hardware_mismatch"} 4`) {
		t.Fatalf("alert counts:\n%s", grepLines(metrics, "enroll_server_security_alerts"))
	}
	_, alerts := e.inventory()
	if len(alerts) != 1 {
		t.Fatalf("stored alerts %+v, want 1", alerts)
	}
}
