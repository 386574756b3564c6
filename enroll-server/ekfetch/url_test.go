package ekfetch

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

// Test vectors from public sources:
//
//   - Intel: the EK of the certificate tpm2-tools' own integration test
//     fetches (tpm2-tools test/integration/tests/getekcertificate.sh),
//     published at ekop.intel.com/ekcertservice/WVEG2rRw...; its public
//     key as google/go-attestation's attest/tpm_test.go (TestIntelEKURL)
//     extracted it.
//   - AMD: the EK of a real AMD fTPM whose certificate AMD publishes at
//     ftpm.amd.com/pki/aia/D027B3CE...; key and URL from the same
//     go-attestation test (TestAMDEKURL).
//
// The formulas are tpm2-tools' (tools/tpm2_getekcertificate.c).
const intelRSA = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwyDi8kSoYBqs8+AdJsZl
JJk1Vi3h2hl+nn8HbEaWE8+2U+mOwsOG/B0TPyyMbMM4tzLwsgi9g4qHej5bvD4d
QIToNcfIkGocBbTS0w/b68HbrZUPprFlvUtqhkYDFGFkwMT1nUiQEe8fko3upukA
YfPTdeVkYnMVHvYiJSCYvhpKsB3AoSInxgn9rOsRWvQI1Gk6b0mRl3RpWwwSvBih
/3EgpzN7L7XxlR2Lt/CU1bVUwRyVI7MHKf5keH0KE7nmMEiNq039hmNKUnDscvzF
pE3GeajzKTjdgZfina6Dn1tMoPXeJ8lSLCPFThws5XhZUlEYvURwsYGA7veK5CZ7
zQIDAQAB
-----END PUBLIC KEY-----`

const amdRSA = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAo8ID3MRLZQWgq2WIK1qT
e2HQxzZgiDWn6Tzw6uQOoXI1iyO9pxIailRxll2NeK1lRVP/dEKCV+mGwv75T+y2
MmzpFhUY/O5RtEG8TiocDw6WkHRAJ9A9h1OMP+vD3mPClNoA9/ssB36/0ScmVtYR
0gRkL+cZkAT6qro7xz4eRKLt8KfX6OG/Y9kCfJsKDCtYbc4OavHSf11VgbBLtxm7
jSVE+pnO+x/om6qwACjZbU4qrq4PUbAxD1S9dJ2cZzKaYSsCA8wMIho0umYa3jGv
eptunXDcE993BlsUGjLNbXC4aWVEtgo9yu98gKqhYGFEx7Mtk5NYOvWoNvcUBe2L
2QIDAQAB
-----END PUBLIC KEY-----`

func rsaKey(t *testing.T, p string) *rsa.PublicKey {
	t.Helper()
	b, _ := pem.Decode([]byte(p))
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PublicKey)
}

func TestManufacturerURLVectors(t *testing.T) {
	for _, tc := range []struct {
		format, key, want string
	}{
		{Intel, intelRSA, "https://ekop.intel.com/ekcertservice/WVEG2rRwkQ7m3RpXlUphgo6Y2HLxl18h6ZZkkOAdnBE%3D"},
		{AMD, amdRSA, "https://ftpm.amd.com/pki/aia/D027B3CE6A9B6B56846D2B9935884A88"},
	} {
		got, err := URL(tc.format, DefaultBase[tc.format], rsaKey(t, tc.key))
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.format, got, err, tc.want)
		}
	}
	// A base without its trailing slash gets one.
	got, _ := URL(AMD, "https://ftpm.example/aia", rsaKey(t, amdRSA))
	if got != "https://ftpm.example/aia/D027B3CE6A9B6B56846D2B9935884A88" {
		t.Errorf("base without slash: %s", got)
	}
}

func TestManufacturerURLECCAndRefusals(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	intel, err := URL(Intel, "https://x/", &k.PublicKey)
	if err != nil || !strings.HasSuffix(intel, "%3D") {
		t.Fatalf("ECC Intel URL %q %v", intel, err)
	}
	amd, err := URL(AMD, "https://x/", &k.PublicKey)
	if err != nil || len(amd) != len("https://x/")+32 {
		t.Fatalf("ECC AMD URL %q %v", amd, err)
	}
	if _, err := URL("nuvoton", "https://x/", &k.PublicKey); err == nil {
		t.Fatal("an unknown format was accepted")
	}
	odd := rsaKey(t, intelRSA)
	odd.E = 3
	if _, err := URL(Intel, "https://x/", odd); err == nil {
		t.Fatal("Intel's formula applied to an exponent it does not define")
	}
}
