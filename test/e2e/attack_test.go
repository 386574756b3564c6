package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// One admission ticket lets one request at a time skip the limits, never a
// crowd: 40 requests sent at once with one ticket cost Vault about what
// 40 without a ticket do.
func TestOneTicketIsNotACrowd(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		rate, burst, conc := 1.0, 1, 100
		f.RateLimit, f.RateBurst, f.MaxConcurrent = rate, burst, conc
	}})
	status, body := e.post(wire.PathAdmit, `{"fleet":"acme","device_id":"sensor-t"}`)
	if status != 200 {
		t.Fatalf("admit: %d %s", status, body)
	}
	var adm wire.AdmitResponse
	if err := json.Unmarshal([]byte(body), &adm); err != nil {
		t.Fatal(err)
	}
	before := metricSum(t, e, "enroll_server_vault_request_duration_seconds_count")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fmt.Sprintf(`{"fleet":"acme","device_id":"sensor-t","enrollment_token":"hvs.bogus","idempotency_key":"key-ticket%010d","ticket":%q,"facts":{}}`, i, adm.Ticket)
			status, _ := e.post(wire.PathEnroll, req)
			mu.Lock()
			codes[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	calls := metricSum(t, e, "enroll_server_vault_request_duration_seconds_count") - before
	t.Logf("answers %v; %v Vault calls", codes, calls)
	if codes[429] < 35 || calls > 5 {
		t.Fatalf("40 requests on one ticket: answers %v and %v Vault calls; want nearly all shed before Vault", codes, calls)
	}
}

// The server's own Vault token cannot plant a backdoor: every device-role
// parameter is pinned by its policy, device secret IDs come only
// response-wrapped, and it holds no grant it does not use. Each forbidden
// write is tried with the server's real token and refused by Vault.
func TestServerTokenCannotPlantABackdoor(t *testing.T) {
	e := newEnv(t)
	st := e.enroll(e.newDevice("sensor-p", nil))
	login, err := e.clientFor("").Logical().Write("auth/"+e.layout.EnrollMount+"/login",
		map[string]any{"role_id": e.srvCreds.RoleID, "secret_id": e.srvCreds.SecretID})
	if err != nil {
		t.Fatal(err)
	}
	e.keep(login.Auth.ClientToken)
	srv := e.clientFor(login.Auth.ClientToken)
	admin := e.tokenWith(vault.AdminPolicy)
	ai, err := e.root.Auth().Token().Lookup(admin)
	if err != nil {
		t.Fatal(err)
	}
	adminAccessor, _ := ai.Data["accessor"].(string)
	role := "auth/" + vault.DeviceMount(fleet) + "/role/sensor-p"
	forbidden := []struct {
		name string
		path string
		data map[string]any
	}{
		{"a role-ID-only login", role, map[string]any{"bind_secret_id": false}},
		{"a periodic token", role, map[string]any{"token_period": "768h"}},
		{"another policy", role, map[string]any{"token_policies": []string{"default", vault.DevicePolicy(fleet)}}},
		{"a batch token", role, map[string]any{"token_type": "batch"}},
		{"CIDR binding", role, map[string]any{"token_bound_cidrs": []string{"10.0.0.0/8"}}},
		{"a use count", role, map[string]any{"secret_id_num_uses": 5}},
		{"no default policy games", role, map[string]any{"token_no_default_policy": true}},
		{"a secret ID in clear", role + "/secret-id", map[string]any{}},
		{"a custom secret ID", role + "/custom-secret-id", map[string]any{"secret_id": "x"}},
		{"an accessor lookup", "auth/token/lookup-accessor", map[string]any{"accessor": st.TokenAccessor}},
		{"revoking an administrator's token", "auth/token/revoke-accessor", map[string]any{"accessor": adminAccessor}},
		{"revoking a device's token by accessor", "auth/token/revoke-accessor", map[string]any{"accessor": st.TokenAccessor}},
		{"revoking a token it holds", "auth/token/revoke", map[string]any{"token": admin}},
		{"enabling an entity again", "identity/entity/id/" + st.EntityID, map[string]any{"disabled": false}},
		{"renaming an entity", "identity/entity/id/" + st.EntityID, map[string]any{"name": "x"}},
		{"its own policy", "sys/policies/acl/" + vault.ServerPolicy, map[string]any{"policy": `path "*" { capabilities = ["sudo"] }`}},
		{"its own role", "auth/" + e.layout.EnrollMount + "/role/" + vault.ServerRole, map[string]any{"token_policies": []string{"root"}}},
	}
	for _, f := range forbidden {
		_, err := srv.Logical().Write(f.path, f.data)
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s (%s): err = %v, want permission denied", f.name, f.path, err)
		}
	}
	// Entities are looked up only by a device mount's alias: not an
	// administrator's by their login mount.
	auths, err := e.root.Sys().ListAuth()
	if err != nil {
		t.Fatal(err)
	}
	for path, m := range auths {
		_, err := srv.Logical().Write("identity/lookup/entity", map[string]any{"alias_name": "admin", "alias_mount_accessor": m.Accessor})
		isDevice := path == vault.DeviceMount(fleet)+"/"
		if isDevice && err != nil {
			t.Errorf("looking up an entity on the device mount: %v", err)
		}
		if !isDevice && (err == nil || !strings.Contains(err.Error(), "permission denied")) {
			t.Errorf("looking up an entity on mount %s: err = %v, want permission denied", path, err)
		}
	}
	if _, err := srv.Logical().List(role + "/secret-id"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("listing the device's secret IDs unwrapped: %v, want permission denied", err)
	}
	if _, err := e.root.Auth().Token().Lookup(admin); err != nil {
		t.Errorf("the administrator's token stopped working: %v", err)
	}
	// The device's role is as the server made it.
	sec, err := e.root.Logical().Read(role)
	if err != nil {
		t.Fatal(err)
	}
	if sec.Data["bind_secret_id"] != true || fmt.Sprint(sec.Data["token_period"]) != "0" {
		t.Fatalf("the device role changed: %v", sec.Data)
	}
}

