package ekprofile

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/google/go-tpm/tpm2"
)

// The computed PolicyA matches the low-range templates' authPolicy, and
// PolicyOR(PolicyA, PolicyC) the high-range ones' published PolicyB: the
// branches the client gives TPM2_PolicyOR are the right ones.
func TestPoliciesMatchTheProfile(t *testing.T) {
	a, err := PolicyA(tpm2.TPMAlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, tpm2.RSAEKTemplate.AuthPolicy.Buffer) {
		t.Fatalf("PolicyA-SHA256 %x, want %x", a, tpm2.RSAEKTemplate.AuthPolicy.Buffer)
	}
	for _, alg := range []tpm2.TPMAlgID{tpm2.TPMAlgSHA256, tpm2.TPMAlgSHA384} {
		branches, err := PolicyORBranches(alg)
		if err != nil {
			t.Fatal(err)
		}
		b, err := PolicyOR(alg, branches)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, policyB[alg]) {
			t.Fatalf("%v: PolicyOR(A, C) = %s, want the published PolicyB %x", alg, hex.EncodeToString(b), policyB[alg])
		}
	}
	if _, err := PolicyA(tpm2.TPMAlgSHA1); err == nil {
		t.Fatal("PolicyA under SHA-1 should be refused")
	}
}

func TestSlotsAndKinds(t *testing.T) {
	want := map[string][]tpm2.TPMHandle{
		RSA2048: {0x01c00002, 0x01c00012}, ECC256: {0x01c0000a, 0x01c00014},
		ECC384: {0x01c00016}, RSA3072: {0x01c0001c},
	}
	for kind, idx := range want {
		slots := SlotsOf(kind)
		if len(slots) != len(idx) {
			t.Fatalf("%s: %d slots", kind, len(slots))
		}
		for i, s := range slots {
			if s.CertIndex != idx[i] || (i == 0) == s.High() && len(idx) == 2 {
				t.Fatalf("%s slot %d: %#x high=%v", kind, i, s.CertIndex, s.High())
			}
			if s.High() && s.TemplateIndex != s.CertIndex+1 {
				t.Fatalf("%s: template index %#x", s.Name, s.TemplateIndex)
			}
		}
	}
	for _, s := range Slots {
		sha384 := s.Kind == ECC384 || s.Kind == RSA3072
		if (s.Template.NameAlg == tpm2.TPMAlgSHA384) != sha384 {
			t.Fatalf("%s: name algorithm %v", s.Name, s.Template.NameAlg)
		}
	}
	got, err := ParseKinds([]string{"ECC384", "rsa"})
	if err != nil || len(got) != 2 || got[0] != ECC384 || got[1] != RSA2048 {
		t.Fatalf("ParseKinds: %v %v", got, err)
	}
	for _, bad := range [][]string{{"rsa4096"}, {"rsa", "rsa2048"}, {""}} {
		if _, err := ParseKinds(bad); err == nil {
			t.Fatalf("ParseKinds(%q) accepted", bad)
		}
	}
}

func TestTemplateFromNVAndNonce(t *testing.T) {
	low := SlotsOf(RSA2048)[0]
	if _, err := TemplateFromNV(low, tpm2.Marshal(tpm2.RSAEKTemplate)); err != nil {
		t.Fatal(err)
	}
	if _, err := TemplateFromNV(low, tpm2.Marshal(tpm2.ECCEKTemplate)); err == nil {
		t.Fatal("an ECC template was taken for an RSA slot")
	}
	if _, err := TemplateFromNV(low, append(tpm2.Marshal(tpm2.RSAEKTemplate), 0)); err == nil {
		t.Fatal("trailing bytes accepted")
	}
	signing := tpm2.RSAEKTemplate
	signing.ObjectAttributes.SignEncrypt = true
	if _, err := TemplateFromNV(low, tpm2.Marshal(signing)); err == nil {
		t.Fatal("a signing template was taken for an EK")
	}
	n, err := ApplyNonce(tpm2.RSAEKTemplate, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := n.Unique.RSA()
	if len(u.Buffer) != 256 || u.Buffer[0] != 1 || u.Buffer[3] != 0 {
		t.Fatalf("unique %x", u.Buffer[:8])
	}
	if _, err := ApplyNonce(tpm2.ECCEKTemplate, make([]byte, 33)); err == nil {
		t.Fatal("an over-long nonce was applied")
	}
}
