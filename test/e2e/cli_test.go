package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Every enrollctl read command prints JSON with -json, against the real
// server and Vault; device commands take their devices as arguments, and
// the Go-style single-dash flags of scripts written before still work.
func TestEnrollctlReadCommandsJSON(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("sensor-a", nil))
	caFile := filepath.Join(t.TempDir(), "server-ca.pem")
	writeFile(t, caFile, []byte(e.caPEM))
	vars := map[string]string{"VAULT_ADDR": e.vault.Addr, "VAULT_TOKEN": e.vault.RootToken,
		"ENROLL_SERVER_URL": e.serverURL, "ENROLL_SERVER_CA": caFile}
	ctl := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := enrollctl.Run(context.Background(), args, enrollctl.Env{Getenv: func(k string) string { return vars[k] }, Stdout: &out, Stderr: &errOut})
		return code, out.String(), errOut.String()
	}
	parse := func(args []string, v any) {
		t.Helper()
		code, out, errOut := ctl(args...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errOut)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("%q printed no JSON: %v\n%s", args, err, out)
		}
	}

	var list wire.DeviceList
	parse([]string{"devices", "-fleet", fleet, "-json"}, &list)
	if len(list.Devices) != 1 || list.Devices[0].ID != "sensor-a" {
		t.Fatalf("devices -json: %+v", list)
	}
	var gens wire.Generations
	parse([]string{"generations", "--fleet", fleet, "--json"}, &gens)
	if len(gens.Generations) != 1 || gens.Generations[0].Devices != 1 {
		t.Fatalf("generations -json: %+v", gens)
	}
	var alerts struct {
		Alerts []map[string]any `json:"alerts"`
	}
	parse([]string{"alerts", "-json"}, &alerts)
	if alerts.Alerts == nil {
		t.Fatal("alerts -json: no alerts list")
	}
	var check wire.AuditCheck
	parse([]string{"audit", "verify", "-json"}, &check)
	if !check.OK || check.Records == 0 || check.Head == "" {
		t.Fatalf("audit verify -json: %+v", check)
	}
	for _, args := range [][]string{{"audit", "export"}, {"audit", "export", "-json"}} {
		code, out, errOut := ctl(args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != check.Records {
			t.Fatalf("%q: exit %d, %d lines for %d records: %s", args, code, len(lines), check.Records, errOut)
		}
		for _, l := range lines {
			var rec map[string]any
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("%q: line %q: %v", args, l, err)
			}
		}
	}

	// Tables: each header names its column, at least two spaces apart.
	for _, tc := range []struct {
		args    []string
		columns int
	}{
		{[]string{"generations", "-fleet", fleet}, 8},
		{[]string{"devices", "-fleet", fleet}, 10},
		{[]string{"alerts"}, 8},
	} {
		code, out, errOut := ctl(tc.args...)
		header := strings.SplitN(out, "\n", 2)[0]
		if cols := regexp.MustCompile(`  +`).Split(strings.TrimSpace(header), -1); code != 0 || len(cols) != tc.columns {
			t.Errorf("%q: exit %d, header %q has %d columns, want %d: %s", tc.args, code, header, len(cols), tc.columns, errOut)
		}
	}

	// A device as an argument, and as -device in scripts written before.
	if code, out, errOut := ctl("revoke", "-fleet", fleet, "sensor-a", "-reason", "lost"); code != 0 || !strings.Contains(out, "revoke acme/sensor-a: done") {
		t.Fatalf("revoke DEVICE_ID: %d %s %s", code, out, errOut)
	}
	if code, out, errOut := ctl("readmit", "-fleet", fleet, "-device", "sensor-a"); code != 0 || !strings.Contains(out, "readmit acme/sensor-a: done") {
		t.Fatalf("readmit -device: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := ctl("readmit", "-fleet", fleet); code != 2 || !strings.Contains(errOut, "DEVICE_ID") {
		t.Fatalf("readmit without a device: %d %s", code, errOut)
	}
}
