package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/devca"
)

// serverBinary is the real enroll-server, built once per test run.
func serverBinary(t *testing.T) string {
	t.Helper()
	return filepath.Join(buildBinaries(t), "enroll-server")
}

// SIGHUP reloads the server: a certificate renewed on disk is what the next
// handshake sees, connections already open keep working, no request is
// dropped meanwhile; the log says what was applied and what waits for a
// restart; a broken configuration is refused whole and the server keeps
// what it had.
func TestHangupReloadsCertificateAndLevel(t *testing.T) {
	e := newEnv(t)
	e.stop() // the binary below serves instead
	dir := t.TempDir()
	first, err := devca.Write(filepath.Join(dir, "first"), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	install := func(f devca.Files) {
		t.Helper()
		for from, to := range map[string]string{f.ServerCert: certPath, f.ServerKey: keyPath} {
			data, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			tmp := to + ".new"
			if err := os.WriteFile(tmp, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, to); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(first)
	cfgPath := filepath.Join(dir, "config.yaml")
	writeConfig := func(listen, level, window string) {
		t.Helper()
		cfg := fmt.Sprintf("listen: %s\ntls:\n  cert_file: %s\n  key_file: %s\nvault:\n  address: %s\n  credentials_file: %s\nstate_path: %s\nlog:\n  level: %s\n  format: json\nfleets:\n  - name: %s\n    enrollment: %s\n",
			listen, certPath, keyPath, e.vault.Addr, e.cfg.Vault.CredentialsFile, filepath.Join(dir, "state.db"), level, fleet, window)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("127.0.0.1:0", "info", "open")

	logs := &logBuffer{}
	cmd := exec.Command(serverBinary(t), "run", "-config", cfgPath)
	cmd.Stderr = logs
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
	var addr string
	waitFor(t, 20*time.Second, "the server binary serving", func() bool {
		for _, l := range logs.lines("serving") {
			addr, _ = l["addr"].(string)
		}
		return addr != ""
	})
	url := "https://" + addr + "/healthz"
	client := func(caFile string, keepAlive bool) *http.Client {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(readFile(t, caFile)))
		// A kept connection is one connection: never a second one dialled
		// while it is busy or on its way back to the pool.
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: !keepAlive, MaxConnsPerHost: 1}}
	}
	waitFor(t, 20*time.Second, "ready", func() bool {
		resp, err := client(first.CACert, false).Get("https://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	// Load through the reload: new connections trusting either CA, and
	// one connection kept open from before.
	second, err := devca.Write(filepath.Join(dir, "second"), []string{"127.0.0.1"}, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	both := x509.NewCertPool()
	both.AppendCertsFromPEM([]byte(readFile(t, first.CACert)))
	both.AppendCertsFromPEM([]byte(readFile(t, second.CACert)))
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: both}, DisableKeepAlives: true}}
	kept := client(first.CACert, true)
	get := func(c *http.Client) error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		// Read to the end: a body closed early takes its connection down.
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(kept); err != nil {
		t.Fatal(err)
	}
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for name, c := range map[string]*http.Client{"a new connection trusting either CA": fresh, "the connection kept from before": kept} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if err := get(c); err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, name+": "+err.Error())
				}
			}
		}()
	}

	install(second)
	writeConfig("127.0.0.1:0", "debug", "closed")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the reload logged", func() bool { return len(logs.lines("configuration reloaded")) == 1 })
	time.Sleep(300 * time.Millisecond) // traffic after the reload too
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed across the reload; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	}
	rec := logs.lines("configuration reloaded")[0]
	if applied, _ := rec["applied"].(string); !strings.Contains(applied, "tls certificate") || !strings.Contains(applied, "log.level debug") ||
		!strings.Contains(applied, "fleets["+fleet+"]") {
		t.Fatalf("reload applied %q", applied)
	}
	if rec["needs_restart"] != "nothing" {
		t.Fatalf("reload of live settings says a restart is needed: %v", rec["needs_restart"])
	}
	// A new handshake sees the new certificate; the old CA alone no
	// longer verifies it.
	if err := get(client(second.CACert, false)); err != nil {
		t.Fatalf("handshake trusting the new CA after the reload: %v", err)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: both})
	if err != nil {
		t.Fatal(err)
	}
	served := conn.ConnectionState().PeerCertificates[0].Raw
	conn.Close()
	block, _ := pem.Decode([]byte(readFile(t, second.ServerCert)))
	if !bytes.Equal(served, block.Bytes) {
		t.Fatal("the server presents another certificate than the one reloaded")
	}
	if err := get(client(first.CACert, false)); err == nil {
		t.Fatal("a new handshake still got the old certificate")
	}

	// A key that does not match is refused whole: the server keeps the
	// certificate it has. A new listen address waits for a restart.
	if err := os.WriteFile(keyPath, []byte(readFile(t, first.ServerKey)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the refusal logged", func() bool {
		return len(logs.lines("configuration reload refused; still running with the previous configuration")) == 1
	})
	if err := get(client(second.CACert, false)); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
	install(second)
	writeConfig("127.0.0.1:1", "debug", "closed")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the second reload logged", func() bool { return len(logs.lines("configuration reloaded")) == 2 })
	if r := logs.lines("configuration reloaded")[1]; r["needs_restart"] != "listen" || r["applied"] != "nothing" {
		t.Fatalf("a new listen address: %v", r)
	}
}
