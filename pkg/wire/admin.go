package wire

import (
	"net/url"
	"strconv"
	"time"
)

// Admin API routes, under PathAdmin. Admins authenticate with a Vault
// token in the X-Vault-Token header; Vault policy decides what they may do.
const (
	PathAdmin            = "/v1/admin"
	PathAdminDevices     = "/v1/admin/devices"
	PathAdminAlerts      = "/v1/admin/alerts"
	PathAdminAudit       = "/v1/admin/audit"
	PathAdminAuditVerify = "/v1/admin/audit/verify"
	HeaderVaultToken     = "X-Vault-Token"
)

// AdminDevicePath is a device's admin path; with an action (approve,
// reject, revoke, readmit), that action's.
func AdminDevicePath(fleet, id, action string) string {
	p := PathAdminDevices + "/" + url.PathEscape(fleet) + "/" + url.PathEscape(id)
	if action != "" {
		p += "/" + url.PathEscape(action)
	}
	return p
}

// AdminFleetPath is the path of an admin operation on a fleet
// (preauthorize, batch, generations, rotate).
func AdminFleetPath(fleet, op string) string {
	return PathAdmin + "/fleets/" + url.PathEscape(fleet) + "/" + op
}

// AdminGenerationPath ends a fleet's generation n (end: retire or revoke).
func AdminGenerationPath(fleet string, n int, end string) string {
	return AdminFleetPath(fleet, "generations") + "/" + strconv.Itoa(n) + "/" + url.PathEscape(end)
}

