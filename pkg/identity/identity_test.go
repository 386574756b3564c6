package identity_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"

	"github.com/edge-enroll/enroll/pkg/identity"
)

func claim() identity.Claim {
	return identity.Claim{Purpose: identity.PurposeRefresh, Fleet: "demo", DeviceID: "sensor-01",
		IdempotencyKey: "0123456789abcdef", Nonce: []byte("nonce-nonce-nonce"), Sequence: 7}
}

type ecdsaSigner struct{ k *ecdsa.PrivateKey }

func (s ecdsaSigner) Public() string {
	der, _ := x509.MarshalPKIXPublicKey(&s.k.PublicKey)
	return base64.StdEncoding.EncodeToString(der)
}

func (s ecdsaSigner) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, s.k, d[:])
}

func TestVerify(t *testing.T) {
	ed, _, err := identity.NewEd25519()
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := identity.NewEd25519()
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec := ecdsaSigner{ek}
	for _, tc := range []struct {
		name    string
		signer  identity.Signer
		verify  string
		change  func(*identity.Claim)
		wantErr bool
	}{
		{name: "ed25519", signer: ed, verify: ed.Public()},
		{name: "ecdsa p-256", signer: ec, verify: ec.Public()},
		{name: "another key", signer: other, verify: ed.Public(), wantErr: true},
		{name: "other purpose", signer: ed, verify: ed.Public(), change: func(c *identity.Claim) { c.Purpose = identity.PurposeRejoin }, wantErr: true},
		{name: "other device", signer: ed, verify: ed.Public(), change: func(c *identity.Claim) { c.DeviceID = "sensor-02" }, wantErr: true},
		{name: "other sequence", signer: ed, verify: ed.Public(), change: func(c *identity.Claim) { c.Sequence++ }, wantErr: true},
		{name: "other nonce", signer: ed, verify: ed.Public(), change: func(c *identity.Claim) { c.Nonce = []byte("x") }, wantErr: true},
		{name: "new key slipped in", signer: ed, verify: ed.Public(), change: func(c *identity.Claim) { c.NewKey = other.Public() }, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := tc.signer.Sign(claim().Message())
			if err != nil {
				t.Fatal(err)
			}
			c := claim()
			if tc.change != nil {
				tc.change(&c)
			}
			err = identity.Verify(tc.verify, c.Message(), sig)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Verify: err = %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

func TestMessageFieldsDoNotRunTogether(t *testing.T) {
	a := identity.Claim{Fleet: "ab", DeviceID: "c"}
	b := identity.Claim{Fleet: "a", DeviceID: "bc"}
	if bytes.Equal(a.Message(), b.Message()) {
		t.Fatal("two different claims have the same message")
	}
}

func TestParsePublicKeyRefuses(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	rder, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	pder, _ := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	for name, in := range map[string]string{
		"empty":     "",
		"not b64":   "!!!",
		"not pkix":  base64.StdEncoding.EncodeToString([]byte("hello")),
		"rsa":       base64.StdEncoding.EncodeToString(rder),
		"p-224":     base64.StdEncoding.EncodeToString(pder),
		"too large": string(bytes.Repeat([]byte("A"), identity.MaxPublicKeyLen+4)),
	} {
		if _, err := identity.ParsePublicKey(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSeedRoundTrip(t *testing.T) {
	k, seed, err := identity.NewEd25519()
	if err != nil {
		t.Fatal(err)
	}
	again, err := identity.Ed25519FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	if again.Public() != k.Public() {
		t.Fatal("key rebuilt from its seed has another public key")
	}
	if _, err := identity.Ed25519FromSeed(seed[:5]); err == nil {
		t.Fatal("short seed accepted")
	}
	sig, _ := k.Sign([]byte("m"))
	if err := identity.Verify(again.Public(), []byte("m2"), sig); !errors.Is(err, identity.ErrBadSignature) {
		t.Fatalf("err = %v, want ErrBadSignature", err)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	k, _, _ := identity.NewEd25519()
	f.Add(k.Public())
	f.Add("MCowBQYDK2VwAyEA")
	f.Fuzz(func(t *testing.T, s string) {
		pub, err := identity.ParsePublicKey(s)
		if err == nil && pub == nil {
			t.Fatal("no error and no key")
		}
		_ = identity.Verify(s, []byte("m"), []byte("sig"))
	})
}

func ExampleClaim() {
	key, _, _ := identity.NewEd25519()
	c := identity.Claim{Purpose: identity.PurposeRefresh, Fleet: "demo", DeviceID: "sensor-01",
		IdempotencyKey: "0123456789abcdef", Nonce: []byte("from the server"), Sequence: 3}
	sig, _ := key.Sign(c.Message())
	fmt.Println(identity.Verify(key.Public(), c.Message(), sig))
	c.Sequence = 2 // a copy of the device holding an older join state
	fmt.Println(identity.Verify(key.Public(), c.Message(), sig))
	// Output:
	// <nil>
	// signature does not verify with the device key
}
