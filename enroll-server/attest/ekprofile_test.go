//go:build cgo

package attest_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// Every EK kind of the profile, with its certificate in the low or the
// high range and the manufacturer's intermediate in the TPM's chain range:
// the client finds both, the server verifies the chain from the fleet's
// root alone, and the credential made to the EK (SHA-384 ones included)
// is activated through the EK's policy.
// RSA 3072 (H-6) runs over swtpm: the simulator makes no RSA 3072 key.
func TestEveryEKProfileKind(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind tpmsim.EKKind
		want string
	}{
		{"RSA 2048 low", tpmsim.RSAEK, tpm.EKRSA},
		{"ECC P-256 low", tpmsim.ECCEK, tpm.EKECC},
		{"RSA 2048 high", tpmsim.RSAEKHigh, tpm.EKRSA},
		{"ECC P-256 high", tpmsim.ECCEKHigh, tpm.EKECC},
		{"ECC P-384 high", tpmsim.ECC384EK, tpm.EKECC384},
		// The simulator has no RSA 3072 keys: swtpm covers H-6
		// (test/swtpm TestEveryEKKindOverSwtpm).
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := tpmsim.Open(t)
			ca := tpmsim.NewCA(t, "Profile")
			cert := ca.ProvisionEKCert(t, sim, tc.kind)
			ca.ProvisionChain(t, sim)
			d, err := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), tpm.EKAuto, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if d.EKKind() != tc.want || !d.HasEKCert() || d.EKChainLen() != 1 {
				t.Fatalf("EK %s, certificate %v, chain %d; want %s, certified, 1", d.EKKind(), d.HasEKCert(), d.EKChainLen(), tc.want)
			}
			req, err := d.Identity()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(req.EKCertificate, cert) || len(req.EKChain) != 1 || !bytes.Equal(req.EKChain[0], ca.Issuer.Raw) {
				t.Fatal("the certificate or chain read from NV differs from what was written")
			}
			req.Fleet, req.DeviceID = "acme", "d1"
			if err := req.Validate(); err != nil {
				t.Fatal(err)
			}
			rootOnly, err := attest.ParseCAs(ca.RootPEM())
			if err != nil {
				t.Fatal(err)
			}
			id, err := attest.CheckIdentity(req, rootOnly, nil, time.Now())
			if err != nil {
				t.Fatalf("chain from the TPM's NV to the fleet's root: %v", err)
			}
			if id.EKKind != tc.want || !id.EKCertified {
				t.Fatalf("server saw EK kind %s, certified %v", id.EKKind, id.EKCertified)
			}
			noChain := req
			noChain.EKChain = nil
			if _, err := attest.CheckIdentity(noChain, rootOnly, nil, time.Now()); err == nil {
				t.Fatal("verified without the intermediate: the root alone should not suffice")
			}
			ch, resp, err := attest.NewChallenge(nil, id, []int{0, 7})
			if err != nil {
				t.Fatal(err)
			}
			resp.ChallengeID = "c"
			ev, err := d.Answer(resp)
			if err != nil {
				t.Fatalf("activate and quote: %v", err)
			}
			if err := attest.CheckEvidence(ch, id.AKPublic, ev, nil); err != nil {
				t.Fatal(err)
			}
			assertNoTransient(t, sim)
		})
	}
}

// The intermediate a device sends is never a root: a device that sends
// its own self-signed CA as "chain" with a certificate from it is refused.
func TestDeviceChainIsNeverARoot(t *testing.T) {
	sim := tpmsim.Open(t)
	fleetCA, rogue := tpmsim.NewCA(t, "Fleet"), tpmsim.NewCA(t, "Rogue")
	rogue.ProvisionEKCert(t, sim, tpmsim.ECC384EK)
	d, err := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), tpm.EKAuto)
	if err != nil {
		t.Fatal(err)
	}
	req, err := d.Identity()
	if err != nil {
		t.Fatal(err)
	}
	req.Fleet, req.DeviceID = "acme", "d1"
	req.EKChain = [][]byte{rogue.Issuer.Raw, rogue.Root.Raw}
	cas, err := attest.ParseCAs(fleetCA.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.CheckIdentity(req, cas, nil, time.Now()); err == nil {
		t.Fatal("a chain ending in the device's own root was trusted")
	}
	req.EKChain = [][]byte{req.EKCertificate}
	if _, err := attest.CheckIdentity(req, cas, nil, time.Now()); err == nil {
		t.Fatal("a non-CA certificate was taken as an intermediate")
	}
}

func assertNoTransient(t *testing.T, sim interface {
	Send([]byte) ([]byte, error)
}) {
	t.Helper()
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(tpm2.TPMHTTransient) << 24, PropertyCount: 16}.Execute(sim)
	if err != nil {
		t.Fatal(err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil || len(h.Handle) != 0 {
		t.Fatalf("transient handles left loaded: %v %v", h, err)
	}
}
