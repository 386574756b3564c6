// Package attest verifies TPM 2.0 evidence for enroll-server: the
// endorsement key (EK) and its certificate, the attestation key (AK), the
// credential-activation challenge that ties the two together, and quotes
// over PCRs. It is pure verification: it keeps no state, and every input
// is treated as hostile until checked.
package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// Error is a refusal: its message is safe to send to the device.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

func refuse(format string, args ...any) error { return &Error{msg: fmt.Sprintf(format, args...)} }

// Identity is a device's TPM as checked by CheckIdentity.
type Identity struct {
	// EKHash is the hex SHA-256 of the EK public key in PKIX DER form: the
	// device's hardware identity, and what allow-lists name.
	EKHash   string
	EKPublic tpm2.TPMTPublic
	// EKCertified is true when the EK came with a certificate that chains
	// to a configured manufacturer CA.
	EKCertified bool
	// EKKind is the EK's key type: rsa2048, rsa3072, ecc256, ecc384...
	EKKind string
	// EKIssuer is the certificate's issuer (its common name), empty
	// without a certificate.
	EKIssuer string
	TPM      TPMInfo
	AKPublic []byte
	AKName   []byte
}

// unmarshalExact decodes a TPM structure and refuses trailing bytes.
func unmarshalExact[T tpm2.Marshallable, P interface {
	*T
	tpm2.Unmarshallable
}](b []byte) (*T, error) {
	v, err := tpm2.Unmarshal[T, P](b)
	if err != nil {
		return nil, err
	}
	if len(tpm2.Marshal(*v)) != len(b) {
		return nil, errors.New("trailing or non-canonical bytes")
	}
	return v, nil
}

// CheckIdentity checks a device's EK and AK. An EK with a certificate must
// chain to cas and the certificate must be for that very key; an EK
// without one must be on the allow-list (allowed may be nil: none).
func CheckIdentity(req wire.ChallengeRequest, cas *CAs, allowed func(ekHash string) bool, now time.Time) (Identity, error) {
	ek, err := unmarshalExact[tpm2.TPMTPublic](req.EKPublic)
	if err != nil {
		return Identity{}, refuse("ek_public is not a TPMT_PUBLIC: %v", err)
	}
	if err := checkEK(ek); err != nil {
		return Identity{}, err
	}
	ekPub, err := tpm2.Pub(*ek)
	if err != nil {
		return Identity{}, refuse("ek_public: %v", err)
	}
	id := Identity{EKPublic: *ek, EKKind: KeyKind(ekPub)}
	if id.EKHash, err = wire.EKHash(ekPub); err != nil {
		return Identity{}, refuse("ek_public: %v", err)
	}
	switch {
	case len(req.EKCertificate) > 0:
		cert, info, err := cas.VerifyEKCert(req.EKCertificate, req.EKChain, now)
		if err != nil {
			return Identity{}, refuse("%v", err)
		}
		if !samePublicKey(cert.PublicKey, ekPub) {
			return Identity{}, refuse("the EK certificate is for another key than ek_public")
		}
		id.EKCertified, id.TPM, id.EKIssuer = true, info, issuerName(cert)
	case allowed != nil && allowed(id.EKHash):
	default:
		return Identity{}, refuse("the TPM sent no EK certificate and its EK (sha256 %s) is not on the fleet's allow-list", id.EKHash)
	}
	ak, err := unmarshalExact[tpm2.TPMTPublic](req.AKPublic)
	if err != nil {
		return Identity{}, refuse("ak_public is not a TPMT_PUBLIC: %v", err)
	}
	if err := checkAK(ak); err != nil {
		return Identity{}, err
	}
	name, err := tpm2.ObjectName(ak)
	if err != nil {
		return Identity{}, refuse("ak_public: %v", err)
	}
	id.AKPublic, id.AKName = slices.Clone(req.AKPublic), name.Buffer
	return id, nil
}

