package attest

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/pkg/wire"
)

func sanSeed() []byte {
	name, _ := asn1.Marshal(pkix.RDNSequence{{
		{Type: oidTPMManufacturer, Value: "id:00001014"},
		{Type: oidTPMModel, Value: "swtpm"},
		{Type: oidTPMVersion, Value: "id:20191023"},
	}})
	san, _ := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	return san
}

func TestParseTPMSAN(t *testing.T) {
	info, err := parseTPMSAN(sanSeed())
	if err != nil || info.Manufacturer != "id:00001014" || info.Model != "swtpm" || info.Version != "id:20191023" {
		t.Fatalf("parse = %+v, %v", info, err)
	}
	for name, bad := range map[string][]byte{
		"empty":            {},
		"not a sequence":   {0x04, 0x00},
		"trailing bytes":   append(sanSeed(), 0),
		"no manufacturer":  mustSAN(t, pkix.RDNSequence{{{Type: oidTPMModel, Value: "x"}}}),
		"bad manufacturer": mustSAN(t, pkix.RDNSequence{{{Type: oidTPMManufacturer, Value: "IBM"}}}),
	} {
		if _, err := parseTPMSAN(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustSAN(t *testing.T, rdn pkix.RDNSequence) []byte {
	t.Helper()
	name, err := asn1.Marshal(rdn)
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	if err != nil {
		t.Fatal(err)
	}
	return san
}

func FuzzParseTPMSAN(f *testing.F) {
	f.Add(sanSeed())
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := parseTPMSAN(b)
		if err == nil && !manufacturerID.MatchString(info.Manufacturer) {
			t.Fatalf("accepted manufacturer %q", info.Manufacturer)
		}
	})
}

// CheckIdentity must refuse, never panic on, whatever a device sends.
func FuzzCheckIdentity(f *testing.F) {
	ak := tpm2.Marshal(tpm2.ECCSRKTemplate)
	f.Add(tpm2.Marshal(tpm2.RSAEKTemplate), []byte{}, ak)
	f.Add(tpm2.Marshal(tpm2.ECCEKTemplate), []byte{0x30, 0x03, 0x02, 0x01, 0x01}, ak)
	f.Fuzz(func(t *testing.T, ek, cert, ak []byte) {
		req := wire.ChallengeRequest{Fleet: "f", DeviceID: "d", EKPublic: ek, EKCertificate: cert, AKPublic: ak}
		if req.Validate() != nil {
			return
		}
		id, err := CheckIdentity(req, nil, func(string) bool { return true }, time.Now())
		if err == nil && (len(id.EKHash) != 64 || len(id.AKName) == 0) {
			t.Fatalf("accepted an identity without EK hash or AK name: %+v", id)
		}
		if err == nil && len(cert) > 0 {
			t.Fatal("accepted an EK certificate with no CA configured")
		}
	})
}

// VerifyQuote must refuse, never panic on, hostile quotes and signatures.
func FuzzVerifyQuote(f *testing.F) {
	f.Add(tpm2.Marshal(tpm2.ECCSRKTemplate), []byte("\xffTCG\x80\x18"), []byte{0, 0x18, 0, 0x0b}, []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, ak, quote, sig, nonce []byte) {
		if _, err := VerifyQuote(ak, quote, sig, nonce, []int{0, 7}, nil); err == nil {
			t.Fatal("a quote without PCR values verified")
		}
	})
}
