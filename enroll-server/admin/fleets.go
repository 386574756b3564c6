package admin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/enrollment"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Generations shows a fleet's bootstrap generations and who uses them.
func (s *Service) Generations(ctx context.Context, token, fleet string) (wire.Generations, error) {
	if _, err := s.authorize(ctx, token, AreaFleets, fleet, canRead); err != nil {
		return wire.Generations{}, err
	}
	if err := s.fleet(fleet); err != nil {
		return wire.Generations{}, err
	}
	g, err := s.vault.Generations(ctx, fleet)
	if err != nil {
		return wire.Generations{}, err
	}
	live, err := s.vault.EnrollmentSecretIDs(ctx, fleet)
	if err != nil {
		return wire.Generations{}, err
	}
	use, err := s.store.GenerationUse(ctx, fleet)
	if err != nil {
		return wire.Generations{}, err
	}
	devs, err := s.store.Devices(ctx, fleet)
	if err != nil {
		return wire.Generations{}, err
	}
	out := wire.Generations{Fleet: fleet}
	for _, x := range g.List {
		gen := wire.Generation{N: x.N, State: x.State, Current: x.N == g.Current, CreatedAt: x.CreatedAt, LiveSecretIDs: live[x.N]}
		for _, u := range use {
			if u.Generation == x.N {
				gen.Attempts, gen.LastAttempt = u.Attempts, u.Last
			}
		}
		for _, d := range devs {
			if d.Generation == x.N {
				gen.Devices++
			}
		}
		gen.DependentIDs, gen.Dependents = dependents(devs, x.N)
		out.Generations = append(out.Generations, gen)
	}
	sort.Slice(out.Generations, func(i, j int) bool { return out.Generations[i].N < out.Generations[j].N })
	return out, nil
}

// maxListed bounds how many dependent device IDs a listing or refusal names.
const maxListed = 20

// dependents lists the devices a generation's end would strand: enrolled
// with it, not revoked, and without a registered device key (so their only
// way back after losing their credential is the bootstrap credential).
func dependents(devs []inventory.Device, n int) ([]string, int) {
	var ids []string
	count := 0
	for _, d := range devs {
		if d.Generation != n || d.DeviceKey != "" || d.State == inventory.DeviceRevoked || d.Enrollments == 0 {
			continue
		}
		count++
		if len(ids) < maxListed {
			ids = append(ids, d.ID)
		}
	}
	return ids, count
}

// Rotate starts a new generation; earlier ones stay valid until retired.
func (s *Service) Rotate(ctx context.Context, token, fleet string) (wire.Rotated, error) {
	actor, err := s.authorize(ctx, token, AreaFleets, fleet, canUpdate)
	if err != nil {
		return wire.Rotated{}, err
	}
	if err := s.fleet(fleet); err != nil {
		return wire.Rotated{}, err
	}
	cred, err := s.vault.Rotate(ctx, fleet)
	if err != nil {
		return wire.Rotated{}, err
	}
	s.core.ForgetGenerations(fleet)
	s.audit(ctx, actor, "admin:rotate", fleet, "generation "+itoa(cred.Generation)+", secret ID accessor "+cred.Accessor)
	return wire.Rotated{Fleet: fleet, Generation: cred.Generation, RoleID: cred.RoleID, SecretID: cred.SecretID, SecretIDAccessor: cred.Accessor}, nil
}

// EndGeneration retires (after its grace period) or revokes (in an
// emergency) a generation: its enrollment secret IDs are destroyed.
//
// A retire is refused while devices still depend on the generation (see
// dependents), naming them, unless force is set; a revoke is an emergency
// and never waits.
func (s *Service) EndGeneration(ctx context.Context, token, fleet string, n int, state string, force bool) (wire.GenerationEnded, error) {
	actor, err := s.authorize(ctx, token, AreaFleets, fleet, canUpdate)
	if err != nil {
		return wire.GenerationEnded{}, err
	}
	if err := s.fleet(fleet); err != nil {
		return wire.GenerationEnded{}, err
	}
	devs, err := s.store.Devices(ctx, fleet)
	if err != nil {
		return wire.GenerationEnded{}, err
	}
	ids, count := dependents(devs, n)
	var forced []string
	if state == vault.GenerationRetired {
		grace, err := s.graceLeft(ctx, fleet, n, count)
		if err != nil {
			return wire.GenerationEnded{}, err
		}
		if grace != nil && !force {
			return wire.GenerationEnded{}, grace
		}
		if grace != nil {
			forced = append(forced, "within its rotation grace period")
		}
	}
	if count > 0 && state == vault.GenerationRetired && !force {
		more := ""
		if count > len(ids) {
			more = fmt.Sprintf(" and %d more", count-len(ids))
		}
		return wire.GenerationEnded{}, wire.Errorf(wire.CodeGenerationInUse,
			"%d devices still depend on generation %d (no device key registered yet): %s%s; let them refresh first, or retire with -force",
			count, n, strings.Join(ids, ", "), more)
	}
	if count > 0 && state == vault.GenerationRetired {
		forced = append(forced, itoa(count)+" dependent devices")
	}
	destroyed, err := s.vault.EndGeneration(ctx, fleet, n, state)
	switch {
	case errors.Is(err, vault.ErrCurrentGeneration):
		return wire.GenerationEnded{}, wire.Errorf(wire.CodeGenerationCurrent, "generation %d is the current one, which new images carry: rotate first", n)
	case notFound(err):
		return wire.GenerationEnded{}, wire.Errorf(wire.CodeNotFound, "fleet %s has no generation %d", fleet, n)
	case err != nil:
		return wire.GenerationEnded{}, err
	}
	s.core.ForgetGenerations(fleet)
	detail := "generation " + itoa(n) + ", destroyed " + itoa(destroyed) + " secret IDs"
	if len(forced) > 0 {
		detail += ", forced: " + strings.Join(forced, ", ")
	}
	s.audit(ctx, actor, "admin:"+state, fleet, detail)
	return wire.GenerationEnded{Generation: n, State: state, DestroyedSecretIDs: destroyed, Dependents: count,
		GraceSeconds: int(enrollment.GenerationCacheTTL.Seconds())}, nil
}

