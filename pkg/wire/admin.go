package wire

import "time"

// Admin API routes. Admins authenticate with their own Vault token in the
// X-Vault-Token header.
const (
	PathAdminDevices = "/v1/admin/devices"
	HeaderVaultToken = "X-Vault-Token"
)

// Device is a device as the admin API shows it.
type Device struct {
	Fleet            string    `json:"fleet"`
	ID               string    `json:"id"`
	State            string    `json:"state"`
	Generation       int       `json:"generation"`
	Enrollments      int       `json:"enrollments"`
	SecretIDAccessor string    `json:"secret_id_accessor,omitempty"`
	EnrolledAt       time.Time `json:"enrolled_at,omitzero"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
	Reason           string    `json:"reason,omitempty"`
}

// DeviceList is the answer of GET /v1/admin/devices.
type DeviceList struct {
	Devices []Device `json:"devices"`
}
