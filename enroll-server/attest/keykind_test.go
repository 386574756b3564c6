package attest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/edge-enroll/enroll/enroll-server/attest"
)

func TestKeyKind(t *testing.T) {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got := attest.KeyKind(&r.PublicKey); got != "rsa2048" {
		t.Errorf("RSA 2048: %s", got)
	}
	if got := attest.KeyKind(&e.PublicKey); got != "ecc384" {
		t.Errorf("P-384: %s", got)
	}
}