// EKKey reads an EK public area and names it, as CheckIdentity does.
func EKKey(raw []byte) (crypto.PublicKey, string, error) {
	ek, err := unmarshalExact[tpm2.TPMTPublic](raw)
	if err != nil {
		return nil, "", refuse("ek_public is not a TPMT_PUBLIC: %v", err)
	}
	if err := checkEK(ek); err != nil {
		return nil, "", err
	}
	pub, err := tpm2.Pub(*ek)
	if err != nil {
		return nil, "", refuse("ek_public: %v", err)
	}
	h, err := wire.EKHash(pub)
	if err != nil {
		return nil, "", refuse("ek_public: %v", err)
	}
	return pub, h, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// checkEK requires a storage key the TPM made and keeps: the shape of the
// TCG EK templates.
func checkEK(p *tpm2.TPMTPublic) error {
	a := p.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.Restricted || !a.Decrypt || a.SignEncrypt {
		return refuse("ek_public: not an endorsement key (needs fixedTPM, fixedParent, sensitiveDataOrigin, restricted, decrypt; not sign)")
	}
	if p.NameAlg != tpm2.TPMAlgSHA256 && p.NameAlg != tpm2.TPMAlgSHA384 {
		return refuse("ek_public: name algorithm %v is not SHA-256 or SHA-384", p.NameAlg)
	}
	switch p.Type {
	case tpm2.TPMAlgRSA:
		parms, err := p.Parameters.RSADetail()
		if err != nil || parms.KeyBits < 2048 {
			return refuse("ek_public: RSA EK must have at least 2048 bits")
		}
	case tpm2.TPMAlgECC:
		parms, err := p.Parameters.ECCDetail()
		if err != nil || (parms.CurveID != tpm2.TPMECCNistP256 && parms.CurveID != tpm2.TPMECCNistP384) {
			return refuse("ek_public: ECC EK must be on P-256 or P-384")
		}
	default:
		return refuse("ek_public: key type %v is neither RSA nor ECC", p.Type)
	}
	return nil
}

// checkAK requires a restricted signing key that never leaves its TPM and
// was generated inside it: only such a key can sign a quote the TPM made.
func checkAK(p *tpm2.TPMTPublic) error {
	a := p.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.Restricted || !a.SignEncrypt || a.Decrypt {
		return refuse("ak_public: not an attestation key (needs fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign; not decrypt)")
	}
	// The name algorithm only names the key (the credential is bound to
	// that name); tpm2_createak gives an AK its EK's, SHA-384 under a
	// P-384 or RSA 3072 EK. Its signatures are checked as SHA-256 below.
	if p.NameAlg != tpm2.TPMAlgSHA256 && p.NameAlg != tpm2.TPMAlgSHA384 {
		return refuse("ak_public: name algorithm must be SHA-256 or SHA-384")
	}
	switch p.Type {
	case tpm2.TPMAlgRSA:
		parms, err := p.Parameters.RSADetail()
		if err != nil || parms.KeyBits < 2048 {
			return refuse("ak_public: RSA AK must have at least 2048 bits")
		}
		if !schemeIs(parms.Scheme.Scheme, parms.Scheme.Details, tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS) {
			return refuse("ak_public: RSA AK must sign with RSASSA or RSAPSS over SHA-256")
		}
	case tpm2.TPMAlgECC:
		parms, err := p.Parameters.ECCDetail()
		if err != nil || (parms.CurveID != tpm2.TPMECCNistP256 && parms.CurveID != tpm2.TPMECCNistP384) {
			return refuse("ak_public: ECC AK must be on P-256 or P-384")
		}
		if !schemeIs(parms.Scheme.Scheme, parms.Scheme.Details, tpm2.TPMAlgECDSA) {
			return refuse("ak_public: ECC AK must sign with ECDSA over SHA-256")
		}
	default:
		return refuse("ak_public: key type %v is neither RSA nor ECC", p.Type)
	}
	return nil
}

// schemeIs reports whether a key's fixed signing scheme is one of want,
// over SHA-256.
func schemeIs(alg tpm2.TPMAlgID, details tpm2.TPMUAsymScheme, want ...tpm2.TPMAlgID) bool {
	if !slices.Contains(want, alg) {
		return false
	}
	var hash tpm2.TPMIAlgHash
	switch alg {
	case tpm2.TPMAlgRSASSA:
		if h, err := details.RSASSA(); err == nil {
			hash = h.HashAlg
		}
	case tpm2.TPMAlgRSAPSS:
		if h, err := details.RSAPSS(); err == nil {
			hash = h.HashAlg
		}
	case tpm2.TPMAlgECDSA:
		if h, err := details.ECDSA(); err == nil {
			hash = h.HashAlg
		}
	}
	return hash == tpm2.TPMAlgSHA256
}

// Challenge is what the server keeps of an issued challenge: never the
// secret itself, only its hash.
type Challenge struct {
	SecretHash []byte
	Nonce      []byte
	PCRs       []int
}

// NewChallenge makes a credential that only the TPM holding id's EK can
// activate, and only for id's AK, plus a fresh nonce.
func NewChallenge(r io.Reader, id Identity, pcrs []int) (Challenge, wire.ChallengeResponse, error) {
	if r == nil {
		r = rand.Reader
	}
	secret := make([]byte, wire.ChallengeBytes)
	nonce := make([]byte, wire.ChallengeBytes)
	if _, err := io.ReadFull(r, secret); err != nil {
		return Challenge{}, wire.ChallengeResponse{}, err
	}
	if _, err := io.ReadFull(r, nonce); err != nil {
		return Challenge{}, wire.ChallengeResponse{}, err
	}
	blob, encSecret, err := MakeCredential(r, id.EKPublic, id.AKName, secret)
	if err != nil {
		return Challenge{}, wire.ChallengeResponse{}, err
	}
	sum := sha256.Sum256(secret)
	c := Challenge{SecretHash: sum[:], Nonce: nonce, PCRs: slices.Clone(pcrs)}
	return c, wire.ChallengeResponse{CredentialBlob: blob, EncryptedSecret: encSecret, Nonce: nonce, PCRs: slices.Clone(pcrs)}, nil
}

// MakeCredential is TPM2_MakeCredential done in software: it protects
// secret so that only the TPM holding ek can recover it, and only for the
// object whose name is name.
func MakeCredential(r io.Reader, ek tpm2.TPMTPublic, name, secret []byte) (blob, encSecret []byte, err error) {
	key, err := tpm2.ImportEncapsulationKey(&ek)
	if err != nil {
		return nil, nil, fmt.Errorf("EK as encapsulation key: %w", err)
	}
	return tpm2.CreateCredential(r, key, name, secret)
}

// CheckEvidence verifies a device's answer to c: the activated secret, and
// a quote by the AK over the nonce and the PCRs c asked for. policy, when
// not empty, lists the values each PCR may hold.
func CheckEvidence(c Challenge, akPublic []byte, ev wire.Evidence, policy map[int][][]byte) error {
	sum := sha256.Sum256(ev.Secret)
	if subtle.ConstantTimeCompare(sum[:], c.SecretHash) != 1 {
		return refuse("the activated credential is wrong: the TPM does not hold the EK, or the AK is not the one named")
	}
	values, err := VerifyQuote(akPublic, ev.Quote, ev.Signature, c.Nonce, c.PCRs, ev.PCRs)
	if err != nil {
		return err
	}
	for idx, allowed := range policy {
		got, ok := values[idx]
		if !ok {
			return refuse("PCR %d is in the fleet's policy but was not quoted", idx)
		}
		if !slices.ContainsFunc(allowed, func(v []byte) bool { return bytes.Equal(v, got) }) {
			return refuse("PCR %d holds %x, which the fleet's policy does not allow", idx, got)
		}
	}
	return nil
}

// VerifyQuote checks a TPM2_Quote: signed by the AK, over nonce, selecting
// exactly pcrs of the SHA-256 bank, and with a PCR digest that matches the
// values sent. It returns the values by index.
func VerifyQuote(akPublic, quote, signature, nonce []byte, pcrs []int, sent []wire.PCRValue) (map[int][]byte, error) {
	ak, err := unmarshalExact[tpm2.TPMTPublic](akPublic)
	if err != nil {
		return nil, refuse("ak_public: %v", err)
	}
	if err := checkAK(ak); err != nil {
		return nil, err
	}
	if err := verifySignature(ak, quote, signature); err != nil {
		return nil, err
	}
	att, err := unmarshalExact[tpm2.TPMSAttest](quote)
	if err != nil {
		return nil, refuse("quote is not a TPMS_ATTEST: %v", err)
	}
	if att.Magic != tpm2.TPMGeneratedValue || att.Type != tpm2.TPMSTAttestQuote {
		return nil, refuse("quote is not a TPM-generated quote")
	}
	if subtle.ConstantTimeCompare(att.ExtraData.Buffer, nonce) != 1 {
		return nil, refuse("quote is over another nonce")
	}
	info, err := att.Attested.Quote()
	if err != nil {
		return nil, refuse("quote: %v", err)
	}
	sels := info.PCRSelect.PCRSelections
	if len(sels) != 1 || sels[0].Hash != tpm2.TPMAlgSHA256 || !slices.Equal(selected(sels[0].PCRSelect), sortedUnique(pcrs)) {
		return nil, refuse("quote selects other PCRs than the challenge asked for")
	}
	values := make(map[int][]byte, len(sent))
	for _, v := range sent {
		if _, dup := values[v.Index]; dup {
			return nil, refuse("PCR %d sent twice", v.Index)
		}
		values[v.Index] = v.Digest
	}
	h := sha256.New()
	for _, idx := range sortedUnique(pcrs) {
		v, ok := values[idx]
		if !ok || len(v) != sha256.Size {
			return nil, refuse("PCR %d was quoted but its value was not sent", idx)
		}
		h.Write(v)
	}
	if len(values) != len(sortedUnique(pcrs)) {
		return nil, refuse("PCR values were sent that the quote does not cover")
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), info.PCRDigest.Buffer) != 1 {
		return nil, refuse("the PCR values sent do not match the quoted digest")
	}
	return values, nil
}

