package enrollment

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// decisionTimeout is how long a claim on an enrollment awaiting its
// acknowledgement holds before another replica may take it over: longer
// than any decision's Vault calls.
const decisionTimeout = 2 * time.Minute

// claimAwaiting claims the decision on an enrollment awaiting
// acknowledgement (see inventory.Store.ClaimAwaiting).
func (s *Service) claimAwaiting(ctx context.Context, id string) (bool, error) {
	now := s.now()
	won, err := s.store.ClaimAwaiting(ctx, id, now, now.Add(-decisionTimeout))
	if err != nil {
		return false, fmt.Errorf("claim enrollment %s: %w", id, err)
	}
	return won, nil
}

// releaseAwaiting gives up a claim whose decision was not recorded.
func (s *Service) releaseAwaiting(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.store.ReleaseAwaiting(ctx, id); err != nil {
		s.log.Warn("release the claim on an enrollment; it lapses by itself", "enrollment_id", id, "err", err)
	}
}

func validateRef(fleet, device, enrollmentID string) []error {
	var errs []error
	if err := wire.ValidateFleet(fleet); err != nil {
		errs = append(errs, err)
	}
	if err := wire.ValidateDeviceID(device); err != nil {
		errs = append(errs, err)
	}
	if enrollmentID == "" || len(enrollmentID) > 64 {
		errs = append(errs, errors.New("enrollment_id: missing or too long"))
	}
	return errs
}

// loadEnrollment returns the enrollment named by a device's request, which
// must belong to that device.
func (s *Service) loadEnrollment(ctx context.Context, fleet, device, id string) (inventory.Enrollment, inventory.Device, error) {
	if _, ok := s.fleet(fleet); !ok {
		return inventory.Enrollment{}, inventory.Device{}, fail(wire.CodeUnknownFleet, "fleet %q is not served here", fleet)
	}
	e, err := s.store.Enrollment(ctx, id)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && (e.Fleet != fleet || e.DeviceID != device)) {
		return e, inventory.Device{}, fail(wire.CodeEnrollmentNotFound, "no such enrollment for this device")
	}
	if err != nil {
		return e, inventory.Device{}, fmt.Errorf("load enrollment: %w", err)
	}
	d, err := s.store.Device(ctx, fleet, device)
	if err != nil {
		return e, d, fmt.Errorf("load device: %w", err)
	}
	return e, d, nil
}

