//go:build !windows

package doctor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/doctor"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// device is a device's files, pointed at a server and a Vault. The two
// are httptest fakes here: they exist to fail on demand (another
// certificate, a Date an hour off, a non-Vault answer); a passing doctor
// against the real server and Vault is in test/e2e.
type device struct {
	dir, config, bundlePath, statePath, sinkPath string
	bundle                                       bundle.Bundle
	serverDate                                   *time.Duration // added to the server's Date header
	logins, revoked                              atomic.Int32   // bootstrap logins at the fake Vault, tokens revoked
}

func certPEM(s *httptest.Server) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}))
}

func newDevice(t *testing.T) *device {
	t.Helper()
	d := &device{dir: t.TempDir(), serverDate: new(time.Duration)}
	server := quietTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", time.Now().Add(*d.serverDate).UTC().Format(http.TimeFormat))
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, `{"status":"ok"}`)
	}))
	vault := quietTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/sys/health":
			_ = json.NewEncoder(w).Encode(map[string]any{"initialized": true, "sealed": false, "version": "1.99.0"})
		case "/v1/auth/edge-enroll/login":
			var creds struct {
				RoleID   string `json:"role_id"`
				SecretID string `json:"secret_id"`
			}
			_ = json.NewDecoder(r.Body).Decode(&creds)
			if creds.RoleID != "role-1" || creds.SecretID != "secret-1" {
				w.WriteHeader(http.StatusBadRequest)
				_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{"invalid role or secret ID"}})
				return
			}
			d.logins.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{"client_token": "hvs.bootstrap", "lease_duration": 60}})
		case "/v1/auth/token/revoke-self":
			if r.Header.Get("X-Vault-Token") == "hvs.bootstrap" {
				d.revoked.Add(1)
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	d.bundle = bundle.Bundle{Version: bundle.Version, Fleet: "acme", ServerURL: server.URL, ServerCAPEM: certPEM(server),
		VaultAddr: vault.URL, VaultCAPEM: certPEM(vault), EnrollMount: "edge-enroll", DeviceMount: "edge-devices-acme",
		RoleID: "role-1", SecretID: "secret-1", Generation: 1}
	d.bundlePath = filepath.Join(d.dir, "bundle.json")
	d.statePath = filepath.Join(d.dir, "lib", "state.db")
	d.sinkPath = filepath.Join(d.dir, "run", "token")
	d.config = filepath.Join(d.dir, "config.yaml")
	d.writeBundle(t)
	d.writeConfig(t, "tpm:\n  mode: off\n")
	return d
}

