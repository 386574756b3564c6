package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

// bundleRun runs `enrollctl bundle` as the administrator, against this
// environment's TLS Vault, with vars added to the administrator's
// environment; it returns the exit code and what was printed.
func (e *env) bundleRun(vars map[string]string, args ...string) (int, string, string) {
	env := map[string]string{"VAULT_ADDR": e.vault.Addr, "VAULT_TOKEN": e.vault.RootToken, "VAULT_CACERT": e.vaultCAFile}
	for k, v := range vars {
		env[k] = v
	}
	var out, errOut bytes.Buffer
	code := enrollctl.Run(context.Background(), append([]string{"bundle", "-fleet", fleet}, args...),
		enrollctl.Env{Getenv: func(k string) string { return env[k] }, Stdout: &out, Stderr: &errOut})
	return code, out.String(), errOut.String()
}

// enrollmentSecretIDs counts the live secret IDs of the fleet's enrollment
// role: a refused bundle must not have minted one.
func (e *env) enrollmentSecretIDs() int {
	e.t.Helper()
	sec, err := e.root.Logical().List("auth/" + e.layout.EnrollMount + "/role/fleet-" + fleet + "/secret-id")
	if err != nil {
		e.t.Fatal(err)
	}
	if sec == nil || sec.Data == nil {
		return 0
	}
	return len(sec.Data["keys"].([]any))
}

// `enrollctl bundle` refuses, before it mints or writes anything, a bundle
// whose devices could not trust the server or Vault, or would reach
// either in clear; each refusal names the flag and file to fix.
func TestBundleRefusesWhatDevicesCannotUse(t *testing.T) {
	e := newEnv(t, options{tlsVault: true})
	dir := t.TempDir()
	serverCA := filepath.Join(dir, "server-ca.crt")
	writeFile(t, serverCA, []byte(e.caPEM))
	other, err := vaulttest.NewPrivateCA(dir, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens here.
	gone := "https://127.0.0.1:" + strconv.Itoa(freePort(t))
	out := filepath.Join(dir, "out", "bundle.json")
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want []string
	}{
		{"a server CA that did not issue the server's certificate", nil,
			[]string{"-server-url", e.serverURL, "-server-ca", other.CertFile},
			[]string{"the server at " + e.serverURL, "not signed by a CA in " + other.CertFile + " (-server-ca)",
				"certificate signed by unknown authority", "pass the CA that issued the server's certificate with -server-ca"}},
		{"no server CA: the system roots do not trust a private CA", nil,
			[]string{"-server-url", e.serverURL},
			[]string{"not signed by a CA in the system roots (no -server-ca)", "with -server-ca"}},
		{"a Vault CA for devices that did not issue Vault's certificate", nil,
			[]string{"-server-url", e.serverURL, "-server-ca", serverCA, "-device-vault-ca", other.CertFile},
			[]string{"Vault at " + e.vault.Addr, "not signed by a CA in " + other.CertFile + " (-device-vault-ca)",
				"certificate signed by unknown authority", "with -device-vault-ca"}},
		{"a wrong Vault CA taken from VAULT_CAPATH", map[string]string{"VAULT_CACERT": "", "VAULT_CAPATH": filepath.Dir(other.CertFile)},
			[]string{"-server-url", e.serverURL, "-server-ca", serverCA},
			[]string{"not signed by a CA in $VAULT_CAPATH=" + dir + " (or pass -device-vault-ca)"}},
		{"both CAs wrong: both named at once", nil,
			[]string{"-server-url", e.serverURL, "-server-ca", other.CertFile, "-device-vault-ca", other.CertFile},
			[]string{"(-server-ca)", "(-device-vault-ca)"}},
		{"an http server URL", nil,
			[]string{"-server-url", strings.Replace(e.serverURL, "https:", "http:", 1), "-server-ca", serverCA},
			[]string{`-server-url "http://`, "devices reach the server over https only"}},
		{"an http Vault address for devices", nil,
			[]string{"-server-url", e.serverURL, "-server-ca", serverCA, "-device-vault-addr", strings.Replace(e.vault.Addr, "https:", "http:", 1)},
			[]string{`-device-vault-addr "http://`, "devices reach Vault over https only", "-dev-http-vault"}},
		{"an http Vault address from VAULT_ADDR", map[string]string{"VAULT_ADDR": "http://127.0.0.1:8200"},
			[]string{"-server-url", e.serverURL, "-server-ca", serverCA},
			[]string{`-device-vault-addr (default: $VAULT_ADDR) "http://127.0.0.1:8200"`, "over https only"}},
		{"a server CA file that holds no certificate", nil,
			[]string{"-server-url", e.serverURL, "-server-ca", e.vaultCAFile + ".missing"},
			[]string{e.vaultCAFile + ".missing (-server-ca)", "no such file"}},
		{"an EK kind the profile does not define", nil,
			[]string{"-server-url", e.serverURL, "-server-ca", serverCA, "-tpm-ek", "ecc384,rsa4096"},
			[]string{"bundle tpm_ek: unknown EK kind \"rsa4096\""}},
		{"a server nobody runs", nil,
			[]string{"-server-url", gone, "-server-ca", serverCA},
			[]string{"the server at " + gone + " (-server-url) cannot be reached", "-offline"}},
	}
	before := e.enrollmentSecretIDs()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := e.bundleRun(tt.vars, append(tt.args, "-out", out)...)
			if code == 0 {
				t.Fatalf("accepted:\n%s", stdout)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("the refusal does not say %q:\n%s", w, stderr)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("a bundle was written (%v)", err)
			}
			if n := e.enrollmentSecretIDs(); n != before {
				t.Fatalf("%d enrollment secret IDs, %d before: a refused bundle minted one", n, before)
			}
		})
	}
}

