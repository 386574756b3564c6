// Package enrollment is the enrollment server's core: it exchanges a proof of
// a fleet's bootstrap credential for a device's own response-wrapped secret
// ID, confirms the device's login, keeps the device enrolled by its own
// identity afterwards, and closes the loop on anything that looks like an
// intercepted credential or a copied identity.
//
// Invariants every path keeps:
//
//   - The fleet's shared bootstrap credential proves membership of a fleet
//     once. It never replaces the identity of a device ID that has one
//     (Device.HasIdentity): such a request is held for an administrator,
//     who approves that one request. After the first enrollment the device
//     proves its device key (and its live token to refresh, its TPM to
//     rejoin where bound).
//   - A device has at most one live secret ID once its latest credential is
//     acknowledged: older ones are destroyed at the acknowledgement, never
//     before, so a renewal that fails half way leaves the device as it was.
//   - The join-state sequence moves on only at an acknowledgement. A
//     request with another sequence, or a second renewal from the same one
//     while the first awaits acknowledgement, comes from a copy of the
//     identity: cloned_state, an alert, and the device locked out.
//   - Every proof is checked before anything is written: a refused
//     refresh or rejoin leaves the device record, the audit log and Vault
//     as they were (the nonce it used is spent).
//   - Reports and acknowledgements count only for the device's current
//     enrollment, with proof from it (its idempotency key; its new token).
//   - No secret (token, secret ID, wrapping token) is ever logged; accessors
//     and key fingerprints are.
package enrollment

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admission"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
)

// Store is what the core needs of the inventory (inventory.Store has the
// contract of each method).
type Store interface {
	BeginEnrollment(ctx context.Context, e inventory.Enrollment, staleBefore time.Time, spend *inventory.TokenSpend) (inventory.Enrollment, bool, error)
	Record(ctx context.Context, e inventory.Enrollment, d inventory.Device, rec *audit.Record) error
	Enrollment(ctx context.Context, id string) (inventory.Enrollment, error)
	Device(ctx context.Context, fleet, id string) (inventory.Device, error)
	SaveDevice(ctx context.Context, d inventory.Device) error
	ConsumeToken(ctx context.Context, t inventory.TokenSpend) error
	TokenConsumed(ctx context.Context, hash string) (bool, error)
	PutChallenge(ctx context.Context, c inventory.Challenge) error
	TakeChallenge(ctx context.Context, id string) (inventory.Challenge, error)
	AwaitingAck(ctx context.Context) ([]inventory.Enrollment, error)
	ClaimAwaiting(ctx context.Context, id string, now, staleBefore time.Time) (bool, error)
	ReleaseAwaiting(ctx context.Context, id string) error
	AppendAudit(ctx context.Context, r audit.Record) (audit.Record, error)
}

// Vault is what the core needs from Vault, with the server's own token.
type Vault interface {
	LookupToken(ctx context.Context, token string) (vault.TokenInfo, error)
	RevokeEnrollmentToken(ctx context.Context, token string) error
	Generations(ctx context.Context, fleet string) (vault.Generations, error)
	UpsertDeviceRole(ctx context.Context, fleet, device string, r vault.DeviceRole) error
	DestroyDeviceSecretIDs(ctx context.Context, fleet, device string) (int, error)
	MintWrappedSecretID(ctx context.Context, fleet, device string, meta map[string]string, wrapTTL time.Duration) (vault.WrapInfo, error)
	DeviceSecretIDMeta(ctx context.Context, fleet, device, accessor string) (map[string]string, error)
	DestroyDeviceSecretIDsExcept(ctx context.Context, fleet, device, keep string) (int, error)
	DestroyEnrollmentSecretIDs(ctx context.Context, fleet, device, enrollmentID string) (int, error)
	SecretIDUsesLeft(ctx context.Context, fleet, device, accessor string) (int, error)
	WrappingAlive(ctx context.Context, token string) (bool, error)
	DisableEntity(ctx context.Context, entityID string) error
	DeviceEntityID(ctx context.Context, fleet, roleID string) (string, error)
	Layout() vault.Layout
}

