package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// A device whose motherboard (and so TPM) was replaced is refused on its
// new hardware until an administrator allows a rebind; then its next
// attested enrollment binds it to the new TPM, once, keeping its identity
// in Vault; hardware after that is refused again. Both steps are audited.
func TestRebindMovesADeviceToNewHardwareOnce(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMOptional)
	const id = "rma-1"
	device := func() wire.Device {
		t.Helper()
		status, body := e.adminCall("GET", "/v1/admin/devices/"+fleet+"/"+id, e.vault.RootToken, "")
		if status != 200 {
			t.Fatalf("show device: %d %s", status, body)
		}
		var d wire.Device
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	rebind := func(body string) {
		t.Helper()
		if status, out := e.adminCall("POST", "/v1/admin/devices/"+fleet+"/"+id+"/rebind", e.vault.RootToken, body); status != 200 {
			t.Fatalf("rebind: %d %s", status, out)
		}
	}
	var before wire.Device
	t.Run("original hardware", func(t *testing.T) {
		sim := tpmsim.Open(t)
		ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
		d, err := e.tpmDevice(id, sim, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		e.enroll(d)
		d.store.Close()
		before = device()
	})
	// The binding shows what it is: the EK's kind and who certified it.
	if before.EKHash == "" || before.EntityID == "" || before.EKKind != "rsa2048" || before.EKIssuer == "" || before.TPM == "" {
		t.Fatalf("the enrolled device is not bound: %+v", before)
	}
	t.Run("new hardware", func(t *testing.T) {
		sim := tpmsim.Open(t)
		ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
		newEK := ekHashOf(t, sim)
		d, err := e.tpmDevice(id, sim, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		refused(t, d, "hardware_mismatch", "new hardware before a rebind")
		rebind(`{"reason":"RMA 4411: motherboard replaced","ek_hash":"` + strings.Repeat("ab", 32) + `"}`)
		d.store.Close()
		if d, err = e.tpmDevice(id, sim, nil, ""); err != nil {
			t.Fatal(err)
		}
		refused(t, d, "hardware_mismatch", "new hardware other than the one the rebind names")
		// The administrator's tool, as the README shows it.
		caFile := filepath.Join(t.TempDir(), "server-ca.pem")
		writeFile(t, caFile, []byte(e.caPEM))
		vars := map[string]string{"VAULT_ADDR": e.vault.Addr, "VAULT_TOKEN": e.vault.RootToken,
			"ENROLL_SERVER_URL": e.serverURL, "ENROLL_SERVER_CA": caFile}
		var out, errOut bytes.Buffer
		if code := enrollctl.Run(context.Background(), []string{"rebind", "-fleet", fleet, id, "-ek", newEK, "-reason", "RMA 4411: motherboard replaced"},
			enrollctl.Env{Getenv: func(k string) string { return vars[k] }, Stdout: &out, Stderr: &errOut}); code != 0 {
			t.Fatalf("enrollctl rebind: %d %s", code, errOut.String())
		}
		d.store.Close()
		d, err = e.tpmDevice(id, sim, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		e.enroll(d)
		d.store.Close()
		after := device()
		if after.EKHash != newEK || after.EntityID != before.EntityID || after.ID != before.ID {
			t.Fatalf("after the rebind: %+v\nbefore: %+v (new EK %s)", after, before, newEK)
		}
	})
	t.Run("hardware after that", func(t *testing.T) {
		sim := tpmsim.Open(t)
		ca.ProvisionEKCert(t, sim, tpmsim.RSAEK)
		d, err := e.tpmDevice(id, sim, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		refused(t, d, "hardware_mismatch", "a third TPM after the one rebind")
		d.store.Close()
		// A rebind that names no TPM lets the next trusted one take the ID.
		rebind(`{"reason":"RMA 4412"}`)
		if d, err = e.tpmDevice(id, sim, nil, ""); err != nil {
			t.Fatal(err)
		}
		e.enroll(d)
		d.store.Close()
		if got := device().EKHash; got != ekHashOf(t, sim) {
			t.Fatalf("after an open rebind the device is bound to %s", got)
		}
	})
	status, body := e.adminCall("GET", "/v1/admin/audit", e.vault.RootToken, "")
	if status != 200 {
		t.Fatalf("audit: %d", status)
	}
	var allowed, moved bool
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		var rec struct {
			Action   string `json:"action"`
			DeviceID string `json:"device_id"`
			Detail   string `json:"detail"`
			Actor    string `json:"actor"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.DeviceID != id {
			continue
		}
		switch rec.Action {
		case "admin:rebind":
			allowed = allowed || strings.Contains(rec.Detail, "RMA 4411") && strings.HasPrefix(rec.Actor, "admin:")
		case "rebound":
			moved = moved || strings.Contains(rec.Detail, "rebind allowed by admin:")
		}
	}
	if !allowed || !moved {
		t.Fatalf("audit log: rebind allowed %v, device moved %v\n%s", allowed, moved, body)
	}
}
