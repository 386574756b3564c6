package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// ctlRun is one enrollctl run: its exit code, stdout and stderr.
type ctlRun struct {
	code        int
	out, errOut string
}

// enrollctl runs the admin CLI against this environment with the admin's
// token (and the server's CA) unless vars say otherwise; a var set to ""
// is unset.
func (e *env) enrollctl(vars map[string]string, stdin io.Reader, args ...string) ctlRun {
	e.t.Helper()
	caPath := filepath.Join(e.t.TempDir(), "server-ca.pem")
	writeFile(e.t, caPath, []byte(e.caPEM))
	env := map[string]string{"VAULT_ADDR": e.vault.Addr, "VAULT_TOKEN": e.vault.RootToken,
		"ENROLL_SERVER_URL": e.serverURL, "ENROLL_SERVER_CA": caPath}
	for k, v := range vars {
		env[k] = v
	}
	var out, errOut bytes.Buffer
	code := enrollctl.Run(context.Background(), args, enrollctl.Env{Getenv: func(k string) string { return env[k] },
		Stdin: stdin, Stdout: &out, Stderr: &errOut})
	return ctlRun{code, out.String(), errOut.String()}
}

// loginAs logs in through userpass (with Vault's default policy, as a
// person's login has) holding policies, for ttl.
func (e *env) loginAs(user string, ttl time.Duration, policies ...string) string {
	e.t.Helper()
	if _, err := e.root.Logical().Read("sys/auth/userpass/tune"); err != nil {
		if err := e.root.Sys().EnableAuthWithOptions("userpass", &api.EnableAuthOptions{Type: "userpass"}); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.root.Logical().Write("auth/userpass/users/"+user, map[string]any{
		"password": "correct horse", "token_policies": strings.Join(append(policies, "default"), ","),
		"token_ttl": ttl.String(), "token_max_ttl": ttl.String()}); err != nil {
		e.t.Fatal(err)
	}
	login, err := e.clientFor("").Logical().Write("auth/userpass/login/"+user, map[string]any{"password": "correct horse"})
	if err != nil {
		e.t.Fatal(err)
	}
	e.keep(login.Auth.ClientToken)
	return login.Auth.ClientToken
}

// An expired Vault login and a missing policy are told apart, each with
// what to do: the server answers 401 invalid_token for a token Vault does
// not know and 403 forbidden naming the policy needed; enrollctl says
// to log in again before it ever reaches the server.
func TestAdminTokenErrorsSayWhatToDo(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("sensor-a", nil))
	expiring := e.loginAs("bob", 2*time.Second, vault.FleetAdminPolicy(fleet))
	waitFor(t, 20*time.Second, "bob's login to expire", func() bool {
		_, err := e.clientFor(expiring).Auth().Token().LookupSelf()
		return err != nil
	})
	admin, err := vault.NewAdmin(vault.Options{Address: e.vault.Addr, Token: e.vault.RootToken}, e.layout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetupFleet(context.Background(), "beta"); err != nil {
		t.Fatal(err)
	}
	otherFleet := e.tokenWith(vault.FleetAdminPolicy("beta"))

	// The API itself.
	status, body := e.get("/v1/admin/devices?fleet=acme", expiring)
	if status != http.StatusUnauthorized || errorCode(t, body) != "invalid_token" || !strings.Contains(body, "vault login") {
		t.Errorf("an expired token: %d %s; want 401 invalid_token telling to log in again", status, body)
	}
	status, body = e.adminCall("POST", "/v1/admin/devices/acme/sensor-a/revoke", otherFleet, `{"reason":"x"}`)
	if status != http.StatusForbidden || errorCode(t, body) != "forbidden" || !strings.Contains(body, vault.FleetAdminPolicy(fleet)) ||
		strings.Contains(body, vault.FleetOperatorPolicy(fleet)) {
		t.Errorf("another fleet's admin revoking: %d %s; want 403 forbidden naming %s (an operator may not revoke)", status, body, vault.FleetAdminPolicy(fleet))
	}

	// enrollctl, with an expired login: refused at Vault, said so.
	r := e.enrollctl(map[string]string{"VAULT_TOKEN": expiring}, nil, "devices", "-fleet", "acme")
	if r.code == 0 || !strings.Contains(r.errOut, "vault login") || !strings.Contains(r.errOut, "VAULT_TOKEN") {
		t.Errorf("enrollctl with an expired login: %d %q", r.code, r.errOut)
	}
	// A login without any edge-enroll policy: named.
	nobody := e.loginAs("carol", time.Hour)
	r = e.enrollctl(map[string]string{"VAULT_TOKEN": nobody}, nil, "devices", "-fleet", "acme")
	if r.code == 0 || !strings.Contains(r.errOut, vault.AdminPolicy+"-FLEET") {
		t.Errorf("enrollctl without an admin policy: %d %q", r.code, r.errOut)
	}
	// Another fleet's administrator: the server's refusal names the policy.
	beta := e.loginAs("dave", time.Hour, vault.FleetAdminPolicy("beta"))
	r = e.enrollctl(map[string]string{"VAULT_TOKEN": beta}, nil, "revoke", "-fleet", "acme", "-device", "sensor-a")
	if r.code == 0 || !strings.Contains(r.errOut, "forbidden") || !strings.Contains(r.errOut, vault.FleetAdminPolicy(fleet)) {
		t.Errorf("enrollctl as another fleet's admin: %d %q", r.code, r.errOut)
	}
}

// A certificate enrollctl cannot verify is reported with the flag or
// variable that names the CA: -server-ca / $ENROLL_SERVER_CA for the
// enrollment server, $VAULT_CACERT for Vault.
func TestEnrollctlNamesTheCAToFix(t *testing.T) {
	e := newEnv(t)
	r := e.enrollctl(map[string]string{"ENROLL_SERVER_CA": ""}, nil, "devices", "-fleet", "acme")
	if r.code == 0 || !strings.Contains(r.errOut, "-server-ca") || !strings.Contains(r.errOut, "$ENROLL_SERVER_CA") {
		t.Errorf("server CA not given: %d %q", r.code, r.errOut)
	}
	// A Vault behind a certificate of a CA nobody passed (this one never
	// answers past the handshake).
	tlsVault := httptest.NewUnstartedServer(http.NotFoundHandler())
	tlsVault.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes refused
	tlsVault.StartTLS()
	defer tlsVault.Close()
	for _, args := range [][]string{{"devices", "-fleet", "acme"}, {"setup", "-fleet", "acme"}} {
		r = e.enrollctl(map[string]string{"VAULT_ADDR": tlsVault.URL}, nil, args...)
		if r.code == 0 || !strings.Contains(r.errOut, "$VAULT_CACERT") {
			t.Errorf("enrollctl %s against a Vault of an unknown CA: %d %q", args[0], r.code, r.errOut)
		}
	}
}

// Approving an ID nothing has asked for (a typo: cam-02 for cam-01) is
// refused, naming the device and fleet and where to look, and stores
// nothing; with -preauthorize it approves the ID in advance, as asked.
func TestApproveOfAnUnseenDeviceIsRefused(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("cam-01", nil))
	r := e.enrollctl(nil, nil, "approve", "-fleet", "acme", "-device", "cam-02")
	for _, want := range []string{"unknown_device", "cam-02", "acme", "enrollctl devices -fleet acme -state pending", "-preauthorize"} {
		if r.code == 0 || !strings.Contains(r.errOut, want) {
			t.Fatalf("approve of an unseen device: %d %q, want a refusal with %q", r.code, r.out+r.errOut, want)
		}
	}
	status, body := e.adminCall("POST", "/v1/admin/devices/acme/cam-02/approve", e.vault.RootToken, "")
	if status != http.StatusNotFound || errorCode(t, body) != "unknown_device" {
		t.Fatalf("API approve of an unseen device: %d %s", status, body)
	}
	if status, body := e.get("/v1/admin/devices/acme/cam-02", e.vault.RootToken); status != http.StatusNotFound {
		t.Fatalf("a refused approval stored a device: %d %s", status, body)
	}
	// A device that is known is approved as before.
	if r := e.enrollctl(nil, nil, "approve", "-fleet", "acme", "-device", "cam-01"); r.code != 0 {
		t.Fatalf("approve of a known device: %d %q", r.code, r.errOut)
	}
	r = e.enrollctl(nil, nil, "approve", "-fleet", "acme", "-device", "cam-02", "-preauthorize")
	if r.code != 0 {
		t.Fatalf("approve -preauthorize: %d %q", r.code, r.errOut)
	}
	var d wire.Device
	e.adminJSON("GET", "/v1/admin/devices/acme/cam-02", "", &d)
	if d.Admission != "approved" {
		t.Fatalf("after approve -preauthorize: %+v", d)
	}
}

