// Package inventory defines what the enrollment server remembers — devices,
// enrollments, consumed enrollment tokens and security alerts — and the
// Store interface every storage backend implements.
package inventory

import (
	"context"
	"errors"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Errors a Store returns. Callers branch on them with errors.Is.
var (
	// ErrNotFound: no such record.
	ErrNotFound = errors.New("not found")
	// ErrBusy: the device has another enrollment in progress.
	ErrBusy = errors.New("device has an enrollment in progress")
	// ErrConsumed: the enrollment token was presented before.
	ErrConsumed = errors.New("enrollment token already consumed")
)

// Device states.
const (
	DevicePending     = "pending"   // waiting for an administrator's approval
	DeviceEnrolling   = "enrolling" // a wrapped secret ID is out, no acknowledgement yet
	DeviceEnrolled    = "enrolled"
	DeviceQuarantined = "quarantined"
	DeviceRevoked     = "revoked"
	DeviceRejected    = "rejected"
)

// Admission decisions an administrator made about a device.
const (
	AdmissionPreauthorized = "preauthorized"
	AdmissionApproved      = "approved"
	AdmissionRejected      = "rejected"
)

// Device is one device of a fleet.
type Device struct {
	Fleet            string     `json:"fleet"`
	ID               string     `json:"id"`
	State            string     `json:"state"`
	RoleID           string     `json:"role_id"`
	Generation       int        `json:"generation"`
	EnrollmentID     string     `json:"enrollment_id"`
	SecretIDAccessor string     `json:"secret_id_accessor,omitempty"`
	TokenAccessor    string     `json:"token_accessor,omitempty"`
	EntityID         string     `json:"entity_id,omitempty"`
	Enrollments      int        `json:"enrollments"`
	Facts            wire.Facts `json:"facts"`
	Reason           string     `json:"reason,omitempty"` // why it is quarantined, revoked or rejected
	Admission        string     `json:"admission,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	EnrolledAt       time.Time  `json:"enrolled_at,omitzero"`
	// Recoveries are the times of automatic re-enrollments, for the
	// recovery budget; older ones than the fleet's window are dropped.
	Recoveries []time.Time `json:"recoveries,omitempty"`
	// InFlight is the enrollment being minted, if any, and since when.
	InFlight      string    `json:"in_flight,omitempty"`
	InFlightSince time.Time `json:"in_flight_since,omitzero"`
	// EKHash binds the device to its TPM (hex SHA-256 of the EK public
	// key) once it enrolled with attestation; TPM names the TPM as its EK
	// certificate does.
	EKHash string `json:"ek_hash,omitempty"`
	TPM    string `json:"tpm,omitempty"`
	// EKKind (rsa2048, ecc384...) and EKIssuer (the EK certificate's
	// issuer; empty for an allow-listed TPM) describe that binding.
	EKKind   string `json:"ek_kind,omitempty"`
	EKIssuer string `json:"ek_issuer,omitempty"`
	// Boot is the device's last accepted measured boot, when it sent an
	// event log.
	Boot *Boot `json:"boot,omitempty"`
	// RebindBy, when set, is the administrator who allowed the device's
	// next attested enrollment to bind it to other hardware (a replaced
	// motherboard), once.
	RebindBy string `json:"rebind_by,omitempty"`
	// RebindEK, when set, is the only TPM the rebind may move it to.
	RebindEK string `json:"rebind_ek,omitempty"`
	// DeviceKey is the public half of the device's own key (see package
	// identity), registered when an enrollment that carried it was
	// acknowledged; from then on it, not the fleet's bootstrap credential,
	// is what the device proves to refresh or rejoin.
	DeviceKey       string    `json:"device_key,omitempty"`
	KeyRegisteredAt time.Time `json:"key_registered_at,omitzero"`
	// Sequence is the join-state sequence the device holds: advanced by
	// every acknowledged enrollment, refresh and rejoin. A request with an
	// older one comes from a copy of the device's identity.
	Sequence uint64 `json:"sequence"`
	// HeldEnrollment is a request for this device's ID that proved only
	// the fleet's shared credential while the device already had an
	// identity: it waits for an administrator to approve that one request.
	HeldEnrollment string `json:"held_enrollment,omitempty"`
	// Resync lets the next proven refresh or rejoin through with whatever
	// join-state sequence it holds: set when an administrator re-admits a
	// device locked for two copies of its identity, cleared at the next
	// acknowledgement.
	Resync bool `json:"resync,omitempty"`
	// What the held request showed, for the administrator who decides on
	// it: its device key's fingerprint, its facts, when it came.
	HeldKey   string     `json:"held_key,omitempty"`
	HeldFacts wire.Facts `json:"held_facts,omitzero"`
	HeldSince time.Time  `json:"held_since,omitzero"`
	// RoleFingerprint is the fingerprint of the device role's parameters
	// as the server last wrote them to Vault: a mint with the same ones
	// writes the role no more (see vault.DeviceRole.Fingerprint).
	RoleFingerprint string `json:"role_fingerprint,omitempty"`
}

// ClearHeld forgets the request held for the device's ID.
func (d *Device) ClearHeld() {
	d.HeldEnrollment, d.HeldKey, d.HeldFacts, d.HeldSince = "", "", wire.Facts{}, time.Time{}
}

// HasIdentity reports whether the device ID is taken: a credential was
// minted for it before, or it holds a device key or a TPM binding. Such an
// ID is never handed to a request that proves only the fleet's shared
// bootstrap credential.
func (d Device) HasIdentity() bool {
	return d.Enrollments > 0 || d.DeviceKey != "" || d.EKHash != ""
}

// Enrollment states.
const (
	EnrollmentPending      = "pending" // awaiting approval
	EnrollmentMinting      = "minting"
	EnrollmentWrapped      = "wrapped"
	EnrollmentAcknowledged = "acknowledged"
	EnrollmentFailed       = "failed"
)

// Kinds of enrollment: how the device proved itself.
const (
	KindBootstrap = ""         // the fleet's bootstrap credential (or a batch)
	KindAttested  = "attested" // TPM attestation alone, by a bound device
	KindRefresh   = "refresh"  // current token and device key
	KindRejoin    = "rejoin"   // device key (and TPM) alone
)

// Enrollment is one attempt of a device to obtain its credential, keyed by
// the device's idempotency key.
type Enrollment struct {
	ID             string `json:"id"`
	Kind           string `json:"kind,omitempty"`
	Fleet          string `json:"fleet"`
	DeviceID       string `json:"device_id"`
	IdempotencyKey string `json:"idempotency_key"`
	State          string `json:"state"`
	Generation     int    `json:"generation"`
	RoleID         string `json:"role_id,omitempty"`
	// WrappingToken is kept only until the enrollment is acknowledged or
	// fails, so that a retried request gets the same answer.
	WrappingToken    string    `json:"wrapping_token,omitempty"`
	WrappingAccessor string    `json:"wrapping_accessor,omitempty"`
	CreationPath     string    `json:"creation_path,omitempty"`
	WrapExpiresAt    time.Time `json:"wrap_expires_at,omitzero"`
	SecretIDAccessor string    `json:"secret_id_accessor,omitempty"`
	TokenAccessor    string    `json:"token_accessor,omitempty"`
	// Batch marks a credential pre-provisioned by an administrator for an
	// orchestrator to inject, rather than requested by the device.
	Batch bool `json:"batch,omitempty"`
	// AckDeadline is when the server gives up waiting for the device's
	// acknowledgement and treats the credential as intercepted.
	AckDeadline time.Time `json:"ack_deadline,omitzero"`
	// Sequence is the device's join-state sequence once this enrollment is
	// acknowledged (the device's sequence when it was minted, plus one).
	Sequence uint64 `json:"sequence,omitempty"`
	// MintedAccessor is the accessor of the secret ID minted (wrapped) for
	// this enrollment.
	MintedAccessor string `json:"minted_accessor,omitempty"`
	// FreshRole marks an enrollment whose mint created the device's role,
	// in one go, for a device the store never knew: the role holds no
	// other secret ID, so its acknowledgement has none to list and destroy.
	FreshRole bool `json:"fresh_role,omitempty"`
	// NewKey is the device key this enrollment registers when it is
	// acknowledged.
	NewKey string `json:"new_key,omitempty"`
	// Approved marks a held request an administrator let through.
	Approved  bool      `json:"approved,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Alert kinds.
const (
	AlertWrappingTokenInvalid = "wrapping_token_invalid"
	AlertCreationPathMismatch = "creation_path_mismatch"
	AlertEnrollmentTokenReuse = "enrollment_token_reused"
	AlertAckMissing           = "acknowledgement_missing"
	AlertRecoveryBudget       = "recovery_budget_exhausted"
	AlertHardwareMismatch     = "hardware_mismatch"
	AlertEventLogMismatch     = "event_log_mismatch"
	AlertBootPolicyViolation  = "boot_policy_violation"
	AlertAttestationFailed    = "attestation_failed"
	AlertClonedState          = "cloned_state"
	AlertIdentityClaimed      = "identity_claimed"
)

// Challenge is an issued TPM attestation challenge, good for one answer
// until ExpiresAt. The secret itself is never stored, only its hash.
type Challenge struct {
	ID string `json:"id"`
	// Identity marks a device-key nonce (PathIdentityChallenge) rather
	// than a TPM challenge; neither is ever accepted as the other.
	Identity    bool      `json:"identity,omitempty"`
	Fleet       string    `json:"fleet"`
	DeviceID    string    `json:"device_id"`
	EKHash      string    `json:"ek_hash"`
	EKCertified bool      `json:"ek_certified"`
	EKKind      string    `json:"ek_kind,omitempty"`
	EKIssuer    string    `json:"ek_issuer,omitempty"`
	TPM         string    `json:"tpm,omitempty"`
	AKPublic    []byte    `json:"ak_public"`
	SecretHash  []byte    `json:"secret_hash"`
	Nonce       []byte    `json:"nonce"`
	PCRs        []int     `json:"pcrs"`
	ExpiresAt   time.Time `json:"expires_at"`
	// Boot is what the evidence's event log showed, once verified.
	Boot *Boot `json:"boot,omitempty"`
}

// Boot results.
const (
	BootVerified     = "verified"      // the log replayed; the fleet has no boot policy
	BootPolicyPassed = "policy_passed" // the log replayed and the fleet's policy allows it
)

// Boot is a measured boot as the server accepted it: its TCG event log
// replayed against the quoted PCRs and judged by the fleet's policy.
type Boot struct {
	Result     string    `json:"result"`
	SecureBoot string    `json:"secure_boot"`
	PCR4       []string  `json:"pcr4,omitempty"` // boot applications, hex SHA-256, in boot order
	At         time.Time `json:"at"`
}

// Alert is a security event of the secret bridge.
type Alert struct {
	Seq          uint64    `json:"seq"`
	Time         time.Time `json:"time"`
	Kind         string    `json:"kind"`
	Fleet        string    `json:"fleet,omitempty"`
	DeviceID     string    `json:"device_id,omitempty"`
	EnrollmentID string    `json:"enrollment_id,omitempty"`
	Detail       string    `json:"detail,omitempty"`
	// AckedBy and AckedAt say which administrator acknowledged the alert
	// (looked at it and took it in hand), and when; empty while open.
	AckedBy string    `json:"acked_by,omitempty"`
	AckedAt time.Time `json:"acked_at,omitzero"`
}

// GenerationUse is how often a fleet's bootstrap generation was presented.
type GenerationUse struct {
	Generation int       `json:"generation"`
	Attempts   int       `json:"attempts"`
	Last       time.Time `json:"last,omitzero"`
}

// TokenSpend is the consumption of an enrollment token: its hash,
// remembered until Expires, and the fleet's bootstrap generation it was
// issued under, counted as presented (when Generation > 0).
type TokenSpend struct {
	Hash       string
	Expires    time.Time
	Fleet      string
	Generation int
}

// Store keeps the server's inventory. Every method is safe for concurrent
// use; multi-record changes are atomic.
type Store interface {
	// BeginEnrollment claims e.IdempotencyKey for e's device. When the key
	// was claimed before, it returns that enrollment and false. When the
	// device has another enrollment minting since after staleBefore, it
	// returns ErrBusy. Otherwise it stores e, marks the device in flight and
	// returns e and true.
	//
	// With spend, the request's enrollment token is consumed in the same
	// transaction (as ConsumeToken): ErrConsumed, and nothing written, when
	// it was consumed before; otherwise it stays consumed whatever else the
	// call returns, ErrBusy included.
	BeginEnrollment(ctx context.Context, e Enrollment, staleBefore time.Time, spend *TokenSpend) (Enrollment, bool, error)
	// Record stores an enrollment and its device together, with the audit
	// record of the change when rec is not nil: one transaction, so the log
	// and the state never disagree.
	Record(ctx context.Context, e Enrollment, d Device, rec *audit.Record) error
	Enrollment(ctx context.Context, id string) (Enrollment, error)
	Device(ctx context.Context, fleet, id string) (Device, error)
	SaveDevice(ctx context.Context, d Device) error
	Devices(ctx context.Context, fleet string) ([]Device, error)
	// DevicesPage returns up to q.Limit devices matching q, in the
	// store's (fleet, id) order, starting after the cursor q.After, and
	// the cursor of the next page ("" after the last). It reads no more
	// of the store than the page needs, so that a page of a fleet of a
	// million devices costs what a page of ten does.
	DevicesPage(ctx context.Context, q DeviceQuery) ([]Device, string, error)
	// CountDevices counts the devices by fleet, state and generation, and
	// those enrolled at or after since, reading only what the counts need.
	CountDevices(ctx context.Context, since time.Time) ([]DeviceCount, int, error)
	// ConsumeToken records the hash of a presented enrollment token until
	// t.Expires, and counts a presentation of t.Fleet's generation (when
	// t.Generation > 0); ErrConsumed when the hash was recorded before.
	ConsumeToken(ctx context.Context, t TokenSpend) error
	// TokenConsumed reports whether a token hash was recorded.
	TokenConsumed(ctx context.Context, hash string) (bool, error)
	// PurgeTokens forgets token hashes that expired before now.
	PurgeTokens(ctx context.Context, now time.Time) (int, error)
	// PutChallenge stores an issued attestation challenge.
	PutChallenge(ctx context.Context, c Challenge) error
	// TakeChallenge removes and returns a challenge: each is good for one
	// answer. ErrNotFound when it was never issued, already taken or purged.
	TakeChallenge(ctx context.Context, id string) (Challenge, error)
	// PurgeChallenges forgets challenges that expired before now.
	PurgeChallenges(ctx context.Context, now time.Time) (int, error)
	// Exclusive runs fn unless another holder of the same store (another
	// replica) is running work of that name right now, and reports whether
	// it ran: periodic jobs run on one replica at a time.
	Exclusive(ctx context.Context, name string, fn func(context.Context) error) (bool, error)
	// AddAlert appends an alert and returns it with its sequence number.
	AddAlert(ctx context.Context, a Alert) (Alert, error)
	Alerts(ctx context.Context) ([]Alert, error)
	// AcknowledgeAlert records who acknowledged alert seq, and when, and
	// returns it; ErrNotFound for no such alert. An alert acknowledged
	// before keeps its first acknowledgement.
	AcknowledgeAlert(ctx context.Context, seq uint64, by string, at time.Time) (Alert, error)
	// AwaitingAck lists enrollments whose wrapped secret ID is out and not
	// acknowledged.
	AwaitingAck(ctx context.Context) ([]Enrollment, error)
	// ClaimAwaiting marks an enrollment awaiting acknowledgement as being
	// decided (acknowledged or swept) by the caller, and reports whether
	// the caller won: false when it no longer awaits, or another holder
	// claimed it after staleBefore. One decision per enrollment, across
	// replicas; a claim ends with the Record that decides, or with
	// ReleaseAwaiting when the caller gives up.
	ClaimAwaiting(ctx context.Context, id string, now, staleBefore time.Time) (bool, error)
	ReleaseAwaiting(ctx context.Context, id string) error
	GenerationUse(ctx context.Context, fleet string) ([]GenerationUse, error)
	// AppendAudit seals r after the last record and appends it.
	AppendAudit(ctx context.Context, r audit.Record) (audit.Record, error)
	Audit(ctx context.Context) ([]audit.Record, error)
	Close() error
}
