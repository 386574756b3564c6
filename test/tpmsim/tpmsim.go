//go:build cgo

// Package tpmsim gives tests an in-process TPM 2.0 simulator and a test
// manufacturer CA that writes EK certificates into the simulator's NV, as a
// TPM vendor does at the factory.
//
// The simulator is a process-wide singleton: a test that uses it must not
// run in parallel with another that does; Open closes it at cleanup.
package tpmsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/simulator"

	"github.com/edge-enroll/enroll/pkg/ekprofile"
)

var mu sync.Mutex

// Open starts a fresh simulator (new seeds: another TPM than the last one)
// and closes it when the test ends.
func Open(t testing.TB) transport.TPMCloser {
	t.Helper()
	mu.Lock()
	sim, err := simulator.OpenSimulator()
	if err != nil {
		mu.Unlock()
		t.Fatalf("TPM simulator: %v", err)
	}
	t.Cleanup(func() {
		sim.Close()
		mu.Unlock()
	})
	return sim
}

// NopCloser keeps a shared simulator open when code under test closes its
// TPM.
type NopCloser struct{ transport.TPM }

// Close does nothing.
func (NopCloser) Close() error { return nil }

// CA is a test TPM manufacturer: a root and an intermediate that issues EK
// certificates.
type CA struct {
	Root, Issuer       *x509.Certificate
	rootKey, issuerKey crypto.Signer
}

// NewCA makes a test manufacturer CA.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issuerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " EK Root CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	issTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name + " EK Issuing CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	issDER, err := x509.CreateCertificate(rand.Reader, issTmpl, root, issuerKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := x509.ParseCertificate(issDER)
	return &CA{Root: root, Issuer: issuer, rootKey: rootKey, issuerKey: issuerKey}
}

// BundlePEM is the CA bundle a server is configured with.
func (c *CA) BundlePEM() []byte {
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Issuer.Raw})...)
}

// TPMSAN encodes the critical subject alternative name of an EK
// certificate: a directory name with the TPM's manufacturer, model and
// firmware version.
func TPMSAN(manufacturer, model, version string) []byte {
	attr := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	name, err := asn1.Marshal(pkix.RDNSequence{{
		attr(asn1.ObjectIdentifier{2, 23, 133, 2, 1}, manufacturer),
		attr(asn1.ObjectIdentifier{2, 23, 133, 2, 2}, model),
		attr(asn1.ObjectIdentifier{2, 23, 133, 2, 3}, version),
	}})
	if err != nil {
		panic(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name}})
	if err != nil {
		panic(err)
	}
	return san
}

// IssueEKCert certifies pub as a TPM's EK.
func (c *CA) IssueEKCert(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	return c.IssueEKCertWith(t, pub, nil)
}

// IssueEKCertWith certifies pub as a TPM's EK after edit changed the
// certificate's template (a wrong key usage, say).
func (c *CA) IssueEKCertWith(t testing.TB, pub crypto.PublicKey, edit func(*x509.Certificate)) []byte {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		BasicConstraintsValid: true,
		ExtraExtensions: []pkix.Extension{{
			Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true,
			Value: TPMSAN("id:53494D55", "go-tpm-tools simulator", "id:00020008"),
		}},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Issuer, pub, c.issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// EKTemplates and the NV index of each one's certificate: the low range's
// two, and the high range's (TCG EK Credential Profile 2.x).
var (
	RSAEK = EKKind{Template: tpm2.RSAEKTemplate, NVIndex: 0x01C00002}
	ECCEK = EKKind{Template: tpm2.ECCEKTemplate, NVIndex: 0x01C0000A}

	RSAEKHigh = slotKind("H-1")
	ECCEKHigh = slotKind("H-2")
	ECC384EK  = slotKind("H-3")
	RSA3072EK = slotKind("H-6")
)

func slotKind(name string) EKKind {
	for _, s := range ekprofile.Slots {
		if s.Name == name {
			return EKKind{Template: s.Template, NVIndex: s.CertIndex}
		}
	}
	panic("no EK slot " + name)
}

// RootPEM is a bundle of the root alone: a fleet that trusts it verifies
// EK certificates only through the intermediate a TPM keeps in NV.
func (c *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Root.Raw})
}

// ProvisionChain writes the CA's intermediate into the TPM's EK chain
// range, as TPMs with an on-die CA do.
func (c *CA) ProvisionChain(t testing.TB, tpm transport.TPM) {
	t.Helper()
	WriteNV(t, tpm, ekprofile.ChainFirst, c.Issuer.Raw)
}

// EKKind is an EK template and where its certificate lives.
type EKKind struct {
	Template tpm2.TPMTPublic
	NVIndex  tpm2.TPMHandle
}

// EKPublic creates the EK of the given kind and returns its public key.
func EKPublic(t testing.TB, tpm transport.TPM, kind EKKind) crypto.PublicKey {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHEndorsement, InPublic: tpm2.New2B(kind.Template)}.Execute(tpm)
	if err != nil {
		t.Fatalf("create EK: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ProvisionEKCert writes an EK certificate from ca into the TPM's NV, as a
// manufacturer does, and returns it.
func (c *CA) ProvisionEKCert(t testing.TB, tpm transport.TPM, kind EKKind) []byte {
	t.Helper()
	der := c.IssueEKCert(t, EKPublic(t, tpm, kind))
	WriteNV(t, tpm, kind.NVIndex, der)
	return der
}

// WriteNV defines an NV index readable with its (empty) auth and writes
// data to it.
func WriteNV(t testing.TB, tpm transport.TPM, index tpm2.TPMHandle, data []byte) {
	t.Helper()
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.TPMRHOwner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: index, NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, NT: tpm2.TPMNTOrdinary},
			DataSize:   uint16(len(data)),
		}),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("define NV %#x: %v", index, err)
	}
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tpm)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		end := min(off+512, len(data))
		_, err := tpm2.NVWrite{
			AuthHandle: tpm2.TPMRHOwner,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			t.Fatalf("write NV %#x: %v", index, err)
		}
	}
}

// ExtendPCR extends a SHA-256 PCR with data's digest.
func ExtendPCR(t testing.TB, tpm transport.TPM, pcr int, digest []byte) {
	t.Helper()
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: digest}}},
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("extend PCR %d: %v", pcr, err)
	}
}
