// Package service tests installing the real binaries under the Linux
// service managers. No systemd runs as PID 1 on the test machines, so each
// test runs the product's own install path inside a private mount namespace
// (unshare -m) over throwaway copies of the directories it writes: the host
// is never touched.
package service

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/edge-enroll/enroll/test/vaulttest"
)

// require skips (or, under CI, fails) when the test cannot make a mount
// namespace.
func require(t *testing.T, tools ...string) {
	t.Helper()
	missing := ""
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		missing = "root on Linux"
	}
	for _, tool := range append(tools, "unshare") {
		if _, err := exec.LookPath(tool); err != nil {
			missing = tool
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("service tests need %s under CI", missing)
	}
	t.Skipf("needs %s", missing)
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "enroll-client")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/enroll-client")
	cmd.Dir = vaulttest.RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// inNamespace runs script with bash in a private mount namespace.
func inNamespace(t *testing.T, script string, env ...string) string {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-euo", "pipefail", "-c", script)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("namespace script failed: %v\n%s", err, out.String())
	}
	return out.String()
}

// withServiceUser is shell that adds the dedicated user to throwaway copies
// of /etc/passwd and /etc/group, as the packages do for real.
const withServiceUser = `
cp /etc/passwd "$T/passwd"; cp /etc/group "$T/group"
echo 'enroll-client:x:990:990:edge-enroll client:/nonexistent:/usr/sbin/nologin' >> "$T/passwd"
echo 'enroll-client:x:990:' >> "$T/group"
mount --bind "$T/passwd" /etc/passwd; mount --bind "$T/group" /etc/group
`

// The unit the product's install path writes passes systemd-analyze verify
// and carries the hardening.
func TestSystemdInstallWritesAVerifiedHardenedUnit(t *testing.T) {
	require(t, "systemd-analyze", "systemctl")
	bin := build(t)
	dir := t.TempDir()
	out := inNamespace(t, withServiceUser+`
mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system
mount -t tmpfs tmpfs /etc/systemd/system
SYSTEMD_OFFLINE=1 "$BIN" service install -config /etc/enroll-client/config.yaml
test -L /etc/systemd/system/multi-user.target.wants/enroll-client.service
cp /etc/systemd/system/enroll-client.service "$T/enroll-client.service"
systemd-analyze verify "$T/enroll-client.service"
SYSTEMD_OFFLINE=1 "$BIN" service uninstall
test ! -e /etc/systemd/system/enroll-client.service
echo VERIFIED
`, "BIN="+bin, "T="+dir)
	if !strings.Contains(out, "install done (linux-systemd)") || !strings.Contains(out, "VERIFIED") {
		t.Fatalf("output:\n%s", out)
	}
	unit, err := os.ReadFile(filepath.Join(dir, "enroll-client.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"User=enroll-client", "ExecStart=" + bin + ` "run" "-config" "/etc/enroll-client/config.yaml"`,
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/enroll-client /run/enroll-client",
		"ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n", "LimitCORE=0", "Restart=on-failure",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if _, err := os.Stat("/etc/systemd/system/enroll-client.service"); err == nil {
		t.Fatal("the host's /etc/systemd/system was touched")
	}
}

// The SysV path this machine detects installs, starts, reports running,
// stops and uninstalls.
func TestSysvLifecycle(t *testing.T) {
	require(t, "service", "start-stop-daemon")
	bin := build(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	// A device with no reachable server: the daemon runs and keeps
	// retrying, which is all "running" needs.
	bundle := `{"version":1,"fleet":"acme","server_url":"https://127.0.0.1:9","vault_addr":"https://127.0.0.1:9",` +
		`"enroll_mount":"edge-enroll","device_mount":"edge-devices-acme","role_id":"r","secret_id":"s","generation":1}`
	if err := os.WriteFile(filepath.Join(dir, "bundle.json"), []byte(bundle), 0o600); err != nil {
		t.Fatal(err)
	}
	config := "device_id: svc-test\nbundle_path: " + dir + "/bundle.json\nstate_path: " + dir + "/state/state.db\n" +
		"preprovisioned_path: " + dir + "/pre.json\nsinks:\n  - path: " + dir + "/token\n"
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out := inNamespace(t, `
for d in /etc/init.d /etc/rc0.d /etc/rc1.d /etc/rc2.d /etc/rc3.d /etc/rc4.d /etc/rc5.d /etc/rc6.d /var/log /run; do
  mount -t tmpfs tmpfs "$d"
done
"$BIN" service install -config "$CFG" -system unix-systemv
test -x /etc/init.d/enroll-client
"$BIN" service start -system unix-systemv
for i in $(seq 1 50); do "$BIN" service status -system unix-systemv && break; sleep 0.1; done
"$BIN" service stop -system unix-systemv
"$BIN" service status -system unix-systemv || echo "status exit $?"
"$BIN" service uninstall -system unix-systemv
test ! -e /etc/init.d/enroll-client
echo DONE
`, "BIN="+bin, "CFG="+cfg)
	for _, want := range []string{"install done (unix-systemv)", "start done", "enroll-client: running (unix-systemv)",
		"stop done", "status exit 3", "uninstall done", "DONE"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat("/etc/init.d/enroll-client"); err == nil {
		t.Fatal("the host's /etc/init.d was touched")
	}
}
