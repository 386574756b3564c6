package enrollment

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// TPMPolicy is a fleet's TPM attestation policy.
type TPMPolicy struct {
	// Mode is wire.TPMOff, wire.TPMOptional or wire.TPMRequired.
	Mode string
	// CAs verify EK certificates; AllowedEKs lists the EK hashes of TPMs
	// without a certificate that may enroll.
	CAs        *attest.CAs
	AllowedEKs map[string]bool
	// PCRs are quoted (SHA-256 bank); PCRPolicy, when set, lists the values
	// each PCR may hold.
	PCRs         []int
	PCRPolicy    map[int][][]byte
	ChallengeTTL time.Duration
	// FetchEKCert, when the fleet allows it, fetches the certificate a
	// TPM's manufacturer publishes for an EK (nil: never fetched).
	FetchEKCert func(ctx context.Context, ek crypto.PublicKey) ([]byte, error)
	// Boot, when set, is the fleet's measured-boot policy: every attested
	// enrollment and refresh must send an event log that it allows.
	Boot *attest.BootPolicy
}

// DefaultChallengeTTL is how long a device has to answer a challenge.
const DefaultChallengeTTL = time.Minute

func (p TPMPolicy) enabled() bool { return p.Mode == wire.TPMOptional || p.Mode == wire.TPMRequired }

