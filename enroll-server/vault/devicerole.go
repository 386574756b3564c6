package vault

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
)

// ErrRoleMissing means Vault has no such device role: a secret ID cannot
// be minted for it until the role is written.
var ErrRoleMissing = errors.New("the device role does not exist in Vault")

// Fingerprint sums up the parameters UpsertDeviceRole writes for the role
// in fleet: equal fingerprints write the same role. The server remembers
// it on the device record and writes the role again only when it changes
// (a new role ID, other TTLs after a reload, another policy name), saving
// a Vault write per refresh. A role edited behind the server's back keeps
// that edit until its parameters change here; a role deleted (a device
// mount set up again) is caught by the mint, which then writes it.
func (r DeviceRole) Fingerprint(fleet string) string {
	h := sha256.New()
	for _, part := range []string{"v1", r.RoleID, DevicePolicy(fleet), "service",
		seconds(r.TokenTTL), seconds(r.TokenMaxTTL), seconds(r.SecretIDTTL)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// roleMissing tells Vault's answer to a secret ID asked for a role that
// does not exist: 404 and `role "NAME" does not exist`, as the Vault of
// the tests answers (400 with those words is taken the same way).
func roleMissing(err error) bool {
	st := statusOf(err)
	return (st == http.StatusNotFound || st == http.StatusBadRequest) && strings.Contains(err.Error(), "does not exist")
}
