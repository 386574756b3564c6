package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
)

// Two devices enroll; their credentials and Vault identities differ, and each
// reads its own secret path and is denied the other's.
func TestTwoDevicesHaveSeparateIdentities(t *testing.T) {
	e := newEnv(t)
	a, b := e.newDevice("sensor-a", nil), e.newDevice("sensor-b", nil)
	sa, sb := e.enroll(a), e.enroll(b)

	if sa.SecretID == sb.SecretID || sa.SecretIDAccessor == sb.SecretIDAccessor {
		t.Fatal("the two devices share a secret ID")
	}
	if sa.EntityID == "" || sa.EntityID == sb.EntityID {
		t.Fatalf("entity IDs %q and %q: want two distinct Vault identities", sa.EntityID, sb.EntityID)
	}
	if sa.RoleID == sb.RoleID {
		t.Fatal("the two devices share a role ID")
	}
	for _, d := range []*device{a, b} {
		if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 {
			t.Fatalf("device %s has %d live secret IDs in Vault, want 1", d.id, len(got))
		}
		tok, err := os.ReadFile(d.sinkPath)
		if err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(d.sinkPath); fi.Mode().Perm() != 0o600 {
			t.Fatalf("token sink mode %v, want 0600", fi.Mode().Perm())
		}
		if string(tok) != d.state(t).Token {
			t.Fatalf("device %s: sink does not hold the current token", d.id)
		}
	}

	for _, id := range []string{"sensor-a", "sensor-b"} {
		_, err := e.root.KVv2(e.layout.KVMount).Put(context.Background(), "fleets/acme/devices/"+id+"/config",
			map[string]any{"owner": id})
		if err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		token, path string
		allowed     bool
	}{
		{sa.Token, "sensor-a", true},
		{sa.Token, "sensor-b", false},
		{sb.Token, "sensor-b", true},
		{sb.Token, "sensor-a", false},
	}
	for _, tt := range tests {
		sec, err := e.clientFor(tt.token).KVv2(e.layout.KVMount).Get(context.Background(), "fleets/acme/devices/"+tt.path+"/config")
		if tt.allowed {
			if err != nil || sec.Data["owner"] != tt.path {
				t.Errorf("reading its own path %s: %v", tt.path, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("reading another device's path %s: err = %v, want permission denied", tt.path, err)
		}
	}

	devs, _ := e.inventory()
	if len(devs) != 2 {
		t.Fatalf("inventory has %d devices, want 2", len(devs))
	}
	for _, d := range devs {
		if d.State != inventory.DeviceEnrolled || d.SecretIDAccessor == "" || d.TokenAccessor == "" {
			t.Errorf("device %s in inventory: %+v", d.ID, d)
		}
	}
}

// The enrollment token can do nothing in Vault beyond asking what it may do.
func TestEnrollmentTokenIsInert(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok := e.bootstrapLogin()
	c := e.clientFor(tok)
	paths := []string{
		e.layout.KVMount + "/data/fleets/acme/devices/sensor-a/config",
		e.layout.KVMount + "/data/fleets/acme/shared/config",
		"auth/" + vault.DeviceMount(fleet) + "/role/sensor-a/secret-id",
		"auth/" + e.layout.EnrollMount + "/role/" + vault.EnrollRole(fleet) + "/secret-id",
		"auth/" + e.layout.EnrollMount + "/role/" + vault.ServerRole + "/secret-id",
		"sys/policies/acl/edge-device-acme",
		"auth/token/create",
		"sys/wrapping/unwrap",
	}
	// One call for every path: the token has a small use count.
	sec, err := c.Logical().WriteWithContext(ctx, "sys/capabilities-self", map[string]any{"paths": paths})
	if err != nil {
		t.Fatalf("capabilities-self: %v", err)
	}
	for _, p := range paths {
		caps, _ := sec.Data[p].([]any)
		if len(caps) != 1 || caps[0] != "deny" {
			t.Errorf("enrollment token capabilities on %s = %v, want [deny]", p, caps)
		}
	}
	// And an actual attempt is refused, not just reported so.
	if _, err := c.Logical().Write("auth/"+vault.DeviceMount(fleet)+"/role/sensor-a/secret-id", nil); err == nil ||
		!strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("minting a secret ID with the enrollment token: err = %v, want permission denied", err)
	}
}

func (e *env) bootstrapLogin() string {
	e.t.Helper()
	sec, err := e.clientFor("").Logical().Write("auth/"+e.bundle.EnrollMount+"/login",
		map[string]any{"role_id": e.bundle.RoleID, "secret_id": e.bundle.SecretID})
	if err != nil {
		e.t.Fatalf("bootstrap login: %v", err)
	}
	e.keep(sec.Auth.ClientToken)
	return sec.Auth.ClientToken
}

// One enrollment token sent in two requests at the same moment, for two
// device IDs: the token's lookup finds it live for both, and its
// consumption (recorded in the same commit as the enrollment's claim) lets
// exactly one through; the other is refused as a reuse. Five rounds, for
// the two requests to overlap.
func TestEnrollmentTokenSentTwiceAtOnce(t *testing.T) {
	e := newEnv(t)
	for round := range 5 {
		tok := e.bootstrapLogin()
		var wg sync.WaitGroup
		type answer struct {
			status int
			body   string
		}
		answers := make([]answer, 2)
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("twice-%d-%d", round, i)
				st, body := e.post("/v1/enroll", enrollBody(tok, id, "key-0000000000-"+id))
				answers[i] = answer{st, body}
			}()
		}
		wg.Wait()
		ok, reused := 0, 0
		for _, a := range answers {
			switch {
			case a.status == 200:
				ok++
				e.keep(jsonField(t, a.body, "wrapping_token"))
			case a.status == 401 && errorCode(t, a.body) == "enrollment_token_reused":
				reused++
			default:
				t.Fatalf("round %d: %d %s", round, a.status, a.body)
			}
		}
		if ok != 1 || reused != 1 {
			t.Fatalf("round %d: %d enrolled, %d refused as reused; want one of each", round, ok, reused)
		}
	}
	if got := e.logs.lines("security alert"); len(got) != 5 {
		t.Fatalf("%d security alerts, want one per round (5)", len(got))
	}
}

