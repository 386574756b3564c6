package wire

import (
	"errors"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/pkg/identity"
)

// Routes of an enrolled device's own identity: after its first enrollment
// a device proves itself with its device key, never again with the fleet's
// shared bootstrap credential.
const (
	// PathIdentityChallenge issues a single-use nonce for a device to sign.
	PathIdentityChallenge = "/v1/identity/challenge"
	// PathRefresh gives an authenticated device its next secret ID: proof
	// is its current Vault token and a signature by its device key.
	PathRefresh = "/v1/identity/refresh"
	// PathRejoin gives a device whose token and secret ID are both dead a
	// new secret ID: proof is a signature by its device key (and its TPM,
	// where it is bound to one).
	PathRejoin = "/v1/identity/rejoin"
)

// IdentityChallengeRequest asks for a nonce to sign.
type IdentityChallengeRequest struct {
	Fleet    string `json:"fleet"`
	DeviceID string `json:"device_id"`
}

// IdentityChallengeResponse carries the nonce, good for one refresh or
// rejoin until ExpiresAt.
type IdentityChallengeResponse struct {
	ChallengeID string    `json:"challenge_id"`
	Nonce       []byte    `json:"nonce"`
	ExpiresAt   time.Time `json:"expires_at"`
	// RegisterKey: the server holds no key for this device yet (enrolled
	// before device keys existed); the device sends its key as NewKey.
	RegisterKey bool `json:"register_key,omitempty"`
	// RotateKey: the device's key is older than its fleet allows; the
	// device makes a new one and sends it as NewKey, signed by the old.
	RotateKey bool `json:"rotate_key,omitempty"`
}

// IdentityRequest is a refresh or a rejoin. Signature is the device key's
// signature over identity.Claim{Purpose, Fleet, DeviceID, IdempotencyKey,
// the challenge's nonce, Sequence, NewKey}.Message().
type IdentityRequest struct {
	Fleet          string `json:"fleet"`
	DeviceID       string `json:"device_id"`
	IdempotencyKey string `json:"idempotency_key"`
	// Token is the device's current Vault token (refresh only).
	Token       string `json:"token,omitempty"`
	ChallengeID string `json:"challenge_id"`
	// Sequence is the join-state sequence the device holds.
	Sequence  uint64 `json:"sequence"`
	NewKey    string `json:"new_key,omitempty"`
	Signature []byte `json:"signature"`
	// Attestation answers a TPM challenge; a rejoin of a device bound to a
	// TPM needs it.
	Attestation *Evidence `json:"attestation,omitempty"`
	Facts       Facts     `json:"facts"`
}

// Validate checks an identity request's shape.
func (r IdentityRequest) Validate(purpose string) error {
	var errs []error
	if err := ValidateFleet(r.Fleet); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateDeviceID(r.DeviceID); err != nil {
		errs = append(errs, err)
	}
	if err := ValidateIdempotencyKey(r.IdempotencyKey); err != nil {
		errs = append(errs, err)
	}
	switch {
	case purpose == identity.PurposeRefresh && (r.Token == "" || len(r.Token) > 512):
		errs = append(errs, errors.New("token: missing or too long"))
	case purpose == identity.PurposeRejoin && r.Token != "":
		errs = append(errs, errors.New("token: a rejoin carries none; refresh with it instead"))
	}
	if r.ChallengeID == "" || len(r.ChallengeID) > 64 {
		errs = append(errs, errors.New("challenge_id: missing or too long"))
	}
	if len(r.Signature) == 0 || len(r.Signature) > identity.MaxSignatureLen {
		errs = append(errs, fmt.Errorf("signature: missing or longer than %d bytes", identity.MaxSignatureLen))
	}
	if r.NewKey != "" {
		if _, err := identity.ParsePublicKey(r.NewKey); err != nil {
			errs = append(errs, fmt.Errorf("new_key: %w", err))
		}
	}
	if r.Attestation != nil {
		if err := r.Attestation.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
