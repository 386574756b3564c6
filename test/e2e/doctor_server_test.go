package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/devca"
)

// serverDoctor runs `enroll-server doctor` on a configuration like the
// test server's, changed by the case.
type serverDoctor struct {
	vaultAddr, creds, cert, key, state string
	fleets                             []string
	failover                           []string
}

func (d serverDoctor) run(t *testing.T) (int, string) {
	t.Helper()
	var fl strings.Builder
	for _, f := range d.fleets {
		fmt.Fprintf(&fl, "  - name: %s\n", f)
	}
	failover := ""
	for _, a := range d.failover {
		failover += "\n    - " + a
	}
	if failover != "" {
		failover = "\n  failover_addresses:" + failover
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\ntls:\n  cert_file: %s\n  key_file: %s\nvault:\n  address: %s%s\n  credentials_file: %s\nstate_path: %s\nfleets:\n%s",
		d.cert, d.key, d.vaultAddr, failover, d.creds, d.state, fl.String())
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(serverBinary(t), "doctor", "-config", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// doctorLine finds the report's line for check.
func doctorLine(out, check string) string {
	return regexp.MustCompile(`(?m)^(ok|warn|fail)\s+` + regexp.QuoteMeta(check) + `: .*$`).FindString(out)
}

// Each failing check doctor makes is produced on purpose and gives its
// line, its fix and a non-zero exit; the healthy installation passes.
func TestServerDoctor(t *testing.T) {
	e := newEnv(t)
	good := serverDoctor{vaultAddr: e.vault.Addr, creds: e.cfg.Vault.CredentialsFile, cert: e.cfg.TLS.CertFile,
		key: e.cfg.TLS.KeyFile, state: e.cfg.StatePath, fleets: []string{fleet}}
	code, out := good.run(t)
	if code != 0 || strings.Contains(out, "fail") {
		t.Fatalf("doctor on a healthy server: exit %d\n%s", code, out)
	}
	for _, check := range []string{"configuration", "files", "store", "vault", "vault login", "fleet " + fleet} {
		if l := doctorLine(out, check); !strings.HasPrefix(l, "ok") {
			t.Fatalf("no ok line for %q:\n%s", check, out)
		}
	}
	// The test certificate lives an hour: close enough to its end to warn.
	if l := doctorLine(out, "tls certificate"); !strings.HasPrefix(l, "warn") || !strings.Contains(l, "kill -HUP") {
		t.Fatalf("a certificate an hour from its end: %q", l)
	}
	if !strings.Contains(doctorLine(out, "store"), "in use by the running server") {
		t.Fatalf("the store in use: %s", doctorLine(out, "store"))
	}

	// A cluster whose first node is down: the server fails over, doctor
	// warns about the node and checks the rest through the others.
	down := good
	down.vaultAddr, down.failover = "http://127.0.0.1:1", []string{e.vault.Addr}
	code, out = down.run(t)
	if code != 0 || !strings.HasPrefix(doctorLine(out, "vault node http://127.0.0.1:1"), "warn") ||
		!strings.HasPrefix(doctorLine(out, "vault node "+e.vault.Addr), "ok") ||
		!strings.HasPrefix(doctorLine(out, "vault login"), "ok") || !strings.HasPrefix(doctorLine(out, "fleet "+fleet), "ok") {
		t.Fatalf("doctor with the first Vault node down: exit %d\n%s", code, out)
	}

	dir := t.TempDir()
	expired, err := devca.Write(filepath.Join(dir, "old"), []string{"127.0.0.1"}, -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.json")
	writeFileMode(t, loose, readFile(t, e.cfg.Vault.CredentialsFile), 0o644)
	refused := filepath.Join(dir, "refused.json")
	writeFileMode(t, refused, []byte(`{"role_id":"`+e.srvCreds.RoleID+`","secret_id":"00000000-0000-0000-0000-000000000000"}`), 0o600)

	cases := []struct {
		name   string
		change func(d *serverDoctor)
		check  string
		want   string // in the check's line or its fix
	}{
		{"fleet missing in Vault", func(d *serverDoctor) { d.fleets = append(d.fleets, "ghost") }, "fleet ghost", "enrollctl setup -fleet ghost"},
		{"credentials readable by others", func(d *serverDoctor) { d.creds = loose }, "files", "readable by others"},
		{"credentials refused by Vault", func(d *serverDoctor) { d.creds = refused }, "vault login", "enrollctl server-credentials"},
		{"certificate expired", func(d *serverDoctor) { d.cert, d.key = expired.ServerCert, expired.ServerKey }, "tls certificate", "expired"},
		{"nothing at the Vault address", func(d *serverDoctor) { d.vaultAddr = "http://127.0.0.1:1" }, "vault", "nothing answers at vault.address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := good
			d.fleets = append([]string(nil), good.fleets...)
			c.change(&d)
			code, out := d.run(t)
			line := doctorLine(out, c.check)
			if code == 0 || !strings.HasPrefix(line, "fail") || !strings.Contains(line, c.want) {
				t.Fatalf("exit %d, line %q; want a failed %q naming %q\n%s", code, line, c.check, c.want, out)
			}
		})
	}
}

func writeFileMode(t *testing.T, path string, data any, mode os.FileMode) {
	t.Helper()
	var b []byte
	switch v := data.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	}
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