// verifySignature checks sig over msg with the AK.
func verifySignature(ak *tpm2.TPMTPublic, msg, sig []byte) error {
	s, err := unmarshalExact[tpm2.TPMTSignature](sig)
	if err != nil {
		return refuse("signature is not a TPMT_SIGNATURE: %v", err)
	}
	pub, err := tpm2.Pub(*ak)
	if err != nil {
		return refuse("ak_public: %v", err)
	}
	digest := sha256.Sum256(msg)
	switch s.SigAlg {
	case tpm2.TPMAlgECDSA:
		e, err := s.Signature.ECDSA()
		k, ok := pub.(*ecdsa.PublicKey)
		if err != nil || !ok || e.Hash != tpm2.TPMAlgSHA256 {
			return refuse("signature: not an ECDSA SHA-256 signature by an ECC AK")
		}
		r, ss := new(big.Int).SetBytes(e.SignatureR.Buffer), new(big.Int).SetBytes(e.SignatureS.Buffer)
		if !ecdsa.Verify(k, digest[:], r, ss) {
			return refuse("quote signature does not verify with the AK")
		}
	case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return refuse("signature: RSA signature by a non-RSA AK")
		}
		var r *tpm2.TPMSSignatureRSA
		if s.SigAlg == tpm2.TPMAlgRSASSA {
			r, err = s.Signature.RSASSA()
		} else {
			r, err = s.Signature.RSAPSS()
		}
		if err != nil || r.Hash != tpm2.TPMAlgSHA256 {
			return refuse("signature: not an RSA SHA-256 signature")
		}
		if s.SigAlg == tpm2.TPMAlgRSASSA {
			err = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], r.Sig.Buffer)
		} else {
			err = rsa.VerifyPSS(k, crypto.SHA256, digest[:], r.Sig.Buffer, nil)
		}
		if err != nil {
			return refuse("quote signature does not verify with the AK")
		}
	default:
		return refuse("signature algorithm %v is not supported", s.SigAlg)
	}
	return nil
}

// selected lists the PCR indices a selection bitmap names, ascending.
func selected(bitmap []byte) []int {
	var out []int
	for i, b := range bitmap {
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				out = append(out, i*8+bit)
			}
		}
	}
	return out
}

func sortedUnique(pcrs []int) []int {
	out := slices.Clone(pcrs)
	slices.Sort(out)
	return slices.Compact(out)
}

// KeyKind names a public key's type and size as the TCG EK profile
// distinguishes them: rsa2048, rsa3072, ecc256, ecc384, ecc521.
func KeyKind(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("ecc%d", k.Curve.Params().BitSize)
	}
	return "unknown"
}

// issuerName is a certificate issuer's common name, or its whole name.
func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}
