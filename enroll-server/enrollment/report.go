package enrollment

import (
	"context"
	"errors"
	"fmt"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Report handles a device telling the server that the wrapped credential it
// was handed was already used, expired, or minted somewhere else. Someone
// else may hold the device's secret ID: the server raises a security alert,
// destroys the device's secret IDs and quarantines it.
//
// The request carries a fresh enrollment token, so only a holder of the
// fleet's bootstrap credential can quarantine a device this way.
func (s *Service) Report(ctx context.Context, req wire.ReportRequest) (wire.ReportResponse, error) {
	errs := validateRef(req.Fleet, req.DeviceID, req.EnrollmentID)
	if req.Problem != wire.ProblemWrappingTokenInvalid && req.Problem != wire.ProblemCreationPathMismatch {
		errs = append(errs, fmt.Errorf("problem: want %q or %q", wire.ProblemWrappingTokenInvalid, wire.ProblemCreationPathMismatch))
	}
	if len(req.Detail) > 512 {
		errs = append(errs, errors.New("detail: longer than 512 bytes"))
	}
	if len(req.EnrollmentToken) > 512 {
		errs = append(errs, errors.New("enrollment_token: too long"))
	}
	if err := errors.Join(errs...); err != nil {
		return wire.ReportResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	e, d, err := s.loadEnrollment(ctx, req.Fleet, req.DeviceID, req.EnrollmentID)
	if err != nil {
		return wire.ReportResponse{}, err
	}
	// A device that asked for its credential proves it holds the bootstrap
	// credential. A pre-provisioned device may hold none: knowing its
	// enrollment ID, which only the orchestrator and the device had, is its
	// proof.
	if req.EnrollmentToken != "" || !e.Batch {
		if req.EnrollmentToken == "" {
			return wire.ReportResponse{}, fail(wire.CodeInvalidRequest, "enrollment_token: missing")
		}
		if _, err := s.consumeEnrollmentToken(ctx, req.Fleet, req.DeviceID, req.EnrollmentToken); err != nil {
			return wire.ReportResponse{}, err
		}
	}
	kind := inventory.AlertWrappingTokenInvalid
	if req.Problem == wire.ProblemCreationPathMismatch {
		kind = inventory.AlertCreationPathMismatch
	}
	s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: kind, Fleet: req.Fleet,
		DeviceID: req.DeviceID, EnrollmentID: e.ID, Detail: req.Detail})
	if err := s.quarantine(ctx, &e, &d, "device reported "+req.Problem); err != nil {
		return wire.ReportResponse{}, err
	}
	return wire.ReportResponse{Status: inventory.DeviceQuarantined}, nil
}

// quarantine cuts the device off in Vault (see cutOff) and marks it
// quarantined until an administrator re-admits it.
func (s *Service) quarantine(ctx context.Context, e *inventory.Enrollment, d *inventory.Device, reason string) error {
	if err := s.cutOff(ctx, *d); err != nil {
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
