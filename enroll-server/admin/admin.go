// Package admin is the fleet administrators' side of the server. Admins
// authenticate with a Vault token (enrollctl sends a short-lived child of
// the admin's own); what each may do is decided by Vault policy, by asking
// Vault what that token may do on a path that stands for the action, for
// one fleet or every fleet. There is no second user database. Every change
// is attributed in the audit log to the token's display name, accessor and
// Vault entity.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admission"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Vault is what the admin service needs from Vault.
type Vault interface {
	Capabilities(ctx context.Context, token, path string) ([]string, error)
	LookupToken(ctx context.Context, token string) (vault.TokenInfo, error)
	Generations(ctx context.Context, fleet string) (vault.Generations, error)
	Rotate(ctx context.Context, fleet string) (vault.EnrollmentCredential, error)
	EndGeneration(ctx context.Context, fleet string, n int, state string) (int, error)
	EnrollmentSecretIDs(ctx context.Context, fleet string) (map[int]int, error)
	PasswordLogin(ctx context.Context, mount, user, password string) (vault.PersonLogin, error)
	RevokeSelf(ctx context.Context, token string) error
}

// Core is the enrollment core's side of device administration.
type Core interface {
	Device(ctx context.Context, fleet, id string) (inventory.Device, error)
	Approve(ctx context.Context, actor, fleet, id, enrollment string) (inventory.Device, error)
	Reject(ctx context.Context, actor, fleet, id, reason string) (inventory.Device, error)
	Revoke(ctx context.Context, actor, fleet, id, reason string) (inventory.Device, error)
	Readmit(ctx context.Context, actor, fleet, id string) (inventory.Device, error)
	AllowRebind(ctx context.Context, actor, fleet, id, reason, ek string) (inventory.Device, error)
	Preauthorize(ctx context.Context, actor, fleet string, ids []string) error
	PreProvision(ctx context.Context, actor, fleet string, ids []string) (wire.Batch, error)
	ForgetGenerations(fleet string)
	Serves(fleet string) bool
	RotationGrace(fleet string) time.Duration
}

// Service answers admin requests.
type Service struct {
	// failedChecks bounds, per source address, the admin requests whose
	// token Vault refused: each cost Vault two calls. A valid token is
	// never charged.
	failedChecks *admission.KeyedLimiter
	vault        Vault
	core         Core
	store        Store
	auditKey     audit.Key // checks the audit records' MACs; nil: none
	log          *slog.Logger
}

// New builds the admin service.
func New(v Vault, c Core, s Store, auditKey audit.Key, log *slog.Logger) *Service {
	return &Service{vault: v, core: c, store: s, auditKey: auditKey, log: log,
		failedChecks: admission.NewKeyedLimiter(FailedChecksPerSecond, FailedChecksBurst, 100_000)}
}

// Store is what the admin API reads of the inventory (inventory.Store has
// the contract of each method); changes go through the core.
type Store interface {
	Devices(ctx context.Context, fleet string) ([]inventory.Device, error)
	DevicesPage(ctx context.Context, q inventory.DeviceQuery) ([]inventory.Device, string, error)
	CountDevices(ctx context.Context, since time.Time) ([]inventory.DeviceCount, int, error)
	Alerts(ctx context.Context) ([]inventory.Alert, error)
	AcknowledgeAlert(ctx context.Context, seq uint64, by string, at time.Time) (inventory.Alert, error)
	GenerationUse(ctx context.Context, fleet string) ([]inventory.GenerationUse, error)
	AppendAudit(ctx context.Context, r audit.Record) (audit.Record, error)
	Audit(ctx context.Context) ([]audit.Record, error)
}

// An address whose admin requests Vault keeps refusing (invented, expired
// or powerless tokens) gets FailedChecksBurst of them checked at once, then
// FailedChecksPerSecond; past that it is answered 429 without a Vault call.
const (
	FailedChecksPerSecond = 5
	FailedChecksBurst     = 20
)

// WithSource records the address an admin request came from.
func WithSource(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, sourceKey{}, addr)
}

type sourceKey struct{}

func sourceOf(ctx context.Context) string {
	s, _ := ctx.Value(sourceKey{}).(string)
	return s
}

// Areas of administration: each is a path under vault.AdminActionPrefix.
const (
	AreaDevices = "devices"
	AreaFleets  = "fleets"
	AreaAudit   = "audit"
)

// Capabilities an action needs.
const (
	canRead   = "read"
	canUpdate = "update"
)

