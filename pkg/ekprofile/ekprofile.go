// Package ekprofile is the TCG EK Credential Profile for TPM 2.0 (version
// 2.x) as both sides use it: the endorsement key (EK) kinds a TPM may hold,
// the NV indices where a manufacturer leaves each kind's certificate,
// template and nonce, the default templates, and the authorization
// policies those templates carry.
//
// The low range (0x01c00002-0x01c0000c) is the profile's first layout, the
// one most TPMs carry; the high range (0x01c00012 onward) holds every kind,
// including the SHA-384 ones, whose templates let the EK's owner use it
// with its (empty) auth value or with the profile's policy.
package ekprofile

import (
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Kinds, named as enroll-server names keys (attest.KeyKind).
const (
	RSA2048 = "rsa2048"
	RSA3072 = "rsa3072"
	ECC256  = "ecc256"
	ECC384  = "ecc384"
)

// DefaultPreference is the order a device picks its EK in when its fleet
// names none: the kinds most TPMs certify first, so that a fleet that asks
// for nothing keeps the EK it always used.
var DefaultPreference = []string{RSA2048, ECC256, ECC384, RSA3072}

// Slot is where one EK lives: its certificate's NV index, and the NV
// indices a manufacturer may fill with the template (and, in the low
// range, the nonce) it made the EK from.
type Slot struct {
	Kind      string
	Name      string // the profile's name: L-1, H-6...
	CertIndex tpm2.TPMHandle
	// TemplateIndex and NonceIndex are 0 where the profile defines none.
	TemplateIndex tpm2.TPMHandle
	NonceIndex    tpm2.TPMHandle
	// Template is the profile's default template for this slot, used when
	// the TPM holds none in NV.
	Template tpm2.TPMTPublic
}

// High reports whether the slot is in the high range.
func (s Slot) High() bool { return s.CertIndex >= 0x01c00012 }

// Slots lists every EK slot the client looks in, low range first: a TPM
// that certifies one kind in both ranges is read as the low range says,
// which is what Windows and most tools read.
var Slots = []Slot{
	{Kind: RSA2048, Name: "L-1", CertIndex: 0x01c00002, NonceIndex: 0x01c00003, TemplateIndex: 0x01c00004, Template: tpm2.RSAEKTemplate},
	{Kind: ECC256, Name: "L-2", CertIndex: 0x01c0000a, NonceIndex: 0x01c0000b, TemplateIndex: 0x01c0000c, Template: tpm2.ECCEKTemplate},
	{Kind: RSA2048, Name: "H-1", CertIndex: 0x01c00012, TemplateIndex: 0x01c00013, Template: highRSA(2048, tpm2.TPMAlgSHA256)},
	{Kind: ECC256, Name: "H-2", CertIndex: 0x01c00014, TemplateIndex: 0x01c00015, Template: highECC(tpm2.TPMECCNistP256, tpm2.TPMAlgSHA256)},
	{Kind: ECC384, Name: "H-3", CertIndex: 0x01c00016, TemplateIndex: 0x01c00017, Template: highECC(tpm2.TPMECCNistP384, tpm2.TPMAlgSHA384)},
	{Kind: RSA3072, Name: "H-6", CertIndex: 0x01c0001c, TemplateIndex: 0x01c0001d, Template: highRSA(3072, tpm2.TPMAlgSHA384)},
}

// SlotsOf lists a kind's slots, low range first.
func SlotsOf(kind string) []Slot {
	var out []Slot
	for _, s := range Slots {
		if s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

// The EK certificate chain range: intermediate CA certificates of the EK's
// chain, each index holding one or more DER certificates back to back.
const (
	ChainFirst tpm2.TPMHandle = 0x01c00100
	ChainLast  tpm2.TPMHandle = 0x01c001ff
)

// Aliases are the older names of the low-range kinds, still accepted in
// configuration.
var Aliases = map[string]string{"rsa": RSA2048, "ecc": ECC256}

// ParseKinds reads a preference list ("ecc384,rsa2048"): known kinds or
// their aliases, none twice.
func ParseKinds(list []string) ([]string, error) {
	out := make([]string, 0, len(list))
	for _, k := range list {
		k = strings.ToLower(strings.TrimSpace(k))
		if a, ok := Aliases[k]; ok {
			k = a
		}
		if len(SlotsOf(k)) == 0 {
			return nil, fmt.Errorf("unknown EK kind %q (want %s)", k, strings.Join(DefaultPreference, ", "))
		}
		for _, seen := range out {
			if seen == k {
				return nil, fmt.Errorf("EK kind %s is listed twice", k)
			}
		}
		out = append(out, k)
	}
	return out, nil
}