// Challenge checks a device's TPM identity and issues a single-use,
// short-lived attestation challenge for it. Nothing is recorded about the
// device; only the challenge is kept, until it is answered or expires.
func (s *Service) Challenge(ctx context.Context, req wire.ChallengeRequest) (wire.ChallengeResponse, error) {
	if err := req.Validate(); err != nil {
		return wire.ChallengeResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	fleet, ok := s.fleet(req.Fleet)
	if !ok {
		return wire.ChallengeResponse{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", req.Fleet)
	}
	if !fleet.TPM.enabled() {
		return wire.ChallengeResponse{}, fail(wire.CodeAttestationDisabled, "fleet %s does not use TPM attestation; enroll without it", req.Fleet)
	}
	// Challenges count against the fleet's admission limits: each costs a
	// public-key operation and a write.
	release, err := s.gates[req.Fleet].Enter(s.now(), s.sessionTicket(req.Ticket, req.Fleet, req.DeviceID))
	if err != nil {
		return wire.ChallengeResponse{}, err
	}
	defer release()
	now := s.now().UTC()
	allowed := func(h string) bool { return fleet.TPM.AllowedEKs[h] }
	if err := s.fetchEKCert(ctx, fleet.TPM, &req, allowed); err != nil {
		return wire.ChallengeResponse{}, err
	}
	id, err := attest.CheckIdentity(req, fleet.TPM.CAs, allowed, now)
	if err != nil {
		s.log.Warn("TPM identity refused", "fleet", req.Fleet, "device_id", req.DeviceID, "reason", err)
		return wire.ChallengeResponse{}, attestationError(err)
	}
	c, resp, err := attest.NewChallenge(nil, id, quotedPCRs(fleet.TPM))
	if err != nil {
		return wire.ChallengeResponse{}, fmt.Errorf("make challenge: %w", err)
	}
	ttl := orDefault(fleet.TPM.ChallengeTTL, DefaultChallengeTTL)
	rec := inventory.Challenge{
		ID: newID(), Fleet: req.Fleet, DeviceID: req.DeviceID, EKHash: id.EKHash, EKCertified: id.EKCertified,
		EKKind: id.EKKind, EKIssuer: id.EKIssuer, TPM: tpmName(id.TPM), AKPublic: id.AKPublic, SecretHash: c.SecretHash, Nonce: c.Nonce, PCRs: c.PCRs,
		ExpiresAt: now.Add(ttl),
	}
	if err := s.store.PutChallenge(ctx, rec); err != nil {
		return wire.ChallengeResponse{}, fmt.Errorf("store challenge: %w", err)
	}
	resp.ChallengeID, resp.ExpiresAt = rec.ID, rec.ExpiresAt
	return resp, nil
}

// fetchEKCert fills in the certificate a TPM without one in NV has at its
// manufacturer, where the fleet allows fetching and the EK is not on the
// allow-list already. What is fetched is verified as if the device had
// sent it.
func (s *Service) fetchEKCert(ctx context.Context, p TPMPolicy, req *wire.ChallengeRequest, allowed func(string) bool) error {
	if len(req.EKCertificate) > 0 || p.FetchEKCert == nil {
		return nil
	}
	pub, hash, err := attest.EKKey(req.EKPublic)
	if err != nil || allowed(hash) {
		return nil // CheckIdentity refuses or admits it, as without fetching
	}
	der, err := p.FetchEKCert(ctx, pub)
	if err != nil {
		s.log.Warn("manufacturer EK certificate not fetched", "fleet", req.Fleet, "device_id", req.DeviceID, "ek_hash", hash, "reason", err)
		return fail(wire.CodeAttestationFailed, "the TPM holds no EK certificate and its manufacturer's could not be fetched (EK sha256 %s)", hash)
	}
	req.EKCertificate = der
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func tpmName(t attest.TPMInfo) string {
	if t.Manufacturer == "" {
		return ""
	}
	return strings.TrimSpace(strings.Join([]string{t.Manufacturer, t.Model, t.Version}, " "))
}

func attestationError(err error) error {
	var ae *attest.Error
	if errors.As(err, &ae) {
		return fail(wire.CodeAttestationFailed, "%s", ae.Error())
	}
	return err
}

// verifyAttestation takes the challenge the evidence answers (so that it
// can never be answered twice) and verifies the evidence against it.
func (s *Service) verifyAttestation(ctx context.Context, log *slog.Logger, fleet Fleet, fleetName, deviceID string, ev wire.Evidence) (*inventory.Challenge, error) {
	c, err := s.store.TakeChallenge(ctx, ev.ChallengeID)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && c.Identity) {
		return nil, fail(wire.CodeChallengeInvalid, "unknown or already answered challenge; ask for a new one")
	}
	if err != nil {
		return nil, fmt.Errorf("take challenge: %w", err)
	}
	if s.now().After(c.ExpiresAt) {
		return nil, fail(wire.CodeChallengeInvalid, "the challenge expired; ask for a new one")
	}
	if c.Fleet != fleetName || c.DeviceID != deviceID {
		log.Warn("attestation refused: challenge issued to another device", "security", true, "challenge_device", c.DeviceID)
		return nil, fail(wire.CodeAttestationFailed, "the challenge was issued to another device")
	}
	ch := attest.Challenge{SecretHash: c.SecretHash, Nonce: c.Nonce, PCRs: c.PCRs}
	if err := attest.CheckEvidence(ch, c.AKPublic, ev, fleet.TPM.PCRPolicy); err != nil {
		log.Warn("attestation refused", "security", true, "reason", err, "ek_hash", c.EKHash)
		return nil, attestationError(err)
	}
	if c.Boot, err = s.checkBoot(ctx, log, fleet, c, ev); err != nil {
		return nil, err
	}
	return &c, nil
}

// checkHardware refuses a device bound to a TPM unless it proved that very
// TPM, and raises a security alert when it did not: a cloned disk, or a
// device ID claimed by other hardware. It returns the device's record as
// it stands (empty when there is none, or the fleet uses no TPM).
//
// A mismatch comes back as its description; the caller raises it (see
// hardwareMismatch) only once the request proved something — a TPM, or the
// fleet's bootstrap credential — so that nobody raises alerts for free.
func (s *Service) checkHardware(ctx context.Context, fleet Fleet, req wire.EnrollRequest, att *inventory.Challenge) (inventory.Device, string, error) {
	if !fleet.TPM.enabled() {
		return inventory.Device{}, "", nil
	}
	d, err := s.store.Device(ctx, req.Fleet, req.DeviceID)
	if errors.Is(err, inventory.ErrNotFound) {
		return inventory.Device{}, "", nil
	}
	if err != nil {
		return inventory.Device{}, "", fmt.Errorf("load device: %w", err)
	}
	switch {
	case d.EKHash == "":
		return d, "", nil
	case att == nil:
		return d, fmt.Sprintf("device bound to the TPM with EK %s asked to enroll without attestation", short(d.EKHash)), nil
	case rebinding(d, att):
		return d, "", nil // an administrator allowed this hardware once: see decide
	case att.EKHash != d.EKHash:
		return d, fmt.Sprintf("device bound to the TPM with EK %s presented another TPM, EK %s", short(d.EKHash), short(att.EKHash)), nil
	}
	return d, "", nil
}

// hardwareMismatch raises the alert for a proven request from the wrong
// hardware and returns its refusal.
func (s *Service) hardwareMismatch(ctx context.Context, req wire.EnrollRequest, detail string) error {
	s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: inventory.AlertHardwareMismatch,
		Fleet: req.Fleet, DeviceID: req.DeviceID, Detail: detail})
	return fail(wire.CodeHardwareMismatch, "device %s is bound to other hardware; an administrator must look into it", req.DeviceID)
}

func short(h string) string { return h[:min(len(h), 16)] }

// bindTo records the TPM a challenge proved as the device's hardware.
func bindTo(d *inventory.Device, att *inventory.Challenge) {
	d.EKHash, d.TPM, d.EKKind, d.EKIssuer = att.EKHash, att.TPM, att.EKKind, att.EKIssuer
}

// rebinding reports whether this enrollment moves the device to the new
// hardware an administrator allowed (see AllowRebind): it must have
// attested with a TPM other than the one the device is bound to.
func rebinding(d inventory.Device, att *inventory.Challenge) bool {
	return d.RebindBy != "" && att != nil && d.EKHash != "" && att.EKHash != d.EKHash &&
		(d.RebindEK == "" || strings.EqualFold(d.RebindEK, att.EKHash))
}

// bind ties a device to the TPM it attested with, the first time it does.
func bind(d *inventory.Device, att *inventory.Challenge) {
	if att != nil && d.EKHash == "" {
		bindTo(d, att)
	}
}
