// Package vaultenv keeps the process environment out of the enrollment
// client's and server's Vault clients. Vault's Go API reads VAULT_*
// variables (VAULT_SKIP_VERIFY, VAULT_AGENT_ADDR, VAULT_TOKEN,
// VAULT_NAMESPACE, VAULT_HEADERS...) whenever a client is made; a stray
// variable in a service's environment would then turn off TLS checks or
// send every request elsewhere. Both daemons take Vault's address and
// trust from their configuration only.
package vaultenv

import (
	"os"
	"slices"
	"strings"
)

// Scrub removes every VAULT_* variable from the process environment and
// returns the names it removed.
func Scrub() []string {
	var names []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "VAULT_") {
			names = append(names, name)
			os.Unsetenv(name)
		}
	}
	slices.Sort(names)
	return names
}
