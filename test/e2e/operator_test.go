package e2e

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/enrollctl"
	"github.com/edge-enroll/enroll/enroll-server/vault"
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