// With VAULT_CACERT (or the certificates of VAULT_CAPATH) as the devices'
// Vault CA by default, a checked bundle enrolls a device against a TLS
// Vault; -offline writes one unchecked, and says so.
func TestBundleChecksAndEnrolls(t *testing.T) {
	e := newEnv(t, options{tlsVault: true})
	dir := t.TempDir()
	serverCA := filepath.Join(dir, "server-ca.crt")
	writeFile(t, serverCA, []byte(e.caPEM))
	caDir := filepath.Join(dir, "cas")
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(caDir, "vault-ca.pem"), []byte(readFile(t, e.vaultCAFile)))
	gone := "https://127.0.0.1:" + strconv.Itoa(freePort(t))
	tests := []struct {
		name       string
		vars       map[string]string
		args       []string
		wantStderr string
	}{
		{"vault CA from VAULT_CACERT", nil, []string{"-server-url", e.serverURL, "-server-ca", serverCA}, ""},
		{"vault CA from VAULT_CAPATH", map[string]string{"VAULT_CACERT": "", "VAULT_CAPATH": caDir},
			[]string{"-server-url", e.serverURL, "-server-ca", serverCA}, ""},
		{"offline, the server not running yet", nil,
			[]string{"-server-url", gone, "-server-ca", serverCA, "-offline"}, "warning: -offline"},
		{"the fleet's EK preference", nil,
			[]string{"-server-url", e.serverURL, "-server-ca", serverCA, "-tpm-ek", "ecc384,rsa2048"}, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, strconv.Itoa(i), "bundle.json")
			code, stdout, stderr := e.bundleRun(tt.vars, append(tt.args, "-out", out)...)
			if code != 0 {
				t.Fatalf("exit %d:\n%s%s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Fatalf("stderr does not say %q:\n%s", tt.wantStderr, stderr)
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			b, err := bundle.Parse(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			e.keep(b.SecretID)
			if b.VaultCAPEM != readFile(t, e.vaultCAFile) {
				t.Fatalf("the bundle's vault_ca_pem is not Vault's CA:\n%s", b.VaultCAPEM)
			}
			if strings.Contains(strings.Join(tt.args, " "), "-tpm-ek ecc384,rsa2048") != (strings.Join(b.TPMEK, ",") == "ecc384,rsa2048") {
				t.Fatalf("the bundle's tpm_ek is %q", b.TPMEK)
			}
			if tt.wantStderr != "" {
				return // not a server devices can reach
			}
			e.enroll(e.newDevice("sensor-"+strconv.Itoa(i), func(d *bundle.Bundle) { *d = *b }))
		})
	}
}

// A device whose bundle does not trust Vault's or the server's certificate
// says, in its status and its log, which bundle field to fix.
func TestDeviceNamesTheBundleFieldToFix(t *testing.T) {
	e := newEnv(t, options{tlsVault: true})
	other, err := vaulttest.NewPrivateCA(t.TempDir(), "wrong")
	if err != nil {
		t.Fatal(err)
	}
	wrong := readFile(t, other.CertFile)
	for _, tt := range []struct {
		field string
		mod   func(*bundle.Bundle)
	}{
		{"vault_ca_pem", func(b *bundle.Bundle) { b.VaultCAPEM = wrong }},
		{"server_ca_pem", func(b *bundle.Bundle) { b.ServerCAPEM = wrong }},
	} {
		t.Run(tt.field, func(t *testing.T) {
			id := "sensor-" + strings.ReplaceAll(tt.field, "_", "-")
			d := e.newDevice(id, tt.mod)
			runDaemon(t, d)
			var last string
			waitFor(t, 30*time.Second, "a status naming "+tt.field, func() bool {
				last = d.lastStatus().LastError
				return strings.Contains(last, "fix the bundle's "+tt.field)
			})
			if !strings.Contains(last, "certificate signed by unknown authority") {
				t.Fatalf("the status does not say what failed: %s", last)
			}
			found := false
			for _, l := range e.logs.lines("step failed: the bundle does not trust the certificate; will retry") {
				found = found || (l["device_id"] == id && l["bundle_field"] == tt.field)
			}
			if !found {
				t.Fatalf("no log line names bundle_field=%s for %s", tt.field, id)
			}
		})
	}
}
