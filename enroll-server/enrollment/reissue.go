package enrollment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// A device that asks again for a credential it was already given (the
// same request, the same idempotency key, proven again) either lost the
// answer — a crash right after the unwrap, an answer dropped on the way, a
// server restart that outlived the wrapping token — or saw its wrapping
// token used by someone else. The secret ID's use count tells which: it is
// minted for vault.SecretIDUses logins, and one with all of them left never
// logged anyone in. Such a credential is destroyed and minted again, with
// no alert; one that was used is an interception: alert and quarantine, as
// for a report.

// replayWrapped answers a repeated request for a wrapped credential: the
// same answer while its wrapping token lives, a new credential when the
// old one was lost unused, a lockout when it was used.
func (s *Service) replayWrapped(ctx context.Context, log *slog.Logger, fleet Fleet, e inventory.Enrollment) (wire.EnrollResponse, error) {
	alive, err := s.vault.WrappingAlive(ctx, e.WrappingToken)
	if err != nil {
		return wire.EnrollResponse{}, vaultError("look up the wrapping token", err)
	}
	if alive {
		return responseOf(e), nil
	}
	d, err := s.store.Device(ctx, e.Fleet, e.DeviceID)
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("load device: %w", err)
	}
	if refusal := s.standing(d); refusal != nil {
		return wire.EnrollResponse{}, refusal
	}
	if d.EnrollmentID != e.ID {
		return wire.EnrollResponse{}, fail(wire.CodeRejected, "enrollment %s was superseded by a newer one of this device", e.ID)
	}
	left, err := -1, error(nil)
	if e.MintedAccessor != "" {
		left, err = s.vault.SecretIDUsesLeft(ctx, e.Fleet, e.DeviceID, e.MintedAccessor)
		if err != nil && !errors.Is(err, vault.ErrNotFound) {
			return wire.EnrollResponse{}, vaultError("look up the secret ID", err)
		}
	}
	if left != vault.SecretIDUses {
		// Used to log in (or, minted before use counts, impossible to
		// tell): someone else holds the device's secret ID.
		detail := fmt.Sprintf("the wrapped secret ID of enrollment %s was unwrapped and used to log in by someone other than the device", e.ID)
		if left < 0 {
			detail = fmt.Sprintf("the wrapped secret ID of enrollment %s was unwrapped, and whether it was used cannot be told", e.ID)
		}
		s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: inventory.AlertWrappingTokenInvalid, Fleet: e.Fleet,
			DeviceID: e.DeviceID, EnrollmentID: e.ID, Detail: detail})
		if err := s.quarantine(ctx, &e, &d, "secret ID intercepted: "+detail); err != nil {
			return wire.EnrollResponse{}, err
		}
		return wire.EnrollResponse{}, fail(wire.CodeDeviceQuarantined, "device is quarantined (%s); an administrator must re-admit it", d.Reason)
	}
	// Lost, never used: it goes, and the same enrollment gets a new one.
	if _, err := s.vault.DestroyEnrollmentSecretIDs(ctx, e.Fleet, e.DeviceID, e.ID); err != nil {
		return wire.EnrollResponse{}, vaultError("destroy the lost secret ID", err)
	}
	log.Warn("reissuing a credential the device lost before using it", "wrapping_accessor", e.WrappingAccessor, "secret_id_accessor", e.MintedAccessor)
	s.record(ctx, deviceActor(e.Fleet, e.DeviceID), "enroll:reissued", e.Fleet, e.DeviceID,
		fmt.Sprintf("enrollment %s: secret ID %s lost unused, destroyed; minting again", e.ID, e.MintedAccessor))
	d.Enrollments = max(d.Enrollments-1, 0) // the same enrollment, minted again
	return s.mint(ctx, log, fleet, e, d, d.Facts)
}
