package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/doctor"
	"github.com/edge-enroll/enroll/enroll-server/devca"
)

// enroll-client doctor against the real enrollment server and Vault,
// while the real daemon runs: nothing fails. (The test Vault speaks plain
// HTTP on loopback, which doctor reports as a warning.) Then a bundle
// naming the wrong Vault CA fails with the field to fix.
func TestDoctorPassesAgainstTheRealServerAndVault(t *testing.T) {
	e := newEnv(t)
	bin := clientBinary(t)
	d := e.deviceDir("sensor-doc")
	e.startDaemon(bin, d)
	waitFor(t, 30*time.Second, "the acknowledgement", func() bool { return d.status().Acknowledged })

	code, out, errOut := e.cli("doctor", "-config", d.config)
	t.Logf("doctor said:\n%s%s", out, errOut)
	if code != doctor.ExitOK || strings.Contains(out, "fail  ") {
		t.Fatalf("doctor: exit %d", code)
	}
	for _, want := range []string{
		"ok    config:", "ok    bundle:", "ok    state directory:", "ok    state: " + d.statePath + " is held by the running daemon",
		"ok    sink 0:", "ok    server TLS: " + e.serverURL + ": certificate of 127.0.0.1 verified with server_ca_pem",
		"ok    clock:", "ok    vault: " + e.bundle.VaultAddr + " is Vault",
		"ok    bootstrap: the bundle's bootstrap credential (generation 1) logs in at " + e.bundle.EnrollMount + "; its token revoked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor did not say %q", want)
		}
	}

	// Another device's bundle trusts another CA for the server.
	otherCA, err := devca.Write(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other := e.deviceDir("sensor-doc-2")
	other.bundle.ServerCAPEM = readFile(t, otherCA.CACert)
	other.bundle.SecretID = "00000000-0000-0000-0000-000000000000" // and a secret ID Vault never issued
	raw, err := other.bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, other.dir+"/bundle.json", raw)
	code, out, _ = e.cli("doctor", "-config", other.config)
	t.Logf("doctor said:\n%s", out)
	if code != doctor.ExitFail || !strings.Contains(out, "fail  server TLS: ") || !strings.Contains(out, "server_ca_pem in "+other.dir+"/bundle.json does not sign") {
		t.Fatalf("doctor with the wrong server CA: exit %d", code)
	}
	// A device that never ran, without a TPM: it could never enroll.
	if !strings.Contains(out, "fail  bootstrap: Vault refused the bundle's bootstrap credential (fleet acme") {
		t.Fatal("doctor did not fail the bootstrap credential Vault refused")
	}
}
