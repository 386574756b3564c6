package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Phase is where the device is in its life.
type Phase string

// The phases. Transitions:
//
//	unenrolled → enrolling → wrapped → unwrapped → authenticated ⇄ renewing
//	enrolling → pending → enrolling       (awaiting an administrator)
//	any → rejected                        (permanent, with the reason)
//	authenticated → unwrapped             (token lost: log in again)
//	authenticated → refreshing → wrapped  (next secret ID, by identity)
//	unwrapped → refreshing                (secret ID refused, token alive)
//	unwrapped → rejoining → wrapped       (secret ID and token both dead)
//	refreshing → rejoining                (token refused)
//	unwrapped → unenrolled                (refused, and no identity yet)
//
// After the first acknowledged enrollment the device never goes back to
// unenrolled on its own: its device key and join-state sequence, not the
// fleet's bootstrap credential, are what keep it enrolled.
const (
	PhaseUnenrolled    Phase = "unenrolled"
	PhaseEnrolling     Phase = "enrolling"
	PhasePending       Phase = "pending"
	PhaseWrapped       Phase = "wrapped"
	PhaseUnwrapped     Phase = "unwrapped"
	PhaseAuthenticated Phase = "authenticated"
	PhaseRefreshing    Phase = "refreshing"
	PhaseRejoining     Phase = "rejoining"
	PhaseRejected      Phase = "rejected"
)

// Flows: how the credential in progress is being obtained.
const (
	FlowBootstrap = "bootstrap"
	FlowRefresh   = "refresh"
	FlowRejoin    = "rejoin"
)

// stateVersion is the version of the State record; decode migrates older
// records forward.
const stateVersion = 2

// State is everything the device remembers. Secrets in it (WrappingToken,
// SecretID, Token) never reach a log.
type State struct {
	Version  int    `json:"version"`
	Phase    Phase  `json:"phase"`
	DeviceID string `json:"device_id"`
	Fleet    string `json:"fleet"`

	// The enrollment in progress or last completed.
	IdempotencyKey   string    `json:"idempotency_key,omitempty"`
	EnrollmentID     string    `json:"enrollment_id,omitempty"`
	RoleID           string    `json:"role_id,omitempty"`
	LoginMount       string    `json:"login_mount,omitempty"`
	WrappingToken    string    `json:"wrapping_token,omitempty"`
	WrappingAccessor string    `json:"wrapping_accessor,omitempty"`
	CreationPath     string    `json:"creation_path,omitempty"`
	WrapExpiresAt    time.Time `json:"wrap_expires_at,omitzero"`

	SecretID          string    `json:"secret_id,omitempty"`
	SecretIDAccessor  string    `json:"secret_id_accessor,omitempty"`
	SecretIDExpiresAt time.Time `json:"secret_id_expires_at,omitzero"`

	Token          string    `json:"token,omitempty"`
	TokenAccessor  string    `json:"token_accessor,omitempty"`
	TokenIssuedAt  time.Time `json:"token_issued_at,omitzero"` // last login or renewal
	TokenExpiresAt time.Time `json:"token_expires_at,omitzero"`
	TokenRenewable bool      `json:"token_renewable,omitempty"`
	EntityID       string    `json:"entity_id,omitempty"`
	Acknowledged   bool      `json:"acknowledged,omitempty"`

	// The device's own identity, kept across every credential: without a
	// TPM the seed of its Ed25519 device key, the next key while a rotation
	// waits for its acknowledgement, and the join-state sequence the
	// server holds too.
	DeviceKey     []byte    `json:"device_key,omitempty"`
	KeyCreatedAt  time.Time `json:"key_created_at,omitzero"`
	NextDeviceKey []byte    `json:"next_device_key,omitempty"`
	// With a TPM the device key is made in it and never leaves it: the
	// state names its blob instead of holding a seed.
	DeviceKeyTPM     string `json:"device_key_tpm,omitempty"`
	NextDeviceKeyTPM string `json:"next_device_key_tpm,omitempty"`
	// DeviceKeyPublic is the device key's public half, for status.
	DeviceKeyPublic string `json:"device_key_public,omitempty"`
	Sequence        uint64 `json:"sequence,omitempty"`
	PendingSequence uint64 `json:"pending_sequence,omitempty"`
	// Flow is how the credential in progress is obtained (Flow*).
	Flow             string    `json:"flow,omitempty"`
	SecretIDIssuedAt time.Time `json:"secret_id_issued_at,omitzero"`
	// AskedAgain counts how often the request in progress was sent again
	// because its wrapping token was found dead (see askAgain).
	AskedAgain int `json:"asked_again,omitempty"`
	// Refused is the server's code of the last permanent refusal.
	Refused string `json:"refused,omitempty"`

	// Counters, for metrics: logins with the fleet's bootstrap credential,
	// acknowledged refreshes and rejoins.
	BootstrapLogins int `json:"bootstrap_logins,omitempty"`
	Refreshes       int `json:"refreshes,omitempty"`
	Rejoins         int `json:"rejoins,omitempty"`

	Enrollments int       `json:"enrollments"`
	LastRenewal time.Time `json:"last_renewal,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Reason      string    `json:"reason,omitempty"` // why rejected
	UpdatedAt   time.Time `json:"updated_at"`
}

func encodeState(s State) ([]byte, error) {
	s.Version = stateVersion
	return json.Marshal(s)
}

func decodeState(b []byte) (State, error) {
	var probe struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return State{}, fmt.Errorf("decode device state: %w", err)
	}
	switch {
	case probe.Version == stateVersion, probe.Version == 1:
		// Version 1 had no identity; the device registers a key at its
		// next refresh.
	case probe.Version > stateVersion:
		return State{}, fmt.Errorf("device state version %d is newer than this binary understands (%d)", probe.Version, stateVersion)
	default:
		return State{}, fmt.Errorf("device state version %d has no migration", probe.Version)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("decode device state: %w", err)
	}
	if s.Phase == "" {
		return State{}, errors.New("decode device state: no phase")
	}
	return s, nil
}

// clearEnrollment forgets everything of the current credential, for a new
// enrollment; the device's identity and counters stay.
func (s *State) clearEnrollment() {
	keep := State{Version: s.Version, DeviceID: s.DeviceID, Fleet: s.Fleet, Enrollments: s.Enrollments, LastRenewal: s.LastRenewal,
		DeviceKey: s.DeviceKey, KeyCreatedAt: s.KeyCreatedAt, Sequence: s.Sequence,
		DeviceKeyTPM: s.DeviceKeyTPM, DeviceKeyPublic: s.DeviceKeyPublic,
		BootstrapLogins: s.BootstrapLogins, Refreshes: s.Refreshes, Rejoins: s.Rejoins}
	*s = keep
	s.Phase = PhaseUnenrolled
}

// hasIdentity reports whether the server knows this device: it completed
// an enrollment. Such a device refreshes or rejoins; it never enrolls with
// the fleet's bootstrap credential again on its own.
func (s *State) hasIdentity() bool { return s.Enrollments > 0 }
