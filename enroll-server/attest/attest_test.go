//go:build cgo

package attest_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// device is a simulated TPM with its client side.
type device struct {
	sim transport.TPMCloser
	dev *tpm.Device
	id  wire.ChallengeRequest
}

func newDevice(t *testing.T, ca *tpmsim.CA, kind tpmsim.EKKind, ekKind string) device {
	t.Helper()
	sim := tpmsim.Open(t)
	if ca != nil {
		ca.ProvisionEKCert(t, sim, kind)
	}
	d, err := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), ekKind)
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.Identity()
	if err != nil {
		t.Fatal(err)
	}
	id.Fleet, id.DeviceID = "fleet", "dev-1"
	return device{sim: sim, dev: d, id: id}
}

func cas(t *testing.T, ca *tpmsim.CA) *attest.CAs {
	t.Helper()
	c, err := attest.ParseCAs(ca.BundlePEM())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var pcrs = []int{0, 7, 16}

// attestFully runs the whole exchange and returns the server's verdict.
func attestFully(t *testing.T, d device, c *attest.CAs, policy map[int][][]byte) (attest.Identity, error) {
	t.Helper()
	id, err := attest.CheckIdentity(d.id, c, nil, time.Now())
	if err != nil {
		return id, err
	}
	ch, resp, err := attest.NewChallenge(nil, id, pcrs)
	if err != nil {
		t.Fatal(err)
	}
	resp.ChallengeID = "c1"
	ev, err := d.dev.Answer(resp)
	if err != nil {
		t.Fatal(err)
	}
	return id, attest.CheckEvidence(ch, id.AKPublic, ev, policy)
}

func TestFullAttestation(t *testing.T) {
	ca := tpmsim.NewCA(t, "Test")
	for _, tc := range []struct {
		name string
		kind tpmsim.EKKind
		ek   string
	}{{"RSA EK", tpmsim.RSAEK, tpm.EKRSA}, {"ECC EK", tpmsim.ECCEK, tpm.EKECC}} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, ca, tc.kind, tc.ek)
			id, err := attestFully(t, d, cas(t, ca), nil)
			if err != nil {
				t.Fatalf("a genuine TPM was refused: %v", err)
			}
			if !id.EKCertified || id.TPM.Manufacturer != "id:53494D55" || id.TPM.Model != "go-tpm-tools simulator" {
				t.Fatalf("identity %+v", id)
			}
			pub, _ := d.dev.EKPublic()
			k, _ := tpmPub(pub)
			if want, _ := wire.EKHash(k); id.EKHash != want || len(id.EKHash) != 64 {
				t.Fatalf("EK hash %q, want %q", id.EKHash, want)
			}
		})
	}
}

func TestAllowListWithoutCertificate(t *testing.T) {
	d := newDevice(t, nil, tpmsim.RSAEK, tpm.EKRSA)
	_, err := attest.CheckIdentity(d.id, nil, func(string) bool { return false }, time.Now())
	if err == nil || !strings.Contains(err.Error(), "not on the fleet's allow-list") {
		t.Fatalf("an unknown EK without a certificate: %v", err)
	}
	var seen string
	id, err := attest.CheckIdentity(d.id, nil, func(h string) bool { seen = h; return true }, time.Now())
	if err != nil || id.EKCertified || seen != id.EKHash {
		t.Fatalf("allow-listed EK: %v (certified %v, asked about %q)", err, id.EKCertified, seen)
	}
}

