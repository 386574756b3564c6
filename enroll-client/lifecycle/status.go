package lifecycle

import (
	"fmt"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Status is what `enroll-client status` shows: no secret, only accessors
// and times.
type Status struct {
	Phase             Phase     `json:"phase"`
	DeviceID          string    `json:"device_id"`
	Fleet             string    `json:"fleet"`
	EnrollmentID      string    `json:"enrollment_id,omitempty"`
	EntityID          string    `json:"entity_id,omitempty"`
	TokenAccessor     string    `json:"token_accessor,omitempty"`
	TokenExpiresAt    time.Time `json:"token_expires_at,omitzero"`
	SecretIDAccessor  string    `json:"secret_id_accessor,omitempty"`
	SecretIDExpiresAt time.Time `json:"secret_id_expires_at,omitzero"`
	Acknowledged      bool      `json:"acknowledged"`
	Enrollments       int       `json:"enrollments"`
	// The device's identity: its key's fingerprint, its join-state
	// sequence, and how its credentials were obtained.
	DeviceKey       string `json:"device_key,omitempty"`
	Sequence        uint64 `json:"sequence"`
	Flow            string `json:"flow,omitempty"`
	BootstrapLogins int    `json:"bootstrap_logins"`
	Refreshes       int    `json:"refreshes"`
	Rejoins         int    `json:"rejoins"`
	Refused         string `json:"refused,omitempty"`
	// DaemonStopped is when the daemon that published this status stopped;
	// zero while it runs.
	DaemonStopped time.Time `json:"daemon_stopped,omitzero"`
	LastRenewal   time.Time `json:"last_renewal,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	NextRetry     time.Time `json:"next_retry,omitzero"`
	Reason        string    `json:"reason,omitempty"`
	UpdatedAt     time.Time `json:"updated_at,omitzero"`
}

// StatusOf extracts the public part of a state.
func StatusOf(s State) Status {
	return Status{
		Phase: s.Phase, DeviceID: s.DeviceID, Fleet: s.Fleet, EnrollmentID: s.EnrollmentID,
		EntityID: s.EntityID, TokenAccessor: s.TokenAccessor, TokenExpiresAt: s.TokenExpiresAt,
		SecretIDAccessor: s.SecretIDAccessor, SecretIDExpiresAt: s.SecretIDExpiresAt,
		Acknowledged: s.Acknowledged, Enrollments: s.Enrollments, LastRenewal: s.LastRenewal,
		LastError: s.LastError, Reason: s.Reason, UpdatedAt: s.UpdatedAt,
		DeviceKey: keyFingerprint(s), Sequence: s.Sequence, Flow: s.Flow,
		BootstrapLogins: s.BootstrapLogins, Refreshes: s.Refreshes, Rejoins: s.Rejoins, Refused: s.Refused,
	}
}

// keyFingerprint names the device key without showing it.
func keyFingerprint(s State) string {
	if s.DeviceKeyPublic != "" {
		return identity.Fingerprint(s.DeviceKeyPublic)
	}
	if len(s.DeviceKey) == 0 {
		return ""
	}
	k, err := identity.Ed25519FromSeed(s.DeviceKey)
	if err != nil {
		return "invalid"
	}
	return identity.Fingerprint(k.Public())
}

// Text renders the status for people.
func (s Status) Text() string {
	var b strings.Builder
	row := func(k string, v any) {
		switch t := v.(type) {
		case string:
			if t == "" {
				return
			}
		case time.Time:
			if t.IsZero() {
				return
			}
			v = t.Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "%-22s %v\n", k+":", v)
	}
	row("phase", string(s.Phase))
	row("daemon stopped", s.DaemonStopped)
	row("device", s.DeviceID)
	row("fleet", s.Fleet)
	row("enrollment", s.EnrollmentID)
	row("vault entity", s.EntityID)
	row("token accessor", s.TokenAccessor)
	row("token expires", s.TokenExpiresAt)
	row("secret ID accessor", s.SecretIDAccessor)
	row("secret ID expires", s.SecretIDExpiresAt)
	row("acknowledged", fmt.Sprint(s.Acknowledged))
	row("enrollments", fmt.Sprint(s.Enrollments))
	row("device key", s.DeviceKey)
	row("join sequence", fmt.Sprint(s.Sequence))
	row("credentials", fmt.Sprintf("%d bootstrap logins, %d refreshes, %d rejoins", s.BootstrapLogins, s.Refreshes, s.Rejoins))
	row("last renewal", s.LastRenewal)
	row("last error", s.LastError)
	row("next retry", s.NextRetry)
	row("stopped because", s.Reason)
	if s.Phase == PhaseRejected && s.Refused == string(wire.CodeClonedState) {
		fmt.Fprintf(&b, "\nAnother copy of this device's identity exists (a cloned disk?). Both copies are\n"+
			"locked. Remove the copy, have an administrator re-admit the device\n"+
			"(enrollctl readmit), then restart enroll-client on the real device.\n")
	} else if s.Phase == PhaseRejected {
		fmt.Fprintf(&b, "\nThe device stopped. It checks again at the next retry above, and at once when\n"+
			"enroll-client is restarted: have the cause dealt with first (a quarantine or a\n"+
			"revocation: enrollctl readmit; a retired bootstrap generation: install the fleet's\n"+
			"current bundle), then restart enroll-client.\n")
	}
	return b.String()
}
