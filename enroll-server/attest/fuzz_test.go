package attest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
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

// A device's EK chain must never make a certificate verify that does not
// chain to the fleet's root, whatever the device sends.
func FuzzVerifyEKChain(f *testing.F) {
	ca := newTestCA(f)
	cas, err := ParseCAs(ca.rootPEM)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01}, ca.issuer.Raw, []byte{})
	f.Fuzz(func(t *testing.T, cert, chain1, chain2 []byte) {
		chain := [][]byte{chain1}
		if len(chain2) > 0 {
			chain = append(chain, chain2)
		}
		if _, _, err := cas.VerifyEKCert(cert, chain, time.Now()); err == nil {
			t.Fatal("a certificate the fuzzer made verified against the fleet's root")
		}
	})
}

type testCA struct {
	rootPEM []byte
	issuer  *x509.Certificate
}

// newTestCA makes a root and an intermediate under it.
func newTestCA(tb testing.TB) testCA {
	tb.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := func(n int64, cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, tmpl(1, "root"), tmpl(1, "root"), rootKey.Public(), rootKey)
	if err != nil {
		tb.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	issDER, err := x509.CreateCertificate(rand.Reader, tmpl(2, "issuer"), root, issKey.Public(), rootKey)
	if err != nil {
		tb.Fatal(err)
	}
	issuer, _ := x509.ParseCertificate(issDER)
	return testCA{rootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rootDER}), issuer: issuer}
}
