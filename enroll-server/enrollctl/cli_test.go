package enrollctl_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
	"github.com/edge-enroll/enroll/pkg/cmdline/clitest"
)

// run is enrollctl with an empty environment: no server or Vault is
// reachable, so a command that parsed its command line fails with exit 1
// on what it would reach first. The -json output against a real server
// and Vault is tested in test/e2e (TestEnrollctlReadCommandsJSON).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return enrollctl.Run(ctx, args, enrollctl.Env{Getenv: func(string) string { return "" }, Stdout: stdout, Stderr: stderr})
}

func root() *cobra.Command {
	return enrollctl.Root(enrollctl.Env{Getenv: func(string) string { return "" }})
}

func TestHelpForEveryCommand(t *testing.T) {
	clitest.HelpForEveryCommand(t, root, run)
}

func TestSuggestionForATypo(t *testing.T) {
	clitest.Suggests(t, run, []string{"aprove"}, "approve")
	clitest.Suggests(t, run, []string{"generation"}, "generations")
	clitest.Suggests(t, run, []string{"audit", "verfy"}, "verify")
}

func TestCompletionScripts(t *testing.T) {
	clitest.CompletionScripts(t, run, "enrollctl")
}

// The command lines of the README, the demo and scripts written for Go's
// flag package parse; usage errors exit 2 and name the problem.
func TestCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		// Parsed: they fail on the missing server or Vault.
		{[]string{"devices", "-fleet", "acme", "-state", "pending", "-json"}, 1, "server URL"},
		{[]string{"devices", "--fleet=acme", "--limit", "5"}, 1, "server URL"},
		{[]string{"approve", "-fleet", "acme", "-device", "sensor-17"}, 1, "server URL"},
		{[]string{"approve", "-fleet", "acme", "sensor-17", "-enrollment", "e-1"}, 1, "server URL"},
		{[]string{"reject", "-fleet", "acme", "sensor-18", "-reason", "unknown serial"}, 1, "server URL"},
		{[]string{"revoke", "sensor-19", "sensor-20", "-fleet", "acme", "-reason", "-stolen-"}, 1, "server URL"},
		{[]string{"readmit", "-fleet", "acme", "sensor-19"}, 1, "server URL"},
		{[]string{"preauthorize", "-fleet", "acme", "sensor-20", "sensor-21"}, 1, "server URL"},
		{[]string{"generations", "-fleet", "acme", "-json"}, 1, "server URL"},
		{[]string{"retire", "-fleet", "acme", "-generation", "1", "-force"}, 1, "server URL"},
		{[]string{"revoke-generation", "-fleet", "acme", "-generation", "1"}, 1, "server URL"},
		{[]string{"batch", "-fleet", "acme", "-out-dir", t.TempDir(), "sensor-30", "sensor-31"}, 1, "server URL"},
		{[]string{"alerts", "-json"}, 1, "server URL"},
		{[]string{"audit", "verify", "-head", "1:ab", "-json"}, 1, "server URL"},
		{[]string{"audit", "export", "-json"}, 1, "server URL"},
		{[]string{"setup", "-fleet", "acme"}, 1, "VAULT_ADDR"},
		{[]string{"server-credentials", "-out", t.TempDir() + "/creds.json"}, 1, "VAULT_ADDR"},
		// Usage errors.
		{[]string{"approve", "-fleet", "acme"}, 2, "DEVICE_ID"},
		{[]string{"approve", "-fleet", "acme", "a", "b", "-enrollment", "e-1"}, 2, "one DEVICE_ID"},
		{[]string{"approve", "sensor-17"}, 2, `required flag(s) "fleet" not set`},
		{[]string{"revoke", "-fleet", "acme", "sensor-19", "-enrollment", "e-1"}, 2, "unknown flag: --enrollment"},
		{[]string{"preauthorize", "-fleet", "acme"}, 2, "requires at least 1 arg"},
		{[]string{"devices", "-flet", "acme"}, 2, "unknown flag: --flet"},
		{[]string{"devices", "extra"}, 2, `unknown command "extra"`},
		{[]string{"retire", "-fleet", "acme", "-generation", "x"}, 2, "invalid argument"},
		{[]string{"retire", "-fleet", "acme", "-generation", "0"}, 2, "-generation"},
		{[]string{"audit"}, 2, "Usage:"},
		{nil, 2, "Usage:"},
		// An ID no device can have, refused before the server is asked.
		{[]string{"revoke", "-fleet", "acme", "sensor-19", "a/b"}, 2, `device ID "a/b"`},
		{[]string{"boot-policy", "learn", "-fleet", "acme", "-from-device", "../../x"}, 2, `device ID "../../x"`},
		{[]string{"readmit", "-fleet", "Acme", "sensor-19"}, 2, "-fleet"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.err) {
			t.Errorf("%q: exit %d (want %d), stderr %q (want %q)", tc.args, code, tc.code, errOut.String(), tc.err)
		}
	}
}
