package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/cli"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/pkg/bundle"
)

// deviceDir is a device laid out on disk as the real client expects it: a
// bootstrap bundle and a configuration file.
type deviceDir struct {
	id, dir, config, statePath, sinkPath string
	bundle                               bundle.Bundle
}

func (e *env) deviceDir(id string) *deviceDir {
	e.t.Helper()
	// A TPM on the machine running the tests is not the device's.
	return e.deviceDirWith(id, "tpm:\n  mode: off\n")
}

// deviceDirWith lays out a device whose configuration ends with extra.
func (e *env) deviceDirWith(id, extra string) *deviceDir {
	e.t.Helper()
	dir := e.t.TempDir()
	d := &deviceDir{id: id, dir: dir, config: filepath.Join(dir, "config.yaml"),
		statePath: filepath.Join(dir, "state.db"), sinkPath: filepath.Join(dir, "token"), bundle: e.bundle}
	raw, err := d.bundle.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	writeFile(e.t, filepath.Join(dir, "bundle.json"), raw)
	cfg := fmt.Sprintf(`device_id: %s
bundle_path: %s
state_path: %s
sinks:
  - path: %s
log:
  level: debug
  format: json
`, id, filepath.Join(dir, "bundle.json"), d.statePath, d.sinkPath) + extra
	writeFile(e.t, d.config, []byte(cfg))
	return d
}

// cli runs the client's command line in this process.
func (e *env) cli(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code = cli.Run(ctx, args, &out, &errOut)
	e.logs.Write(errOut.Bytes())
	return code, out.String(), errOut.String()
}

// readState opens the device's state file (no client may be running) and
// returns the device's state.
func (d *deviceDir) readState() (lifecycle.State, error) {
	s, err := state.Open(d.statePath)
	if err != nil {
		return lifecycle.State{}, err
	}
	defer s.Close()
	m := lifecycle.New(lifecycle.Config{Bundle: &d.bundle, DeviceID: d.id, Store: s, Log: discard()})
	return m.Load()
}

func readToken(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// A bundle other users of the device could read (it holds the fleet's
// bootstrap secret) is refused with the fix.
func TestReadableBundleIsRefused(t *testing.T) {
	e := newEnv(t)
	d := e.deviceDir("sensor-mode")
	if err := os.Chmod(filepath.Join(d.dir, "bundle.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := e.cli("check-config", "-config", d.config)
	if code == 0 || !strings.Contains(stderr, "chmod 600") {
		t.Fatalf("check-config with a 0644 bundle: %d %s", code, stderr)
	}
	if err := os.Chmod(filepath.Join(d.dir, "bundle.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := e.cli("check-config", "-config", d.config); code != 0 {
		t.Fatalf("check-config with a 0600 bundle: %d %s", code, stderr)
	}
}
