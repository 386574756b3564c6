package enrollment

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Requests held for an administrator: a manual-approval fleet's new
// devices, and a claim on an ID that already has an identity.

// hold parks an enrollment until an administrator approves or rejects the
// device; the device asks again with the same idempotency key.
func (s *Service) hold(ctx context.Context, log *slog.Logger, e inventory.Enrollment, d inventory.Device, facts wire.Facts) (wire.EnrollResponse, error) {
	now := s.now().UTC()
	first := e.State != inventory.EnrollmentPending
	e.State, e.UpdatedAt = inventory.EnrollmentPending, now
	if d.State == "" || d.State == inventory.DevicePending {
		d.State = inventory.DevicePending
	}
	d.Facts, d.UpdatedAt, d.InFlight = facts, now, ""
	var rec *audit.Record
	if first {
		rec = s.auditRec(deviceActor(d.Fleet, d.ID), "enroll:pending", d.Fleet, d.ID, "awaiting approval")
	}
	if err := s.store.Record(ctx, e, d, rec); err != nil {
		return wire.EnrollResponse{}, err
	}
	if first {
		log.Info("device awaits approval")
	}
	return wire.EnrollResponse{Status: wire.StatusPending, EnrollmentID: e.ID, RetryAfterSeconds: pendingRetryAfter}, nil
}

// holdClaim parks a request for an ID that already has an identity and
// raises an alert the first time: someone holding the fleet's image asks
// for an enrolled device's ID (or the device was wiped and needs an
// administrator once). The device record keeps its state; only the held
// request is remembered, for an administrator to approve or reject.
//
// One request is held at a time, the first: a later one with another
// idempotency key is turned away (retryable) until an administrator
// decided on the first, so that nobody can slip their own request under an
// approval meant for another. The administrator approves a held request by
// its enrollment ID, which the device shows in `enroll-client status`.
func (s *Service) holdClaim(ctx context.Context, log *slog.Logger, e inventory.Enrollment, d inventory.Device, req wire.EnrollRequest) (wire.EnrollResponse, error) {
	now := s.now().UTC()
	if d.HeldEnrollment != "" && d.HeldEnrollment != e.ID {
		if held, err := s.store.Enrollment(ctx, d.HeldEnrollment); err == nil && held.State == inventory.EnrollmentPending {
			e.State, e.UpdatedAt, d.InFlight = inventory.EnrollmentFailed, now, ""
			if err := s.store.Record(ctx, e, d, nil); err != nil {
				return wire.EnrollResponse{}, err
			}
			s.alerts.Raise(ctx, inventory.Alert{Time: now, Kind: inventory.AlertIdentityClaimed, Fleet: d.Fleet, DeviceID: d.ID, EnrollmentID: e.ID,
				Detail: fmt.Sprintf("a second request with only the fleet's bootstrap credential asked for this enrolled device's ID while enrollment %s waits for an administrator; turned away", held.ID)})
			return wire.EnrollResponse{}, failRetry(60, wire.CodeEnrollmentInProgress, "another request for this device ID (enrollment %s) already waits for an administrator; it must be approved or rejected first", held.ID)
		}
	}
	first := e.State != inventory.EnrollmentPending
	e.State, e.UpdatedAt = inventory.EnrollmentPending, now
	d.HeldEnrollment, d.InFlight = e.ID, ""
	if first {
		d.HeldKey, d.HeldFacts, d.HeldSince = identity.Fingerprint(req.DeviceKey), req.Facts, now
	}
	var rec *audit.Record
	if first {
		rec = s.auditRec(deviceActor(d.Fleet, d.ID), "enroll:held", d.Fleet, d.ID,
			fmt.Sprintf("enrollment %s proved only the fleet's bootstrap credential for a device ID that has an identity", e.ID))
	}
	if err := s.store.Record(ctx, e, d, rec); err != nil {
		return wire.EnrollResponse{}, err
	}
	if first {
		s.alerts.Raise(ctx, inventory.Alert{Time: now, Kind: inventory.AlertIdentityClaimed, Fleet: d.Fleet, DeviceID: d.ID, EnrollmentID: e.ID,
			Detail: "a request with only the fleet's bootstrap credential asked for this enrolled device's ID; held for an administrator"})
		log.Warn("request for an enrolled device ID held for an administrator", "security", true)
	}
	return wire.EnrollResponse{Status: wire.StatusPending, EnrollmentID: e.ID, RetryAfterSeconds: pendingRetryAfter}, nil
}
