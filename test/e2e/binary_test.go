package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

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
		cmd := exec.Command("go", "build", "-o", clientBin, "./cmd/enroll-client")
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
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
