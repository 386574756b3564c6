package enrollment

import (
	"context"
	"fmt"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// Quarantine: a device whose credential may be in other hands is cut off
// in Vault (every secret ID destroyed, its entity disabled, which stops
// every token of it) and recorded quarantined, with an audit record; only
// an administrator lets it back (Readmit).

// quarantine cuts the device off in Vault (see cutOff) and marks it
// quarantined until an administrator re-admits it.
func (s *Service) quarantine(ctx context.Context, e *inventory.Enrollment, d *inventory.Device, reason string) error {
	if err := s.cutOff(ctx, d); err != nil {
		return err
	}
	now := s.now().UTC()
	e.State, e.WrappingToken, e.UpdatedAt = inventory.EnrollmentFailed, "", now
	d.State, d.Reason, d.UpdatedAt, d.TokenAccessor, d.SecretIDAccessor = inventory.DeviceQuarantined, reason, now, "", ""
	if err := s.store.Record(ctx, *e, *d, s.auditRec("server", "quarantine", d.Fleet, d.ID, reason)); err != nil {
		return fmt.Errorf("record quarantine: %w", err)
	}
	s.log.Warn("device quarantined", "security", true, "fleet", d.Fleet, "device_id", d.ID, "reason", reason)
	return nil
}

// cutOff destroys a device's secret IDs and disables its Vault entity.
func (s *Service) cutOff(ctx context.Context, d *inventory.Device) error {
	if d.EntityID == "" && d.RoleID != "" {
		// Never acknowledged, so never learned: but whoever logged in with
		// the role's secret ID made its entity. Its tokens die with it.
		id, err := s.vault.DeviceEntityID(ctx, d.Fleet, d.RoleID)
		if err != nil {
			return vaultError("find the device's entity", err)
		}
		d.EntityID = id
	}
	if _, err := s.vault.DestroyDeviceSecretIDs(ctx, d.Fleet, d.ID); err != nil {
		return vaultError("destroy the device's secret IDs", err)
	}
	// A disabled entity's tokens are refused at once, the device's and
	// any intruder's alike: no token needs revoking one by one.
	if err := s.vault.DisableEntity(ctx, d.EntityID); err != nil {
		return vaultError("disable the device's entity", err)
	}
	return nil
}