// Device is a device as the admin API shows it.
type Device struct {
	Fleet            string    `json:"fleet"`
	ID               string    `json:"id"`
	State            string    `json:"state"`
	Admission        string    `json:"admission,omitempty"`
	Generation       int       `json:"generation"`
	Enrollments      int       `json:"enrollments"`
	SecretIDAccessor string    `json:"secret_id_accessor,omitempty"`
	EntityID         string    `json:"entity_id,omitempty"`
	Facts            Facts     `json:"facts"`
	EnrolledAt       time.Time `json:"enrolled_at,omitzero"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
	Reason           string    `json:"reason,omitempty"`
	// DeviceKey is the fingerprint of the device's registered key.
	DeviceKey       string    `json:"device_key,omitempty"`
	KeyRegisteredAt time.Time `json:"key_registered_at,omitzero"`
	// EKHash is the TPM endorsement key the device is bound to; EKKind
	// its type (rsa2048, ecc384...), EKIssuer its certificate's issuer
	// (empty for an allow-listed TPM), TPM the TPM as the certificate
	// names it.
	EKHash   string `json:"ek_hash,omitempty"`
	EKKind   string `json:"ek_kind,omitempty"`
	EKIssuer string `json:"ek_issuer,omitempty"`
	TPM      string `json:"tpm,omitempty"`
	// RebindAllowed: an administrator let the device move to other
	// hardware at its next attested enrollment.
	RebindAllowed bool `json:"rebind_allowed,omitempty"`
	// Boot is the device's last accepted measured boot, when it sent a
	// TCG event log.
	Boot *Boot `json:"boot,omitempty"`
	// Sequence is the device's join-state sequence.
	Sequence uint64 `json:"sequence"`
	// HeldEnrollment is a request for this ID, proving only the fleet's
	// bootstrap credential, that waits for an administrator.
	HeldEnrollment string    `json:"held_enrollment,omitempty"`
	HeldKey        string    `json:"held_key,omitempty"`
	HeldFacts      *Facts    `json:"held_facts,omitempty"`
	HeldSince      time.Time `json:"held_since,omitzero"`
}

// DeviceList is one page of devices; Next is the cursor of the next page.
type DeviceList struct {
	Devices []Device `json:"devices"`
	Next    string   `json:"next,omitempty"`
}

// DeviceIDs names devices of a fleet (pre-authorisation, batches).
type DeviceIDs struct {
	DeviceIDs []string `json:"device_ids"`
}

// Reason explains a refusal or a revocation to the device and the log.
type Reason struct {
	Reason string `json:"reason"`
	// Enrollment names the held request an approval is for.
	Enrollment string `json:"enrollment,omitempty"`
	// EKHash, on a rebind, names the only TPM (hex SHA-256 of its EK, as
	// `enroll-client tpm-info` prints it) the device may move to.
	EKHash string `json:"ek_hash,omitempty"`
	// Preauthorize lets an approval name a device the server has never
	// heard from; without it such an approval is refused as a likely typo.
	Preauthorize bool `json:"preauthorize,omitempty"`
}

// Generation is one bootstrap credential generation and its use.
type Generation struct {
	N             int       `json:"n"`
	State         string    `json:"state"`
	Current       bool      `json:"current"`
	CreatedAt     time.Time `json:"created_at"`
	Devices       int       `json:"devices"`  // devices whose last enrollment used it
	Attempts      int       `json:"attempts"` // times its credential was presented
	LastAttempt   time.Time `json:"last_attempt,omitzero"`
	LiveSecretIDs int       `json:"live_secret_ids"` // its secret IDs still in Vault
	// Dependents are devices that would be lost if this generation ended:
	// enrolled with it but holding no registered device key yet (they
	// register one at their next refresh), or not yet acknowledged.
	Dependents   int      `json:"dependents"`
	DependentIDs []string `json:"dependent_ids,omitempty"` // the first maxListed
}

// Generations lists a fleet's generations.
type Generations struct {
	Fleet       string       `json:"fleet"`
	Generations []Generation `json:"generations"`
}

// Rotated is the new generation's first credential, for new images.
type Rotated struct {
	Fleet            string `json:"fleet"`
	Generation       int    `json:"generation"`
	RoleID           string `json:"role_id"`
	SecretID         string `json:"secret_id"`
	SecretIDAccessor string `json:"secret_id_accessor"`
}

// GenerationEnded reports a retired or revoked generation.
type GenerationEnded struct {
	Generation         int    `json:"generation"`
	State              string `json:"state"`
	DestroyedSecretIDs int    `json:"destroyed_secret_ids"`
	// Dependents is how many devices still depended on the generation
	// (only with force).
	Dependents int `json:"dependents,omitempty"`
	// GraceSeconds bounds how long a replica may still accept the
	// generation's enrollment tokens (its cached view of the generations).
	GraceSeconds int `json:"grace_seconds"`
}

// MaxBatchDevices bounds the devices of one pre-provisioning request; a
// larger batch is sent as several requests.
const MaxBatchDevices = 500

// BatchItem is one device's pre-provisioned credential.
type BatchItem struct {
	Fleet    string `json:"fleet"`
	DeviceID string `json:"device_id"`
	EnrollResponse
}

// BatchFailure is a device of a batch that got no credential, and why.
type BatchFailure struct {
	DeviceID string `json:"device_id"`
	Code     Code   `json:"code"`
	Message  string `json:"message"`
}

// Batch is the answer to a pre-provisioning request: a credential for
// each device in Items, the others in Failed with their reason. Every
// credential minted is in Items, even when the batch stopped early.
type Batch struct {
	Items  []BatchItem    `json:"items"`
	Failed []BatchFailure `json:"failed,omitempty"`
	// WrapTTLSeconds is how long each credential waits to be unwrapped:
	// inject it before its wrap_expires_at.
	WrapTTLSeconds int `json:"wrap_ttl_seconds,omitempty"`
}

// AuditCheck is the result of verifying the audit log.
type AuditCheck struct {
	Records  int    `json:"records"`
	OK       bool   `json:"ok"`
	BrokenAt uint64 `json:"broken_at,omitempty"`
	Problem  string `json:"problem,omitempty"`
	// Head is the newest record as SEQ:HASH: keep it elsewhere and pass
	// it to a later verify, which then catches records dropped from the
	// end.
	Head string `json:"head,omitempty"`
	// MACChecked says the records' MACs were checked with the audit key.
	MACChecked bool `json:"mac_checked"`
}

// Boot is a measured boot the server accepted: the device's TCG event log
// replayed against its quoted PCRs and judged by the fleet's boot policy.
type Boot struct {
	// Result is verified (the log replayed; the fleet has no boot policy)
	// or policy_passed.
	Result string `json:"result"`
	// SecureBoot is enabled, disabled or unknown, as the log shows it.
	SecureBoot string `json:"secure_boot"`
	// PCR4 are the boot applications measured into PCR 4 (hex SHA-256),
	// in boot order.
	PCR4 []string  `json:"pcr4,omitempty"`
	At   time.Time `json:"at"`
}
