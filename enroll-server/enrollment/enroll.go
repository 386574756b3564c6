package enrollment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

func validateEnroll(r wire.EnrollRequest) error {
	var errs []error
	if err := wire.ValidateFleet(r.Fleet); err != nil {
		errs = append(errs, err)
	}
	if err := wire.ValidateDeviceID(r.DeviceID); err != nil {
		errs = append(errs, err)
	}
	if err := wire.ValidateIdempotencyKey(r.IdempotencyKey); err != nil {
		errs = append(errs, err)
	}
	switch {
	case len(r.EnrollmentToken) > 512:
		errs = append(errs, errors.New("enrollment_token: too long"))
	case r.EnrollmentToken == "" && r.Attestation == nil:
		errs = append(errs, errors.New("enrollment_token: missing (only a TPM-attested device may enroll without one)"))
	}
	if r.Attestation != nil {
		if err := r.Attestation.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := validateFacts(r.Facts); err != nil {
		errs = append(errs, err)
	}
	if r.DeviceKey != "" {
		if _, err := identity.ParsePublicKey(r.DeviceKey); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fail(wire.CodeInvalidRequest, "%v", err)
	}
	return nil
}

func validateFacts(f wire.Facts) error {
	for name, v := range map[string]string{"hostname": f.Hostname, "os": f.OS, "arch": f.Arch, "client_version": f.ClientVersion} {
		if len(v) > 256 {
			return fmt.Errorf("facts.%s: longer than 256 bytes", name)
		}
	}
	return nil
}

// Enroll exchanges an enrollment token for the device's response-wrapped
// secret ID. A retried request with the same idempotency key gets the same
// answer and never a second secret ID.
func (s *Service) Enroll(ctx context.Context, req wire.EnrollRequest) (resp wire.EnrollResponse, err error) {
	start := time.Now()
	defer func() {
		path := "bootstrap"
		if req.EnrollmentToken == "" {
			path = "attestation"
		}
		s.countOutcome(req.Fleet, path, resp, err, time.Since(start))
		// A device that got no credential is done with its admission; one
		// that did holds it until it acknowledges. A shed or busy request
		// keeps it for its retry.
		if permanentRefusal(err) || resp.Status == wire.StatusPending {
			s.finish(req.Ticket, req.Fleet, req.DeviceID)
		}
	}()
	if err := validateEnroll(req); err != nil {
		return wire.EnrollResponse{}, err
	}
	fleet, ok := s.fleet(req.Fleet)
	if !ok {
		return wire.EnrollResponse{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", req.Fleet)
	}
	// Admission control comes before the first Vault call.
	release, err := s.gates[req.Fleet].Enter(s.now(), s.sessionTicket(req.Ticket, req.Fleet, req.DeviceID))
	if err != nil {
		return wire.EnrollResponse{}, err
	}
	defer release()
	log := s.log.With("fleet", req.Fleet, "device_id", req.DeviceID)
	p, err := s.prove(ctx, log, fleet, req)
	defer func() {
		// The enrollment token is consumed whatever the outcome.
		if err = s.settle(ctx, req.Fleet, req.DeviceID, p.spend, err); err != nil {
			resp = wire.EnrollResponse{}
		}
	}()
	if err != nil {
		return wire.EnrollResponse{}, err
	}
	c, replay, err := s.claim(ctx, log, fleet, req, p)
	if err != nil || replay != nil {
		return derefResponse(replay), err
	}
	return s.decide(ctx, log.With("enrollment_id", c.e.ID), fleet, req, p, c)
}

// An enrollment request goes through these phases, in order:
//
//   - prove: what the request proves — a TPM (attestation, checked first,
//     as it costs no Vault call), the fleet's bootstrap credential (its
//     enrollment token, looked up and revoked), or both;
//   - claim: the idempotency key claimed for the device (a retry finds its
//     answer here), after the device's standing was checked, in one commit
//     with the enrollment token's consumption;
//   - decide: held for an administrator, or let through (a recovery
//     spent), then mint.

// proof is what a request proved.
type proof struct {
	att   *inventory.Challenge // the TPM attested; nil without
	bound inventory.Device     // the device record as the TPM check read it
	gen   int                  // the bootstrap generation presented
	kind  string               // KindBootstrap or KindAttested
	spend *spend               // the enrollment token presented; nil without
}

// prove checks the request's attestation and enrollment token. A device
// bound to a TPM is refused for another one only once the request proved
// something (see checkHardware).
func (s *Service) prove(ctx context.Context, log *slog.Logger, fleet Fleet, req wire.EnrollRequest) (proof, error) {
	var p proof
	var err error
	switch {
	case req.Attestation != nil && !fleet.TPM.enabled():
		return p, fail(wire.CodeAttestationDisabled, "fleet %s does not use TPM attestation; enroll without it", req.Fleet)
	case req.Attestation != nil:
		if p.att, err = s.verifyAttestation(ctx, log, fleet, req.Fleet, req.DeviceID, *req.Attestation); err != nil {
			return p, err
		}
	case fleet.TPM.Mode == wire.TPMRequired:
		return p, fail(wire.CodeAttestationRequired, "fleet %s requires TPM attestation, and this device sent none", req.Fleet)
	}
	var mismatch string
	p.bound, mismatch, err = s.checkHardware(ctx, fleet, req, p.att)
	if err != nil {
		return p, err
	}
	if mismatch != "" && p.att != nil {
		return p, s.hardwareMismatch(ctx, req, mismatch) // proven by the other TPM
	}
	p.kind = inventory.KindBootstrap
	switch {
	case req.EnrollmentToken != "":
		if p.spend, err = s.checkEnrollmentToken(ctx, req.Fleet, req.DeviceID, req.EnrollmentToken); err != nil {
			return p, err
		}
		if mismatch != "" {
			// Proven by the bootstrap credential only once the token is
			// known not to have been spent before (and, below, to be of
			// a live generation).
			if err := s.settle(ctx, req.Fleet, req.DeviceID, p.spend, nil); err != nil {
				return p, err
			}
		}
		if err := s.liveGeneration(ctx, req.Fleet, p.spend.Generation); err != nil {
			return p, err
		}
		if mismatch != "" {
			return p, s.hardwareMismatch(ctx, req, mismatch)
		}
		p.gen = p.spend.Generation
	case !attestedAlone(p.bound, p.att):
		return p, fail(wire.CodeEnrollmentTokenBad,
			"attestation alone re-enrolls only a device already bound to this TPM; send an enrollment token")
	default:
		p.kind, p.gen = inventory.KindAttested, p.bound.Generation
	}
	return p, nil
}

// claimed is an enrollment claimed for a request, with its device; fresh
// when this request claimed it (not a retry of an earlier one).
type claimed struct {
	e     inventory.Enrollment
	d     inventory.Device
	fresh bool
	// unknown: the store had no record of the device before this claim,
	// so no earlier request ever made its Vault role.
	unknown bool
}

// claim claims the request's idempotency key for the device; a retried
// request whose answer is settled gets it as replay instead.
func (s *Service) claim(ctx context.Context, log *slog.Logger, fleet Fleet, req wire.EnrollRequest, p proof) (claimed, *wire.EnrollResponse, error) {
	var c claimed
	// A device the fleet will not admit (not on its allow-list, rejected,
	// quarantined) is refused before anything is stored: invented IDs
	// leave no record behind. The same check runs again below, on the
	// record the claim returns.
	known, err := s.store.Device(ctx, req.Fleet, req.DeviceID)
	unknown := errors.Is(err, inventory.ErrNotFound)
	if unknown {
		known, err = inventory.Device{Fleet: req.Fleet, ID: req.DeviceID}, nil
	}
	if err != nil {
		return c, nil, fmt.Errorf("load device: %w", err)
	}
	if refusal := s.mayEnroll(fleet, known); refusal != nil {
		log.Warn("enrollment refused", "reason", refusal.Message)
		return c, nil, refusal
	}
	now := s.now().UTC()
	e, fresh, err := s.store.BeginEnrollment(ctx, inventory.Enrollment{
		ID: newID(), Kind: p.kind, Fleet: req.Fleet, DeviceID: req.DeviceID, IdempotencyKey: req.IdempotencyKey,
		State: inventory.EnrollmentMinting, Generation: p.gen, NewKey: req.DeviceKey, CreatedAt: now, UpdatedAt: now,
	}, now.Add(-s.staleAfter), p.spend.use())
	if p.spend != nil {
		if err == nil || errors.Is(err, inventory.ErrBusy) || errors.Is(err, inventory.ErrConsumed) {
			p.spend.recorded = true // one commit for the claim and the token
		} else {
			p.spend.unsure = true // it may have been written all the same
		}
	}
	if errors.Is(err, inventory.ErrConsumed) {
		return c, nil, s.tokenReused(ctx, req.Fleet, req.DeviceID, "an enrollment token was presented twice at once")
	}
	if errors.Is(err, inventory.ErrBusy) {
		return c, nil, failRetry(2, wire.CodeEnrollmentInProgress, "another enrollment of this device is in progress")
	}
	if err != nil {
		return c, nil, fmt.Errorf("begin enrollment: %w", err)
	}
	log = log.With("enrollment_id", e.ID)
	// Nothing is minted, replayed or reissued for a token Vault may not
	// have revoked.
	if p.spend != nil {
		if err := p.spend.revocation(); err != nil {
			if fresh { // this request's claim: its retry resumes it at once
				if d, derr := s.store.Device(ctx, req.Fleet, req.DeviceID); derr == nil {
					s.abandon(log, e, d)
				}
			}
			return c, nil, vaultError("revoke the enrollment token", err)
		}
	}
	if !fresh && e.Kind != p.kind && !(e.Kind == inventory.KindAttested && p.kind == inventory.KindBootstrap) {
		return c, nil, fail(wire.CodeIdempotencyConflict, "this idempotency key belongs to another kind of request")
	}
	if !fresh {
		switch e.State {
		case inventory.EnrollmentWrapped:
			log.Info("idempotent replay of an enrollment", "state", e.State)
			resp, err := s.replayWrapped(ctx, log, fleet, e)
			return c, &resp, err
		case inventory.EnrollmentAcknowledged:
			log.Info("idempotent replay of an enrollment", "state", e.State)
			resp := responseOf(e)
			return c, &resp, nil
		case inventory.EnrollmentFailed:
			return c, nil, fail(wire.CodeIdempotencyConflict, "this enrollment failed; start a new one with a new idempotency key")
		}
		if e.State != inventory.EnrollmentPending && e.UpdatedAt.After(now.Add(-s.staleAfter)) {
			return c, nil, failRetry(2, wire.CodeEnrollmentInProgress, "this enrollment is being processed")
		}
		// A server stopped while minting this enrollment: take it over.
		if e.State != inventory.EnrollmentPending {
			log.Warn("resuming an interrupted enrollment")
		}
	}
	d, err := s.store.Device(ctx, req.Fleet, req.DeviceID)
	if err != nil {
		return c, nil, fmt.Errorf("load device: %w", err)
	}
	if refusal := s.mayEnroll(fleet, d); refusal != nil {
		e.State, e.UpdatedAt = inventory.EnrollmentFailed, now
		d.InFlight = ""
		if err := s.store.Record(ctx, e, d, nil); err != nil {
			return c, nil, err
		}
		log.Warn("enrollment refused", "reason", refusal.Message)
		return c, nil, refusal
	}
	return claimed{e: e, d: d, fresh: fresh, unknown: unknown}, nil, nil
}

// decide holds the request for an administrator, or lets it through (a
// re-enrollment spends the device's recovery budget) to mint.
func (s *Service) decide(ctx context.Context, log *slog.Logger, fleet Fleet, req wire.EnrollRequest, p proof, c claimed) (wire.EnrollResponse, error) {
	e, d := c.e, c.d
	// An ID that already has an identity is never handed to a request that
	// proves only the fleet's shared credential: that request waits for an
	// administrator, who approves it (and only it) or rejects it. Proof of
	// the identity is its bound TPM here; a device that holds its device
	// key refreshes or rejoins instead (identity.go).
	// New hardware an administrator allowed (rebind) is that proof too,
	// once: the device moves to the TPM it attested with.
	rebound := rebinding(d, p.att)
	if d.HasIdentity() && !attestedAlone(d, p.att) && !rebound && !e.Approved {
		return s.holdClaim(ctx, log, e, d, req)
	}
	if !d.HasIdentity() {
		bind(&d, p.att) // a TPM binds a device ID only when it is first enrolled
	}
	if p.att != nil {
		d.Boot = p.att.Boot // the boot this enrollment proved (none without a log)
	}
	if rebound {
		detail := fmt.Sprintf("bound to the TPM with EK %s, was %s (rebind allowed by %s)", short(p.att.EKHash), short(d.EKHash), d.RebindBy)
		bindTo(&d, p.att)
		d.RebindBy, d.RebindEK = "", ""
		log.Warn("device moves to new hardware an administrator allowed", "security", true, "ek_hash", short(p.att.EKHash))
		resp, err := s.mint(ctx, log, fleet, e, d, req.Facts)
		if err == nil {
			s.record(ctx, deviceActor(d.Fleet, d.ID), "rebound", d.Fleet, d.ID, detail)
		}
		return resp, err
	}
	if fleet.Approval == ApprovalManual && d.Admission != inventory.AdmissionApproved && d.Admission != inventory.AdmissionPreauthorized {
		return s.hold(ctx, log, e, d, req.Facts)
	}
	if d.Enrollments > 0 && c.fresh && !e.Approved {
		if err := s.spendRecovery(ctx, fleet, &e, &d, s.now().UTC()); err != nil {
			return wire.EnrollResponse{}, err
		}
	}
	// A first request of a device the store never knew, minted in one go,
	// creates its role: the acknowledgement need not list the role's
	// other secret IDs (there are none). A resumed one may have minted
	// before, and a device with a record may have a role already.
	e.FreshRole = c.fresh && c.unknown && d.RoleID == ""
	return s.mint(ctx, log, fleet, e, d, req.Facts)
}

func derefResponse(r *wire.EnrollResponse) wire.EnrollResponse {
	if r == nil {
		return wire.EnrollResponse{}
	}
	return *r
}

// attestedAlone reports whether a request without an enrollment token may
// go on: only from a device that enrolled before and is bound to the TPM
// it just proved. Such a device re-enrolls even after its bootstrap
// generation was retired.
func attestedAlone(d inventory.Device, att *inventory.Challenge) bool {
	return att != nil && d.EKHash != "" && d.EKHash == att.EKHash && d.Enrollments > 0
}

// spendRecovery counts a re-enrollment of a device that was enrolled
// before against its fleet's recovery budget. Past the budget the device is
// quarantined: a device that keeps losing its credential is either broken or
// being impersonated, and either way needs a person.
func (s *Service) spendRecovery(ctx context.Context, fleet Fleet, e *inventory.Enrollment, d *inventory.Device, now time.Time) error {
	kept := d.Recoveries[:0]
	for _, t := range d.Recoveries {
		if now.Sub(t) < fleet.RecoveryWindow {
			kept = append(kept, t)
		}
	}
	d.Recoveries = kept
	if len(d.Recoveries) < fleet.RecoveryBudget {
		d.Recoveries = append(d.Recoveries, now)
		return nil
	}
	s.alerts.Raise(ctx, inventory.Alert{Time: now, Kind: inventory.AlertRecoveryBudget, Fleet: d.Fleet, DeviceID: d.ID,
		EnrollmentID: e.ID, Detail: fmt.Sprintf("%d re-enrollments within %v", len(d.Recoveries), fleet.RecoveryWindow)})
	d.InFlight = ""
	if err := s.quarantine(ctx, e, d, fmt.Sprintf("recovery budget exhausted (%d re-enrollments within %v)", fleet.RecoveryBudget, fleet.RecoveryWindow)); err != nil {
		return err
	}
	return fail(wire.CodeDeviceQuarantined, "device is quarantined (%s); an administrator must re-admit it", d.Reason)
}

// mayEnroll applies the device's standing and the fleet's approval rule; it
// returns the refusal, or nil when the device may go on.
func (s *Service) mayEnroll(fleet Fleet, d inventory.Device) *wire.Error {
	if refusal := s.standing(d); refusal != nil {
		return refusal
	}
	switch {
	case d.Admission == inventory.AdmissionRejected:
		return fail(wire.CodeRejected, "enrollment rejected by an administrator: %s", d.Reason)
	case fleet.Approval == ApprovalAllowList && d.Admission != inventory.AdmissionPreauthorized && d.Admission != inventory.AdmissionApproved:
		return fail(wire.CodeRejected, "device %s is not on fleet %s's allow-list", d.ID, fleet.Name)
	}
	return nil
}

// kindName names how an enrollment's device proved itself, for logs,
// audit and metrics.
func kindName(kind string) string {
	if kind == inventory.KindBootstrap {
		return "bootstrap"
	}
	return kind
}

// countOutcome counts a request as wrapped, pending, enrolled (a replay) or
// by the code it was refused with.
func (s *Service) countOutcome(fleet, path string, resp wire.EnrollResponse, err error, took time.Duration) {
	outcome := resp.Status
	if err != nil {
		outcome = string(wire.CodeInternal)
		var we *wire.Error
		if errors.As(err, &we) {
			outcome = string(we.Code)
		}
	}
	if _, ok := s.fleet(fleet); !ok {
		fleet = "" // never a label per unknown name a client sends
	}
	s.metrics.Enrollment(fleet, path, outcome, took)
}