// A retire straight after the rotate that superseded the generation is
// refused while the fleet's rotation grace period runs, saying when it
// ends and how many devices depend on the generation; -force retires it
// anyway and the audit log records that it was forced.
func TestRetireWithinTheGracePeriodIsRefused(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) { f.RotationGrace = new(time.Hour) }})
	e.enroll(e.newDevice("sensor-a", nil))
	rotateOut := filepath.Join(t.TempDir(), "bundle-2.json")
	oldBundle := filepath.Join(t.TempDir(), "bundle-1.json")
	raw, err := e.bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, oldBundle, raw)
	if r := e.enrollctl(nil, nil, "rotate", "-fleet", "acme", "-bundle", oldBundle, "-out", rotateOut); r.code != 0 {
		t.Fatalf("rotate: %d %q", r.code, r.errOut)
	}
	var gens wire.Generations
	e.adminJSON("GET", "/v1/admin/fleets/acme/generations", "", &gens)
	ends := gens.Generations[1].CreatedAt.Add(time.Hour).UTC().Format(time.RFC3339)
	r := e.enrollctl(nil, nil, "retire", "-fleet", "acme", "-generation", "1")
	for _, want := range []string{"generation_in_grace", "rotation_grace 1h0m0s", "ends at " + ends, "0 devices still depend on it", "-force"} {
		if r.code == 0 || !strings.Contains(r.errOut, want) {
			t.Fatalf("retire within the grace period: %d %q, want a refusal with %q", r.code, r.out+r.errOut, want)
		}
	}
	e.adminJSON("GET", "/v1/admin/fleets/acme/generations", "", &gens)
	if gens.Generations[0].State != "live" || gens.Generations[0].LiveSecretIDs == 0 {
		t.Fatalf("a refused retire ended the generation: %+v", gens.Generations[0])
	}
	r = e.enrollctl(nil, nil, "retire", "-fleet", "acme", "-generation", "1", "-force")
	if r.code != 0 || !strings.Contains(r.out, "generation 1 retired") {
		t.Fatalf("retire -force: %d %q", r.code, r.out+r.errOut)
	}
	_, export := e.get("/v1/admin/audit", e.vault.RootToken)
	if !strings.Contains(export, `"action":"admin:retired"`) || !strings.Contains(export, "forced: within its rotation grace period") {
		t.Fatalf("the audit log does not record a forced retire:\n%s", export)
	}
}

