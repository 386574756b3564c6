// Package vault is enroll-server's adapter to HashiCorp Vault: the only
// package on the server side that imports github.com/hashicorp/vault/api.
//
// It knows the layout of the Vault objects the product uses (mounts, roles,
// policies), creates them idempotently for the admin CLI, and performs the
// server's narrow runtime calls with the server's own token.
package vault

import "github.com/edge-enroll/enroll/pkg/wire"

// Layout names the Vault objects of the product. The zero value is not
// useful; use DefaultLayout and override what an installation changes.
type Layout struct {
	// EnrollMount is the AppRole mount holding every fleet's enrollment role
	// and the server's own role.
	EnrollMount string
	// KVMount is a KV v2 mount for device and fleet secrets and for the
	// fleets' generation records.
	KVMount string
}

// DefaultLayout is the layout setup creates unless told otherwise.
func DefaultLayout() Layout {
	return Layout{EnrollMount: "edge-enroll", KVMount: "edge-kv"}
}

// Names of fixed objects.
const (
	ServerRole      = "enroll-server"
	ServerPolicy    = "edge-enroll-server"
	BootstrapPolicy = "edge-enroll-bootstrap"
	AdminPolicy     = "edge-enroll-admin"
	OperatorPolicy  = "edge-enroll-operator"
	devicePrefix    = "edge-devices-"
)

// FleetAdminPolicy grants every admin action on one fleet only.
func FleetAdminPolicy(fleet string) string { return AdminPolicy + "-" + fleet }

// FleetOperatorPolicy grants read-only admin access to one fleet only.
func FleetOperatorPolicy(fleet string) string { return OperatorPolicy + "-" + fleet }

// EnrollRole is the name of a fleet's shared enrollment role.
func EnrollRole(fleet string) string { return "fleet-" + fleet }

// DevicePolicy is the templated policy every device of a fleet gets.
func DevicePolicy(fleet string) string { return "edge-device-" + fleet }

// DeviceMount is the AppRole mount of a fleet's device roles.
func DeviceMount(fleet string) string { return wire.DeviceMount(fleet) }

// EnrollLoginPath is where enrollment tokens come from.
func (l Layout) EnrollLoginPath() string { return "auth/" + l.EnrollMount + "/login" }

// DeviceSecretPath is the KV path (without the data/ segment) a device may
// read as its own.
func (l Layout) DeviceSecretPath(fleet, device string) string {
	return l.KVMount + "/fleets/" + fleet + "/devices/" + device
}

// FleetSharedPath is the KV path prefix every device of a fleet may read.
func (l Layout) FleetSharedPath(fleet string) string {
	return l.KVMount + "/fleets/" + fleet + "/shared"
}

func (l Layout) generationsPath(fleet string) string {
	return l.KVMount + "/data/enroll/fleets/" + fleet + "/generations"
}
