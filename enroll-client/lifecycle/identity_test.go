package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// runUntil runs the daemon until stop says so after a save.
func (r *rig) runUntil(t *testing.T, stop func(State) bool) State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var last State
	r.m.cfg.AfterSave = func(st State) {
		last = st
		if stop(st) {
			cancel()
		}
	}
	defer func() { r.m.cfg.AfterSave = nil }()
	if err := r.m.Run(ctx, false); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if ctx.Err() == context.DeadlineExceeded {
		t.Fatalf("stop condition never met; last phase %s, last error %q", last.Phase, last.LastError)
	}
	return last
}

// After the first enrollment the device refreshes its secret ID by its own
// identity, well before it expires, and never logs in with the fleet's
// bootstrap credential again.
func TestRefreshByIdentityNeverUsesBootstrapAgain(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = 30 * time.Minute
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	first := r.server.key
	if first == "" || r.server.lastEnroll.DeviceKey != first {
		t.Fatalf("enrollment registered key %q, request carried %q", first, r.server.lastEnroll.DeviceKey)
	}
	start := r.clock.Now()
	st := r.runUntil(t, func(st State) bool { return st.Refreshes == 3 && st.Acknowledged })
	if got := r.vault.logins["edge-enroll"]; got != 1 || st.BootstrapLogins != 1 {
		t.Fatalf("bootstrap logins: vault saw %d, state counts %d; want 1 and 1", got, st.BootstrapLogins)
	}
	if r.server.enrolls != 1 || r.server.refreshes != 3 || r.server.rejoins != 0 {
		t.Fatalf("enrolls=%d refreshes=%d rejoins=%d, want 1, 3, 0", r.server.enrolls, r.server.refreshes, r.server.rejoins)
	}
	if st.Sequence != 4 || r.server.seq != 4 {
		t.Fatalf("sequence: device %d, server %d; want 4 and 4", st.Sequence, r.server.seq)
	}
	if r.server.key != first {
		t.Fatal("the device key changed without a rotation")
	}
	// Three refreshes at about two thirds of 30 minutes each: never near
	// the expiry.
	if took := r.clock.Now().Sub(start); took > 3*20*time.Minute || took < 3*15*time.Minute {
		t.Fatalf("three refreshes took %v, want about 3 × 20 min less jitter", took)
	}
	if !strings.HasPrefix(r.server.lastIdentity.Token, "tok-edge-devices-acme-") {
		t.Fatalf("refresh carried token %q, want the device's own", r.server.lastIdentity.Token)
	}
}

// A refresh the server refuses for its proof (the token was revoked) falls
// back to a rejoin by key; still no bootstrap login.
func TestRefusedRefreshRejoins(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = 30 * time.Minute
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	r.server.renewErr = []error{&serverapi.Error{Status: 403, Err: wire.Error{Code: wire.CodeProofInvalid, Message: "token not valid"}}}
	st := r.runUntil(t, func(st State) bool { return st.Rejoins == 1 && st.Acknowledged })
	if r.server.rejoins != 1 || r.vault.logins["edge-enroll"] != 1 {
		t.Fatalf("rejoins=%d bootstrap logins=%d, want 1 and 1", r.server.rejoins, r.vault.logins["edge-enroll"])
	}
	if r.server.lastIdentity.Token != "" {
		t.Fatal("a rejoin sent a token")
	}
	if st.Sequence != 2 {
		t.Fatalf("sequence %d, want 2", st.Sequence)
	}
}

// A device off for longer than its token's and secret ID's lives rejoins
// by key at its first step.
func TestDeviceOffPastEveryTTLRejoins(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = time.Hour
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	r.clock.now = r.clock.now.Add(90 * 24 * time.Hour)
	st := r.runUntil(t, func(st State) bool { return st.Rejoins == 1 && st.Acknowledged })
	if r.vault.logins["edge-enroll"] != 1 || r.server.refreshes != 0 {
		t.Fatalf("bootstrap logins=%d refreshes=%d, want 1 and 0", r.vault.logins["edge-enroll"], r.server.refreshes)
	}
	if st.Phase != PhaseAuthenticated {
		t.Fatalf("phase %s", st.Phase)
	}
}

// A copy refused as cloned stops and does not try again on its own: each
// attempt would lock the real device out anew.
func TestClonedStateStopsForGood(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = 30 * time.Minute
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	r.server.seq += 5 // the other copy moved on
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.m.Run(ctx, false); err != nil {
		t.Fatal(err)
	}
	st, err := r.m.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st.Phase != PhaseRejected || st.Refused != string(wire.CodeClonedState) {
		t.Fatalf("phase %s refused %q, want rejected by cloned_state", st.Phase, st.Refused)
	}
	if r.server.refreshes != 1 {
		t.Fatalf("refreshes = %d: a cloned copy must not retry on its own", r.server.refreshes)
	}
	if r.vault.logins["edge-enroll"] != 1 {
		t.Fatal("a cloned copy fell back to the bootstrap credential")
	}
}

