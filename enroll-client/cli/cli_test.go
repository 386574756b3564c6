package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/enroll-client/cli"
	"github.com/edge-enroll/enroll/enroll-client/health"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/cmdline/clitest"
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
	clitest.Suggests(t, cli.Run, []string{"stauts"}, "status")
	clitest.Suggests(t, cli.Run, []string{"service", "instal"}, "install")
}

func TestCompletionScripts(t *testing.T) {
	clitest.CompletionScripts(t, cli.Run, "enroll-client")
}

// deviceConfig writes a configuration and bundle for a device that has
// not enrolled yet, without a TPM.
func deviceConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b := bundle.Bundle{Version: bundle.Version, Fleet: "acme", ServerURL: "https://enroll.example.com:8443",
		VaultAddr: "https://vault.example.com:8200", EnrollMount: "edge-enroll", DeviceMount: "edge-devices-acme",
		RoleID: "role", SecretID: "secret", Generation: 1}
	raw, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bundle.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	yaml := "device_id: sensor-1\nbundle_path: " + filepath.Join(dir, "bundle.json") + "\nstate_path: " + filepath.Join(dir, "state.db") +
		"\nsinks:\n  - path: " + filepath.Join(dir, "token") + "\ntpm:\n  mode: off\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The read commands that need no server: status and check-config
// (tpm-info -json runs against swtpm in test/e2e).
func TestReadCommandsPrintJSON(t *testing.T) {
	cfg := deviceConfig(t)
	// No daemon runs here: status says so, and exits 3.
	code, out, errOut := run(t, "status", "-config", cfg, "-json")
	var st health.Report
	if code != 3 || json.Unmarshal([]byte(out), &st) != nil || st.DeviceID != "sensor-1" || st.Fleet != "acme" || st.DaemonRunning {
		t.Fatalf("status -json: %d %q %s", code, out, errOut)
	}
	code, out, errOut = run(t, "check-config", "--config", cfg, "--json")
	var check map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &check) != nil || check["device_id"] != "sensor-1" || check["fleet"] != "acme" || check["config"] != cfg {
		t.Fatalf("check-config -json: %d %q %s", code, out, errOut)
	}
	// Text stays text.
	if code, out, errOut := run(t, "check-config", "-config", cfg); code != 0 || !strings.HasPrefix(out, "ok: device sensor-1, fleet acme") {
		t.Fatalf("check-config: %d %q %s", code, out, errOut)
	}
}

func TestExitCodes(t *testing.T) {
	cfg := deviceConfig(t)
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"status", "-config", filepath.Join(t.TempDir(), "none.yaml")}, 1, "enroll-client status: config"},
		{[]string{"status", "-config", cfg, "-bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"status", "-config", cfg, "extra"}, 2, "unknown command \"extra\""},
		{[]string{"reset-state", "-config", cfg}, 0, ""},
		{nil, 2, "Usage:"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.err) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut, tc.err)
		}
	}
}

// check-config creates no state (run does, as the service's user), and
// checks a configuration while the daemon holds its state.
func TestCheckConfigLeavesTheStateAlone(t *testing.T) {
	cfg := deviceConfig(t)
	statePath := filepath.Join(filepath.Dir(cfg), "state.db")
	if code, out, errOut := run(t, "check-config", "-config", cfg); code != 0 {
		t.Fatalf("check-config: %d %q %s", code, out, errOut)
	}
	if _, err := os.Stat(statePath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("check-config created the state file: %v", err)
	}
	held, err := state.Open(statePath) // as the running daemon holds it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if code, out, errOut := run(t, "check-config", "-config", cfg); code != 0 {
		t.Fatalf("check-config while the daemon holds the state: %d %q %s", code, out, errOut)
	}
}
