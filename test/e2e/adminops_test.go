package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

func (e *env) tokenWith(policies ...string) string {
	e.t.Helper()
	sec, err := e.root.Auth().Token().Create(&api.TokenCreateRequest{Policies: policies, NoDefaultPolicy: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.keep(sec.Auth.ClientToken)
	return sec.Auth.ClientToken
}

// Every admin action refuses a token without the admin policy; a read-only
// operator can list and show but not change anything.
func TestEveryAdminActionIsAuthorised(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("sensor-a", nil))
	actions := []struct {
		method, path, body string
		write              bool
	}{
		{"GET", "/v1/admin/devices", "", false},
		{"GET", "/v1/admin/devices/acme/sensor-a", "", false},
		{"GET", "/v1/admin/fleets/acme/generations", "", false},
		{"GET", "/v1/admin/alerts", "", false},
		{"GET", "/v1/admin/audit", "", false},
		{"GET", "/v1/admin/audit/verify", "", false},
		{"POST", "/v1/admin/devices/acme/sensor-a/revoke", `{"reason":"test"}`, true},
		{"POST", "/v1/admin/devices/acme/sensor-a/readmit", "", true},
		{"POST", "/v1/admin/devices/acme/sensor-a/approve", "", true},
		{"POST", "/v1/admin/devices/acme/sensor-b/reject", `{"reason":"test"}`, true},
		{"POST", "/v1/admin/fleets/acme/preauthorize", `{"device_ids":["x"]}`, true},
		{"POST", "/v1/admin/fleets/acme/batch", `{"device_ids":["y"]}`, true},
		{"POST", "/v1/admin/fleets/acme/rotate", "", true},
		{"POST", "/v1/admin/fleets/acme/generations/1/retire", "", true},
	}
	noAdmin := e.tokenWith("default")
	operator := e.tokenWith(vault.OperatorPolicy)
	// 22 refusals from one address outrun admin.FailedChecksBurst: a
	// patient caller waits out the 429s as any client would.
	call := func(method, path, token, body string) (int, string) {
		for {
			status, out := e.adminCall(method, path, token, body)
			if status != http.StatusTooManyRequests {
				return status, out
			}
			time.Sleep(time.Second / admin.FailedChecksPerSecond)
		}
	}
	for _, a := range actions {
		if status, body := call(a.method, a.path, noAdmin, a.body); status != 403 {
			t.Errorf("%s %s without the admin policy: %d %s, want 403", a.method, a.path, status, body)
		}
		status, body := call(a.method, a.path, operator, a.body)
		if a.write && status != 403 {
			t.Errorf("%s %s as a read-only operator: %d %s, want 403", a.method, a.path, status, body)
		}
		if !a.write && status != 200 {
			t.Errorf("%s %s as a read-only operator: %d %s, want 200", a.method, a.path, status, body)
		}
	}
	// Nothing changed: the device is still enrolled.
	devs, _ := e.inventory()
	if len(devs) != 1 || devs[0].State != "enrolled" {
		t.Fatalf("refused admin actions changed the inventory: %+v", devs)
	}
}

// Revoking a device ends it in Vault: its token fails, its secret IDs are
// gone, and it cannot enroll again until re-admitted.
func TestRevokeAndReadmit(t *testing.T) {
	e := newEnv(t)
	d := e.newDevice("sensor-a", nil)
	st := e.enroll(d)
	admin := e.tokenWith(vault.AdminPolicy)
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-a/revoke", admin, `{"reason":"stolen"}`); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	if _, err := e.clientFor(st.Token).Auth().Token().LookupSelf(); err == nil {
		t.Fatal("the device's token still works after revocation")
	}
	if got := e.deviceSecretIDAccessors("sensor-a"); len(got) != 0 {
		t.Fatalf("%d secret IDs left after revocation", len(got))
	}
	// The device, starting over, is refused.
	again := e.newDevice("sensor-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := again.machine.Run(ctx, true); !errors.Is(err, lifecycle.ErrRejected) || !strings.Contains(err.Error(), "stolen") {
		t.Fatalf("a revoked device enrolling: %v", err)
	}
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-a/readmit", admin, ""); status != 200 {
		t.Fatalf("readmit: %d %s", status, body)
	}
	// A new installation under the same ID proves only the fleet's
	// bootstrap credential: it waits for an administrator, who approves
	// that one request.
	wiped := e.newDevice("sensor-a", nil)
	e.approveHeld(wiped, admin)
	fresh := e.enroll(wiped)
	if _, err := e.clientFor(fresh.Token).Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("re-admitted device's token does not work: %v", err)
	}
}