// With a key older than the fleet allows, the device makes a new key at
// its refresh, signed by the old one, and adopts it only once the server
// confirmed.
func TestKeyRotationAtRefresh(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = 30 * time.Minute
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	old := r.server.key
	r.server.rotate = true
	st := r.runUntil(t, func(st State) bool { return st.Refreshes == 1 && st.Acknowledged })
	if r.server.key == old || r.server.key == "" {
		t.Fatal("the server did not register a new key")
	}
	k, err := r.m.deviceKey(&st, false)
	if err != nil {
		t.Fatal(err)
	}
	if k.Public() != r.server.key || st.DeviceKeyPublic != k.Public() || len(st.NextDeviceKey) != 0 {
		t.Fatal("the device did not adopt the key the server registered")
	}
}

// A device whose state predates device keys registers one at its next
// refresh, with its token.
func TestVersion1StateRegistersKey(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = 30 * time.Minute
	now := r.clock.Now()
	v1 := map[string]any{"version": 1, "phase": "authenticated", "device_id": "dev-1", "fleet": "acme",
		"enrollment_id": "old", "role_id": "role", "login_mount": "edge-devices-acme", "secret_id": "s",
		"secret_id_accessor": "a", "secret_id_expires_at": now.Add(time.Minute), "token": "tok", "token_accessor": "acc",
		"token_issued_at": now, "token_expires_at": now.Add(time.Hour), "token_renewable": true,
		"acknowledged": true, "enrollments": 1, "updated_at": now}
	raw, _ := json.Marshal(v1)
	if err := r.store.WriteState(stateKey, raw); err != nil {
		t.Fatal(err)
	}
	st := r.runUntil(t, func(st State) bool { return st.Refreshes == 1 && st.Acknowledged })
	if r.server.key == "" || r.server.lastIdentity.Token != "tok" || r.server.lastIdentity.Sequence != 0 {
		t.Fatalf("key %q token %q sequence %d: want a key registered with the old token at sequence 0",
			r.server.key, r.server.lastIdentity.Token, r.server.lastIdentity.Sequence)
	}
	if st.Sequence != 1 || r.vault.logins["edge-enroll"] != 0 {
		t.Fatalf("sequence %d, bootstrap logins %d; want 1 and 0", st.Sequence, r.vault.logins["edge-enroll"])
	}
}

// A refused secret ID with a live token refreshes; the server not knowing
// the device at all is the only way back to the bootstrap credential.
func TestUnknownDeviceFallsBackToBootstrap(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = 30 * time.Minute
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	r.server.renewErr = []error{&serverapi.Error{Status: 404, Err: wire.Error{Code: wire.CodeUnknownDevice, Message: "no such device"}}}
	r.runUntil(t, func(st State) bool { return st.Enrollments == 2 && st.Acknowledged })
	if r.vault.logins["edge-enroll"] != 2 || r.server.enrolls != 2 {
		t.Fatalf("bootstrap logins=%d enrolls=%d, want 2 and 2", r.vault.logins["edge-enroll"], r.server.enrolls)
	}
}

// The login with a refused secret ID starts a refresh while the token lives.
func TestRefusedSecretIDRefreshes(t *testing.T) {
	r := newRig(t)
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	st, _ := r.m.Load()
	st.Phase = PhaseUnwrapped // as after a renewal refused
	if err := r.m.save(&st); err != nil {
		t.Fatal(err)
	}
	r.vault.failOn[r.vault.calls+1] = vault.ErrCredentialRefused
	got := r.runUntil(t, func(st State) bool { return st.Refreshes == 1 && st.Acknowledged })
	if got.Sequence != 2 || r.server.rejoins != 0 {
		t.Fatalf("sequence %d rejoins %d", got.Sequence, r.server.rejoins)
	}
}

// While the server does not answer a refresh, the token is still renewed
// on its schedule, and logged in again from the current secret ID at its
// max TTL: the sinks never hold a dead token.
func TestTokenStaysAliveWhileRefreshWaitsForServer(t *testing.T) {
	r := newRig(t)
	r.vault.secretIDTTL = 3 * time.Hour
	r.vault.tokenTTL = 20 * time.Minute
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	down := errors.New("connect: connection refused")
	for range 200 {
		r.server.renewErr = append(r.server.renewErr, down)
	}
	renewals := 0
	r.vault.onRenew = func() { renewals++ }
	var dead []string
	st := r.runUntil(t, func(st State) bool {
		if st.Token != "" && !r.clock.Now().Before(st.TokenExpiresAt) {
			dead = append(dead, fmt.Sprintf("%s at %v", st.Phase, r.clock.Now()))
		}
		return st.Refreshes == 1 && st.Acknowledged
	})
	if len(dead) > 0 {
		t.Fatalf("the device held an expired token: %v", dead)
	}
	if renewals < 3 || st.Rejoins != 0 {
		t.Fatalf("%d token renewals, %d rejoins while the server was down; want renewals and no rejoin", renewals, st.Rejoins)
	}
}
