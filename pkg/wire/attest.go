package wire

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// PathChallenge is where a device with a TPM asks for an attestation
// challenge before it enrolls.
const PathChallenge = "/v1/enroll/challenge"

// TPM modes of a fleet.
const (
	TPMOff      = "off"
	TPMOptional = "optional"
	TPMRequired = "required"
)

// Size limits of attestation material. Real EK certificates are 1-2 KiB and
// TPMT_PUBLIC structures a few hundred bytes; anything far larger is hostile.
const (
	MaxTPMPublic  = 1024
	MaxEKCert     = 8 << 10
	MaxTPMBlob    = 1024
	MaxQuotedPCRs = 24
	// MaxEKChain and MaxEKChainBytes bound the intermediate CA
	// certificates a device sends with its EK certificate.
	MaxEKChain      = 8
	MaxEKChainBytes = 24 << 10
	ChallengeBytes  = 32
	// MaxEventLog bounds a TCG event log: real firmware logs are tens of
	// KiB, a few hundred with many boot entries.
	MaxEventLog = 1 << 20
)

// MaxAttestedBodyBytes caps the body of a request that may carry evidence
// with an event log (enroll, refresh, rejoin): the log in base64 and the
// rest of an ordinary request.
const MaxAttestedBodyBytes = MaxBodyBytes + (MaxEventLog+2)/3*4

// ChallengeRequest presents a device's TPM: its endorsement key (EK), the
// EK's certificate when the TPM holds one, and an attestation key (AK).
// Public areas are TPMT_PUBLIC structures as the TPM returns them.
type ChallengeRequest struct {
	Fleet         string `json:"fleet"`
	DeviceID      string `json:"device_id"`
	EKPublic      []byte `json:"ek_public"`
	EKCertificate []byte `json:"ek_certificate,omitempty"` // DER
	// EKChain holds the intermediate CA certificates (DER) the TPM keeps
	// in NV for its EK certificate's chain. The server uses them only to
	// build a chain to the fleet's own roots; never as roots.
	EKChain  [][]byte `json:"ek_chain,omitempty"`
	AKPublic []byte   `json:"ak_public"`
	Ticket   string   `json:"ticket,omitempty"` // see EnrollRequest.Ticket
}

// Validate checks a challenge request's shape; the server then checks what
// it says.
func (r ChallengeRequest) Validate() error {
	var errs []error
	if err := ValidateFleet(r.Fleet); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateDeviceID(r.DeviceID); err != nil {
		errs = append(errs, err)
	}
	if len(r.EKPublic) == 0 || len(r.EKPublic) > MaxTPMPublic {
		errs = append(errs, fmt.Errorf("ek_public: missing or longer than %d bytes", MaxTPMPublic))
	}
	if len(r.EKCertificate) > MaxEKCert {
		errs = append(errs, fmt.Errorf("ek_certificate: longer than %d bytes", MaxEKCert))
	}
	if err := validateChain(r.EKChain, len(r.EKCertificate) > 0); err != nil {
		errs = append(errs, err)
	}
	if len(r.AKPublic) == 0 || len(r.AKPublic) > MaxTPMPublic {
		errs = append(errs, fmt.Errorf("ak_public: missing or longer than %d bytes", MaxTPMPublic))
	}
	return errors.Join(errs...)
}

// validateChain checks the shape of an EK chain: only with a certificate,
// a few certificates, none empty or oversized.
func validateChain(chain [][]byte, haveCert bool) error {
	if len(chain) == 0 {
		return nil
	}
	if !haveCert {
		return errors.New("ek_chain: sent without an ek_certificate")
	}
	if len(chain) > MaxEKChain {
		return fmt.Errorf("ek_chain: more than %d certificates", MaxEKChain)
	}
	total := 0
	for i, c := range chain {
		if len(c) == 0 || len(c) > MaxEKCert {
			return fmt.Errorf("ek_chain[%d]: empty or longer than %d bytes", i, MaxEKCert)
		}
		total += len(c)
	}
	if total > MaxEKChainBytes {
		return fmt.Errorf("ek_chain: longer than %d bytes in all", MaxEKChainBytes)
	}
	return nil
}

// ChallengeResponse is a single-use challenge: a credential only the TPM
// holding the EK can activate, and only for the named AK (TPM2_MakeCredential
// output), and a nonce the device quotes PCRs over.
type ChallengeResponse struct {
	ChallengeID     string    `json:"challenge_id"`
	CredentialBlob  []byte    `json:"credential_blob"`  // TPM2B_ID_OBJECT contents
	EncryptedSecret []byte    `json:"encrypted_secret"` // TPM2B_ENCRYPTED_SECRET contents
	Nonce           []byte    `json:"nonce"`
	PCRs            []int     `json:"pcrs"` // SHA-256 bank
	ExpiresAt       time.Time `json:"expires_at"`
}

// PCRValue is one PCR of the SHA-256 bank.
type PCRValue struct {
	Index  int    `json:"index"`
	Digest []byte `json:"digest"`
}

// Evidence answers a challenge: the activated secret, and a quote signed by
// the AK with the PCR values it covers.
type Evidence struct {
	ChallengeID string     `json:"challenge_id"`
	Secret      []byte     `json:"secret"`
	Quote       []byte     `json:"quote"`     // TPMS_ATTEST as the TPM signed it
	Signature   []byte     `json:"signature"` // TPMT_SIGNATURE
	PCRs        []PCRValue `json:"pcrs"`
	// EventLog is the TCG event log of the boot the quoted PCRs measured,
	// as the firmware left it; absent when the device has none.
	EventLog []byte `json:"event_log,omitempty"`
}

// Validate checks the evidence's shape.
func (e Evidence) Validate() error {
	var errs []error
	if e.ChallengeID == "" || len(e.ChallengeID) > 64 {
		errs = append(errs, errors.New("attestation.challenge_id: missing or too long"))
	}
	if len(e.Secret) == 0 || len(e.Secret) > 64 {
		errs = append(errs, errors.New("attestation.secret: missing or too long"))
	}
	if len(e.Quote) == 0 || len(e.Quote) > MaxTPMBlob {
		errs = append(errs, fmt.Errorf("attestation.quote: missing or longer than %d bytes", MaxTPMBlob))
	}
	if len(e.Signature) == 0 || len(e.Signature) > MaxTPMBlob {
		errs = append(errs, fmt.Errorf("attestation.signature: missing or longer than %d bytes", MaxTPMBlob))
	}
	if len(e.EventLog) > MaxEventLog {
		errs = append(errs, fmt.Errorf("attestation.event_log: longer than %d bytes", MaxEventLog))
	}
	if len(e.PCRs) > MaxQuotedPCRs {
		errs = append(errs, fmt.Errorf("attestation.pcrs: more than %d", MaxQuotedPCRs))
	}
	for _, p := range e.PCRs {
		if p.Index < 0 || p.Index >= MaxQuotedPCRs || len(p.Digest) != 32 {
			errs = append(errs, fmt.Errorf("attestation.pcrs: PCR %d: bad index or not a SHA-256 digest", p.Index))
			break
		}
	}
	return errors.Join(errs...)
}

// EKHash names a TPM: the hex SHA-256 of its EK public key in PKIX DER
// form. Allow-lists and device records use it.
func EKHash(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}
