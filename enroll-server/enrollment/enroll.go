package enrollment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
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
	fleet, ok := s.fleets[req.Fleet]
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
//     enrollment token, consumed), or both;
//   - claim: the idempotency key claimed for the device (a retry finds its
//     answer here), after the device's standing was checked;
//   - decide: held for an administrator, or let through (a recovery
//     spent), then mint.

// proof is what a request proved.
type proof struct {
	att   *inventory.Challenge // the TPM attested; nil without
	bound inventory.Device     // the device record as the TPM check read it
	gen   int                  // the bootstrap generation presented
	kind  string               // KindBootstrap or KindAttested
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
		if p.gen, err = s.consumeEnrollmentToken(ctx, req.Fleet, req.DeviceID, req.EnrollmentToken); err != nil {
			return p, err
		}
		if mismatch != "" {
			return p, s.hardwareMismatch(ctx, req, mismatch) // proven by the bootstrap credential
		}
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
	if errors.Is(err, inventory.ErrNotFound) {
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
	}, now.Add(-s.staleAfter))
	if errors.Is(err, inventory.ErrBusy) {
		return c, nil, failRetry(2, wire.CodeEnrollmentInProgress, "another enrollment of this device is in progress")
	}
	if err != nil {
		return c, nil, fmt.Errorf("begin enrollment: %w", err)
	}
	log = log.With("enrollment_id", e.ID)
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
	return claimed{e: e, d: d, fresh: fresh}, nil, nil
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
	if d.HasIdentity() && !attestedAlone(d, p.att) && !e.Approved {
		return s.holdClaim(ctx, log, e, d, req)
	}
	if !d.HasIdentity() {
		bind(&d, p.att) // a TPM binds a device ID only when it is first enrolled
	}
	if fleet.Approval == ApprovalManual && d.Admission != inventory.AdmissionApproved && d.Admission != inventory.AdmissionPreauthorized {
		return s.hold(ctx, log, e, d, req.Facts)
	}
	if d.Enrollments > 0 && c.fresh && !e.Approved {
		if err := s.spendRecovery(ctx, fleet, &e, &d, s.now().UTC()); err != nil {
			return wire.EnrollResponse{}, err
		}
	}
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

// mint creates the device's role if needed and mints a new secret ID,
// wrapped. The device's other secret IDs are destroyed only when this one
// is acknowledged (ack.go), so that a request that fails half way leaves
// the device as it was; after that, exactly one is live.
func (s *Service) mint(ctx context.Context, log *slog.Logger, fleet Fleet, e inventory.Enrollment, d inventory.Device, facts wire.Facts) (wire.EnrollResponse, error) {
	if d.RoleID == "" {
		d.RoleID = uuid.NewString()
	}
	err := s.vault.UpsertDeviceRole(ctx, fleet.Name, e.DeviceID, vault.DeviceRole{
		RoleID: d.RoleID, TokenTTL: fleet.TokenTTL, TokenMaxTTL: fleet.TokenMaxTTL, SecretIDTTL: fleet.SecretIDTTL,
	})
	if err != nil {
		s.abandon(log, e, d)
		return wire.EnrollResponse{}, vaultError("create the device role", err)
	}
	wi, err := s.vault.MintWrappedSecretID(ctx, fleet.Name, e.DeviceID, map[string]string{
		"fleet": fleet.Name, "device_id": e.DeviceID, "enrollment_id": e.ID, "generation": strconv.Itoa(e.Generation),
	}, fleet.WrapTTL)
	if err != nil {
		// A secret ID minted whose answer was lost stays an extra one of
		// the device's until the next acknowledgement destroys it.
		s.abandon(log, e, d)
		return wire.EnrollResponse{}, vaultError("mint the device's secret ID", err)
	}
	want := wire.SecretIDCreationPath(vault.DeviceMount(fleet.Name), e.DeviceID)
	if wi.CreationPath != want {
		return wire.EnrollResponse{}, fmt.Errorf("vault wrapped the secret ID at %q, want %q", wi.CreationPath, want)
	}
	now := s.now().UTC()
	e.State, e.UpdatedAt = inventory.EnrollmentWrapped, now
	e.RoleID = d.RoleID
	e.WrappingToken, e.WrappingAccessor, e.CreationPath = wi.Token, wi.Accessor, wi.CreationPath
	e.MintedAccessor = wi.WrappedAccessor
	e.WrapExpiresAt = now.Add(wi.TTL)
	e.AckDeadline = now.Add(max(fleet.AckTimeout, wi.TTL))
	e.Sequence = d.Sequence + 1
	if !isRenewal(e.Kind) {
		// A refreshing device stays enrolled meanwhile.
		d.State = inventory.DeviceEnrolling
	}
	d.Generation, d.EnrollmentID, d.Facts, d.UpdatedAt = e.Generation, e.ID, facts, now
	d.InFlight = ""
	if d.HeldEnrollment == e.ID {
		d.ClearHeld()
	}
	d.Enrollments++
	actor := deviceActor(e.Fleet, e.DeviceID)
	if e.Batch {
		actor = "server"
	}
	rec := s.auditRec(actor, "enroll:wrapped", e.Fleet, e.DeviceID,
		fmt.Sprintf("enrollment %s (%s), generation %d, wrapping accessor %s", e.ID, kindName(e.Kind), e.Generation, wi.Accessor))
	if err := s.store.Record(ctx, e, d, rec); err != nil {
		return wire.EnrollResponse{}, fmt.Errorf("record enrollment: %w", err)
	}
	log.Info("issued wrapped secret ID", "wrapping_accessor", wi.Accessor, "path", kindName(e.Kind), "generation", e.Generation, "sequence", e.Sequence)
	return responseOf(e), nil
}

// abandon marks an enrollment whose minting failed on a Vault call as
// interrupted, so that its retry (same idempotency key) resumes it at once
// instead of waiting out the stale-enrollment time as for a server that
// died half way.
func (s *Service) abandon(log *slog.Logger, e inventory.Enrollment, d inventory.Device) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.UpdatedAt, d.InFlight = time.Time{}, ""
	if err := s.store.Record(ctx, e, d, nil); err != nil {
		log.Warn("mark the interrupted enrollment; its retry waits for it to go stale", "err", err)
	}
}

func responseOf(e inventory.Enrollment) wire.EnrollResponse {
	status := wire.StatusWrapped
	if e.State == inventory.EnrollmentAcknowledged {
		status = wire.StatusEnrolled
	}
	return wire.EnrollResponse{
		Status:           status,
		EnrollmentID:     e.ID,
		RoleID:           e.RoleID,
		LoginMount:       vault.DeviceMount(e.Fleet),
		WrappingToken:    e.WrappingToken,
		WrappingAccessor: e.WrappingAccessor,
		CreationPath:     e.CreationPath,
		WrapExpiresAt:    e.WrapExpiresAt,
		Sequence:         e.Sequence,
	}
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
	if _, ok := s.fleets[fleet]; !ok {
		fleet = "" // never a label per unknown name a client sends
	}
	s.metrics.Enrollment(fleet, path, outcome, took)
}