// batchDevices is how many devices TestBatchOfTenThousandFromAFile
// provisions.
const batchDevices = 10_000

// A batch of ten thousand IDs from a file against the real server and
// Vault: sent in chunks under the server's limits, each chunk written (one
// owner-only file of JSON lines) before the next is sent, progress on
// stderr, and no wrapping token printed. One credential of the file is
// then consumed by its device.
func TestBatchOfTenThousandFromAFile(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) { f.WrapTTL, f.AckTimeout = time.Hour, time.Hour }})
	dir := t.TempDir()
	idsPath := filepath.Join(dir, "ids.txt")
	var list strings.Builder
	list.WriteString("# pre-provisioned cameras\n")
	for i := range batchDevices {
		fmt.Fprintf(&list, "cam-%05d\n", i)
	}
	list.WriteString("cam-00007\n") // a duplicate, dropped with a note
	writeFile(t, idsPath, []byte(list.String()))
	out := filepath.Join(dir, "creds", "batch.jsonl")

	start := time.Now()
	r := e.enrollctl(nil, nil, "batch", "-fleet", "acme", "-from", idsPath, "-out", out)
	t.Logf("%d devices in %v", batchDevices, time.Since(start).Round(time.Second))
	if r.code != 0 {
		t.Fatalf("batch: %d\n%s", r.code, tail(r.errOut, 2000))
	}
	if r.out != "" || strings.Contains(r.errOut, "hvs.") {
		t.Fatalf("the batch printed to the terminal what belongs in the file:\n%s", tail(r.out+r.errOut, 2000))
	}
	for _, want := range []string{"note: dropped 1 duplicate device IDs", fmt.Sprintf("%d/%d devices sent", batchDevices, batchDevices),
		fmt.Sprintf("wrote %d pre-provisioned credentials to %s", batchDevices, out), "wrap TTL 1h0m0s"} {
		if !strings.Contains(r.errOut, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, tail(r.errOut, 2000))
		}
	}
	st, err := os.Stat(out)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the credentials file: %v %v", st, err)
	}
	items := readBatchFile(t, out)
	if len(items) != batchDevices || items[0].DeviceID != "cam-00000" || items[batchDevices-1].DeviceID != fmt.Sprintf("cam-%05d", batchDevices-1) {
		t.Fatalf("%d credentials in the file", len(items))
	}
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.DeviceID] || it.WrappingToken == "" {
			t.Fatalf("device %s: twice, or without a wrapping token", it.DeviceID)
		}
		seen[it.DeviceID] = true
	}
	for _, it := range items {
		e.keep(it.WrappingToken)
	}
	d := e.newDevice(items[42].DeviceID, func(b *bundle.Bundle) { b.RoleID, b.SecretID = "", "" })
	d.preprovision(e, items[42])
	if st := e.enroll(d); st.EnrollmentID != items[42].EnrollmentID {
		t.Fatalf("device enrolled as %s, want its batch enrollment %s", st.EnrollmentID, items[42].EnrollmentID)
	}
}

