package enrollment

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// After its first enrollment a device's own identity keeps it enrolled:
// its device key (registered with the device record) and the join-state
// sequence both sides hold. The fleet's shared bootstrap credential is
// never asked for again.
//
//   - Refresh: an authenticated device proves its current Vault token of
//     its own role and signs a server nonce with its device key; it gets its
//     next secret ID, wrapped, while the current one still works.
//   - Rejoin: a device whose token and secret ID are both dead signs a
//     server nonce (and attests, where it is bound to a TPM). It counts
//     against the recovery budget.
//   - Either names the sequence the device holds. The server's sequence
//     moves on when the new credential is acknowledged; a request with an
//     older one comes from a second copy of the identity (a cloned disk):
//     refused with cloned_state, alert, and the device locked, both copies,
//     until an administrator re-admits it.
//
// The old secret IDs are destroyed only once the new one is acknowledged,
// so a refresh that fails half way leaves the device as it was.

// IdentityChallenge issues a single-use nonce for an enrolled device to
// sign. Nothing is recorded for a device ID without an identity.
func (s *Service) IdentityChallenge(ctx context.Context, req wire.IdentityChallengeRequest) (wire.IdentityChallengeResponse, error) {
	if err := errors.Join(wire.ValidateFleet(req.Fleet), wire.ValidateDeviceID(req.DeviceID)); err != nil {
		return wire.IdentityChallengeResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	fleet, ok := s.fleet(req.Fleet)
	if !ok {
		return wire.IdentityChallengeResponse{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", req.Fleet)
	}
	// A challenge costs no Vault call and proves nothing yet: it does not
	// draw on the fleet's limits (an unauthenticated flood of them would
	// otherwise shed every device's real requests), only on its device's
	// from that address.
	d, err := s.enrolledDevice(ctx, req.Fleet, req.DeviceID)
	if err != nil {
		return wire.IdentityChallengeResponse{}, err
	}
	if refusal := s.standing(d); refusal != nil {
		return wire.IdentityChallengeResponse{}, refusal
	}
	// Limited per device and per address asking: a flood from elsewhere
	// must not use up the challenges the device itself needs to refresh.
	if !s.challenges.Allow(req.Fleet+"/"+req.DeviceID+" from "+sourceOf(ctx), s.now()) {
		return wire.IdentityChallengeResponse{}, failRetry(2, wire.CodeRateLimited, "too many challenges for this device; retry later")
	}
	now := s.now().UTC()
	c := inventory.Challenge{ID: newID(), Identity: true, Fleet: req.Fleet, DeviceID: req.DeviceID,
		Nonce: make([]byte, wire.ChallengeBytes), ExpiresAt: now.Add(orDefault(fleet.TPM.ChallengeTTL, DefaultChallengeTTL))}
	if _, err := rand.Read(c.Nonce); err != nil {
		return wire.IdentityChallengeResponse{}, err
	}
	if err := s.store.PutChallenge(ctx, c); err != nil {
		return wire.IdentityChallengeResponse{}, fmt.Errorf("store challenge: %w", err)
	}
	return wire.IdentityChallengeResponse{
		ChallengeID: c.ID, Nonce: c.Nonce, ExpiresAt: c.ExpiresAt,
		RegisterKey: d.DeviceKey == "",
		RotateKey:   d.DeviceKey != "" && fleet.KeyMaxAge > 0 && now.Sub(d.KeyRegisteredAt) > fleet.KeyMaxAge,
	}, nil
}

// enrolledDevice loads a device that has an identity to prove.
func (s *Service) enrolledDevice(ctx context.Context, fleet, id string) (inventory.Device, error) {
	d, err := s.store.Device(ctx, fleet, id)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && d.Sequence == 0 && d.Enrollments == 0) {
		return d, fail(wire.CodeUnknownDevice, "device %s of fleet %s has no identity to prove; it must enroll first", id, fleet)
	}
	if err != nil {
		return d, fmt.Errorf("load device: %w", err)
	}
	return d, nil
}

// Refresh gives an authenticated device its next secret ID.
func (s *Service) Refresh(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error) {
	return s.renew(ctx, identity.PurposeRefresh, req)
}

// Rejoin gives a device whose Vault credentials are all dead a new secret
// ID on the strength of its device key (and TPM).
func (s *Service) Rejoin(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error) {
	return s.renew(ctx, identity.PurposeRejoin, req)
}

func (s *Service) renew(ctx context.Context, purpose string, req wire.IdentityRequest) (resp wire.EnrollResponse, err error) {
	start := s.now()
	defer func() { s.countOutcome(req.Fleet, purpose, resp, err, s.now().Sub(start)) }()
	if err := req.Validate(purpose); err != nil {
		return wire.EnrollResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	if err := validateFacts(req.Facts); err != nil {
		return wire.EnrollResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	fleet, ok := s.fleet(req.Fleet)
	if !ok {
		return wire.EnrollResponse{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", req.Fleet)
	}
	log := s.log.With("fleet", req.Fleet, "device_id", req.DeviceID, "path", purpose)
	// The device key is proven before the request draws on the fleet's
	// limits: only a device's own request can, and none reaches Vault
	// unsigned.
	d, err := s.proveKey(ctx, log, purpose, req)
	if err != nil {
		return wire.EnrollResponse{}, err
	}
	release, err := s.gates[req.Fleet].Pass(s.now())
	if err != nil {
		return wire.EnrollResponse{}, err
	}
	defer release()
	att, err := s.proveWithVault(ctx, log, fleet, purpose, req, d)
	if err != nil {
		return wire.EnrollResponse{}, err
	}
	now := s.now().UTC()
	kind := inventory.KindRefresh
	if purpose == identity.PurposeRejoin {
		kind = inventory.KindRejoin
	}
	e, claimed, err := s.store.BeginEnrollment(ctx, inventory.Enrollment{
		ID: newID(), Kind: kind, Fleet: req.Fleet, DeviceID: req.DeviceID, IdempotencyKey: req.IdempotencyKey,
		State: inventory.EnrollmentMinting, Generation: d.Generation, Sequence: req.Sequence + 1, NewKey: req.NewKey,
		CreatedAt: now, UpdatedAt: now,
	}, now.Add(-s.staleAfter), nil)
	if errors.Is(err, inventory.ErrBusy) {
		return wire.EnrollResponse{}, failRetry(2, wire.CodeEnrollmentInProgress, "another enrollment of this device is in progress")
	}
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("begin %s: %w", purpose, err)
	}
	log = log.With("enrollment_id", e.ID)
	if !claimed {
		if resp, done, err := s.replay(ctx, log, fleet, e, kind); done {
			return resp, err
		}
	}
	// The device record may have moved on while the proofs were checked.
	if d, err = s.store.Device(ctx, req.Fleet, req.DeviceID); err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("load device: %w", err)
	}
	if att != nil {
		d.Boot = att.Boot // the boot this renewal proved
	}
	if refusal := s.standing(d); refusal != nil {
		e.State, e.UpdatedAt, d.InFlight = inventory.EnrollmentFailed, now, ""
		if err := s.store.Record(ctx, e, d, nil); err != nil {
			return wire.EnrollResponse{}, err
		}
		return wire.EnrollResponse{}, refusal
	}
	if d.Resync {
		// Re-admitted after a clone lockout: the first copy to prove the
		// key now is the device (its operator removed the other), whatever
		// sequence it holds; the sequence starts again from the server's.
		log.Warn("accepting the join-state sequence the device presents, once, after a re-admission", "presented", req.Sequence, "held", d.Sequence)
	} else if req.Sequence != d.Sequence {
		return wire.EnrollResponse{}, s.cloned(ctx, &e, &d, fmt.Sprintf("%s presented join-state sequence %d, the server holds %d", purpose, req.Sequence, d.Sequence))
	}
	// Two renewals from the same join state, the first not yet
	// acknowledged: two copies racing. (Whichever acknowledged first would
	// otherwise win silently, and the other be refused as superseded.)
	if d.EnrollmentID != "" && d.EnrollmentID != e.ID && !d.Resync {
		cur, err := s.store.Enrollment(ctx, d.EnrollmentID)
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return wire.EnrollResponse{}, fmt.Errorf("load the current enrollment: %w", err)
		}
		if err == nil && cur.State == inventory.EnrollmentWrapped && isRenewal(cur.Kind) && cur.Sequence == req.Sequence+1 {
			return wire.EnrollResponse{}, s.cloned(ctx, &e, &d, fmt.Sprintf("two %ss from join-state sequence %d at once (the other is enrollment %s)", purpose, req.Sequence, cur.ID))
		}
	}
	if purpose == identity.PurposeRejoin {
		if err := s.spendRecovery(ctx, fleet, &e, &d, now); err != nil {
			return wire.EnrollResponse{}, err
		}
	}
	return s.mint(ctx, log, fleet, e, d, req.Facts)
}

// replay answers a retried request with its enrollment's outcome; done is
// false when the enrollment should be minted (a server stopped half way).
func (s *Service) replay(ctx context.Context, log *slog.Logger, fleet Fleet, e inventory.Enrollment, kind string) (wire.EnrollResponse, bool, error) {
	switch {
	case e.Kind != kind:
		return wire.EnrollResponse{}, true, fail(wire.CodeIdempotencyConflict, "this idempotency key belongs to another kind of request")
	case e.State == inventory.EnrollmentWrapped:
		log.Info("idempotent replay", "state", e.State)
		resp, err := s.replayWrapped(ctx, log, fleet, e)
		return resp, true, err
	case e.State == inventory.EnrollmentAcknowledged:
		log.Info("idempotent replay", "state", e.State)
		return responseOf(e), true, nil
	case e.State == inventory.EnrollmentFailed:
		return wire.EnrollResponse{}, true, fail(wire.CodeIdempotencyConflict, "this request failed; start a new one with a new idempotency key")
	case e.UpdatedAt.After(s.now().Add(-s.staleAfter)):
		return wire.EnrollResponse{}, true, failRetry(2, wire.CodeEnrollmentInProgress, "this request is being processed")
	}
	log.Warn("resuming an interrupted request")
	return wire.EnrollResponse{}, false, nil
}

// proveKey checks what a refresh or rejoin proves without Vault: the nonce
// (single use), the signature by the device's registered key (or, for a
// device enrolled before device keys, by the key it registers now, which
// proveWithVault backs with its token), and the device's standing. Nothing
// is written for a request that fails here, but the taken nonce.
func (s *Service) proveKey(ctx context.Context, log *slog.Logger, purpose string, req wire.IdentityRequest) (inventory.Device, error) {
	d, err := s.enrolledDevice(ctx, req.Fleet, req.DeviceID)
	if err != nil {
		return d, err
	}
	c, err := s.store.TakeChallenge(ctx, req.ChallengeID)
	switch {
	case errors.Is(err, inventory.ErrNotFound) || (err == nil && !c.Identity):
		return d, fail(wire.CodeChallengeInvalid, "unknown or already answered challenge; ask for a new one")
	case err != nil:
		return d, fmt.Errorf("take challenge: %w", err)
	case s.now().After(c.ExpiresAt):
		return d, fail(wire.CodeChallengeInvalid, "the challenge expired; ask for a new one")
	case c.Fleet != req.Fleet || c.DeviceID != req.DeviceID:
		return d, fail(wire.CodeProofInvalid, "the challenge was issued to another device")
	}
	key := d.DeviceKey
	if key == "" {
		// Enrolled before device keys: the device registers one now, and
		// only with its live token (a rejoin has nothing else to show).
		if purpose != identity.PurposeRefresh || req.NewKey == "" {
			return d, fail(wire.CodeProofInvalid, "device %s has no registered device key; it can only register one while its token is valid", req.DeviceID)
		}
		key = req.NewKey
	}
	msg := identity.Claim{Purpose: purpose, Fleet: req.Fleet, DeviceID: req.DeviceID, IdempotencyKey: req.IdempotencyKey,
		Nonce: c.Nonce, Sequence: req.Sequence, NewKey: req.NewKey}.Message()
	if err := identity.Verify(key, msg, req.Signature); err != nil {
		log.Warn("identity proof refused", "security", true, "reason", err, "key", identity.Fingerprint(key))
		return d, fail(wire.CodeProofInvalid, "the signature does not verify with the device's registered key")
	}
	if refusal := s.standing(d); refusal != nil {
		return d, refusal
	}
	return d, nil
}

// proveWithVault checks the proofs that cost a Vault call or a TPM
// verification: the live token of a refresh, the TPM of a bound device's
// rejoin, and of its refresh where it attests (always, in a fleet with a
// boot policy: its boot is judged again). It returns the verified
// attestation, nil without one.
func (s *Service) proveWithVault(ctx context.Context, log *slog.Logger, fleet Fleet, purpose string, req wire.IdentityRequest, d inventory.Device) (*inventory.Challenge, error) {
	if purpose == identity.PurposeRefresh {
		if err := s.checkDeviceToken(ctx, req.Fleet, req.DeviceID, req.Token); err != nil {
			return nil, err
		}
	}
	if d.EKHash == "" {
		return nil, nil
	}
	attests := purpose == identity.PurposeRejoin || fleet.TPM.Boot != nil || req.Attestation != nil
	if !attests {
		return nil, nil
	}
	if req.Attestation == nil {
		return nil, fail(wire.CodeAttestationRequired, "device %s is bound to its TPM: a %s must attest", req.DeviceID, purpose)
	}
	att, err := s.verifyAttestation(ctx, log, fleet, req.Fleet, req.DeviceID, *req.Attestation)
	if err != nil {
		return nil, err
	}
	if att.EKHash != d.EKHash {
		s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: inventory.AlertHardwareMismatch, Fleet: req.Fleet, DeviceID: req.DeviceID,
			Detail: fmt.Sprintf("%s signed by the device key from another TPM, EK %s (bound to %s)", purpose, short(att.EKHash), short(d.EKHash))})
		return nil, fail(wire.CodeHardwareMismatch, "device %s is bound to other hardware; an administrator must look into it", req.DeviceID)
	}
	return att, nil
}

