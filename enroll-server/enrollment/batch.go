package enrollment

import (
	"context"
	"errors"
	"fmt"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// PreProvision mints one wrapped secret ID per device for a trusted
// orchestrator to inject ("batch" secure introduction). Each device
// consumes its own on first boot instead of the shared enrollment role;
// validation, acknowledgement and alerts are the same as for a device that
// asked itself.
//
// A device refused on its own (revoked, quarantined, enrolling right now)
// is listed in the answer's Failed, and the batch goes on. A failure that
// would fail every device after it (the store, Vault) stops the batch: the
// devices not reached are listed as failed with it. Every credential
// minted is in the answer either way: an error return means nothing was.
func (s *Service) PreProvision(ctx context.Context, actor, fleetName string, ids []string) (wire.Batch, error) {
	fleet, ok := s.fleet(fleetName)
	if !ok {
		return wire.Batch{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", fleetName)
	}
	if len(ids) == 0 || len(ids) > wire.MaxBatchDevices {
		return wire.Batch{}, fail(wire.CodeInvalidRequest, "device_ids: want 1 to %d devices (send a larger batch as several requests)", wire.MaxBatchDevices)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if err := wire.ValidateDeviceID(id); err != nil {
			return wire.Batch{}, fail(wire.CodeInvalidRequest, "%v", err)
		}
		if seen[id] {
			return wire.Batch{}, fail(wire.CodeInvalidRequest, "device %s is listed twice", id)
		}
		seen[id] = true
	}
	out := wire.Batch{Items: make([]wire.BatchItem, 0, len(ids)), WrapTTLSeconds: int(fleet.WrapTTL.Seconds())}
	for i, id := range ids {
		resp, err := s.preProvisionOne(ctx, fleet, id)
		if err == nil {
			out.Items = append(out.Items, wire.BatchItem{Fleet: fleetName, DeviceID: id, EnrollResponse: resp})
			continue
		}
		var refusal *wire.Error
		if errors.As(err, &refusal) && !refusal.Code.Retryable() {
			out.Failed = append(out.Failed, wire.BatchFailure{DeviceID: id, Code: refusal.Code, Message: refusal.Message})
			continue
		}
		// Vault or the store failed: the rest would fail alike.
		s.log.Error("batch stopped", "fleet", fleetName, "device_id", id, "err", err)
		why := wire.Errorf(wire.CodeInternal, "the server failed (its log has the cause)")
		if refusal != nil {
			why = refusal
		}
		out.Failed = append(out.Failed, wire.BatchFailure{DeviceID: id, Code: why.Code, Message: why.Message})
		for _, rest := range ids[i+1:] {
			out.Failed = append(out.Failed, wire.BatchFailure{DeviceID: rest, Code: why.Code,
				Message: "not attempted: the batch stopped at device " + id + " (" + why.Message + ")"})
		}
		break
	}
	s.record(ctx, actor, "admin:batch", fleetName, "", fmt.Sprintf("%d devices, %d failed", len(out.Items), len(out.Failed)))
	return out, nil
}

// preProvisionOne mints one device's pre-provisioned credential.
func (s *Service) preProvisionOne(ctx context.Context, fleet Fleet, id string) (wire.EnrollResponse, error) {
	auto := Fleet{Name: fleet.Name, Approval: ApprovalAuto}
	// A device that may not enroll is refused before anything is stored.
	known, err := s.store.Device(ctx, fleet.Name, id)
	switch {
	case errors.Is(err, inventory.ErrNotFound):
	case err != nil:
		return wire.EnrollResponse{}, fmt.Errorf("load device %s: %w", id, err)
	default:
		if refusal := s.mayEnroll(auto, known); refusal != nil {
			return wire.EnrollResponse{}, refusal
		}
	}
	now := s.now().UTC()
	e, claimed, err := s.store.BeginEnrollment(ctx, inventory.Enrollment{
		ID: newID(), Fleet: fleet.Name, DeviceID: id, IdempotencyKey: "batch-" + newID(),
		State: inventory.EnrollmentMinting, Batch: true, CreatedAt: now, UpdatedAt: now,
	}, now.Add(-s.staleAfter), nil)
	if errors.Is(err, inventory.ErrBusy) {
		return wire.EnrollResponse{}, fail(wire.CodeEnrollmentInProgress, "another enrollment of this device is in progress")
	}
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("device %s: %w", id, err)
	}
	if !claimed {
		return wire.EnrollResponse{}, fmt.Errorf("device %s: idempotency key collision", id)
	}
	d, err := s.store.Device(ctx, fleet.Name, id)
	if err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("load device %s: %w", id, err)
	}
	if refusal := s.mayEnroll(auto, d); refusal != nil {
		// Changed since the check above: give the claim back.
		e.State, e.UpdatedAt = inventory.EnrollmentFailed, now
		d.InFlight = ""
		if err := s.store.Record(ctx, e, d, nil); err != nil {
			return wire.EnrollResponse{}, err
		}
		return wire.EnrollResponse{}, refusal
	}
	d.Admission = inventory.AdmissionPreauthorized
	resp, err := s.mint(ctx, s.log.With("fleet", fleet.Name, "device_id", id, "enrollment_id", e.ID, "batch", true), fleet, e, d, wire.Facts{})
	if err != nil {
		return wire.EnrollResponse{}, err
	}
	resp.IdempotencyKey = e.IdempotencyKey // the device's proof for a report
	return resp, nil
}
