package ekprofile

import (
	"crypto"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// PolicyC digests, from the TCG EK Credential Profile 2.x (appendix B,
// "PolicyC": TPM2_PolicyAuthorizeNV on the profile's policy NV index).
// PolicyA (TPM2_PolicySecret on the endorsement hierarchy) is computed;
// the high-range templates carry PolicyB = PolicyOR(PolicyA, PolicyC),
// whose published values the tests check against.
var policyC = map[tpm2.TPMAlgID][]byte{
	tpm2.TPMAlgSHA256: hexBytes("3767e2edd43ff45a3a7e1eaefcef78643dca964632e7aad82c673a30d8633fde"),
	tpm2.TPMAlgSHA384: hexBytes("d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5b4947c2d73e63005eed2dc2b3593d165"),
}

// Published PolicyB digests (the profile's high-range authPolicy).
var policyB = map[tpm2.TPMAlgID][]byte{
	tpm2.TPMAlgSHA256: hexBytes("ca3d0a99a2b93906f7a3342414efcfb3a385d44cd1fd459089d19b5071c0b7a0"),
	tpm2.TPMAlgSHA384: hexBytes("b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12"),
}

// PolicyA is the digest of TPM2_PolicySecret(TPM_RH_ENDORSEMENT) with no
// policy reference, under hash alg: what the low-range templates carry.
func PolicyA(alg tpm2.TPMAlgID) ([]byte, error) {
	h, err := hashOf(alg)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(make([]byte, h.Size()))
	d.Write(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMCCPolicySecret)))
	d.Write(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMRHEndorsement)))
	first := d.Sum(nil)
	d = h.New()
	d.Write(first) // the empty policyRef
	return d.Sum(nil), nil
}

// PolicyORBranches are the digests a TPM2_PolicyOR must list to satisfy a
// high-range EK's PolicyB: PolicyA first, then PolicyC.
func PolicyORBranches(alg tpm2.TPMAlgID) ([][]byte, error) {
	a, err := PolicyA(alg)
	if err != nil {
		return nil, err
	}
	c, ok := policyC[alg]
	if !ok {
		return nil, fmt.Errorf("no EK PolicyC for hash %v", alg)
	}
	return [][]byte{a, c}, nil
}

// PolicyOR computes TPM2_PolicyOR over branches from a fresh session.
func PolicyOR(alg tpm2.TPMAlgID, branches [][]byte) ([]byte, error) {
	h, err := hashOf(alg)
	if err != nil {
		return nil, err
	}
	d := h.New()
	d.Write(make([]byte, h.Size()))
	d.Write(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMCCPolicyOR)))
	for _, b := range branches {
		d.Write(b)
	}
	return d.Sum(nil), nil
}

func hashOf(alg tpm2.TPMAlgID) (crypto.Hash, error) {
	switch alg {
	case tpm2.TPMAlgSHA256:
		return crypto.SHA256, nil
	case tpm2.TPMAlgSHA384:
		return crypto.SHA384, nil
	}
	return 0, fmt.Errorf("hash %v is not one of the EK profile's here", alg)
}

// highAttributes are the high-range templates' attributes: the low range's
// plus userWithAuth, so the EK's owner may also use it with its auth value.
var highAttributes = tpm2.TPMAObject{
	FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true,
	AdminWithPolicy: true, Restricted: true, Decrypt: true,
}

// aesCFB is the templates' symmetric protection: AES-128 under SHA-256,
// AES-256 under SHA-384.
func aesCFB(nameAlg tpm2.TPMAlgID) tpm2.TPMTSymDefObject {
	bits := tpm2.TPMKeyBits(128)
	if nameAlg == tpm2.TPMAlgSHA384 {
		bits = 256
	}
	return tpm2.TPMTSymDefObject{
		Algorithm: tpm2.TPMAlgAES,
		KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, bits),
		Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
	}
}

// highRSA is template H-1 (2048, SHA-256) or H-6 (3072, SHA-384): the
// unique field is empty in the high range.
func highRSA(bits tpm2.TPMKeyBits, nameAlg tpm2.TPMAlgID) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type: tpm2.TPMAlgRSA, NameAlg: nameAlg, ObjectAttributes: highAttributes,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policyB[nameAlg]},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: aesCFB(nameAlg),
			Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
			KeyBits:   bits,
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: []byte{}}),
	}
}

// highECC is template H-2 (P-256, SHA-256) or H-3 (P-384, SHA-384).
func highECC(curve tpm2.TPMECCCurve, nameAlg tpm2.TPMAlgID) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type: tpm2.TPMAlgECC, NameAlg: nameAlg, ObjectAttributes: highAttributes,
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policyB[nameAlg]},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
			Symmetric: aesCFB(nameAlg),
			Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
			CurveID:   curve,
			KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: []byte{}}, Y: tpm2.TPM2BECCParameter{Buffer: []byte{}},
		}),
	}
}
