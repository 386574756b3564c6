package wire

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	fleetRE  = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$`)
	deviceRE = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$`)
	keyRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
)

// ValidateFleet checks a fleet name: 1-32 lower-case letters, digits and
// inner hyphens. Fleet names become parts of Vault mount and policy names.
func ValidateFleet(s string) error {
	if !fleetRE.MatchString(s) {
		return fmt.Errorf("fleet %q: want 1-32 lower-case letters, digits or inner hyphens", s)
	}
	return nil
}

// ValidateDeviceID checks a device ID: 1-64 lower-case letters, digits and
// inner '.', '_' or '-'. Device IDs become Vault role names and secret path
// segments, and Vault folds AppRole role names to lower case: an ID in
// another case would name another device's role. One form only, then,
// everywhere: the store, Vault paths, creation paths and acknowledgements.
func ValidateDeviceID(s string) error {
	if !deviceRE.MatchString(s) {
		hint := ""
		if lower := strings.ToLower(s); lower != s && deviceRE.MatchString(lower) {
			hint = fmt.Sprintf(" (device IDs are lower case: %q)", lower)
		}
		return fmt.Errorf("device ID %q: want 1-64 lower-case letters, digits or inner '.', '_', '-'%s", s, hint)
	}
	return nil
}

// ValidateIdempotencyKey checks a client-chosen idempotency key.
func ValidateIdempotencyKey(s string) error {
	if !keyRE.MatchString(s) {
		return fmt.Errorf("idempotency key: want 16-128 characters of [A-Za-z0-9_-]")
	}
	return nil
}

// DeviceMount is the AppRole mount that holds a fleet's device roles.
func DeviceMount(fleet string) string { return "edge-devices-" + fleet }

// SecretIDCreationPath is the only creation path a device accepts for its
// wrapped secret ID.
func SecretIDCreationPath(deviceMount, deviceID string) string {
	return "auth/" + deviceMount + "/role/" + deviceID + "/secret-id"
}