// With no credential at all, a flood of identity challenges and of
// well-formed but unsigned refreshes draws nothing from the fleet's
// limits: another device refreshes and a new one enrolls right after,
// unshed. The flooded device's own challenges are limited on their own.
func TestIdentityFloodShedsNobodyElse(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.RateLimit, f.RateBurst = 5, 5
	}})
	a := e.enroll(e.newDevice("sensor-fa", nil))
	time.Sleep(time.Second)
	b := e.enroll(e.newDevice("sensor-fb", nil))
	time.Sleep(2 * time.Second) // the rate refills
	codes := map[string]int{}
	start := time.Now()
	for i := range 200 {
		status, _ := e.post(wire.PathIdentityChallenge, fmt.Sprintf(`{"fleet":"acme","device_id":"nobody-%d"}`, i))
		codes[fmt.Sprint("unknown ", status)]++
		status, _ = e.post(wire.PathIdentityChallenge, `{"fleet":"acme","device_id":"sensor-fa"}`)
		codes[fmt.Sprint("victim ", status)]++
		status, _ = e.post(wire.PathRefresh, fmt.Sprintf(`{"fleet":"acme","device_id":"sensor-fa","idempotency_key":"key-flood%011d","token":"hvs.x","challenge_id":"bogus","sequence":1,"signature":"AAAA"}`, i))
		codes[fmt.Sprint("refresh ", status)]++
	}
	took := time.Since(start)
	t.Logf("flood answers in %v: %v", took, codes)
	// The victim's challenges: a burst of 5, then one a second.
	allowed := 5 + int(took.Seconds()) + 1
	if codes["unknown 404"] != 200 || codes["victim 200"] > allowed || codes["victim 429"] < 200-allowed || codes["refresh 409"] != 200 {
		t.Fatalf("flood answers %v; at most %d of the victim's challenges may pass in %v", codes, allowed, took)
	}
	status, body := e.call(identityCall{purpose: identity.PurposeRefresh, device: "sensor-fb", key: deviceKey(t, b), token: b.Token, sequence: b.Sequence})
	if status != 200 {
		t.Fatalf("another device's refresh after the flood: %d %s", status, body)
	}
	e.keep(a.Token, b.Token)
	e.enroll(e.newDevice("sensor-fc", nil))
}

