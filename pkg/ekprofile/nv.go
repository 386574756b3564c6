package ekprofile

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

func hexBytes(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TemplateFromNV reads a template a manufacturer left in NV (a
// TPMT_PUBLIC) for slot s: it must be an EK of the slot's kind, or the TPM
// holds something else there and the profile's default is used instead.
func TemplateFromNV(s Slot, raw []byte) (tpm2.TPMTPublic, error) {
	t, err := tpm2.Unmarshal[tpm2.TPMTPublic](raw)
	if err != nil {
		return tpm2.TPMTPublic{}, fmt.Errorf("EK template in NV %#x: %w", s.TemplateIndex, err)
	}
	if len(tpm2.Marshal(*t)) != len(raw) {
		return tpm2.TPMTPublic{}, fmt.Errorf("EK template in NV %#x: trailing bytes", s.TemplateIndex)
	}
	a := t.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.Restricted || !a.Decrypt || a.SignEncrypt {
		return tpm2.TPMTPublic{}, fmt.Errorf("EK template in NV %#x is not an endorsement key's", s.TemplateIndex)
	}
	if t.Type != s.Template.Type || t.NameAlg != s.Template.NameAlg {
		return tpm2.TPMTPublic{}, fmt.Errorf("EK template in NV %#x is not of kind %s", s.TemplateIndex, s.Kind)
	}
	return *t, nil
}

// ApplyNonce puts a low-range EK nonce into a template's unique field, as
// the profile says: the nonce, padded with zeros to the key's size (RSA:
// the modulus; ECC: x, with y all zeros).
func ApplyNonce(t tpm2.TPMTPublic, nonce []byte) (tpm2.TPMTPublic, error) {
	switch t.Type {
	case tpm2.TPMAlgRSA:
		p, err := t.Parameters.RSADetail()
		if err != nil {
			return t, err
		}
		n := int(p.KeyBits) / 8
		if len(nonce) > n {
			return t, errors.New("EK nonce longer than the key")
		}
		buf := make([]byte, n)
		copy(buf, nonce)
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: buf})
	case tpm2.TPMAlgECC:
		p, err := t.Parameters.ECCDetail()
		if err != nil {
			return t, err
		}
		n := 32
		if p.CurveID == tpm2.TPMECCNistP384 {
			n = 48
		}
		if len(nonce) > n {
			return t, errors.New("EK nonce longer than the curve's coordinates")
		}
		x := make([]byte, n)
		copy(x, nonce)
		t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x}, Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, n)},
		})
	default:
		return t, fmt.Errorf("EK template of type %v", t.Type)
	}
	return t, nil
}
