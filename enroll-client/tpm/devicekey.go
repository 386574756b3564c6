package tpm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/pkg/identity"
)

// DeviceKeyPrefix names the device keys' blobs in the state: a device key
// made in the TPM never leaves it; the state holds only its TPM-wrapped
// blob, which loads in this TPM alone.
const DeviceKeyPrefix = "tpm/device-key/"

// deviceKeyTemplate is an unrestricted ECDSA P-256 signing key: it signs
// the device's identity claims (digests of outside data), and it is made in
// the TPM and fixed to it.
var deviceKeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
		NoDA: true, SignEncrypt: true,
	},
	Parameters: ecdsaP256,
	Unique:     tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// DeviceKey returns the TPM-resident device key named name (under
// DeviceKeyPrefix), making it the first time.
func (d *Device) DeviceKey(name string) (identity.Signer, error) {
	if !strings.HasPrefix(name, DeviceKeyPrefix) {
		return nil, fmt.Errorf("TPM: %q is not a device key's name", name)
	}
	var der []byte
	err := d.withDeviceKey(name, func(key *loaded) error {
		pub, err := eccPublic(key.public)
		if err != nil {
			return err
		}
		der, err = x509.MarshalPKIXPublicKey(pub)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &tpmSigner{d: d, name: name, public: base64.StdEncoding.EncodeToString(der)}, nil
}

// withDeviceKey loads the device key named name (making it the first time)
// for fn, and flushes everything it loaded afterwards.
func (d *Device) withDeviceKey(name string, fn func(key *loaded) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	srk, err := d.srk()
	if err != nil {
		return err
	}
	defer d.flush(srk)
	b, err := d.readBlob(name)
	if err != nil {
		return err
	}
	if b == nil {
		if b, err = d.createBlob(srk, name, deviceKeyTemplate, nil); err != nil {
			return err
		}
	}
	key, err := d.loadBlob(srk, name, b)
	if err != nil {
		return err
	}
	defer d.flush(key)
	return fn(key)
}

func eccPublic(p tpm2.TPMTPublic) (*ecdsa.PublicKey, error) {
	point, err := p.Unique.ECC()
	if err != nil {
		return nil, fmt.Errorf("TPM: device key is not an ECC key: %w", err)
	}
	if len(point.X.Buffer) > 32 || len(point.Y.Buffer) > 32 {
		return nil, fmt.Errorf("TPM: device key's point is not a P-256 point")
	}
	raw := make([]byte, 65) // uncompressed: 0x04 || X || Y, each left-padded
	raw[0] = 4
	copy(raw[33-len(point.X.Buffer):33], point.X.Buffer)
	copy(raw[65-len(point.Y.Buffer):], point.Y.Buffer)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, fmt.Errorf("TPM: device key's point: %w", err)
	}
	return pub, nil
}

// tpmSigner signs with a device key inside the TPM.
type tpmSigner struct {
	d      *Device
	name   string
	public string
}

func (s *tpmSigner) Public() string { return s.public }

// Sign signs the SHA-256 digest of msg in the TPM; the signature is ASN.1
// DER, as identity.Verify expects of ECDSA.
func (s *tpmSigner) Sign(msg []byte) ([]byte, error) {
	digest := sha256.Sum256(msg)
	var rsp *tpm2.SignResponse
	err := s.d.withDeviceKey(s.name, func(key *loaded) (err error) {
		rsp, err = tpm2.Sign{
			KeyHandle: tpm2.AuthHandle{Handle: key.handle, Name: key.name, Auth: tpm2.PasswordAuth(nil)},
			Digest:    tpm2.TPM2BDigest{Buffer: digest[:]},
			InScheme: tpm2.TPMTSigScheme{
				Scheme:  tpm2.TPMAlgECDSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256}),
			},
			Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
		}.Execute(s.d.t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("TPM: sign with the device key: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("TPM: device key signature: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer), new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}