// Invented device IDs from one address cannot fill the fleet's places of
// devices enrolling at once: past max_sessions_per_source that address is
// shed, and a device elsewhere enrolls unshed.
func TestAdmitFloodFromOneAddressIsBounded(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.MaxConcurrent, f.MaxPerSource = 8, 4
	}})
	// The flood comes from 127.0.0.2, the device from 127.0.0.1.
	flood := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsTo(t, e.caPEM),
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}}
	codes := map[int]int{}
	for i := range 64 {
		resp, err := flood.Post(e.serverURL+wire.PathAdmit, "application/json",
			strings.NewReader(fmt.Sprintf(`{"fleet":"acme","device_id":"invented-%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[200] != 4 || codes[429] != 60 {
		t.Fatalf("the flood's admissions: %v, want 4 admitted and 60 shed", codes)
	}
	st := e.enroll(e.newDevice("sensor-elsewhere", nil))
	e.keep(st.Token, st.SecretID)
	if len(e.logs.lines("step failed; will retry")) != 0 {
		t.Fatal("the real device was shed")
	}
}

// A flood of admin requests with invented tokens costs Vault a bounded
// number of calls: past its budget of refused checks, the address is
// answered without asking Vault. A real admin's requests are never
// counted: many of them at once all go through.
func TestAdminFloodCostsVaultLittle(t *testing.T) {
	e := newEnv(t)
	before := metricSum(t, e, "enroll_server_vault_request_duration_seconds_count")
	limited := 0
	start := time.Now()
	for i := range 300 {
		status, _ := e.get(wire.PathAdminDevices+"?fleet=acme", fmt.Sprintf("hvs.invented-%d", i))
		if status == http.StatusTooManyRequests {
			limited++
		}
	}
	took := time.Since(start)
	calls := metricSum(t, e, "enroll_server_vault_request_duration_seconds_count") - before
	// Two Vault calls per checked request, at most a burst plus the rate
	// for the time the flood took.
	budget := 2 * (admin.FailedChecksBurst + admin.FailedChecksPerSecond*(took.Seconds()+1))
	if limited == 0 || calls > budget {
		t.Fatalf("%d of 300 refused as rate-limited; %v Vault calls in %v (budget %v)", limited, calls, took, budget)
	}
	// A real admin gets through again once the flood stops, however many
	// requests it sends.
	time.Sleep(time.Second)
	for range 100 {
		if status, body := e.get(wire.PathAdminDevices+"?fleet=acme", e.vault.RootToken); status != http.StatusOK {
			t.Fatalf("after the flood: %d %s", status, body)
		}
	}
}

// Challenges for a device asked from another address, with no credential,
// never use up the device's own: it refreshes right after the flood.
func TestChallengeFloodFromElsewhereLeavesTheDevice(t *testing.T) {
	e := newEnv(t)
	victim := e.enroll(e.newDevice("sensor-fa", nil))
	flood := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tlsTo(t, e.caPEM),
		DialContext:     (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}}
	codes := map[int]int{}
	for range 50 {
		resp, err := flood.Post(e.serverURL+wire.PathIdentityChallenge, "application/json",
			strings.NewReader(`{"fleet":"acme","device_id":"sensor-fa"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[http.StatusTooManyRequests] < 40 {
		t.Fatalf("the flood's challenges: %v, want all but a few limited", codes)
	}
	status, body := e.call(identityCall{purpose: identity.PurposeRefresh, device: "sensor-fa", key: deviceKey(t, victim), token: victim.Token, sequence: victim.Sequence})
	if status != http.StatusOK {
		t.Fatalf("the device's own refresh after a flood from elsewhere: %d %s", status, body)
	}
	e.keep(victim.Token)
}
