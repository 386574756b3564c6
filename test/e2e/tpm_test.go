//go:build cgo

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// tpmEnv is a fleet whose TPMs' EK certificates come from a test
// manufacturer CA.
func tpmEnv(t *testing.T, mode string) (*env, *tpmsim.CA) {
	t.Helper()
	return tpmEnvTTL(t, mode, time.Minute)
}

func tpmEnvTTL(t *testing.T, mode string, challengeTTL time.Duration) (*env, *tpmsim.CA) {
	t.Helper()
	ca := tpmsim.NewCA(t, "Test")
	caFile := filepath.Join(t.TempDir(), "ek-cas.pem")
	writeFile(t, caFile, ca.BundlePEM())
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.TPM = config.TPM{Mode: mode, EKCAFile: caFile, PCRs: []int{0, 7}, ChallengeTTL: challengeTTL}
	}})
	return e, ca
}

// tpmDevice builds a device whose machine uses sim as its TPM, as
// enroll-client does: attestation, and its state sealed to the TPM.
func (e *env) tpmDevice(id string, sim transport.TPM, mod func(*bundle.Bundle), statePath string) (*device, error) {
	var buildErr error
	d := e.newDeviceWith(id, mod, statePath, func(c *lifecycle.Config, st *state.Store) {
		dev, err := tpm.New(tpmsim.NopCloser{TPM: sim}, st, tpm.EKAuto)
		if err != nil {
			buildErr = err
			return
		}
		s, err := dev.NewSealer(id + "/" + fleet)
		if err != nil {
			buildErr = err
			return
		}
		c.Attestor, c.Sealer, c.DeviceKeys = dev, s, dev
	})
	return d, buildErr
}

