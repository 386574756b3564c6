package enrollment

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Report handles a device telling the server that the wrapped credential it
// was handed was already used, expired, or minted somewhere else. Someone
// else may hold the device's secret ID: the server raises a security alert,
// destroys the device's secret IDs and quarantines it.
//
// The proof is the idempotency key of the request the credential answered,
// which only the device (and, for a pre-provisioned credential, the
// orchestrator that injected it) ever held: a holder of the fleet's image
// cannot quarantine another device, and the device never needs the fleet's
// bootstrap credential to report. Only a report about the device's
// outstanding credential quarantines it; one about any other enrollment is
// only an alert.
func (s *Service) Report(ctx context.Context, req wire.ReportRequest) (wire.ReportResponse, error) {
	errs := validateRef(req.Fleet, req.DeviceID, req.EnrollmentID)
	if req.Problem != wire.ProblemWrappingTokenInvalid && req.Problem != wire.ProblemCreationPathMismatch {
		errs = append(errs, fmt.Errorf("problem: want %q or %q", wire.ProblemWrappingTokenInvalid, wire.ProblemCreationPathMismatch))
	}
	if len(req.Detail) > 512 {
		errs = append(errs, errors.New("detail: longer than 512 bytes"))
	}
	if err := wire.ValidateIdempotencyKey(req.IdempotencyKey); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return wire.ReportResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	e, d, err := s.loadEnrollment(ctx, req.Fleet, req.DeviceID, req.EnrollmentID)
	if err != nil {
		return wire.ReportResponse{}, err
	}
	if subtle.ConstantTimeCompare([]byte(e.IdempotencyKey), []byte(req.IdempotencyKey)) != 1 {
		return wire.ReportResponse{}, fail(wire.CodeProofInvalid, "the idempotency key is not the one this enrollment was asked with")
	}
	kind := inventory.AlertWrappingTokenInvalid
	if req.Problem == wire.ProblemCreationPathMismatch {
		kind = inventory.AlertCreationPathMismatch
	}
	if e.WrappingAccessor == "" {
		// Never given a credential (held, turned away): nothing to report
		// on, and nothing to raise.
		return wire.ReportResponse{}, fail(wire.CodeRejected, "enrollment %s was never given a credential", e.ID)
	}
	req.Detail = printable(req.Detail)
	if d.EnrollmentID != e.ID || e.State != inventory.EnrollmentWrapped {
		// A credential that is not the device's outstanding one (spent or
		// superseded): worth an alert, never a lockout of the device's
		// current credential.
		s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: kind, Fleet: req.Fleet, DeviceID: req.DeviceID, EnrollmentID: e.ID,
			Detail: fmt.Sprintf("reported about enrollment %s, which is %s and not the device's current credential: %s", e.ID, e.State, req.Detail)})
		return wire.ReportResponse{Status: "noted"}, nil
	}
	s.alerts.Raise(ctx, inventory.Alert{Time: s.now().UTC(), Kind: kind, Fleet: req.Fleet,
		DeviceID: req.DeviceID, EnrollmentID: e.ID, Detail: req.Detail})
	if err := s.quarantine(ctx, &e, &d, "device reported "+req.Problem); err != nil {
		return wire.ReportResponse{}, err
	}
	return wire.ReportResponse{Status: inventory.DeviceQuarantined}, nil
}

// printable drops control characters from text a device sends for an
// operator to read.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
}
