package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Malformed or unauthorised requests get a clear 4xx with a stable code,
// and nothing is written: no device in the inventory, no role in Vault.
func TestBadRequestsAreRefusedAndWriteNothing(t *testing.T) {
	e := newEnv(t)
	expired := e.expiredEnrollmentToken()
	live := func() string { return e.bootstrapLogin() }
	tests := []struct {
		name        string
		contentType string
		body        func() string
		status      int
		code        string
	}{
		{"malformed JSON", "application/json", func() string { return `{"fleet": "acme",` }, 400, "invalid_request"},
		{"not an object", "application/json", func() string { return `[1,2,3]` }, 400, "invalid_request"},
		{"trailing data", "application/json", func() string { return enrollBody(live(), "bad-1", "key-aaaaaaaaaaaaaaaa") + `{}` }, 400, "invalid_request"},
		{"oversized body", "application/json", func() string {
			return `{"fleet":"acme","facts":{"hostname":"` + strings.Repeat("x", wire.MaxAttestedBodyBytes+1) + `"}}` // past even an attested enrollment's cap
		}, 413, "body_too_large"},
		{"unknown field", "application/json", func() string {
			return strings.Replace(enrollBody(live(), "bad-2", "key-bbbbbbbbbbbbbbbb"), `"fleet"`, `"admin":true,"fleet"`, 1)
		}, 400, "invalid_request"},
		{"wrong content type", "text/plain", func() string { return enrollBody(live(), "bad-3", "key-cccccccccccccccc") }, 415, "unsupported_media_type"},
		{"invalid device ID", "application/json", func() string { return enrollBody(live(), "../etc", "key-dddddddddddddddd") }, 400, "invalid_request"},
		{"unknown fleet", "application/json", func() string {
			return strings.Replace(enrollBody(live(), "bad-4", "key-eeeeeeeeeeeeeeee"), `"acme"`, `"nosuch"`, 1)
		}, 404, "unknown_fleet"},
		{"expired enrollment token", "application/json", func() string { return enrollBody(expired, "bad-5", "key-ffffffffffffffff") }, 401, "enrollment_token_invalid"},
		{"forged token", "application/json", func() string { return enrollBody("hvs.forged", "bad-6", "key-gggggggggggggggg") }, 401, "enrollment_token_invalid"},
		{"root token instead of an enrollment token", "application/json", func() string {
			return enrollBody(e.vault.RootToken, "bad-7", "key-hhhhhhhhhhhhhhhh")
		}, 401, "enrollment_token_invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := e.postWith("/v1/enroll", tt.contentType, []byte(tt.body()))
			if status != tt.status || errorCode(t, body) != tt.code {
				t.Fatalf("got %d %s, want %d %s", status, body, tt.status, tt.code)
			}
		})
	}
	if status, body := e.post("/v1/enroll/ack", `{"fleet":"acme","device_id":"bad-1","enrollment_id":"nope","token":"x","secret_id_accessor":"y"}`); status != 404 || errorCode(t, body) != "enrollment_not_found" {
		t.Fatalf("ack of an unknown enrollment: %d %s", status, body)
	}

	devs, alerts := e.inventory()
	if len(devs) != 0 || len(alerts) != 0 {
		t.Fatalf("refused requests wrote %d devices and %d alerts", len(devs), len(alerts))
	}
	mounts := "auth/" + vault.DeviceMount(fleet) + "/role"
	if sec, err := e.root.Logical().List(mounts); err != nil || (sec != nil && len(sec.Data["keys"].([]any)) > 0) {
		t.Fatalf("refused requests created device roles in Vault: %v %v", sec, err)
	}
}

// expiredEnrollmentToken returns a real enrollment token that has expired:
// the test shortens the enrollment role's token TTL, logs in, restores it.
func (e *env) expiredEnrollmentToken() string {
	e.t.Helper()
	role := "auth/" + e.layout.EnrollMount + "/role/" + vault.EnrollRole(fleet)
	if _, err := e.root.Logical().Write(role, map[string]any{"token_ttl": "1s", "token_max_ttl": "1s"}); err != nil {
		e.t.Fatal(err)
	}
	tok := e.bootstrapLogin()
	if _, err := e.root.Logical().Write(role, map[string]any{"token_ttl": 60, "token_max_ttl": 120}); err != nil {
		e.t.Fatal(err)
	}
	waitFor(e.t, 10*time.Second, "enrollment token to expire", func() bool {
		_, err := e.root.Auth().Token().Lookup(tok)
		return err != nil
	})
	return tok
}
