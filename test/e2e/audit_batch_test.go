package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.yaml.in/yaml/v3"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	servercli "github.com/edge-enroll/enroll/enroll-server/cli"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// The audit log records enrollments and admin actions; after a test edits
// one record in the store, verify names that record.
func TestAuditLogDetectsTampering(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("sensor-a", nil))
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/sensor-b/approve", e.vault.RootToken, `{"preauthorize":true}`); status != 200 {
		t.Fatalf("approve: %d %s", status, body)
	}
	_, export := e.get("/v1/admin/audit", e.vault.RootToken)
	for _, want := range []string{`"action":"enroll:wrapped"`, `"action":"enroll:acknowledged"`, `"action":"admin:approve"`, `"actor":"admin:token (`} {
		if !strings.Contains(export, want) {
			t.Fatalf("audit export lacks %s:\n%s", want, export)
		}
	}
	verify := e.offlineVerify()
	if code, out := verify(); code != 0 || !strings.Contains(out, "intact: 3 records") {
		t.Fatalf("verify of an untouched log: %d %s", code, out)
	}
	// Edit record 2 in place, as someone with the file could.
	db, err := bolt.Open(e.statePath, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("audit"))
		k := binary.BigEndian.AppendUint64(nil, 2)
		var rec map[string]any
		if err := json.Unmarshal(b.Get(k), &rec); err != nil {
			return err
		}
		rec["detail"] = "nothing to see here"
		edited, _ := json.Marshal(rec)
		return b.Put(k, edited)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out := verify()
	if code == 0 || !strings.Contains(out, "BROKEN at record 2") {
		t.Fatalf("verify of an edited log: %d %s", code, out)
	}
}

// An orchestrator injects one pre-provisioned credential per device; each
// device consumes its own without any bootstrap credential. A second use of
// one is refused and raises an alert.
func TestBatchPreProvisioning(t *testing.T) {
	e := newEnv(t)
	var batch wire.Batch
	e.adminJSON("POST", "/v1/admin/fleets/acme/batch", `{"device_ids":["b-1","b-2","b-3"]}`, &batch)
	if len(batch.Items) != 3 {
		t.Fatalf("batch = %+v", batch)
	}
	noBootstrap := func(b *bundle.Bundle) { b.RoleID, b.SecretID = "", "" }
	for _, it := range batch.Items {
		e.keep(it.WrappingToken)
		d := e.newDevice(it.DeviceID, noBootstrap)
		d.preprovision(e, it)
		st := e.enroll(d)
		if st.EnrollmentID != it.EnrollmentID || st.Enrollments != 1 {
			t.Fatalf("device %s enrolled as %s, want its batch enrollment %s", it.DeviceID, st.EnrollmentID, it.EnrollmentID)
		}
	}
	// The same credential a second time, on another machine claiming b-1.
	clone := e.newDevice("b-1", noBootstrap)
	clone.preprovision(e, batch.Items[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := clone.machine.Run(ctx, true); !errors.Is(err, lifecycle.ErrRejected) {
		t.Fatalf("second use of a batch credential: %v", err)
	}
	alerts := e.logs.lines("security alert")
	if len(alerts) != 1 || alerts[0]["kind"] != inventory.AlertWrappingTokenInvalid || alerts[0]["device_id"] != "b-1" {
		t.Fatalf("alerts = %v", alerts)
	}
}

// preprovision rebuilds the device's machine with an injected credential.
func (d *device) preprovision(e *env, it wire.BatchItem) {
	b := e.bundle
	b.RoleID, b.SecretID = "", ""
	resp := it.EnrollResponse
	d.machine = lifecycle.New(lifecycle.Config{
		Bundle: &b, DeviceID: d.id, Vault: mustClientVault(e.t, b), Store: d.store, Log: jsonLogger(e.logs),
		Server: serverClient(e.t, b), Sinks: []lifecycle.Sink{sinkFile(d.sinkPath)}, Preprovisioned: &resp,
	})
}

// With an audit key, whoever can write the state file cannot rewrite the
// log unseen: an edit sealed again down the chain is caught by the MACs,
// and records dropped from the end by the head exported earlier.
func TestKeyedAuditLog(t *testing.T) {
	keyPath := filepath.Join(t.TempDir(), "audit.key")
	var out, errOut bytes.Buffer
	if code := servercli.Run(context.Background(), []string{"audit", "keygen", keyPath}, &out, &errOut); code != 0 {
		t.Fatalf("keygen: %s", errOut.String())
	}
	if code := servercli.Run(context.Background(), []string{"audit", "keygen", keyPath}, &out, &errOut); code == 0 {
		t.Fatal("keygen overwrote an existing key")
	}
	e := newEnv(t, options{server: func(c *config.File) { c.Audit.KeyFile = keyPath }})
	e.enroll(e.newDevice("sensor-a", nil))
	var check wire.AuditCheck
	e.adminJSON("GET", "/v1/admin/audit/verify", "", &check)
	if !check.OK || !check.MACChecked || check.Records != 2 || check.Head == "" {
		t.Fatalf("verify through the API: %+v", check)
	}
	head := check.Head
	verify := e.offlineVerify()
	if code, out := verify("-head", head); code != 0 || !strings.Contains(out, "intact: 2 records, MACs checked") || !strings.Contains(out, "head: "+head) {
		t.Fatalf("verify of an untouched log: %d %s", code, out)
	}
	if code, out := verify("-head", head, "-json"); code != 0 || json.Unmarshal([]byte(out), &check) != nil || !check.OK || !check.MACChecked || check.Head != head {
		t.Fatalf("verify -json of an untouched log: %d %s", code, out)
	}
	rewrite := func(fn func(b *bolt.Bucket) error) {
		t.Helper()
		db, err := bolt.Open(e.statePath, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { return fn(tx.Bucket([]byte("audit"))) }); err != nil {
			t.Fatal(err)
		}
	}
	// The newest record dropped: the chain is intact, the head is not.
	rewrite(func(b *bolt.Bucket) error { return b.Delete(binary.BigEndian.AppendUint64(nil, 2)) })
	if code, out := verify(); code != 0 {
		t.Fatalf("the shortened chain by itself: %d %s", code, out)
	}
	if code, out := verify("-head", head); code == 0 || !strings.Contains(out, "records 2 to 2 were dropped") {
		t.Fatalf("verify against the exported head: %d %s", code, out)
	}
	// Record 1 edited and sealed again, without the key.
	rewrite(func(b *bolt.Bucket) error {
		k := binary.BigEndian.AppendUint64(nil, 1)
		var r audit.Record
		if err := json.Unmarshal(b.Get(k), &r); err != nil {
			return err
		}
		r.Detail = "nothing to see here"
		r = audit.Seal(nil, r, nil)
		v, _ := json.Marshal(r)
		return b.Put(k, v)
	})
	if code, out := verify(); code == 0 || !strings.Contains(out, "BROKEN at record 1") {
		t.Fatalf("verify of a resealed log: %d %s", code, out)
	}
}

// offlineVerify stops the server and returns `enroll-server audit verify`
// on its configuration and state, with extra arguments.
func (e *env) offlineVerify() func(extra ...string) (int, string) {
	e.t.Helper()
	e.stop()
	cfgPath := filepath.Join(e.t.TempDir(), "server.yaml")
	raw, err := yaml.Marshal(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	writeFile(e.t, cfgPath, raw)
	return func(extra ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := servercli.Run(context.Background(), append([]string{"audit", "verify", "-config", cfgPath}, extra...), &out, &errOut)
		return code, out.String() + errOut.String()
	}
}