// Acknowledge confirms that the device logged in with the secret ID of this
// enrollment: the presented token must be a live token of the device's own
// role, issued from this enrollment's secret ID.
func (s *Service) Acknowledge(ctx context.Context, req wire.AckRequest) (_ wire.AckResponse, err error) {
	defer func() {
		if err == nil || permanentRefusal(err) {
			s.finish(req.Ticket, req.Fleet, req.DeviceID)
		}
	}()
	errs := validateRef(req.Fleet, req.DeviceID, req.EnrollmentID)
	if req.Token == "" || len(req.Token) > 512 {
		errs = append(errs, errors.New("token: missing or too long"))
	}
	if req.SecretIDAccessor == "" || len(req.SecretIDAccessor) > 128 {
		errs = append(errs, errors.New("secret_id_accessor: missing or too long"))
	}
	if err := errors.Join(errs...); err != nil {
		return wire.AckResponse{}, fail(wire.CodeInvalidRequest, "%v", err)
	}
	e, d, err := s.loadEnrollment(ctx, req.Fleet, req.DeviceID, req.EnrollmentID)
	if err != nil {
		return wire.AckResponse{}, err
	}
	if e.State == inventory.EnrollmentWrapped {
		// One decision per enrollment: this acknowledgement, or the sweep
		// of a missing one, never both.
		won, cerr := s.claimAwaiting(ctx, e.ID)
		if cerr != nil {
			return wire.AckResponse{}, cerr
		}
		if won {
			id := e.ID
			defer func() {
				if err != nil { // the named result: whatever failed below
					s.releaseAwaiting(id)
				}
			}()
		} else if e, err = s.store.Enrollment(ctx, e.ID); err != nil {
			return wire.AckResponse{}, fmt.Errorf("load enrollment: %w", err)
		} else if e.State == inventory.EnrollmentWrapped {
			return wire.AckResponse{}, fail(wire.CodeEnrollmentInProgress, "this enrollment is being decided; try again shortly")
		}
	}
	if e.State != inventory.EnrollmentWrapped && e.State != inventory.EnrollmentAcknowledged {
		return wire.AckResponse{}, fail(wire.CodeRejected, "enrollment is %s and cannot be acknowledged", e.State)
	}
	// The two proofs do not depend on each other: look both up at once.
	type lookup struct {
		meta map[string]string
		err  error
	}
	accessor := make(chan lookup, 1)
	go func() {
		meta, err := s.vault.DeviceSecretIDMeta(ctx, req.Fleet, req.DeviceID, req.SecretIDAccessor)
		accessor <- lookup{meta, err}
	}()
	ti, err := s.vault.LookupToken(ctx, req.Token)
	acc := <-accessor
	if errors.Is(err, vault.ErrInvalidToken) {
		s.log.Info("acknowledgement with a token vault refused", "fleet", req.Fleet, "device_id", req.DeviceID, "err", err)
		return wire.AckResponse{}, fail(wire.CodeProofInvalid, "the presented token is not valid")
	}
	if err != nil {
		return wire.AckResponse{}, vaultError("look up the device token", err)
	}
	wantPath := "auth/" + vault.DeviceMount(req.Fleet) + "/login"
	if ti.Path != wantPath || ti.Meta["role_name"] != req.DeviceID || ti.Meta["enrollment_id"] != e.ID {
		return wire.AckResponse{}, fail(wire.CodeProofInvalid, "the presented token was not issued to this device by this enrollment")
	}
	if errors.Is(acc.err, vault.ErrNotFound) || (acc.err == nil && acc.meta["enrollment_id"] != e.ID) {
		// A lockout while this acknowledgement was on its way destroyed
		// the secret ID it names: the device hears why it stopped (the
		// token above proved it is the device), not "invalid proof".
		if now, lerr := s.store.Device(ctx, req.Fleet, req.DeviceID); lerr == nil {
			if refusal := s.standing(now); refusal != nil {
				return wire.AckResponse{}, refusal
			}
		}
		return wire.AckResponse{}, fail(wire.CodeProofInvalid, "the secret ID accessor does not belong to this enrollment")
	}
	if acc.err != nil {
		return wire.AckResponse{}, vaultError("look up the secret ID accessor", acc.err)
	}
	if e.State == inventory.EnrollmentAcknowledged {
		return wire.AckResponse{Status: wire.StatusEnrolled}, nil // a retried acknowledgement
	}
	if refusal := s.standing(d); refusal != nil {
		return wire.AckResponse{}, refusal // locked meanwhile: nothing it minted counts
	}
	if d.EnrollmentID != e.ID {
		return wire.AckResponse{}, fail(wire.CodeRejected, "enrollment %s was superseded by a newer one of this device", e.ID)
	}
	if e.Sequence != 0 && d.Sequence != e.Sequence-1 && !d.Resync {
		return wire.AckResponse{}, s.cloned(ctx, &e, &d, fmt.Sprintf("acknowledgement of join-state sequence %d while the server holds %d", e.Sequence, d.Sequence))
	}
	// From here on exactly one secret ID of the device is live: the one
	// just proven. The old ones go first, so that a failure below leaves
	// a retry to finish the job rather than two live credentials.
	destroyed := 0
	if !onlySecretID(e, req.SecretIDAccessor) {
		destroyed, err = s.vault.DestroyDeviceSecretIDsExcept(ctx, req.Fleet, req.DeviceID, req.SecretIDAccessor)
		if err != nil {
			return wire.AckResponse{}, vaultError("destroy the device's older secret IDs", err)
		}
	}
	now := s.now().UTC()
	e.State, e.UpdatedAt = inventory.EnrollmentAcknowledged, now
	e.WrappingToken = "" // spent; never keep it longer than needed
	e.SecretIDAccessor, e.TokenAccessor = req.SecretIDAccessor, ti.Accessor
	d.State, d.UpdatedAt = inventory.DeviceEnrolled, now
	d.SecretIDAccessor, d.TokenAccessor, d.EntityID = req.SecretIDAccessor, ti.Accessor, ti.EntityID
	if e.Kind == inventory.KindBootstrap || e.Kind == inventory.KindAttested {
		d.EnrolledAt = now
	}
	if e.Sequence != 0 {
		d.Sequence, d.Resync = e.Sequence, false
	}
	keyNote := ""
	if e.NewKey != "" && e.NewKey != d.DeviceKey {
		d.DeviceKey, d.KeyRegisteredAt = e.NewKey, now
		keyNote = ", device key " + identity.Fingerprint(e.NewKey)
	}
	rec := s.auditRec(deviceActor(req.Fleet, req.DeviceID), "enroll:acknowledged", req.Fleet, req.DeviceID,
		fmt.Sprintf("enrollment %s (%s), sequence %d, secret ID accessor %s, token accessor %s, %d older secret IDs destroyed%s",
			e.ID, kindName(e.Kind), d.Sequence, req.SecretIDAccessor, ti.Accessor, destroyed, keyNote))
	if err := s.store.Record(ctx, e, d, rec); err != nil {
		return wire.AckResponse{}, fmt.Errorf("record acknowledgement: %w", err)
	}
	s.log.Info("device enrolled", "fleet", req.Fleet, "device_id", req.DeviceID, "enrollment_id", e.ID, "path", kindName(e.Kind),
		"sequence", d.Sequence, "secret_id_accessor", req.SecretIDAccessor, "token_accessor", ti.Accessor, "entity_id", ti.EntityID)
	return wire.AckResponse{Status: wire.StatusEnrolled}, nil
}

// onlySecretID reports whether the acknowledged secret ID is known to be
// its role's only one, so that listing the role's secret IDs (two Vault
// calls: the wrapped list and its unwrap) would find nothing to destroy:
// the enrollment created the role in one go (Enrollment.FreshRole) and the
// device proved the very secret ID it minted.
//
// What this trusts is the store: a device the store lost its record of
// while Vault kept its role would count as new. The store is the server's
// record of every device (nothing deletes one), so that takes a store
// replaced under a live Vault, which its operator sets up again anyway.
func onlySecretID(e inventory.Enrollment, accessor string) bool {
	return e.FreshRole && e.MintedAccessor != "" && e.MintedAccessor == accessor
}