// The server revokes an enrollment token the moment it is presented; a
// second use is refused with a clear error and raises an alert.
func TestEnrollmentTokenUsedTwice(t *testing.T) {
	e := newEnv(t)
	tok := e.bootstrapLogin()
	status, body := e.post("/v1/enroll", enrollBody(tok, "sensor-a", "key-0000000000000001"))
	if status != 200 {
		t.Fatalf("first use: %d %s", status, body)
	}
	e.keep(jsonField(t, body, "wrapping_token"))
	status, body = e.post("/v1/enroll", enrollBody(tok, "sensor-b", "key-0000000000000002"))
	if status != 401 || errorCode(t, body) != "enrollment_token_reused" {
		t.Fatalf("second use: %d %s, want 401 enrollment_token_reused", status, body)
	}
	// The token is dead in Vault too.
	if _, err := e.root.Auth().Token().Lookup(tok); err == nil {
		t.Fatal("the enrollment token is still valid in Vault after use")
	}
	if got := e.logs.lines("security alert"); len(got) != 1 || got[0]["kind"] != inventory.AlertEnrollmentTokenReuse || got[0]["security"] != true {
		t.Fatalf("security alert log lines = %v", got)
	}
	devs, alerts := e.inventory()
	if len(alerts) != 1 || alerts[0].Kind != inventory.AlertEnrollmentTokenReuse {
		t.Fatalf("stored alerts = %+v", alerts)
	}
	for _, d := range devs {
		if d.ID == "sensor-b" {
			t.Fatalf("the refused request wrote device %+v", d)
		}
	}
}

// A retried request with the same idempotency key gets the same answer and
// never a second secret ID.
func TestSameIdempotencyKeyMintsOnce(t *testing.T) {
	e := newEnv(t)
	const key = "idem-0123456789abcdef"
	_, first := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-a", key))
	_, second := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-a", key))
	w1, w2 := jsonField(t, first, "wrapping_token"), jsonField(t, second, "wrapping_token")
	e.keep(w1)
	if w1 == "" || w1 != w2 || jsonField(t, first, "enrollment_id") != jsonField(t, second, "enrollment_id") {
		t.Fatalf("retry got a different outcome:\n%s\n%s", first, second)
	}
	if got := e.deviceSecretIDAccessors("sensor-a"); len(got) != 1 {
		t.Fatalf("device has %d secret ID accessors in Vault, want exactly 1", len(got))
	}
	// A new key is a new enrollment: the old secret ID is replaced, so
	// still exactly one is live.
	_, third := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-a", "idem-fedcba9876543210"))
	e.keep(jsonField(t, third, "wrapping_token"))
	if got := e.deviceSecretIDAccessors("sensor-a"); len(got) != 1 {
		t.Fatalf("after a new enrollment the device has %d secret IDs, want 1", len(got))
	}
}
