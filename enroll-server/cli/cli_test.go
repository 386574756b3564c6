package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/cli"
	"github.com/edge-enroll/enroll/enroll-server/devca"
	"github.com/edge-enroll/enroll/pkg/cmdline/clitest"
	"github.com/edge-enroll/enroll/pkg/wire"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpForEveryCommand(t *testing.T) {
	clitest.HelpForEveryCommand(t, cli.Root, cli.Run)
}

func TestSuggestionForATypo(t *testing.T) {
	clitest.Suggests(t, cli.Run, []string{"chek-config"}, "check-config")
	clitest.Suggests(t, cli.Run, []string{"audit", "verfy"}, "verify")
	clitest.Suggests(t, cli.Run, []string{"service", "stauts"}, "status")
}

func TestCompletionScripts(t *testing.T) {
	clitest.CompletionScripts(t, cli.Run, "enroll-server")
}

// The read commands that need no Vault: check-config, and audit verify
// and export on a stopped server's state file.
func TestReadCommandsPrintJSON(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "vault-credentials.json")
	if err := os.WriteFile(creds, []byte(`{"role_id":"r","secret_id":"s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsFiles, err := devca.Write(filepath.Join(dir, "tls"), []string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state.db")
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("listen: 127.0.0.1:0\nstate_path: "+state+"\nvault:\n  address: http://127.0.0.1:8200\n  credentials_file: "+creds+"\ntls:\n  cert_file: "+tlsFiles.ServerCert+"\n  key_file: "+tlsFiles.ServerKey+"\nfleets:\n  - name: acme\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := boltstore.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"enroll", "acknowledge"} {
		if _, err := st.AppendAudit(context.Background(), audit.Record{Actor: "device:acme/sensor-1", Action: action, Fleet: "acme", DeviceID: "sensor-1"}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	code, out, errOut := run(t, "check-config", "-config", cfg, "-json")
	var ok struct {
		Config string `json:"config"`
		OK     bool   `json:"ok"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &ok) != nil || !ok.OK || ok.Config != cfg {
		t.Fatalf("check-config -json: %d %q %s", code, out, errOut)
	}

	code, out, errOut = run(t, "audit", "verify", "-config", cfg, "-json")
	var check wire.AuditCheck
	if code != 0 || json.Unmarshal([]byte(out), &check) != nil || !check.OK || check.Records != 2 || check.Head == "" {
		t.Fatalf("audit verify -json: %d %q %s", code, out, errOut)
	}
	// A head from the future: the log no longer reaches it, and the JSON
	// says so with exit 1.
	code, out, _ = run(t, "audit", "verify", "-config", cfg, "-json", "-head", "9:"+strings.Repeat("0", 64))
	if code != 1 || json.Unmarshal([]byte(out), &check) != nil || check.OK {
		t.Fatalf("audit verify -json against a later head: %d %q", code, out)
	}

	for _, args := range [][]string{{"audit", "export", "-config", cfg}, {"audit", "export", "-config", cfg, "-json"}} {
		code, out, errOut = run(t, args...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 2 {
			t.Fatalf("%v: %d %q %s", args, code, out, errOut)
		}
		for _, l := range lines {
			var r audit.Record
			if err := json.Unmarshal([]byte(l), &r); err != nil || r.DeviceID != "sensor-1" {
				t.Fatalf("%v: line %q: %v", args, l, err)
			}
		}
	}

	// The flags in both spellings, and a bad -head as a usage error.
	if code, _, errOut := run(t, "check-config", "--config="+cfg); code != 0 {
		t.Fatalf("check-config --config=: %d %s", code, errOut)
	}
	if code, _, errOut := run(t, "audit", "verify", "-config", cfg, "-head", "nonsense"); code != 2 || !strings.Contains(errOut, "-head") {
		t.Fatalf("a bad -head: %d %s", code, errOut)
	}
}