func ekHashOf(t *testing.T, sim transport.TPM) string {
	t.Helper()
	d, err := tpm.New(tpmsim.NopCloser{TPM: sim}, nil, tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	h, err := d.EKHash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A device with a certified TPM enrolls through the real server and Vault
// in a fleet that requires attestation; it is bound to its EK, and its
// state on disk is sealed: no secret in it is readable.
func TestTPMEnrollmentBindsDeviceAndSealsState(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMRequired)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, err := e.tpmDevice("tpm-1", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	st := e.enroll(d)
	raw, err := d.store.ReadState("device")
	if err != nil {
		t.Fatal(err)
	}
	if !tpm.IsSealed(raw) || bytes.Contains(raw, []byte(st.SecretID)) || bytes.Contains(raw, []byte(st.Token)) {
		t.Fatal("the state record is not sealed: its secrets are readable")
	}
	want := ekHashOf(t, sim)
	devs, _ := e.inventory()
	if len(devs) != 1 || devs[0].EKHash != want || !strings.Contains(devs[0].TPM, "id:53494D55") {
		t.Fatalf("device record %+v, want bound to EK %s", devs, want)
	}
}

// A fleet that requires a TPM refuses a device without one, clearly and
// permanently, and records nothing about it.
func TestTPMRequiredRefusesDeviceWithoutTPM(t *testing.T) {
	e, _ := tpmEnv(t, wire.TPMRequired)
	d := e.newDevice("no-tpm", nil)
	refused(t, d, "attestation_required", "a device without a TPM")
	if devs, _ := e.inventory(); len(devs) != 0 {
		t.Fatalf("a refused device was recorded: %+v", devs)
	}
}

// An EK certificate from a manufacturer the fleet does not trust is
// refused before any challenge, and nothing is recorded.
func TestTPMUntrustedManufacturerRefused(t *testing.T) {
	e, _ := tpmEnv(t, wire.TPMOptional)
	sim := tpmsim.Open(t)
	tpmsim.NewCA(t, "Unknown").ProvisionEKCert(t, sim, tpmsim.ECCEK)
	d, err := e.tpmDevice("rogue", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	refused(t, d, "unknown authority", "an untrusted EK certificate")
	if devs, _ := e.inventory(); len(devs) != 0 {
		t.Fatalf("a refused device was recorded: %+v", devs)
	}
}

// A TPM-bound device that lost its state re-enrolls with attestation alone
// after its fleet's bootstrap generation was retired.
func TestTPMReenrollsAfterGenerationRetired(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMOptional)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.ECCEK)
	d, err := e.tpmDevice("tpm-2", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	first := e.enroll(d)

	var rot wire.Rotated
	e.adminJSON("POST", "/v1/admin/fleets/acme/rotate", "", &rot)
	e.keep(rot.SecretID)
	e.adminJSON("POST", "/v1/admin/fleets/acme/generations/1/retire", "", nil)

	// Same hardware, a fresh state: the image's generation 1 credential is
	// refused by Vault, and the TPM alone gets the device back in.
	again, err := e.tpmDevice("tpm-2", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	st := e.enroll(again)
	if st.SecretID == first.SecretID || st.EnrollmentID == first.EnrollmentID {
		t.Fatal("the device did not get a new credential")
	}
	if n := len(e.logs.lines("no bootstrap credential; enrolling with TPM attestation alone")); n == 0 {
		t.Fatal("the device did not fall back to attestation alone")
	}
	// The admin API, through enrollctl devices -json, keeps the generation
	// the device enrolled with (not 0) and shows the EK it is bound to.
	dev, err := tpm.New(tpmsim.NopCloser{TPM: sim}, nil, tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := dev.EKHash()
	if err != nil {
		t.Fatal(err)
	}
	run := e.enrollctl(nil, nil, "devices", "-fleet", "acme", "-json")
	var list wire.DeviceList
	if run.code != 0 || json.Unmarshal([]byte(run.out), &list) != nil {
		t.Fatalf("devices -json: %d %s %s", run.code, run.out, run.errOut)
	}
	if len(list.Devices) != 1 || list.Devices[0].Generation != 1 || list.Devices[0].EKHash != ek || list.Devices[0].Enrollments != 2 {
		t.Fatalf("devices -json after attestation alone: %+v; want generation 1, two enrollments, EK %s", list.Devices, ek)
	}
	// Without a TPM, the same retired image cannot.
	plain := e.newDevice("tpm-2-imposter", nil)
	refused(t, plain, "bootstrap credential", "a retired credential without a TPM")
}

// A cloned disk: the state of an enrolled device copied onto other
// hardware does not unseal there, and enrolling the same device ID from
// that hardware is refused with a security alert.
func TestTPMClonedDiskIsRefused(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMOptional)
	statePath := filepath.Join(t.TempDir(), "state.db")
	clonePath := filepath.Join(t.TempDir(), "state.db")
	t.Run("original", func(t *testing.T) {
		sim := tpmsim.Open(t) // closed when this subtest ends
		ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
		d, err := e.tpmDevice("victim", sim, nil, statePath)
		if err != nil {
			t.Fatal(err)
		}
		e.enroll(d)
		d.store.Close()
		data, err := os.ReadFile(statePath)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, clonePath, data)
	})
	sim := tpmsim.Open(t) // another TPM
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	if _, err := e.tpmDevice("victim", sim, nil, clonePath); !errors.Is(err, tpm.ErrForeignTPM) {
		t.Fatalf("the copied state opened on other hardware: %v", err)
	}
	// Even starting over on the other hardware, the device ID is taken.
	d, err := e.tpmDevice("victim", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	refused(t, d, "hardware_mismatch", "the clone's enrollment")
	devs, alerts := e.inventory()
	var mismatch []inventory.Alert
	for _, a := range alerts {
		if a.Kind == inventory.AlertHardwareMismatch && a.DeviceID == "victim" {
			mismatch = append(mismatch, a)
		}
	}
	if len(mismatch) != 1 {
		t.Fatalf("alerts %+v, want one hardware mismatch for victim", alerts)
	}
	if len(devs) != 1 || devs[0].State != inventory.DeviceEnrolled {
		t.Fatalf("the original device's record changed: %+v", devs)
	}
}

// A challenge is good for one answer, within its TTL; a replayed or late
// answer is refused with challenge_invalid and mints nothing.
func TestTPMChallengeIsSingleUseAndExpires(t *testing.T) {
	e, ca := tpmEnvTTL(t, wire.TPMRequired, 5*time.Second)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	dev, err := tpm.New(tpmsim.NopCloser{TPM: sim}, tpmsim.NewKV(), tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	id, err := dev.Identity()
	if err != nil {
		t.Fatal(err)
	}
	id.Fleet, id.DeviceID = fleet, "tpm-once"
	srv, vc := serverClient(t, e.bundle), mustClientVault(t, e.bundle)
	ctx := context.Background()
	evidence := func() wire.Evidence {
		ch, err := srv.Challenge(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := dev.Answer(ch)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	enroll := func(ev wire.Evidence, key string) error {
		a, err := vc.Login(ctx, e.bundle.EnrollMount, e.bundle.RoleID, e.bundle.SecretID)
		if err != nil {
			t.Fatal(err)
		}
		e.keep(a.Token)
		resp, err := srv.Enroll(ctx, wire.EnrollRequest{Fleet: fleet, DeviceID: "tpm-once", EnrollmentToken: a.Token,
			IdempotencyKey: key, Attestation: &ev})
		e.keep(resp.WrappingToken)
		return err
	}
	ev := evidence()
	if err := enroll(ev, "first-key-0123456789"); err != nil {
		t.Fatalf("a fresh answer was refused: %v", err)
	}
	if err := enroll(ev, "second-key-0123456789"); err == nil || !strings.Contains(err.Error(), "challenge_invalid") {
		t.Fatalf("a replayed answer: %v", err)
	}
	late := evidence()
	time.Sleep(6 * time.Second)
	if err := enroll(late, "third-key-0123456789"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a late answer: %v", err)
	}
	if got := e.deviceSecretIDAccessors("tpm-once"); len(got) != 1 {
		t.Fatalf("%d secret IDs minted, want only the first answer's", len(got))
	}
}

// A TPM device in a fleet that does not use attestation enrolls without
// it, and is not bound.
func TestTPMDeviceInFleetWithoutAttestation(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMOff)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
	d, err := e.tpmDevice("tpm-off", sim, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	e.enroll(d)
	if n := len(e.logs.lines("the fleet does not use TPM attestation; enrolling without it")); n != 1 {
		t.Fatalf("told %d times that the fleet does not attest", n)
	}
	if devs, _ := e.inventory(); len(devs) != 1 || devs[0].EKHash != "" {
		t.Fatalf("devices %+v, want one, not bound", devs)
	}
}

// refused runs a device that must stop with a permanent refusal naming want.
func refused(t *testing.T, d *device, want, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.machine.Run(ctx, true); !errors.Is(err, lifecycle.ErrRejected) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s: %v, want a refusal naming %q", what, err, want)
	}
}