// Fleet is the server's configuration of one fleet.
type Fleet struct {
	Name string
	// WrapTTL is how long a wrapped secret ID may wait to be unwrapped.
	WrapTTL     time.Duration
	TokenTTL    time.Duration
	TokenMaxTTL time.Duration
	SecretIDTTL time.Duration
	// RecoveryBudget is how many automatic re-enrollments a device may make
	// within RecoveryWindow before it is quarantined; 0 means none.
	RecoveryBudget int
	RecoveryWindow time.Duration
	// Approval is how a new device is approved: ApprovalAuto,
	// ApprovalAllowList or ApprovalManual (the fleet's `admission` key).
	Approval string
	// AckTimeout is how long after minting the server waits for the
	// device's acknowledgement before treating the credential as
	// intercepted.
	AckTimeout time.Duration
	// KeyMaxAge is how old a device key may grow before the device must
	// rotate it at its next refresh; 0 means never.
	KeyMaxAge time.Duration
	// RotationGrace is how long a superseded generation stays live before
	// an administrator may retire it without forcing.
	RotationGrace time.Duration
	Limits        admission.Limits
	TPM           TPMPolicy
}

// Approval modes.
const (
	ApprovalAuto      = "auto"
	ApprovalAllowList = "allow-list"
	ApprovalManual    = "manual"
)

// pendingRetryAfter is how often a device awaiting approval asks again.
const pendingRetryAfter = 5

// Service is the enrollment core. Build it with New.
type Service struct {
	vault  Vault
	store  Store
	fleets atomic.Pointer[map[string]Fleet] // replaced whole by SetFleets
	log    *slog.Logger
	alerts *Alerter
	now    func() time.Time
	// outcomes counts enrollment requests by fleet and outcome, latency
	// observes their duration and admissions the admission decisions;
	// optional.
	metrics Metrics

	// staleAfter is how long an enrollment may stay minting before another
	// request for the device may take it over (a server crashed mid-way).
	staleAfter time.Duration

	genMu    sync.Mutex
	genCache map[string]cachedGenerations

	// spending holds the enrollment tokens of requests under way.
	spending tokensInFlight

	gates map[string]*admission.Gate // per fleet, built once (fleets never change live)

	// challenges limits identity challenges per device (see
	// IdentityChallenge).
	challenges *admission.KeyedLimiter

	// startedAt is when this server came up: acknowledgement deadlines
	// that ran out while it was down are extended (see sweep.go).
	startedAt time.Time

	// ticketKey signs admission tickets; per process, so a ticket from
	// another replica simply counts as none.
	ticketKey [32]byte
}

type cachedGenerations struct {
	g       vault.Generations
	fetched time.Time
}

// GenerationCacheTTL bounds how long a retired generation may still be
// accepted by a replica after an admin retired it.
//
// The fleet's generation record is cached per replica rather than read
// from Vault at every enrollment (one Vault read per fleet every few
// seconds instead of one per enrollment). Across replicas:
//
//   - the replica that rotates or retires forgets its copy at once;
//   - a generation another replica's copy does not know (a rotation
//     there) is read again at once (see generations), so a new image is
//     never refused;
//   - a retire is seen by the other replicas within this TTL, which the
//     retire's answer states (GraceSeconds). What they may accept meanwhile
//     is narrow: the retire destroyed the generation's secret IDs in Vault
//     first, so only a bootstrap token logged in before it (consumed at
//     its first presentation, two minutes of life at most) can still come,
//     within those seconds.
//
// A version in the shared store checked at each enrollment would close
// that window for a store read per enrollment; the Vault-side destruction
// makes it not worth that read.
const GenerationCacheTTL = 5 * time.Second