func (d *device) writeBundle(t *testing.T) {
	t.Helper()
	raw, err := d.bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.bundlePath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *device) writeConfig(t *testing.T, extra string) {
	t.Helper()
	cfg := fmt.Sprintf("device_id: sensor-1\nbundle_path: %s\nstate_path: %s\nsinks:\n  - path: %s\n%s", d.bundlePath, d.statePath, d.sinkPath, extra)
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// enrolled lays out what a daemon leaves: its state and a token.
func (d *device) enrolled(t *testing.T) {
	t.Helper()
	st, err := state.Open(d.statePath)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := os.MkdirAll(filepath.Dir(d.sinkPath), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.sinkPath, []byte("hvs.not-a-real-token"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, d *device, opts doctor.Options) (int, []string) {
	t.Helper()
	opts.ConfigPath = d.config
	var out bytes.Buffer
	code := doctor.Run(context.Background(), opts, &out, false)
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "ok    ") && !strings.HasPrefix(l, "warn  ") && !strings.HasPrefix(l, "fail  ") {
			t.Errorf("line not in the form `ok|warn|fail  check: detail`: %q", l)
		}
		if strings.Contains(l, "secret-1") || strings.Contains(l, "hvs.") {
			t.Errorf("a line shows a secret: %q", l)
		}
	}
	return code, lines
}

func find(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestHealthyDevice(t *testing.T) {
	d := newDevice(t)
	d.enrolled(t)
	code, lines := run(t, d, doctor.Options{})
	if code != doctor.ExitOK {
		t.Fatalf("exit %d:\n%s", code, strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "ok") {
			t.Errorf("not ok: %s", l)
		}
	}
	for _, check := range []string{"config", "bundle", "state directory", "state", "sink 0 directory", "sink 0", "tpm", "server TLS", "clock", "vault TLS", "vault", "bootstrap"} {
		if find(lines, "ok    "+check+":") == "" {
			t.Errorf("no ok line for %s:\n%s", check, strings.Join(lines, "\n"))
		}
	}
	if d.logins.Load() != 1 || d.revoked.Load() != 1 {
		t.Errorf("the doctor logged in %d times and revoked %d tokens, want one of each", d.logins.Load(), d.revoked.Load())
	}
}

// A bundle whose bootstrap credential Vault refuses (a retired generation,
// a mistyped secret ID) fails a device that never enrolled and has no TPM
// (it can never enroll), and warns for one that has state (it no longer
// needs the credential), saying what it means either way.
func TestRefusedBootstrapCredential(t *testing.T) {
	d := newDevice(t)
	d.bundle.SecretID = "secret-2"
	d.writeBundle(t)
	code, lines := run(t, d, doctor.Options{})
	l := find(lines, "fail  bootstrap:")
	if code != doctor.ExitFail || !strings.Contains(l, "refused the bundle's bootstrap credential (fleet acme, generation 1") ||
		!strings.Contains(l, "install the fleet's current bundle") {
		t.Fatalf("never enrolled: exit %d, bootstrap line %q:\n%s", code, l, strings.Join(lines, "\n"))
	}
	d.enrolled(t)
	code, lines = run(t, d, doctor.Options{})
	if l := find(lines, "warn  bootstrap:"); code != doctor.ExitOK || l == "" {
		t.Fatalf("enrolled: exit %d, bootstrap line %q:\n%s", code, l, strings.Join(lines, "\n"))
	}
}

// Each broken part gives its own failing line, naming what to fix, and a
// non-zero exit.
func TestEachFailureIsNamed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		break_ func(t *testing.T, d *device, o *doctor.Options)
		line   string   // the failing line's prefix
		want   []string // in that line
	}{
		{"server CA is another CA's", func(t *testing.T, d *device, _ *doctor.Options) {
			d.bundle.ServerCAPEM = string(tpmsim.NewCA(t, "Other").BundlePEM())
			d.writeBundle(t)
		}, "fail  server TLS:", []string{"certificate signed by unknown authority", "server_ca_pem in " + "BUNDLE"}},
		{"vault CA is another CA's", func(t *testing.T, d *device, _ *doctor.Options) {
			d.bundle.VaultCAPEM = string(tpmsim.NewCA(t, "Other").BundlePEM())
			d.writeBundle(t)
		}, "fail  vault TLS:", []string{"unknown authority", "vault_ca_pem in BUNDLE"}},
		{"nothing at the Vault address", func(t *testing.T, d *device, _ *doctor.Options) {
			d.bundle.VaultAddr = "https://127.0.0.1:1"
			d.writeBundle(t)
		}, "fail  vault TLS:", []string{"connection refused", "check vault_addr in BUNDLE"}},
		{"the Vault address is the enrollment server's", func(t *testing.T, d *device, _ *doctor.Options) {
			d.bundle.VaultAddr, d.bundle.VaultCAPEM = d.bundle.ServerURL, d.bundle.ServerCAPEM
			d.writeBundle(t)
		}, "fail  vault:", []string{"not as Vault does", "fix vault_addr in BUNDLE"}},
		{"the server's clock is an hour ahead", func(t *testing.T, d *device, _ *doctor.Options) {
			*d.serverDate = time.Hour
		}, "fail  clock:", []string{"1h0m0s behind the server's", "NTP"}},
		{"the device's clock is an hour ahead", func(t *testing.T, d *device, o *doctor.Options) {
			o.Now = func() time.Time { return time.Now().Add(time.Hour) }
		}, "fail  clock:", []string{"1h0m0s ahead of the server's"}},
		{"bundle readable by every user", func(t *testing.T, d *device, _ *doctor.Options) {
			chmod(t, d.bundlePath, 0o644)
		}, "fail  bundle:", []string{"lets other users read the fleet's bootstrap secret", "chmod 600"}},
		{"bundle missing", func(t *testing.T, d *device, _ *doctor.Options) {
			_ = os.Remove(d.bundlePath)
		}, "fail  bundle:", []string{"no such file"}},
		{"state directory shared", func(t *testing.T, d *device, _ *doctor.Options) {
			chmod(t, filepath.Dir(d.statePath), 0o777)
		}, "fail  state directory:", []string{"is shared (mode drwxrwxrwx): the service refuses it"}},
		{"state file unreadable", func(t *testing.T, d *device, _ *doctor.Options) {
			if err := os.Remove(d.statePath); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(d.statePath, 0o700); err != nil { // not a file: no one reads it
				t.Fatal(err)
			}
		}, "fail  state:", []string{"state.db"}},
		{"state file readable by others", func(t *testing.T, d *device, _ *doctor.Options) {
			chmod(t, d.statePath, 0o644)
		}, "fail  state:", []string{"chmod 600 " + "STATE"}},
		{"token readable by every user", func(t *testing.T, d *device, _ *doctor.Options) {
			chmod(t, d.sinkPath, 0o644)
		}, "fail  sink 0:", []string{"every user of the device can read the token", "chmod 600"}},
		{"sink in a shared directory", func(t *testing.T, d *device, _ *doctor.Options) {
			chmod(t, filepath.Dir(d.sinkPath), 0o777)
		}, "fail  sink 0 directory:", []string{"shared", "not one like /tmp"}},
		{"configuration run refuses", func(t *testing.T, d *device, _ *doctor.Options) {
			d.writeConfig(t, "tpm:\n  mode: off\nsinks_typo: []\n")
		}, "fail  config:", []string{"sinks_typo", "`enroll-client run` refuses it"}},
		{"token mode world-readable in the configuration", func(t *testing.T, d *device, _ *doctor.Options) {
			d.writeConfig(t, "tpm:\n  mode: off\n")
			raw, _ := os.ReadFile(d.config)
			raw = bytes.Replace(raw, []byte("token\n"), []byte("token\n    mode: \"0644\"\n"), 1)
			_ = os.WriteFile(d.config, raw, 0o600)
		}, "fail  config:", []string{"sinks[0].mode"}},
		{"TPM required and absent", func(t *testing.T, d *device, _ *doctor.Options) {
			d.writeConfig(t, "tpm:\n  mode: required\n  path: "+filepath.Join(d.dir, "no-tpm")+"\n")
		}, "fail  tpm:", []string{"tpm.mode required", "no such file", "check tpm.path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t)
			d.enrolled(t)
			var opts doctor.Options
			tc.break_(t, d, &opts)
			code, lines := run(t, d, opts)
			all := strings.Join(lines, "\n")
			t.Logf("doctor said:\n%s", all)
			if code != doctor.ExitFail {
				t.Errorf("exit %d, want %d", code, doctor.ExitFail)
			}
			l := find(lines, tc.line)
			if l == "" {
				t.Fatalf("no line %q:\n%s", tc.line, all)
			}
			for _, w := range tc.want {
				w = strings.NewReplacer("BUNDLE", d.bundlePath, "STATE", d.statePath).Replace(w)
				if !strings.Contains(l, w) {
					t.Errorf("line lacks %q:\n%s", w, l)
				}
			}
			if n := strings.Count(all, "fail  "); n != 1 {
				t.Errorf("%d failing lines, want only the broken part's:\n%s", n, all)
			}
		})
	}
}

