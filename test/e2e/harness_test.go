package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/sink"
	"github.com/edge-enroll/enroll/enroll-client/state"
	clientvault "github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/enroll-server/app"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/devca"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

const fleet = "acme"

// logBuffer collects JSON log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the decoded log records whose msg is msg.
func (b *logBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// env is a real Vault with a fleet set up and a running enroll-server.
type env struct {
	t         testing.TB
	vault     *vaulttest.Server
	pvault    *vaulttest.Persistent // set with options.persistent
	cluster   *vaulttest.Cluster    // set with options.cluster
	cfg       config.File           // the server's configuration
	srvCreds  vault.Credentials     // the server's own AppRole credentials
	root      *api.Client
	layout    vault.Layout
	bundle    bundle.Bundle // the fleet's bootstrap bundle
	serverURL string
	// metricsURL serves the server's /metrics (metrics_listen).
	metricsURL string
	// consoleURL serves the fleet console (console.listen), when set.
	consoleURL string
	caPEM      string
	statePath  string
	logs       *logBuffer // every server and client log line
	stop       func()     // stops the server and waits for it
	// secrets collects every credential the test saw, to prove none was
	// logged; keep adds to it from any goroutine.
	secretsMu sync.Mutex
	secrets   []string

	// vaultCAFile is the private CA of Vault's TLS certificate (with
	// options.tlsVault); empty: Vault speaks plain http.
	vaultCAFile string
}

// options change the environment newEnv builds.
type options struct {
	// persistent runs a Vault that can be stopped and restarted.
	persistent bool
	// tlsVault runs a persistent Vault serving TLS with a certificate
	// from a private CA, as a production Vault does.
	tlsVault bool
	// cluster runs a three-node Raft Vault: the server is given every
	// node's address, the devices a standby's (standbys forward).
	cluster bool
	// fleet adjusts the fleet's server configuration.
	fleet func(*config.Fleet)
	// server adjusts the rest of the server's configuration.
	server func(*config.File)
}

func newEnv(t testing.TB, opts ...options) *env {
	t.Helper()
	var o options
	if len(opts) > 0 {
		o = opts[0]
	}
	var vs *vaulttest.Server
	var pv *vaulttest.Persistent
	var cl *vaulttest.Cluster
	var failover []string
	deviceVault := ""
	caFile := ""
	switch {
	case o.cluster:
		cl = vaulttest.StartCluster(t, 3)
		active, err := cl.Active()
		if err != nil {
			t.Fatal(err)
		}
		vs = cl.Nodes[active].Server
		for i, a := range cl.Addrs() {
			if i != active {
				failover = append(failover, a)
			}
		}
		deviceVault = failover[0]
	case o.tlsVault:
		dir := t.TempDir()
		ca, err := vaulttest.NewPrivateCA(dir, "vault-ca")
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := ca.Issue(dir, "vault", "127.0.0.1", "localhost")
		if err != nil {
			t.Fatal(err)
		}
		caFile = ca.CertFile
		pv = vaulttest.StartPersistentWith(t, vaulttest.PersistentOptions{TLSCertFile: cert, TLSKeyFile: key, TLSCAFile: caFile})
		vs = pv.Server
	case o.persistent:
		pv = vaulttest.StartPersistent(t)
		vs = pv.Server
	default:
		vs = vaulttest.StartDev(t)
	}
	if deviceVault == "" {
		deviceVault = vs.Addr
	}
	e := &env{t: t, vault: vs, pvault: pv, cluster: cl, vaultCAFile: caFile, layout: vault.DefaultLayout(), logs: &logBuffer{}}
	e.root = e.clientFor(vs.RootToken)
	ctx := context.Background()

	admin, err := vault.NewAdmin(vault.Options{Address: vs.Addr, CAFile: caFile, Token: vs.RootToken}, e.layout)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetupFleet(ctx, fleet); err != nil {
		t.Fatalf("setup: %v", err)
	}
	cred, err := admin.MintEnrollmentCredential(ctx, fleet)
	if err != nil {
		t.Fatalf("mint enrollment credential: %v", err)
	}
	serverCreds, err := admin.MintServerCredentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.srvCreds = serverCreds
	dir := t.TempDir()
	credPath := filepath.Join(dir, "vault-credentials.json")
	raw, _ := json.Marshal(serverCreds)
	writeFile(t, credPath, raw)
	tlsFiles, err := devca.Write(filepath.Join(dir, "tls"), []string{"localhost", "127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.caPEM = readFile(t, tlsFiles.CACert)
	e.statePath = filepath.Join(dir, "server.db")

	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.MetricsListen = "127.0.0.1:0"
	cfg.TLS = config.TLSFile{CertFile: tlsFiles.ServerCert, KeyFile: tlsFiles.ServerKey}
	cfg.Vault.Address = vs.Addr
	cfg.Vault.FailoverAddresses = failover
	cfg.Vault.CAFile = caFile
	cfg.Vault.CredentialsFile = credPath
	cfg.StatePath = e.statePath
	// Tests rotate and retire at once unless they test the grace period.
	fl := config.Fleet{Name: fleet, RotationGrace: new(time.Duration(0))}
	if o.fleet != nil {
		o.fleet(&fl)
	}
	cfg.Fleets = []config.Fleet{config.FleetDefaults(fl)}
	if o.server != nil {
		o.server(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e.startServer(cfg)

	e.bundle = bundle.Bundle{
		Version: bundle.Version, Fleet: fleet, ServerURL: e.serverURL, ServerCAPEM: e.caPEM,
		VaultAddr: deviceVault, EnrollMount: e.layout.EnrollMount, DeviceMount: vault.DeviceMount(fleet),
		RoleID: cred.RoleID, SecretID: cred.SecretID, Generation: cred.Generation,
	}
	if caFile != "" {
		e.bundle.VaultCAPEM = readFile(t, caFile)
	}
	if err := e.bundle.Validate(); err != nil {
		t.Fatal(err)
	}
	e.keep(cred.SecretID, serverCreds.SecretID)
	t.Cleanup(func() { e.assertNoSecretsLogged() })
	return e
}

func (e *env) startServer(cfg config.File) {
	e.launchServer(cfg)
	waitFor(e.t, 10*time.Second, "server ready (logged in to Vault)", func() bool {
		status, _ := e.get("/readyz", "")
		return status == 200
	})
}

// launchServer starts the server without waiting for it to be ready.
func (e *env) launchServer(cfg config.File) {
	e.cfg = cfg
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(cfg, app.Options{}, log)
	if err != nil {
		e.t.Fatalf("build server: %v", err)
	}
	e.serverURL = "https://" + a.Addr().String()
	e.cfg.Listen = a.Addr().String() // a restart comes back on the same address
	if m := a.MetricsAddr(); m != nil {
		e.metricsURL = "http://" + m.String()
		e.cfg.MetricsListen = m.String()
	}
	if c := a.ConsoleAddr(); c != nil {
		e.consoleURL = "https://" + c.String()
		e.cfg.Console.Listen = c.String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("server stopped with: %v", err)
			}
		})
	}
	e.t.Cleanup(e.stop)
}

// restartServer starts the server again on the same address and state.
func (e *env) restartServer() {
	e.t.Helper()
	e.stop()
	e.startServer(e.cfg)
}

// inventory stops the server and returns what it stored.
func (e *env) inventory() ([]inventory.Device, []inventory.Alert) {
	e.t.Helper()
	e.stop()
	s, err := boltstore.Open(e.statePath)
	if err != nil {
		e.t.Fatal(err)
	}
	defer s.Close()
	devs, err := s.Devices(context.Background(), "")
	if err != nil {
		e.t.Fatal(err)
	}
	alerts, err := s.Alerts(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return devs, alerts
}

// device is one simulated device running the real client core.
type device struct {
	statusMu sync.Mutex
	status   lifecycle.Status // the last status the machine published

	id        string
	machine   *lifecycle.Machine
	store     *state.Store
	sinkPath  string
	statePath string
}

// newDevice builds a device; mod may change its bundle (for example to
// send it through a proxy).
func (e *env) newDevice(id string, mod func(*bundle.Bundle)) *device {
	e.t.Helper()
	return e.newDeviceWith(id, mod, "", nil)
}

// newDeviceWith builds a device on the state file at statePath (a new one
// when empty); extra may add to the machine's configuration (a TPM).
func (e *env) newDeviceWith(id string, mod func(*bundle.Bundle), statePath string, extra func(*lifecycle.Config, *state.Store)) *device {
	e.t.Helper()
	b := e.bundle
	if mod != nil {
		mod(&b)
	}
	dir := e.t.TempDir()
	if statePath == "" {
		statePath = filepath.Join(dir, "state.db")
	}
	st, err := state.Open(statePath)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	d := &device{id: id, store: st, sinkPath: filepath.Join(dir, "token"), statePath: statePath}
	cfg := lifecycle.Config{
		Bundle: &b, DeviceID: id, Vault: mustClientVault(e.t, b), Store: st, Log: jsonLogger(e.logs),
		Server: serverClient(e.t, b),
		Sinks:  []lifecycle.Sink{sink.File{Path: d.sinkPath}},
		Status: lifecycle.StatusFunc(func(s lifecycle.Status) error {
			d.statusMu.Lock()
			defer d.statusMu.Unlock()
			d.status = s
			return nil
		}),
	}
	if extra != nil {
		extra(&cfg, st)
	}
	d.machine = lifecycle.New(cfg)
	return d
}

// enroll runs the device until it holds an acknowledged token.
func (e *env) enroll(d *device) lifecycle.State {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := d.machine.Run(ctx, true); err != nil {
		e.t.Fatalf("device %s: %v", d.id, err)
	}
	st := d.state(e.t)
	if st.Phase != lifecycle.PhaseAuthenticated || !st.Acknowledged {
		e.t.Fatalf("device %s ended in phase %s (acknowledged=%v), last error %q", d.id, st.Phase, st.Acknowledged, st.LastError)
	}
	e.keep(st.SecretID, st.Token)
	return st
}

// lastStatus is what `enroll-client status` would show.
func (d *device) lastStatus() lifecycle.Status {
	d.statusMu.Lock()
	defer d.statusMu.Unlock()
	return d.status
}

func (d *device) state(t testing.TB) lifecycle.State {
	t.Helper()
	st, err := d.machine.Load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// keep remembers credentials the test saw.
func (e *env) keep(secrets ...string) {
	e.secretsMu.Lock()
	defer e.secretsMu.Unlock()
	e.secrets = append(e.secrets, secrets...)
}

// assertNoSecretsLogged fails when any credential the test saw appears in
// any captured log line.
func (e *env) assertNoSecretsLogged() {
	logs := e.logs.String()
	e.secretsMu.Lock()
	defer e.secretsMu.Unlock()
	if logs == "" {
		e.t.Error("no log lines were captured; the check below would prove nothing")
	}
	for _, s := range e.secrets {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("a credential (%d chars, starting %.4s…) appears in the logs", len(s), s)
		}
	}
}

// deviceSecretIDAccessors lists, with the root token, the live secret IDs
// of a device's role.
func (e *env) deviceSecretIDAccessors(id string) []string {
	e.t.Helper()
	sec, err := e.root.Logical().List("auth/" + vault.DeviceMount(fleet) + "/role/" + id + "/secret-id")
	if err != nil {
		e.t.Fatalf("list secret IDs of %s: %v", id, err)
	}
	if sec == nil || sec.Data == nil {
		return nil
	}
	var out []string
	for _, k := range sec.Data["keys"].([]any) {
		out = append(out, k.(string))
	}
	return out
}

// clientFor returns a Vault client that uses token (and trusts Vault's
// private CA, if any).
func (e *env) clientFor(token string) *api.Client {
	cfg := &api.Config{Address: e.vault.Addr}
	if e.vaultCAFile != "" {
		cfg = api.DefaultConfig()
		cfg.Address = e.vault.Addr
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: e.vaultCAFile}); err != nil {
			e.t.Fatal(err)
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

func mustClientVault(t testing.TB, b bundle.Bundle) *clientvault.Client {
	t.Helper()
	vc, err := clientvault.New(b.VaultAddr, b.VaultCAPEM, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return vc
}

func serverClient(t testing.TB, b bundle.Bundle) *serverapi.Client {
	return serverapi.New(b.ServerURL, mustPool(t, b.ServerCAPEM), 10*time.Second)
}

func jsonLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// metrics returns the server's Prometheus metrics.
func (e *env) metrics() string {
	e.t.Helper()
	resp, err := http.Get(e.metricsURL + "/metrics")
	if err != nil {
		e.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("metrics: %d %v", resp.StatusCode, err)
	}
	return string(raw)
}
