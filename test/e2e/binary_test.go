package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

var (
	buildOnce sync.Once
	clientBin string
	buildErr  error
	buildDir  string
)

// clientBinary builds the real enroll-client once per test run.
func clientBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "enroll-e2e-bin")
		if buildErr != nil {
			return
		}
		clientBin = filepath.Join(buildDir, "enroll-client")
		cmd := exec.Command("go", "build", "-tags", "crashtest", "-o", clientBin, "./cmd/enroll-client")
		cmd.Dir = vaulttest.RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build enroll-client: %v", buildErr)
	}
	return clientBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range []string{buildDir, binDir} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}

// The release client carries no crash hook: only test builds (-tags
// crashtest) obey ENROLL_CLIENT_TEST_CRASH_AFTER.
func TestReleaseClientHasNoCrashHook(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "enroll-client")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/enroll-client")
	cmd.Dir = vaulttest.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("ENROLL_CLIENT_TEST_CRASH_AFTER")) {
		t.Fatal("the release client reads the crash hook's variable")
	}
	if test := clientBinary(t); !bytes.Contains(must(os.ReadFile(test)), []byte("ENROLL_CLIENT_TEST_CRASH_AFTER")) {
		t.Fatal("the test build has no crash hook either; this test proves nothing")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// VAULT_* variables in the client's environment change nothing: with
// VAULT_AGENT_ADDR pointing nowhere (Vault's API would send every request
// there) and a token and namespace set, the real client enrolls as its
// configuration says.
func TestClientIgnoresVaultEnvironment(t *testing.T) {
	e := newEnv(t)
	d := e.deviceDir("sensor-env")
	dm := e.startDaemon(clientBinary(t), d, "VAULT_AGENT_ADDR=http://127.0.0.1:1", "VAULT_SKIP_VERIFY=true",
		"VAULT_TOKEN=hvs.not-the-device", "VAULT_NAMESPACE=elsewhere", "VAULT_WRAP_TTL=5m")
	if !waitAuthenticated(t, d, dm, 40*time.Second, func(lifecycle.Status) bool { return true }) {
		t.FailNow()
	}
	dm.stop()
	if !strings.Contains(dm.out.String(), "ignoring VAULT_AGENT_ADDR, VAULT_NAMESPACE, VAULT_SKIP_VERIFY, VAULT_TOKEN, VAULT_WRAP_TTL from the environment") {
		t.Fatalf("the client did not say what it ignored:\n%s", dm.out)
	}
	st, err := d.readState()
	if err != nil {
		t.Fatal(err)
	}
	e.keep(st.Token, st.SecretID)
}