// A directory looser than the service's own is tightened by the daemon
// itself: a warning, not a failure.
func TestLooseStateDirectoryWarns(t *testing.T) {
	d := newDevice(t)
	d.enrolled(t)
	chmod(t, filepath.Dir(d.statePath), 0o755)
	code, lines := run(t, d, doctor.Options{})
	if l := find(lines, "warn  state directory:"); code != doctor.ExitOK || !strings.Contains(l, "mode -rwxr-xr-x") || !strings.Contains(l, "chmod 700") {
		t.Fatalf("exit %d:\n%s", code, strings.Join(lines, "\n"))
	}
}

func TestClockSlightlyOffWarns(t *testing.T) {
	d := newDevice(t)
	*d.serverDate = -2 * time.Minute
	code, lines := run(t, d, doctor.Options{})
	if l := find(lines, "warn  clock:"); code != doctor.ExitOK || !strings.Contains(l, "ahead of the server's") {
		t.Fatalf("exit %d:\n%s", code, strings.Join(lines, "\n"))
	}
}

// The TPM check with the in-process simulator (a process-wide singleton:
// never in parallel).
func TestTPM(t *testing.T) {
	for _, tc := range []struct {
		name     string
		withCert bool
		want     string
	}{
		{"EK certificate present", true, "ok    tpm: SIM: EK rsa2048 with its certificate"},
		{"no EK certificate", false, "warn  tpm: SIM: EK rsa2048, no EK certificate in the TPM — a fleet with tpm.mode optional or required must allow-list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := tpmsim.Open(t)
			if tc.withCert {
				tpmsim.NewCA(t, "Maker").ProvisionEKCert(t, sim, tpmsim.RSAEK)
			}
			d := newDevice(t)
			d.writeConfig(t, "tpm:\n  mode: required\n  path: SIM\n")
			opened := false
			code, lines := run(t, d, doctor.Options{OpenTPM: func(path, ek string) (doctor.TPM, error) {
				if path != "SIM" {
					return nil, errors.New("wrong path")
				}
				opened = true
				return tpm.New(tpmsim.NopCloser{TPM: sim}, nil, ek)
			}})
			if !opened || code != doctor.ExitOK || find(lines, tc.want) == "" {
				t.Fatalf("exit %d, want a line %q:\n%s", code, tc.want, strings.Join(lines, "\n"))
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// quietTLSServer is httptest's TLS server without its log of the
// handshakes the tests make fail on purpose.
func quietTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}
