package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/devca"
)

// setup is a configuration directory whose files a case may spoil.
type setup struct {
	dir    string
	cert   string
	key    string
	creds  string
	extra  string // appended to the fleet's settings
	top    string // appended at the top level
	level  string
	listen string
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	dir := t.TempDir()
	files, err := devca.Write(dir, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(creds, []byte(`{"role_id":"r","secret_id":"s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return &setup{dir: dir, cert: files.ServerCert, key: files.ServerKey, creds: creds, level: "info", listen: "127.0.0.1:0"}
}

func (s *setup) write(t *testing.T) string {
	t.Helper()
	cfg := fmt.Sprintf(`listen: %s
state_path: %s
tls:
  cert_file: %s
  key_file: %s
vault:
  address: http://127.0.0.1:1
  credentials_file: %s
log:
  level: %s
  format: json
%s
fleets:
  - name: acme
%s
`, s.listen, filepath.Join(s.dir, "state.db"), s.cert, s.key, s.creds, s.level, s.top, s.extra)
	path := filepath.Join(s.dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckConfigRefusesWhatRunRefuses: for every configuration run
// refuses before it serves, check-config refuses it with the same message.
func TestCheckConfigRefusesWhatRunRefuses(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, s *setup)
		want  string
	}{
		{"credentials readable by others", func(t *testing.T, s *setup) { chmod(t, s.creds, 0o644) }, "readable by others"},
		{"credentials missing", func(t *testing.T, s *setup) { s.creds = filepath.Join(s.dir, "none.json") }, "none.json"},
		{"certificate missing", func(t *testing.T, s *setup) { s.cert = filepath.Join(s.dir, "none.crt") }, "tls.cert_file"},
		{"key does not match the certificate", func(t *testing.T, s *setup) {
			other, err := devca.Write(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			s.key = other.ServerKey
		}, "private key does not match public key"},
		{"certificate expired", func(t *testing.T, s *setup) {
			old, err := devca.Write(t.TempDir(), []string{"127.0.0.1"}, -time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			s.cert, s.key = old.ServerCert, old.ServerKey
		}, "the certificate expired"},
		{"log level unknown", func(_ *testing.T, s *setup) { s.level = "verbose" }, `log level "verbose"`},
		{"audit key readable by others", func(t *testing.T, s *setup) {
			k := filepath.Join(s.dir, "audit.key")
			if err := os.WriteFile(k, bytes.Repeat([]byte("k"), 32), 0o644); err != nil {
				t.Fatal(err)
			}
			s.top = "audit:\n  key_file: " + k
		}, "audit key"},
		{"TPM CA file missing", func(_ *testing.T, s *setup) {
			s.extra = "    tpm:\n      mode: optional\n      ek_ca_file: " + filepath.Join(s.dir, "none.pem")
		}, "ek_ca_file"},
		{"TPM CA file holds no certificate", func(t *testing.T, s *setup) {
			p := filepath.Join(s.dir, "ek.pem")
			if err := os.WriteFile(p, []byte("not a certificate\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			s.extra = "    tpm:\n      mode: optional\n      ek_ca_file: " + p
		}, "ek.pem"},
		{"unknown key", func(_ *testing.T, s *setup) { s.top = "listen_adress: x" }, "listen_adress"},
		{"TLS key readable by every user", func(t *testing.T, s *setup) { chmod(t, s.key, 0o644) }, "lets every user read the server's private key"},
		{"listen address without a port", func(_ *testing.T, s *setup) { s.listen = "notanaddr" }, "listen: want host:port"},
		{"metrics address without a port", func(_ *testing.T, s *setup) { s.top = "metrics_listen: bad" }, "metrics_listen: want host:port"},
		{"metrics on the listen address", func(_ *testing.T, s *setup) {
			s.listen, s.top = "127.0.0.1:18999", "metrics_listen: 127.0.0.1:18999"
		}, "metrics_listen: must differ from listen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t)
			if code, out := runCLI("check-config", "-config", s.write(t)); code != 0 {
				t.Fatalf("the unspoilt configuration: check-config exit %d: %s", code, out)
			}
			tc.spoil(t, s)
			path := s.write(t)
			code, checkOut := runCLI("check-config", "-config", path)
			if code == 0 || !strings.Contains(checkOut, tc.want) {
				t.Fatalf("check-config: exit %d, output %q; want a refusal naming %q", code, checkOut, tc.want)
			}
			msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(checkOut), "enroll-server check-config:"))
			code, runOut := runCLI("run", "-config", path)
			if code == 0 {
				t.Fatalf("run accepted what check-config refused (%s)", msg)
			}
			if got := runMessage(runOut); got != msg {
				t.Fatalf("run and check-config refuse with different messages:\nrun:          %s\ncheck-config: %s", got, msg)
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

func runCLI(args ...string) (int, string) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := Run(ctx, args, &out, &out)
	return code, out.String()
}

// runMessage is the reason run gave: its error log line's err, or the
// line it printed before it had a logger.
func runMessage(out string) string {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			if rec["level"] == "ERROR" {
				if e, ok := rec["err"].(string); ok {
					return e
				}
			}
			continue
		}
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "enroll-server run:"))
}
