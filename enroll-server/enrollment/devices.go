package enrollment

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Device operations for administrators. actor names the administrator in
// the audit log.

func (s *Service) device(ctx context.Context, fleet, id string, create bool) (inventory.Device, error) {
	if _, ok := s.fleet(fleet); !ok {
		return inventory.Device{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", fleet)
	}
	if err := wire.ValidateDeviceID(id); err != nil {
		return inventory.Device{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	d, err := s.store.Device(ctx, fleet, id)
	if errors.Is(err, inventory.ErrNotFound) {
		if !create {
			return d, fail(wire.CodeNotFound, "no device %s in fleet %s", id, fleet)
		}
		now := s.now().UTC()
		return inventory.Device{Fleet: fleet, ID: id, CreatedAt: now, UpdatedAt: now}, nil
	}
	return d, err
}

// Device returns one device.
func (s *Service) Device(ctx context.Context, fleet, id string) (inventory.Device, error) {
	return s.device(ctx, fleet, id, false)
}

// Approve lets a device enroll (in a manual fleet) or lifts a rejection.
// For a device ID that already has an identity it approves the one request
// held for it (see holdClaim), named by its enrollment ID, and only that
// one.
func (s *Service) Approve(ctx context.Context, actor, fleet, id, enrollment string) (inventory.Device, error) {
	d, err := s.device(ctx, fleet, id, true)
	if err != nil {
		return d, err
	}
	if d.HeldEnrollment != "" {
		if enrollment != d.HeldEnrollment {
			return d, fail(wire.CodeInvalidRequest,
				"device %s is enrolled, and a request to replace it waits: enrollment %s (device key %s, host %q, since %s). Check it is the device you expect (enroll-client status shows its enrollment), then approve it by name with -enrollment %s",
				id, d.HeldEnrollment, d.HeldKey, d.HeldFacts.Hostname, d.HeldSince.Format(time.RFC3339), d.HeldEnrollment)
		}
		return s.decideHeld(ctx, actor, d, true, "")
	}
	d.Admission, d.UpdatedAt = inventory.AdmissionApproved, s.now().UTC()
	if d.State == inventory.DeviceRejected {
		d.State, d.Reason = inventory.DevicePending, ""
	}
	return d, s.saveAudited(ctx, d, actor, "admin:approve", "")
}

// Reject refuses a device; it sees the reason.
func (s *Service) Reject(ctx context.Context, actor, fleet, id, reason string) (inventory.Device, error) {
	d, err := s.device(ctx, fleet, id, true)
	if err != nil {
		return d, err
	}
	if d.HeldEnrollment != "" {
		return s.decideHeld(ctx, actor, d, false, reason)
	}
	if d.State == inventory.DeviceEnrolled || d.State == inventory.DeviceEnrolling {
		return d, fail(wire.CodeIdempotencyConflict, "device %s is %s: revoke it instead", id, d.State)
	}
	d.Admission, d.State, d.Reason, d.UpdatedAt = inventory.AdmissionRejected, inventory.DeviceRejected, reason, s.now().UTC()
	return d, s.saveAudited(ctx, d, actor, "admin:reject", reason)
}

// decideHeld approves or rejects the request held for a device ID that
// already has an identity. The device record itself is unchanged: an
// approved request proceeds when its device asks again, and replaces the
// device's credential, key and join state once it acknowledges.
func (s *Service) decideHeld(ctx context.Context, actor string, d inventory.Device, approve bool, reason string) (inventory.Device, error) {
	e, err := s.store.Enrollment(ctx, d.HeldEnrollment)
	if err != nil {
		return d, fmt.Errorf("load the held request: %w", err)
	}
	now := s.now().UTC()
	action, detail := "admin:approve", "held request "+e.ID+" may take over the device ID"
	if approve {
		e.Approved = true
	} else {
		e.State = inventory.EnrollmentFailed
		d.ClearHeld()
		action, detail = "admin:reject", "held request "+e.ID+" refused: "+reason
	}
	e.UpdatedAt, d.UpdatedAt = now, now
	if err := s.store.Record(ctx, e, d, s.auditRec(actor, action, d.Fleet, d.ID, detail)); err != nil {
		return d, err
	}
	return d, nil
}

// Preauthorize puts devices on their fleet's allow-list.
func (s *Service) Preauthorize(ctx context.Context, actor, fleet string, ids []string) error {
	for _, id := range ids {
		d, err := s.device(ctx, fleet, id, true)
		if err != nil {
			return err
		}
		if d.Admission != inventory.AdmissionApproved {
			d.Admission, d.UpdatedAt = inventory.AdmissionPreauthorized, s.now().UTC()
		}
		if err := s.saveAudited(ctx, d, actor, "admin:preauthorize", ""); err != nil {
			return err
		}
	}
	return nil
}

// Revoke ends everything of a device in Vault: its secret IDs are
// destroyed, its last known token revoked and its entity disabled, so that
// no token it holds works. It may not enroll again until re-admitted.
func (s *Service) Revoke(ctx context.Context, actor, fleet, id, reason string) (inventory.Device, error) {
	d, err := s.device(ctx, fleet, id, false)
	if err != nil {
		return d, err
	}
	if err := s.cutOff(ctx, &d); err != nil {
		return d, err
	}
	d.State, d.Reason, d.UpdatedAt = inventory.DeviceRevoked, reason, s.now().UTC()
	d.SecretIDAccessor, d.TokenAccessor = "", ""
	return d, s.saveAudited(ctx, d, actor, "admin:revoke", reason)
}

// Readmit clears a quarantine, a revocation or a rejection: the device may
// enroll (or rejoin) again. Its old Vault entity stays disabled — every
// token issued before the lockout, the device's or an intruder's, stays
// dead — and its next credential comes with a new role ID, so a new
// entity.
func (s *Service) Readmit(ctx context.Context, actor, fleet, id string) (inventory.Device, error) {
	d, err := s.device(ctx, fleet, id, false)
	if err != nil {
		return d, err
	}
	if d.State == inventory.DeviceQuarantined || d.State == inventory.DeviceRevoked {
		d.RoleID, d.EntityID = "", ""
	}
	if d.State == inventory.DeviceQuarantined && strings.HasPrefix(d.Reason, clonedReason) {
		d.Resync = true // see renew: the copy that comes back first is the device
	}
	d.State, d.Reason, d.Recoveries, d.UpdatedAt = "", "", nil, s.now().UTC()
	if d.Admission == inventory.AdmissionRejected {
		d.Admission = inventory.AdmissionApproved
	}
	return d, s.saveAudited(ctx, d, actor, "admin:readmit", "")
}

// AllowRebind lets the next attested enrollment of a device bound to a TPM
// bind it to other hardware, once (a replaced motherboard): the device
// keeps its ID, role and entity in Vault. The new hardware must still
// prove the fleet's bootstrap credential and attest with a TPM the fleet
// trusts.
//
// ek, when set, names the only TPM the device may move to; without it the
// first TPM the fleet trusts that enrolls with the device's ID and the
// bootstrap credential takes it.
func (s *Service) AllowRebind(ctx context.Context, actor, fleet, id, reason, ek string) (inventory.Device, error) {
	if ek != "" && !isEKHash(ek) {
		return inventory.Device{}, wire.Errorf(wire.CodeInvalidRequest, "ek_hash: want 64 hex digits (SHA-256 of the EK, as enroll-client tpm-info prints it)")
	}
	d, err := s.device(ctx, fleet, id, false)
	if err != nil {
		return d, err
	}
	if d.EKHash == "" {
		return d, wire.Errorf(wire.CodeInvalidRequest, "device %s is not bound to a TPM: there is nothing to rebind", id)
	}
	d.RebindBy, d.RebindEK, d.UpdatedAt = actor, strings.ToLower(ek), s.now().UTC()
	detail := reason
	if ek != "" {
		detail = fmt.Sprintf("%s (to the TPM with EK %s only)", reason, short(ek))
	}
	return d, s.saveAudited(ctx, d, actor, "admin:rebind", detail)
}

func isEKHash(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

func (s *Service) saveAudited(ctx context.Context, d inventory.Device, actor, action, detail string) error {
	if err := s.store.SaveDevice(ctx, d); err != nil {
		return fmt.Errorf("save device: %w", err)
	}
	s.record(ctx, actor, action, d.Fleet, d.ID, detail)
	return nil
}
