//go:build cgo

package tpm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

func newKV() *tpmsim.KV { return tpmsim.NewKV() }

func TestEKChoiceAndCertificate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		provison *tpmsim.EKKind
		kind     string
		wantKind string
		wantCert bool
	}{
		{"no certificate: RSA", nil, tpm.EKAuto, tpm.EKRSA, false},
		{"RSA certificate", &tpmsim.RSAEK, tpm.EKAuto, tpm.EKRSA, true},
		{"ECC certificate", &tpmsim.ECCEK, tpm.EKAuto, tpm.EKECC, true},
		{"ECC asked for, none certified", nil, tpm.EKECC, tpm.EKECC, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := tpmsim.Open(t)
			var cert []byte
			if tc.provison != nil {
				cert = tpmsim.NewCA(t, "Test").ProvisionEKCert(t, sim, *tc.provison)
			}
			d, err := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			if d.EKKind() != tc.wantKind || d.HasEKCert() != tc.wantCert {
				t.Fatalf("EK kind %s, cert %v; want %s, %v", d.EKKind(), d.HasEKCert(), tc.wantKind, tc.wantCert)
			}
			id, err := d.Identity()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(id.EKCertificate, cert) {
				t.Fatalf("EK certificate read from NV differs from the one written (%d vs %d bytes)", len(id.EKCertificate), len(cert))
			}
			ek, err := tpm2.Unmarshal[tpm2.TPMTPublic](id.EKPublic)
			if err != nil {
				t.Fatal(err)
			}
			wantType := tpm2.TPMAlgRSA
			if tc.wantKind == tpm.EKECC {
				wantType = tpm2.TPMAlgECC
			}
			if ek.Type != wantType {
				t.Fatalf("EK type %v, want %v", ek.Type, wantType)
			}
		})
	}
}

func TestAKIsKeptAcrossRestarts(t *testing.T) {
	sim := tpmsim.Open(t)
	kv := newKV()
	d1, err := tpm.New(tpmsim.NopCloser{TPM: sim}, kv, tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	id1, err := d1.Identity()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := tpm.New(tpmsim.NopCloser{TPM: sim}, kv, tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := d2.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id1.AKPublic, id2.AKPublic) || !bytes.Equal(id1.EKPublic, id2.EKPublic) {
		t.Fatal("the AK or EK changed across a restart")
	}
	// A new state store means a new AK; the EK is the hardware's.
	d3, _ := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), tpm.EKAuto)
	id3, err := d3.Identity()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(id1.AKPublic, id3.AKPublic) || !bytes.Equal(id1.EKPublic, id3.EKPublic) {
		t.Fatal("a fresh store should make a fresh AK on the same EK")
	}
	assertNoTransientHandles(t, sim)
}

func assertNoTransientHandles(t *testing.T, sim tpm2Transport) {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 16}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Handle) != 0 {
		t.Fatalf("%d transient handles left loaded: %v", len(h.Handle), h.Handle)
	}
}

func TestSealedDataKey(t *testing.T) {
	kv := newKV()
	var key []byte
	var sealed []byte
	t.Run("same TPM", func(t *testing.T) {
		sim := tpmsim.Open(t)
		d, _ := tpm.New(tpmsim.NopCloser{TPM: sim}, kv, tpm.EKAuto)
		s, err := d.NewSealer("dev-1/fleet")
		if err != nil {
			t.Fatal(err)
		}
		if sealed, err = s.Seal([]byte(`{"secret_id":"s3cr3t"}`)); err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(sealed, []byte("s3cr3t")) || !tpm.IsSealed(sealed) {
			t.Fatal("the sealed record shows its plaintext")
		}
		if key, err = d.DataKey(); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Identity(); err != nil { // makes and keeps the AK
			t.Fatal(err)
		}
		// A restart unseals the same key.
		d2, _ := tpm.New(tpmsim.NopCloser{TPM: sim}, kv, tpm.EKAuto)
		s2, err := d2.NewSealer("dev-1/fleet")
		if err != nil {
			t.Fatal(err)
		}
		plain, err := s2.Open(sealed)
		if err != nil || string(plain) != `{"secret_id":"s3cr3t"}` {
			t.Fatalf("open after restart: %q, %v", plain, err)
		}
		// Bound to the device: another context does not open it.
		s3, _ := d2.NewSealer("dev-2/fleet")
		if _, err := s3.Open(sealed); !errors.Is(err, tpm.ErrUnseal) {
			t.Fatalf("a record opened under another device's context: %v", err)
		}
		tampered := bytes.Clone(sealed)
		tampered[len(tampered)-1] ^= 1
		if _, err := s2.Open(tampered); !errors.Is(err, tpm.ErrUnseal) {
			t.Fatalf("a tampered record opened: %v", err)
		}
		assertNoTransientHandles(t, sim)
	})
	if key == nil {
		t.Fatal("no key")
	}
	t.Run("copied onto another TPM", func(t *testing.T) {
		sim := tpmsim.Open(t) // a fresh simulator: other seeds, another TPM
		d, _ := tpm.New(tpmsim.NopCloser{TPM: sim}, kv.Clone(), tpm.EKAuto)
		if _, err := d.NewSealer("dev-1/fleet"); !errors.Is(err, tpm.ErrForeignTPM) {
			t.Fatalf("the copied state's data key loaded in another TPM: %v", err)
		}
		if _, err := d.Identity(); !errors.Is(err, tpm.ErrForeignTPM) {
			t.Fatalf("the copied state's AK loaded in another TPM: %v", err)
		}
	})
}

