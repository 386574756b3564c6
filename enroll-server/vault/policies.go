package vault

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// bootstrapPolicyHCL grants enrollment tokens nothing but the right to ask
// what they may do, so a device can confirm its token is inert. The server
// looks enrollment tokens up with its own token.
const bootstrapPolicyHCL = `# Enrollment tokens prove possession of a fleet's bootstrap credential and
# can do nothing else in Vault.
path "sys/capabilities-self" {
  capabilities = ["update"]
}
# The server has an enrollment token revoke itself once consumed.
path "auth/token/revoke-self" {
  capabilities = ["update"]
}
`

// devicePolicyHCL lets a device read its fleet's shared secrets and its own
// path, which is keyed by its own role name through the identity alias of
// its fleet's device mount.
func devicePolicyHCL(l Layout, fleet, mountAccessor string) string {
	self := "{{identity.entity.aliases." + mountAccessor + ".metadata.role_name}}"
	return fmt.Sprintf(`# Devices of fleet %[1]s: their fleet's shared secrets and their own path.
path "%[2]s/data/fleets/%[1]s/shared/*" {
  capabilities = ["read"]
}
path "%[2]s/data/fleets/%[1]s/devices/%[3]s" {
  capabilities = ["read"]
}
path "%[2]s/data/fleets/%[1]s/devices/%[3]s/*" {
  capabilities = ["read"]
}
`, fleet, l.KVMount, self)
}

// serverPolicyHCL is the enrollment server's policy over every fleet set up
// so far. It may look up tokens (enrollment tokens, device tokens, admins'
// tokens and their capabilities) but revoke none: enrollment tokens revoke
// themselves, a device is cut off by destroying its secret IDs and
// disabling its entity. It may look up wrapping tokens, manage device roles only in their one
// shape (the fleet's device policy, a secret ID always bound, service
// tokens, no period, no CIDR or use-count changes), mint device secret IDs
// only response-wrapped (each one passes through a wrapping token Vault
// records, and is an extra live secret ID of its device until the next
// acknowledgement destroys it), look up entities only by a device mount's
// alias, and manage its fleets' enrollment secret IDs. It cannot touch its
// own role, other mounts, or policies. deviceMounts maps each fleet to its
// device mount's accessor.
func serverPolicyHCL(l Layout, deviceMounts map[string]string) string {
	fleets := slices.Sorted(maps.Keys(deviceMounts))
	accessors := make([]string, 0, len(fleets))
	for _, f := range fleets {
		accessors = append(accessors, fmt.Sprintf("%q", deviceMounts[f]))
	}
	if len(accessors) == 0 {
		accessors = []string{`"none"`} // an empty list would allow any mount
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# enroll-server: mint device credentials, consume enrollment tokens.
path "auth/token/lookup" {
  capabilities = ["update"]
}
path "sys/wrapping/lookup" {
  capabilities = ["update"]
}
path "sys/capabilities" {
  capabilities = ["update"]
}
# Find a device's entity by its role's alias (it exists once anyone logged
# in with the role), to cut off every token of it.
path "sys/auth" {
  capabilities = ["read"]
}
path "identity/lookup/entity" {
  capabilities = ["update"]
  allowed_parameters = {
    "alias_name" = []
    "alias_mount_accessor" = [%[2]s]
  }
}
# Disable a cut-off device's entity, and nothing else of it: never enable
# one again (a re-admitted device gets a new entity).
path "identity/entity/id/+" {
  capabilities = ["update"]
  allowed_parameters = {
    "disabled" = [true]
  }
}
path "%[1]s/data/enroll/fleets/+/generations" {
  capabilities = ["read", "create", "update"]
}
`, l.KVMount, strings.Join(accessors, ", "))
	for _, f := range fleets {
		fmt.Fprintf(&b, `
# fleet %[1]s
path "auth/%[2]s/role/+" {
  capabilities = ["create", "update", "read", "delete"]
  allowed_parameters = {
    "role_id" = []
    "bind_secret_id" = [true]
    "token_policies" = ["%[3]s"]
    "token_type" = ["service"]
    "token_ttl" = []
    "token_max_ttl" = []
    "secret_id_ttl" = []
  }
}
# Device secret IDs, and their list, only response-wrapped.
path "auth/%[2]s/role/+/secret-id" {
  capabilities = ["update", "list"]
  min_wrapping_ttl = "1s"
  max_wrapping_ttl = "1h"
}
path "auth/%[2]s/role/+/secret-id-accessor/lookup" {
  capabilities = ["update"]
}
path "auth/%[2]s/role/+/secret-id-accessor/destroy" {
  capabilities = ["update"]
}
path "auth/%[4]s/role/%[5]s/role-id" {
  capabilities = ["read"]
}
path "auth/%[4]s/role/%[5]s/secret-id" {
  capabilities = ["update", "list"]
}
path "auth/%[4]s/role/%[5]s/secret-id-accessor/lookup" {
  capabilities = ["update"]
}
path "auth/%[4]s/role/%[5]s/secret-id-accessor/destroy" {
  capabilities = ["update"]
}
`, f, DeviceMount(f), DevicePolicy(f), l.EnrollMount, EnrollRole(f))
	}
	return b.String()
}

// The admin API asks Vault what an admin's own token may do on these
// paths; they stand for actions and need no mount behind them:
// edge-enroll/admin/<area> for the whole server (the audit log, alerts,
// device lists across fleets) and edge-enroll/admin/<area>/<fleet> for
// one fleet. Every admin policy may also make the short-lived child tokens
// enrollctl sends instead of the admin's own token (Vault lets a token
// give its children only policies it holds itself).
const (
	AdminActionPrefix = "edge-enroll/admin/"

	childTokensHCL = `path "auth/token/create" {
  capabilities = ["update"]
}
`
	adminPolicyHCL = `# Administrators of edge-enroll: every admin action, on every fleet.
path "edge-enroll/admin/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
` + childTokensHCL
	operatorPolicyHCL = `# Read-only operators of edge-enroll: list and show only, every fleet.
path "edge-enroll/admin/*" {
  capabilities = ["read", "list"]
}
` + childTokensHCL
)

// fleetAdminPolicyHCL grants caps on one fleet's devices and generations.
func fleetAdminPolicyHCL(fleet string, caps string) string {
	return fmt.Sprintf(`# edge-enroll administration of fleet %[1]s only.
path "edge-enroll/admin/devices/%[1]s" {
  capabilities = [%[2]s]
}
path "edge-enroll/admin/fleets/%[1]s" {
  capabilities = [%[2]s]
}
`, fleet, caps) + childTokensHCL
}
