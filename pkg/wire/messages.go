package wire

import "time"

// HTTP routes served by enroll-server.
const (
	PathEnroll = "/v1/enroll"
	PathAck    = "/v1/enroll/ack"
	PathReport = "/v1/enroll/report"
	PathAdmit  = "/v1/enroll/admit"
	PathHealth = "/healthz"
	PathReady  = "/readyz"
)

// MaxBodyBytes caps every request body the server reads.
const MaxBodyBytes = 64 << 10

// Facts describe a device. They are informational: the server records them
// but never trusts them for an authorisation decision.
type Facts struct {
	Hostname      string `json:"hostname,omitempty"`
	OS            string `json:"os,omitempty"`
	Arch          string `json:"arch,omitempty"`
	ClientVersion string `json:"client_version,omitempty"`
}

// EnrollRequest asks the server for a device's own credential.
//
// EnrollmentToken is a Vault token obtained by logging in with the fleet's
// shared enrollment role; the server consumes it. IdempotencyKey is chosen by
// the device and kept across retries so that a retried request gets the same
// outcome and never a second credential.
type EnrollRequest struct {
	Fleet           string `json:"fleet"`
	DeviceID        string `json:"device_id"`
	EnrollmentToken string `json:"enrollment_token"`
	IdempotencyKey  string `json:"idempotency_key"`
	Facts           Facts  `json:"facts"`
	// Attestation answers a challenge from PathChallenge; required by a
	// fleet that requires a TPM. A device bound to its TPM may enroll again
	// with attestation alone (no enrollment token), for instance after its
	// bootstrap generation was retired.
	Attestation *Evidence `json:"attestation,omitempty"`
	// Ticket is an admission ticket from PathAdmit: the server let this
	// device in before it touched Vault, so it is not counted twice.
	Ticket string `json:"ticket,omitempty"`
	// DeviceKey is the public half of the device key the client made for
	// this identity (see package identity); the server registers it when
	// the enrollment is acknowledged.
	DeviceKey string `json:"device_key,omitempty"`
}

// AdmitRequest asks the server for an admission ticket before the device
// logs in to Vault: under load the server sheds devices with 429 and
// Retry-After before any of them adds to Vault's load.
type AdmitRequest struct {
	Fleet    string `json:"fleet"`
	DeviceID string `json:"device_id"`
}

// AdmitResponse carries a short-lived admission ticket for one device.
type AdmitResponse struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Enrollment statuses returned by the enroll endpoint.
const (
	StatusWrapped  = "wrapped"
	StatusPending  = "pending"
	StatusEnrolled = "enrolled"
)

// EnrollResponse carries the device's response-wrapped secret ID.
//
// The device must look WrappingToken up and refuse it unless its creation
// path is exactly CreationPath (which the device also derives on its own),
// then unwrap it and log in at LoginMount with RoleID and the secret ID.
type EnrollResponse struct {
	Status           string    `json:"status"`
	EnrollmentID     string    `json:"enrollment_id"`
	RoleID           string    `json:"role_id,omitempty"`
	LoginMount       string    `json:"login_mount,omitempty"`
	WrappingToken    string    `json:"wrapping_token,omitempty"`
	WrappingAccessor string    `json:"wrapping_accessor,omitempty"`
	CreationPath     string    `json:"creation_path,omitempty"`
	WrapExpiresAt    time.Time `json:"wrap_expires_at,omitzero"`
	// RetryAfterSeconds is set with StatusPending.
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	// Sequence is the join-state sequence the device holds once it has
	// acknowledged this credential; every refresh and rejoin advances it.
	Sequence uint64 `json:"sequence,omitempty"`
	// IdempotencyKey is set on pre-provisioned credentials only: the
	// device proves with it that a report about this enrollment is its own.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// AckRequest proves that the device logged in with its new secret ID: Token
// is the device's own new Vault token, which the server looks up.
type AckRequest struct {
	Fleet            string `json:"fleet"`
	DeviceID         string `json:"device_id"`
	EnrollmentID     string `json:"enrollment_id"`
	Token            string `json:"token"`
	SecretIDAccessor string `json:"secret_id_accessor"`
	// Ticket is the admission ticket of this enrollment: acknowledging
	// frees the device's place among those enrolling at once.
	Ticket string `json:"ticket,omitempty"`
}

// AckResponse confirms the enrollment.
type AckResponse struct {
	Status string `json:"status"`
}

// Problems a device reports about the credential it was handed.
const (
	ProblemWrappingTokenInvalid = "wrapping_token_invalid"
	ProblemCreationPathMismatch = "creation_path_mismatch"
)

// ReportRequest tells the server that something was wrong with a wrapped
// credential. It carries the idempotency key of the enrollment it names,
// which only the device that asked for it (or, for a pre-provisioned
// credential, received it) holds: nobody else can quarantine a device by
// reporting on its behalf, and the device needs no bootstrap credential to
// report.
type ReportRequest struct {
	Fleet          string `json:"fleet"`
	DeviceID       string `json:"device_id"`
	EnrollmentID   string `json:"enrollment_id"`
	IdempotencyKey string `json:"idempotency_key"`
	Problem        string `json:"problem"`
	Detail         string `json:"detail,omitempty"`
}

// ReportResponse acknowledges a report.
type ReportResponse struct {
	Status string `json:"status"`
}