// graceLeft returns the refusal of a retire of generation n while the
// fleet's rotation grace period since the rotation that superseded it
// runs (images in the field may still carry it), or nil once it is over.
// dependents is how many devices still depend on the generation.
func (s *Service) graceLeft(ctx context.Context, fleet string, n, dependents int) (*wire.Error, error) {
	g, err := s.vault.Generations(ctx, fleet)
	if err != nil {
		return nil, err
	}
	var next *vault.Generation // the generation that superseded n
	for i, x := range g.List {
		if x.N > n && (next == nil || x.N < next.N) {
			next = &g.List[i]
		}
	}
	grace := s.core.RotationGrace(fleet)
	if next == nil || grace <= 0 {
		return nil, nil // n is the current one (refused below) or unknown
	}
	ends := next.CreatedAt.Add(grace)
	now := timeNow()
	if !now.Before(ends) {
		return nil, nil
	}
	last := ""
	if use, err := s.store.GenerationUse(ctx, fleet); err == nil {
		for _, u := range use {
			if u.Generation == n && !u.Last.IsZero() {
				last = fmt.Sprintf("; its credential was last presented at %s", u.Last.UTC().Format(time.RFC3339))
			}
		}
	}
	return wire.Errorf(wire.CodeGenerationInGrace,
		"generation %d was superseded by generation %d at %s; its grace period (rotation_grace %v) ends at %s, in %v: images in the field may still carry it, and %d devices still depend on it%s. Retire it after that (enrollctl generations -fleet %s shows its use), or now with -force",
		n, next.N, next.CreatedAt.UTC().Format(time.RFC3339), grace, ends.UTC().Format(time.RFC3339), ends.Sub(now).Round(time.Second), dependents, last, fleet), nil
}

// Batch pre-provisions wrapped secret IDs for an orchestrator.
func (s *Service) Batch(ctx context.Context, token, fleet string, req wire.DeviceIDs) (wire.Batch, error) {
	actor, err := s.authorize(ctx, token, AreaDevices, fleet, canUpdate)
	if err != nil {
		return wire.Batch{}, err
	}
	return s.core.PreProvision(ctx, actor, fleet, req.DeviceIDs)
}

// Alerts lists the stored security alerts, as the admin API sends them.
func (s *Service) Alerts(ctx context.Context, token string) (any, error) {
	al, err := s.AlertList(ctx, token)
	return map[string]any{"alerts": al}, err
}

// AlertList lists the stored security alerts, oldest first.
func (s *Service) AlertList(ctx context.Context, token string) ([]inventory.Alert, error) {
	if _, err := s.authorize(ctx, token, AreaAudit, "", canRead); err != nil {
		return nil, err
	}
	al, err := s.store.Alerts(ctx)
	if al == nil {
		al = []inventory.Alert{} // an empty list, not null
	}
	return al, err
}

// Audit returns the whole audit log.
func (s *Service) Audit(ctx context.Context, token string) ([]audit.Record, error) {
	if _, err := s.authorize(ctx, token, AreaAudit, "", canRead); err != nil {
		return nil, err
	}
	return s.store.Audit(ctx)
}

// VerifyAudit checks the audit log's chain and MACs, and against a head
// exported earlier when head is not empty.
func (s *Service) VerifyAudit(ctx context.Context, token, head string) (wire.AuditCheck, error) {
	if _, err := s.authorize(ctx, token, AreaAudit, "", canRead); err != nil {
		return wire.AuditCheck{}, err
	}
	var h *audit.Head
	if head != "" {
		parsed, err := audit.ParseHead(head)
		if err != nil {
			return wire.AuditCheck{}, wire.Errorf(wire.CodeInvalidRequest, "head: %v", err)
		}
		h = &parsed
	}
	recs, err := s.store.Audit(ctx)
	if err != nil {
		return wire.AuditCheck{}, err
	}
	return Check(recs, s.auditKey, h), nil
}

// Check verifies records (their MACs with key, when set; against head,
// when set) and says where the log breaks, and what its head is.
func Check(recs []audit.Record, key audit.Key, head *audit.Head) wire.AuditCheck {
	out := wire.AuditCheck{Records: len(recs), OK: true, MACChecked: key != nil}
	if len(recs) > 0 {
		out.Head = audit.HeadOf(recs).String()
	}
	err := audit.Verify(recs, key)
	if err == nil && head != nil {
		err = audit.VerifyHead(recs, *head)
	}
	var be *audit.BrokenError
	if errors.As(err, &be) {
		out.OK, out.BrokenAt, out.Problem = false, be.Seq, be.Reason
	}
	return out
}

func (s *Service) audit(ctx context.Context, actor, action, fleet, detail string) {
	if _, err := s.store.AppendAudit(ctx, audit.Record{Time: timeNow(), Actor: actor, Action: action, Fleet: fleet, Detail: detail}); err != nil {
		s.log.Error("append audit record", "err", err, "action", action)
	}
}
