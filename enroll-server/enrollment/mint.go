package enrollment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// mint creates the device's role if needed and mints a new secret ID,
// wrapped. The device's other secret IDs are destroyed only when this one
// is acknowledged (ack.go), so that a request that fails half way leaves
// the device as it was; after that, exactly one is live.
func (s *Service) mint(ctx context.Context, log *slog.Logger, fleet Fleet, e inventory.Enrollment, d inventory.Device, facts wire.Facts) (wire.EnrollResponse, error) {
	if d.RoleID == "" {
		d.RoleID = uuid.NewString()
	} else {
		e.FreshRole = false // the role was made before: it may hold others
	}
	role := vault.DeviceRole{RoleID: d.RoleID, TokenTTL: fleet.TokenTTL, TokenMaxTTL: fleet.TokenMaxTTL, SecretIDTTL: fleet.SecretIDTTL}
	fp := role.Fingerprint(fleet.Name)
	writeRole := func() error {
		if err := s.vault.UpsertDeviceRole(ctx, fleet.Name, e.DeviceID, role); err != nil {
			s.abandon(log, e, d)
			return vaultError("create the device role", err)
		}
		return nil
	}
	wrote := d.RoleFingerprint != fp
	if wrote {
		if err := writeRole(); err != nil {
			return wire.EnrollResponse{}, err
		}
	}
	meta := map[string]string{
		"fleet": fleet.Name, "device_id": e.DeviceID, "enrollment_id": e.ID, "generation": strconv.Itoa(e.Generation),
	}
	wi, err := s.vault.MintWrappedSecretID(ctx, fleet.Name, e.DeviceID, meta, fleet.WrapTTL)
	if !wrote && errors.Is(err, vault.ErrRoleMissing) {
		// The role the device record remembers is gone from Vault (its
		// mount was set up again): write it, and mint once more.
		log.Warn("the device role was missing in Vault; writing it again")
		if err := writeRole(); err != nil {
			return wire.EnrollResponse{}, err
		}
		wi, err = s.vault.MintWrappedSecretID(ctx, fleet.Name, e.DeviceID, meta, fleet.WrapTTL)
	}
	if err != nil {
		// A secret ID minted whose answer was lost stays an extra one of
		// the device's until the next acknowledgement destroys it.
		s.abandon(log, e, d)
		return wire.EnrollResponse{}, vaultError("mint the device's secret ID", err)
	}
	d.RoleFingerprint = fp
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
	// The device record as stored now (an administrator may have acted
	// meanwhile), not the copy this request read: only its claim goes.
	if cur, err := s.store.Device(ctx, d.Fleet, d.ID); err == nil {
		d = cur
	}
	if d.InFlight == e.ID {
		d.InFlight = ""
	}
	// Its retry may find a secret ID this attempt minted: never fresh.
	e.FreshRole = false
	e.UpdatedAt = time.Time{}
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