// authorize checks that token may act on area of fleet (of every fleet,
// when fleet is empty) with capability, and returns the actor to record.
func (s *Service) authorize(ctx context.Context, token, area, fleet, capability string) (string, error) {
	if token == "" {
		return "", wire.Errorf(wire.CodeUnauthenticated, "an administrator's Vault token is required (enrollctl sends a short-lived child of $VAULT_TOKEN as X-Vault-Token)")
	}
	took, giveBack := s.failedChecks.Take(sourceOf(ctx), time.Now())
	if !took {
		return "", &wire.Error{Code: wire.CodeRateLimited, Message: "too many admin requests with tokens Vault refused; retry shortly", RetryAfterSeconds: 1}
	}
	path, scope := vault.AdminActionPrefix+area, "every fleet"
	if fleet != "" {
		if err := wire.ValidateFleet(fleet); err != nil {
			giveBack() // Vault was not asked
			return "", wire.Errorf(wire.CodeInvalidRequest, "%v", err)
		}
		path, scope = path+"/"+fleet, "fleet "+fleet
	}
	caps, err := s.vault.Capabilities(ctx, token, path)
	if err != nil {
		s.log.Warn("check admin capabilities", "err", err, "area", area)
		giveBack() // Vault's trouble, not the token's
		return "", &wire.Error{Code: wire.CodeUnavailable, Message: "vault could not check the token's capabilities", RetryAfterSeconds: 2}
	}
	allowed := slices.Contains(caps, "root") || slices.Contains(caps, capability) ||
		(capability == canRead && slices.Contains(caps, "list"))
	ti, lookupErr := s.vault.LookupToken(ctx, token)
	if errors.Is(lookupErr, vault.ErrInvalidToken) {
		return "", wire.Errorf(wire.CodeInvalidToken,
			"Vault does not accept this token (expired, revoked or mistyped): log in to Vault again (vault login) and check $VAULT_TOKEN; enrollctl sends a five-minute child of it")
	}
	if !allowed {
		return "", wire.Errorf(wire.CodeForbidden, "this token may not %s %s of %s: it needs the %s policy%s; ask your Vault administrator, then log in to Vault again",
			capability, area, scope, neededPolicies(capability, fleet), heldPolicies(ti, lookupErr))
	}
	giveBack() // a token Vault accepted is never charged
	if lookupErr != nil {
		return "admin:unknown", nil
	}
	name := ti.Meta["username"]
	if name == "" {
		name = ti.DisplayName
	}
	who := ti.Accessor
	if ti.EntityID != "" {
		// A child token made by enrollctl carries its parent's entity,
		// which Vault sets and nobody can choose.
		who += ", entity " + ti.EntityID
	}
	return "admin:" + name + " (" + who + ")", nil
}

// neededPolicies names the edge-enroll policies that grant capability on
// an area of fleet (of every fleet when fleet is empty).
func neededPolicies(capability, fleet string) string {
	every := []string{vault.AdminPolicy}
	if capability == canRead {
		every = append(every, vault.OperatorPolicy)
	}
	if fleet == "" {
		return strings.Join(every, " or ")
	}
	own := []string{vault.FleetAdminPolicy(fleet)}
	if capability == canRead {
		own = append(own, vault.FleetOperatorPolicy(fleet))
	}
	return strings.Join(own, " or ") + " (or, for every fleet, " + strings.Join(every, " or ") + ")"
}

// heldPolicies says which policies the refused token holds, when known.
func heldPolicies(ti vault.TokenInfo, lookupErr error) string {
	if lookupErr != nil || len(ti.Policies) == 0 {
		return ""
	}
	return " (it holds " + strings.Join(ti.Policies, ", ") + ")"
}

func (s *Service) fleet(name string) error {
	if !s.core.Serves(name) {
		return wire.Errorf(wire.CodeUnknownFleet, "fleet %q is not served here", name)
	}
	return nil
}

func notFound(err error) bool {
	return errors.Is(err, inventory.ErrNotFound) || errors.Is(err, vault.ErrNotFound)
}

func heldFacts(d inventory.Device) *wire.Facts {
	if d.HeldEnrollment == "" {
		return nil
	}
	return &d.HeldFacts
}

func deviceOut(d inventory.Device) wire.Device {
	return wire.Device{
		Fleet: d.Fleet, ID: d.ID, State: d.State, Admission: d.Admission, Generation: d.Generation,
		Enrollments: d.Enrollments, SecretIDAccessor: d.SecretIDAccessor, EntityID: d.EntityID,
		Facts: d.Facts, EnrolledAt: d.EnrolledAt, UpdatedAt: d.UpdatedAt, Reason: d.Reason,
		DeviceKey: identity.Fingerprint(d.DeviceKey), KeyRegisteredAt: d.KeyRegisteredAt, EKHash: d.EKHash,
		EKKind: d.EKKind, EKIssuer: d.EKIssuer, TPM: d.TPM, RebindAllowed: d.RebindBy != "",
		Sequence: d.Sequence, HeldEnrollment: d.HeldEnrollment, HeldKey: d.HeldKey, HeldSince: d.HeldSince,
		HeldFacts: heldFacts(d), Boot: bootOut(d.Boot),
	}
}

func bootOut(b *inventory.Boot) *wire.Boot {
	if b == nil {
		return nil
	}
	return &wire.Boot{Result: b.Result, SecureBoot: b.SecureBoot, PCR4: slices.Clone(b.PCR4), At: b.At}
}
