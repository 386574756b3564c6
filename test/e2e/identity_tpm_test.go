//go:build cgo

package e2e

import (
	"context"
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