// approveHeld runs a device whose request for an enrolled ID is held, and
// approves that request once the server holds it.
func (e *env) approveHeld(d *device, adminToken string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.machine.Run(ctx, true) }()
	defer func() { cancel(); <-done }()
	var dev wire.Device
	waitFor(e.t, 30*time.Second, "the request held for an administrator", func() bool {
		e.adminJSON("GET", "/v1/admin/devices/acme/"+d.id, "", &dev)
		return dev.HeldEnrollment != "" && d.lastStatus().Phase == lifecycle.PhasePending
	})
	// The administrator approves the request the device shows, by name;
	// without the name the approval is refused and says what it would be.
	if got := d.lastStatus().EnrollmentID; got != dev.HeldEnrollment {
		e.t.Fatalf("the device shows enrollment %q, the server holds %q", got, dev.HeldEnrollment)
	}
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/"+d.id+"/approve", adminToken, ""); status != 400 || !strings.Contains(body, dev.HeldEnrollment) {
		e.t.Fatalf("approve without naming the request: %d %s", status, body)
	}
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/"+d.id+"/approve", adminToken, `{"enrollment":"`+dev.HeldEnrollment+`"}`); status != 200 {
		e.t.Fatalf("approve: %d %s", status, body)
	}
}

// In a manual fleet a device waits as pending until approved; a rejected
// one stops with the administrator's reason.
func TestManualApproval(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) { f.Admission = "manual" }})
	admin := e.tokenWith(vault.AdminPolicy)
	a, b := e.newDevice("sensor-a", nil), e.newDevice("sensor-b", nil)
	runDaemon(t, a)
	runDaemon(t, b)
	for _, d := range []*device{a, b} {
		waitFor(t, 20*time.Second, d.id+" pending", func() bool { return d.state(t).Phase == lifecycle.PhasePending })
	}
	if status, body := e.get("/v1/admin/devices?fleet=acme&state=pending&seen_since=1h", admin); status != 200 || strings.Count(body, `"state":"pending"`) != 2 {
		t.Fatalf("pending devices: %d %s", status, body)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if status, body := e.get("/v1/admin/devices?fleet=acme&seen_since="+future, admin); status != 200 || strings.Contains(body, `"id"`) {
		t.Fatalf("devices seen in the future: %d %s", status, body)
	}
	if status, _ := e.get("/v1/admin/devices?seen_since=yesterday", admin); status != 400 {
		t.Fatalf("a malformed seen_since: %d, want 400", status)
	}
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-a/approve", admin, ""); status != 200 {
		t.Fatalf("approve: %d %s", status, body)
	}
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-b/reject", admin, `{"reason":"unknown serial number"}`); status != 200 {
		t.Fatalf("reject: %d %s", status, body)
	}
	sa := waitState(t, a, 30*time.Second, "approved device to enroll", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
	})
	e.keep(sa.SecretID, sa.Token)
	sb := waitState(t, b, 30*time.Second, "rejected device to stop", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseRejected
	})
	if !strings.Contains(sb.Reason, "unknown serial number") {
		t.Fatalf("rejected device's reason %q does not carry the administrator's", sb.Reason)
	}
}

// In an allow-list fleet only pre-authorised devices enroll.
func TestAllowListAdmission(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) { f.Admission = "allow-list" }})
	stranger := e.newDevice("stranger", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stranger.machine.Run(ctx, true); !errors.Is(err, lifecycle.ErrRejected) || !strings.Contains(err.Error(), "allow-list") {
		t.Fatalf("a device not on the allow-list: %v", err)
	}
	if role, err := e.root.Logical().Read("auth/" + vault.DeviceMount(fleet) + "/role/stranger"); err != nil || role != nil {
		t.Fatalf("a refused device got a role in Vault: %v %v", role, err)
	}
	// Invented IDs leave nothing behind in the inventory.
	if status, body := e.get("/v1/admin/devices/acme/stranger", e.vault.RootToken); status != http.StatusNotFound {
		t.Fatalf("a refused device has a record: %d %s", status, body)
	}
	if status, body := e.adminCall("POST", "/v1/admin/fleets/acme/preauthorize", e.vault.RootToken, `{"device_ids":["known"]}`); status != 200 {
		t.Fatalf("preauthorize: %d %s", status, body)
	}
	e.enroll(e.newDevice("known", nil))
}
