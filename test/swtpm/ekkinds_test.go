package swtpm_test

import (
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"

	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/pkg/ekprofile"
	"github.com/edge-enroll/enroll/test/swtpm"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// Over swtpm's socket, each EK swtpm_setup certifies (RSA 2048 in the low
// range; ECC P-384 and RSA 3072 in the high range, SHA-384 names), with
// the local CA's issuing certificate stored in the TPM's EK chain range:
// the client picks the kind the fleet prefers, the chain verifies from the
// fleet's root alone, and the credential activates through the EK policy.
func TestEveryEKKindOverSwtpm(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rsaBits int
		kind    string
		slot    string
	}{
		{"RSA 2048 low", 0, tpm.EKRSA, "L-1"},
		{"ECC P-384 high", 0, tpm.EKECC384, "H-3"},
		{"RSA 3072 high", 3072, tpm.EKRSA3072, "H-6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := swtpm.StartWith(t, swtpm.Options{RSAKeySize: tc.rsaBits})
			nv, err := linuxudstpm.Open(p.Socket)
			if err != nil {
				t.Fatal(err)
			}
			tpmsim.WriteNV(t, nv, ekprofile.ChainFirst, p.IssuerDER)
			nv.Close()

			d, err := tpm.Open(p.Socket, tpmsim.NewKV(), tpm.EKAuto, tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.EKKind() != tc.kind || d.EKSlot() != tc.slot || !d.HasEKCert() || d.EKChainLen() != 1 {
				t.Fatalf("EK %s in %s, certificate %v, chain %d; want %s in %s, certified, 1",
					d.EKKind(), d.EKSlot(), d.HasEKCert(), d.EKChainLen(), tc.kind, tc.slot)
			}
			req, err := d.Identity()
			if err != nil {
				t.Fatal(err)
			}
			req.Fleet, req.DeviceID = "acme", "sw-1"
			if err := req.Validate(); err != nil {
				t.Fatal(err)
			}
			rootOnly, err := attest.ParseCAs(p.RootPEM)
			if err != nil {
				t.Fatal(err)
			}
			id, err := attest.CheckIdentity(req, rootOnly, nil, time.Now())
			if err != nil {
				t.Fatalf("swtpm's EK certificate through the NV chain: %v", err)
			}
			if id.EKKind != tc.kind {
				t.Fatalf("server saw %s", id.EKKind)
			}
			req.EKChain = nil
			if _, err := attest.CheckIdentity(req, rootOnly, nil, time.Now()); err == nil {
				t.Fatal("verified from the root without the intermediate")
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
		})
	}
}