func TestRefusals(t *testing.T) {
	ca := tpmsim.NewCA(t, "Test")
	d := newDevice(t, ca, tpmsim.RSAEK, tpm.EKRSA)
	good := cas(t, ca)
	now := time.Now()
	id, err := attest.CheckIdentity(d.id, good, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() (attest.Challenge, wire.Evidence) {
		ch, resp, err := attest.NewChallenge(nil, id, pcrs)
		if err != nil {
			t.Fatal(err)
		}
		resp.ChallengeID = "c"
		ev, err := d.dev.Answer(resp)
		if err != nil {
			t.Fatal(err)
		}
		return ch, ev
	}

	t.Run("EK certificate from an untrusted CA", func(t *testing.T) {
		_, err := attest.CheckIdentity(d.id, cas(t, tpmsim.NewCA(t, "Other")), nil, now)
		wantErr(t, err, "certificate signed by unknown authority")
	})
	t.Run("EK certificate for another key", func(t *testing.T) {
		other := d.id
		other.EKCertificate = ca.IssueEKCert(t, mustKey(t))
		_, err := attest.CheckIdentity(other, good, nil, now)
		wantErr(t, err, "for another key")
	})
	t.Run("EK certificate without the TPM SAN", func(t *testing.T) {
		other := d.id
		other.EKCertificate = plainCert(t, ca)
		_, err := attest.CheckIdentity(other, good, nil, now)
		wantErr(t, err, "no TPM subject alternative name")
	})
	t.Run("an AK that is not restricted", func(t *testing.T) {
		other := d.id
		other.AKPublic = d.id.EKPublic // a decryption key posing as the AK
		_, err := attest.CheckIdentity(other, good, nil, now)
		wantErr(t, err, "not an attestation key")
	})
	t.Run("wrong AK name", func(t *testing.T) {
		// The credential is bound to another object's name: the TPM will
		// not release it for this AK.
		wrong := id
		wrong.AKName = append([]byte{0, 0x0b}, bytes.Repeat([]byte{7}, 32)...)
		_, resp, err := attest.NewChallenge(nil, wrong, pcrs)
		if err != nil {
			t.Fatal(err)
		}
		resp.ChallengeID = "c"
		if _, err := d.dev.Answer(resp); err == nil {
			t.Fatal("the TPM activated a credential bound to another name")
		}
	})
	t.Run("wrong secret", func(t *testing.T) {
		ch, ev := fresh()
		ev.Secret = bytes.Repeat([]byte{1}, 32)
		wantErr(t, attest.CheckEvidence(ch, id.AKPublic, ev, nil), "activated credential is wrong")
	})
	t.Run("answer to another challenge (replay)", func(t *testing.T) {
		_, old := fresh()
		ch, _ := fresh()
		wantErr(t, attest.CheckEvidence(ch, id.AKPublic, old, nil), "activated credential is wrong")
	})
	t.Run("wrong nonce", func(t *testing.T) {
		ch, ev := fresh()
		ch.Nonce = bytes.Repeat([]byte{9}, 32)
		wantErr(t, attest.CheckEvidence(ch, id.AKPublic, ev, nil), "another nonce")
	})
	t.Run("tampered quote", func(t *testing.T) {
		ch, ev := fresh()
		ev.Quote[len(ev.Quote)-1] ^= 1
		wantErr(t, attest.CheckEvidence(ch, id.AKPublic, ev, nil), "does not verify")
	})
	t.Run("tampered PCR value", func(t *testing.T) {
		ch, ev := fresh()
		ev.PCRs[0].Digest = bytes.Repeat([]byte{3}, 32)
		wantErr(t, attest.CheckEvidence(ch, id.AKPublic, ev, nil), "do not match the quoted digest")
	})
	t.Run("PCR value missing", func(t *testing.T) {
		ch, ev := fresh()
		ev.PCRs = ev.PCRs[1:]
		wantErr(t, attest.CheckEvidence(ch, id.AKPublic, ev, nil), "was not sent")
	})
	t.Run("quote by another AK", func(t *testing.T) {
		ch, ev := fresh()
		other := newKVDevice(t, d)
		wantErr(t, attest.CheckEvidence(ch, other, ev, nil), "does not verify")
	})
	t.Run("PCRs outside the policy", func(t *testing.T) {
		ch, ev := fresh()
		zero := make([]byte, 32)
		tpmsim.ExtendPCR(t, d.sim, 16, sha256Sum("not what the fleet boots"))
		ch2, ev2 := fresh()
		policy := map[int][][]byte{16: {zero}}
		if err := attest.CheckEvidence(ch, id.AKPublic, ev, policy); err != nil {
			t.Fatalf("PCR 16 at zero is in the policy: %v", err)
		}
		wantErr(t, attest.CheckEvidence(ch2, id.AKPublic, ev2, policy), "does not allow")
		wantErr(t, attest.CheckEvidence(ch2, id.AKPublic, ev2, map[int][][]byte{23: {zero}}), "not quoted")
	})
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error with %q", err, want)
	}
	if _, ok := err.(*attest.Error); !ok {
		t.Fatalf("%T is not a refusal the server can send: %v", err, err)
	}
}

func sha256Sum(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// newKVDevice makes a second AK on the same TPM (another state store).
func newKVDevice(t *testing.T, d device) []byte {
	t.Helper()
	other, err := tpm.New(tpmsim.NopCloser{TPM: d.sim}, newKV(), tpm.EKRSA)
	if err != nil {
		t.Fatal(err)
	}
	id, err := other.Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id.AKPublic
}

func BenchmarkAttestationRoundTrip(b *testing.B) {
	ca := tpmsim.NewCA(b, "Bench")
	sim := tpmsim.Open(b)
	ca.ProvisionEKCert(b, sim, tpmsim.RSAEK)
	d, err := tpm.New(tpmsim.NopCloser{TPM: sim}, newKV(), tpm.EKRSA)
	if err != nil {
		b.Fatal(err)
	}
	c, err := attest.ParseCAs(ca.BundlePEM())
	if err != nil {
		b.Fatal(err)
	}
	req, err := d.Identity()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		id, err := attest.CheckIdentity(req, c, nil, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		ch, resp, err := attest.NewChallenge(nil, id, pcrs)
		if err != nil {
			b.Fatal(err)
		}
		resp.ChallengeID = "c"
		ev, err := d.Answer(resp)
		if err != nil {
			b.Fatal(err)
		}
		if err := attest.CheckEvidence(ch, id.AKPublic, ev, nil); err != nil {
			b.Fatal(err)
		}
	}
	ms := float64(b.Elapsed().Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/attestation")
	if b.N > 1 {
		fmt.Printf("bench: TPM attestation round trip (challenge, activate, quote, verify; simulator) %.1f ms (target <= 200 ms)\n", ms)
	}
}

// A certificate from the right CA issued for another purpose is no EK
// certificate.
func TestEKCertificatePurpose(t *testing.T) {
	ca := tpmsim.NewCA(t, "Test")
	c := cas(t, ca)
	tests := []struct {
		name string
		edit func(*x509.Certificate)
		want string
	}{
		{"as issued", nil, ""},
		{"no key usage at all", func(c *x509.Certificate) { c.KeyUsage = 0 }, ""},
		{"ECC key agreement", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyAgreement }, ""},
		{"a signing key", func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature }, "key encipherment"},
		{"a CA's key usage", func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }, "signing certificates"},
		{"a CA", func(c *x509.Certificate) { c.IsCA = true }, "CA certificate"},
		{"a TLS server's", func(c *x509.Certificate) {
			c.UnknownExtKeyUsage, c.ExtKeyUsage = nil, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, "tcg-kp-EKCertificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der := ca.IssueEKCertWith(t, mustKey(t), tt.edit)
			_, _, err := c.VerifyEKCert(der, nil, time.Now())
			if tt.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