// A batch in which the server refuses some devices (revoked) writes every
// other device's credential, lists each refused device with its reason,
// and exits non-zero; from standard input to standard output (asked for
// explicitly) too.
func TestBatchListsTheDevicesThatFailed(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("cam-02", nil))
	if status, body := e.adminCall("POST", "/v1/admin/devices/acme/cam-02/revoke", e.vault.RootToken, `{"reason":"stolen"}`); status != 200 {
		t.Fatalf("revoke: %d %s", status, body)
	}
	out := filepath.Join(t.TempDir(), "batch.jsonl")
	r := e.enrollctl(nil, strings.NewReader("cam-01\ncam-02\ncam-03\ncam-04\ncam-05\n"), "batch", "-fleet", "acme", "-from", "-", "-out", out, "-chunk-size", "2")
	if r.code == 0 || !strings.Contains(r.errOut, "failed: cam-02: rejected: device was revoked (stolen)") ||
		!strings.Contains(r.errOut, "1 of 5 devices got no credential") || !strings.Contains(r.errOut, "wrote 4 pre-provisioned credentials") {
		t.Fatalf("batch with a revoked device: %d\n%s", r.code, r.errOut)
	}
	var got []string
	for _, it := range readBatchFile(t, out) {
		e.keep(it.WrappingToken)
		got = append(got, it.DeviceID)
	}
	if strings.Join(got, ",") != "cam-01,cam-03,cam-04,cam-05" {
		t.Fatalf("written: %v", got)
	}
	// Invalid IDs: nothing is sent.
	r = e.enrollctl(nil, nil, "batch", "-fleet", "acme", "-out", "-", "cam-06", "Cam-07")
	if r.code == 0 || !strings.Contains(r.errOut, `argument 2: device ID "Cam-07"`) || r.out != "" {
		t.Fatalf("batch with an invalid ID: %d %q %q", r.code, r.out, r.errOut)
	}
	if status, _ := e.get("/v1/admin/devices/acme/cam-06", e.vault.RootToken); status != http.StatusNotFound {
		t.Fatal("a batch with an invalid ID provisioned the valid ones")
	}
	// Standard output, asked for.
	r = e.enrollctl(nil, nil, "batch", "-fleet", "acme", "-out", "-", "cam-06")
	var it wire.BatchItem
	if r.code != 0 || json.Unmarshal([]byte(r.out), &it) != nil || it.DeviceID != "cam-06" || it.WrappingToken == "" {
		t.Fatalf("batch -out -: %d %q %q", r.code, r.out, r.errOut)
	}
	e.keep(it.WrappingToken)
}

func readBatchFile(t *testing.T, path string) []wire.BatchItem {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var items []wire.BatchItem
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var it wire.BatchItem
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		items = append(items, it)
	}
	return items
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
