package enrollment

import (
	"context"
	"fmt"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// maxBatch bounds one pre-provisioning request.
const maxBatch = 500

// PreProvision mints one wrapped secret ID per device for a trusted
// orchestrator to inject ("batch" secure introduction). Each device
// consumes its own on first boot instead of the shared enrollment role;
// validation, acknowledgement and alerts are the same as for a device that
// asked itself.
func (s *Service) PreProvision(ctx context.Context, actor, fleetName string, ids []string) ([]wire.EnrollResponse, error) {
	fleet, ok := s.fleet(fleetName)
	if !ok {
		return nil, fail(wire.CodeUnknownFleet, "fleet %q is not served here", fleetName)
	}
	if len(ids) == 0 || len(ids) > maxBatch {
		return nil, fail(wire.CodeInvalidRequest, "device_ids: want 1 to %d devices", maxBatch)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := wire.ValidateDeviceID(id); err != nil {
			return nil, fail(wire.CodeInvalidRequest, "%v", err)
		}
		if seen[id] {
			return nil, fail(wire.CodeInvalidRequest, "device %s is listed twice", id)
		}
		seen[id] = true
	}
	out := make([]wire.EnrollResponse, 0, len(ids))
	for _, id := range ids {
		now := s.now().UTC()
		e, claimed, err := s.store.BeginEnrollment(ctx, inventory.Enrollment{
			ID: newID(), Fleet: fleetName, DeviceID: id, IdempotencyKey: "batch-" + newID(),
			State: inventory.EnrollmentMinting, Batch: true, CreatedAt: now, UpdatedAt: now,
		}, now.Add(-s.staleAfter))
		if err != nil {
			return out, fmt.Errorf("device %s: %w", id, err)
		}
		if !claimed {
			return out, fmt.Errorf("device %s: idempotency key collision", id)
		}
		d, err := s.store.Device(ctx, fleetName, id)
		if err != nil {
			return out, err
		}
		if refusal := s.mayEnroll(Fleet{Name: fleetName, Approval: ApprovalAuto}, d); refusal != nil {
			return out, fmt.Errorf("device %s: %w", id, refusal)
		}
		d.Admission = inventory.AdmissionPreauthorized
		resp, err := s.mint(ctx, s.log.With("fleet", fleetName, "device_id", id, "enrollment_id", e.ID, "batch", true), fleet, e, d, wire.Facts{})
		if err != nil {
			return out, fmt.Errorf("device %s: %w", id, err)
		}
		resp.IdempotencyKey = e.IdempotencyKey // the device's proof for a report
		out = append(out, resp)
	}
	s.record(ctx, actor, "admin:batch", fleetName, "", fmt.Sprintf("%d devices", len(out)))
	return out, nil
}
