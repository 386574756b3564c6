package attest_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/test/tpmsim"
)

func newKV() *tpmsim.KV { return tpmsim.NewKV() }

func tpmPub(p tpm2.TPMTPublic) (crypto.PublicKey, error) { return tpm2.Pub(p) }

func mustKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// plainCert is a certificate from the right CA, for the right purpose,
// but without the TPM's subject alternative name.
func plainCert(t *testing.T, ca interface {
	IssueEKCert(testing.TB, crypto.PublicKey) []byte
}) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(5), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