func isRenewal(kind string) bool {
	return kind == inventory.KindRefresh || kind == inventory.KindRejoin
}

// checkDeviceToken checks that token is a live token of the device's own
// role.
func (s *Service) checkDeviceToken(ctx context.Context, fleet, device, token string) error {
	ti, err := s.vault.LookupToken(ctx, token)
	if errors.Is(err, vault.ErrInvalidToken) {
		return fail(wire.CodeProofInvalid, "the presented token is not valid")
	}
	if err != nil {
		return vaultError("look up the device token", err)
	}
	if ti.Path != "auth/"+vault.DeviceMount(fleet)+"/login" || ti.Meta["role_name"] != device {
		return fail(wire.CodeProofInvalid, "the presented token was not issued to this device")
	}
	return nil
}

// standing refuses a device that an administrator or the server has
// stopped.
func (s *Service) standing(d inventory.Device) *wire.Error {
	switch {
	case d.State == inventory.DeviceQuarantined && strings.HasPrefix(d.Reason, clonedReason):
		// Every copy hears the same: none retries on its own, since each
		// attempt of a stale copy would lock the device out again.
		return fail(wire.CodeClonedState, "device is locked: two copies of its identity were seen; remove the copy, have an administrator re-admit the device, then restart the real one")
	case d.State == inventory.DeviceQuarantined:
		return fail(wire.CodeDeviceQuarantined, "device is quarantined (%s); an administrator must re-admit it", d.Reason)
	case d.State == inventory.DeviceRevoked:
		return fail(wire.CodeRejected, "device was revoked (%s); an administrator must re-admit it", d.Reason)
	}
	return nil
}

// clonedReason starts the quarantine reason of a device locked for two
// copies of its identity.
const clonedReason = "cloned state: "

// cloned locks a device whose identity was presented with a stale
// join-state sequence: two copies of it exist. Both are cut off until an
// administrator re-admits the device.
func (s *Service) cloned(ctx context.Context, e *inventory.Enrollment, d *inventory.Device, detail string) error {
	if d.State != inventory.DeviceQuarantined {
		s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: inventory.AlertClonedState, Fleet: d.Fleet,
			DeviceID: d.ID, EnrollmentID: e.ID, Detail: detail})
	}
	d.InFlight = ""
	if err := s.quarantine(ctx, e, d, clonedReason+detail); err != nil {
		return err
	}
	return fail(wire.CodeClonedState, "this device's identity is held by two copies (stale join state); both are locked until an administrator re-admits the device")
}