// New builds the core.
func New(v Vault, s Store, fleets []Fleet, alerts *Alerter, log *slog.Logger) *Service {
	m := make(map[string]Fleet, len(fleets))
	gates := make(map[string]*admission.Gate, len(fleets))
	for _, f := range fleets {
		m[f.Name] = f
		gates[f.Name] = admission.NewGate(f.Limits)
	}
	svc := &Service{
		vault: v, store: s, log: log, alerts: alerts,
		now: time.Now, staleAfter: 30 * time.Second, startedAt: time.Now(),
		genCache: map[string]cachedGenerations{}, gates: gates,
		challenges: admission.NewKeyedLimiter(1, 5, 100_000), metrics: noMetrics{},
	}
	svc.fleets.Store(&m)
	if _, err := rand.Read(svc.ticketKey[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return svc
}

// Instrument makes the core report enrollment requests and admission
// decisions to m.
func (s *Service) Instrument(m Metrics) { s.metrics = m }

// Serves reports whether the server enrolls devices of fleet.
func (s *Service) Serves(fleet string) bool { _, ok := s.fleet(fleet); return ok }

// fleet returns a served fleet's settings as they are now.
func (s *Service) fleet(name string) (Fleet, bool) {
	f, ok := (*s.fleets.Load())[name]
	return f, ok
}

// SetFleets replaces the served fleets' settings while the server runs
// (a configuration reload). The fleets themselves must stay the same:
// adding or removing one takes a restart. A fleet's window (open or
// closed) changes at once; other admission limits hold state and take a
// restart: slow lists the fleets whose limits changed and were kept.
func (s *Service) SetFleets(fleets []Fleet) (slow []string, err error) {
	cur := *s.fleets.Load()
	m := make(map[string]Fleet, len(fleets))
	for _, f := range fleets {
		if _, ok := cur[f.Name]; !ok {
			return nil, fmt.Errorf("fleet %s is new: adding a fleet takes a restart", f.Name)
		}
		m[f.Name] = f
	}
	for name := range cur {
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("fleet %s is gone: removing a fleet takes a restart", name)
		}
	}
	for name, f := range m {
		if !s.gates[name].Reopen(f.Limits) {
			slow = append(slow, name)
			f.Limits = cur[name].Limits
			f.Limits.Closed = m[name].Limits.Closed
			m[name] = f
		}
	}
	sort.Strings(slow)
	s.fleets.Store(&m)
	return slow, nil
}

// RotationGrace is fleet's rotation grace period (0 for a fleet not
// served here).
func (s *Service) RotationGrace(fleet string) time.Duration {
	f, _ := s.fleet(fleet)
	return f.RotationGrace
}

// ForgetGenerations drops the cached generation record of a fleet, after
// an administrator changed it.
func (s *Service) ForgetGenerations(fleet string) {
	s.genMu.Lock()
	delete(s.genCache, fleet)
	s.genMu.Unlock()
}

// SetClock replaces the clock; for tests. The server counts as started at
// the new clock's present.
func (s *Service) SetClock(now func() time.Time) {
	s.now, s.startedAt = now, now()
	for _, g := range s.gates {
		g.SetClock(now)
	}
}

// generations returns the fleet's generation record, cached (see
// GenerationCacheTTL); a copy that does not know generation n is read
// again: another replica rotated meanwhile.
func (s *Service) generations(ctx context.Context, fleet string, n int) (vault.Generations, error) {
	s.genMu.Lock()
	c, ok := s.genCache[fleet]
	s.genMu.Unlock()
	if ok && s.now().Sub(c.fetched) < GenerationCacheTTL && c.g.Known(n) {
		return c.g, nil
	}
	g, err := s.vault.Generations(ctx, fleet)
	if err != nil {
		return vault.Generations{}, err
	}
	s.genMu.Lock()
	s.genCache[fleet] = cachedGenerations{g: g, fetched: s.now()}
	s.genMu.Unlock()
	return g, nil
}

func newID() string { return rand.Text() }

// auditRec builds an audit record, to store with the change it records.
func (s *Service) auditRec(actor, action, fleet, device, detail string) *audit.Record {
	return &audit.Record{Time: s.now().UTC(), Actor: actor, Action: action, Fleet: fleet, DeviceID: device, Detail: detail}
}

// record appends to the audit log on its own, for events that change no
// other record; a failure is logged, never hidden.
func (s *Service) record(ctx context.Context, actor, action, fleet, device, detail string) {
	if _, err := s.store.AppendAudit(ctx, *s.auditRec(actor, action, fleet, device, detail)); err != nil {
		s.log.Error("append audit record", "err", err, "action", action)
	}
}

func deviceActor(fleet, device string) string { return "device:" + fleet + "/" + device }