type tpm2Transport = interface {
	Send([]byte) ([]byte, error)
}

// The device key lives in the TPM: its signatures verify with the public
// key the server registers, it is the same key after a restart, a second
// name is a second key, and its blob does not load in another TPM.
func TestDeviceKeyInTheTPM(t *testing.T) {
	sim := tpmsim.Open(t)
	kv := newKV()
	d1, err := tpm.New(tpmsim.NopCloser{TPM: sim}, kv, tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := d1.DeviceKey(tpm.DeviceKeyPrefix + "1")
	if err != nil {
		t.Fatal(err)
	}
	msg := identity.Claim{Purpose: identity.PurposeRefresh, Fleet: "acme", DeviceID: "d1", Nonce: []byte("n"), Sequence: 3}.Message()
	sig, err := k1.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.Verify(k1.Public(), msg, sig); err != nil {
		t.Fatalf("a TPM signature does not verify: %v", err)
	}
	if identity.Verify(k1.Public(), append(msg, 'x'), sig) == nil {
		t.Fatal("a signature verified for another message")
	}
	d2, _ := tpm.New(tpmsim.NopCloser{TPM: sim}, kv, tpm.EKAuto)
	again, err := d2.DeviceKey(tpm.DeviceKeyPrefix + "1")
	if err != nil || again.Public() != k1.Public() {
		t.Fatalf("the device key changed across a restart: %v", err)
	}
	k2, err := d2.DeviceKey(tpm.DeviceKeyPrefix + "2")
	if err != nil || k2.Public() == k1.Public() {
		t.Fatalf("a second name did not make a second key: %v", err)
	}
	if _, err := d2.DeviceKey("device-key"); err == nil {
		t.Fatal("a name outside the device keys' prefix was accepted")
	}
	assertNoTransientHandles(t, sim)
}

// The fleet's preference decides among certified EKs; a certified EK of a
// kind the fleet did not name beats an uncertified one it did; with no
// certificate at all, the first preferred kind is used (for the
// allow-list); an unknown kind in the preference is refused.
func TestEKFleetPreference(t *testing.T) {
	for _, tc := range []struct {
		name      string
		provision []tpmsim.EKKind
		prefer    []string
		wantKind  string
		wantCert  bool
	}{
		{"both certified, fleet asks for P-384", []tpmsim.EKKind{tpmsim.RSAEK, tpmsim.ECC384EK}, []string{"ecc384"}, tpm.EKECC384, true},
		{"both certified, no preference", []tpmsim.EKKind{tpmsim.RSAEK, tpmsim.ECC384EK}, nil, tpm.EKRSA, true},
		{"fleet asks for P-384, only RSA certified", []tpmsim.EKKind{tpmsim.RSAEK}, []string{"ecc384"}, tpm.EKRSA, true},
		{"nothing certified", nil, []string{"ecc", "rsa"}, tpm.EKECC, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := tpmsim.Open(t)
			ca := tpmsim.NewCA(t, "Test")
			for _, k := range tc.provision {
				ca.ProvisionEKCert(t, sim, k)
			}
			d, err := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), tpm.EKAuto, tc.prefer...)
			if err != nil {
				t.Fatal(err)
			}
			if d.EKKind() != tc.wantKind || d.HasEKCert() != tc.wantCert {
				t.Fatalf("EK %s, certified %v; want %s, %v", d.EKKind(), d.HasEKCert(), tc.wantKind, tc.wantCert)
			}
		})
	}
	sim := tpmsim.Open(t)
	if _, err := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), tpm.EKAuto, "rsa4096"); err == nil {
		t.Fatal("an unknown kind in the fleet's preference was accepted")
	}
}
