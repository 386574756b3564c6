package lifecycle

import (
	"fmt"
	"strings"
	"time"
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
	LastRenewal       time.Time `json:"last_renewal,omitzero"`
	LastError         string    `json:"last_error,omitempty"`
	NextRetry         time.Time `json:"next_retry,omitzero"`
	Reason            string    `json:"reason,omitempty"`
	UpdatedAt         time.Time `json:"updated_at,omitzero"`
}

// StatusOf extracts the public part of a state.
func StatusOf(s State) Status {
	return Status{
		Phase: s.Phase, DeviceID: s.DeviceID, Fleet: s.Fleet, EnrollmentID: s.EnrollmentID,
		EntityID: s.EntityID, TokenAccessor: s.TokenAccessor, TokenExpiresAt: s.TokenExpiresAt,
		SecretIDAccessor: s.SecretIDAccessor, SecretIDExpiresAt: s.SecretIDExpiresAt,
		Acknowledged: s.Acknowledged, Enrollments: s.Enrollments, LastRenewal: s.LastRenewal,
		LastError: s.LastError, Reason: s.Reason, UpdatedAt: s.UpdatedAt,
	}
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
	row("last renewal", s.LastRenewal)
	row("last error", s.LastError)
	row("next retry", s.NextRetry)
	row("stopped because", s.Reason)
	if s.Phase == PhaseRejected {
		fmt.Fprintf(&b, "\nThe device stopped and will not retry on its own. Once an administrator has\n"+
			"dealt with the cause (for a quarantine: enrollctl re-admit), restart enroll-client.\n")
	}
	return b.String()
}
