package vaulttest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Persistent is a Vault with (single-node Raft) storage on disk that keeps
// its data across restarts, initialised with one key share, so tests can stop, restart, seal
// and unseal it.
type Persistent struct {
	*Server
	bin, dir, config string
	port             int
	unsealKey        string
	scheme           string
	hc               *http.Client // trusts the listener's CA
}

// PersistentOptions change how StartPersistentWith runs Vault.
type PersistentOptions struct {
	// TLSCertFile and TLSKeyFile, when set, serve Vault's API over TLS
	// with this certificate (for 127.0.0.1), issued by the CA in
	// TLSCAFile; otherwise the listener is plain HTTP.
	TLSCertFile, TLSKeyFile, TLSCAFile string
}

// StartPersistent starts, initialises and unseals a persistent Vault, and
// stops it when the test ends.
func StartPersistent(t testing.TB) *Persistent {
	t.Helper()
	return StartPersistentWith(t, PersistentOptions{})
}

// StartPersistentWith is StartPersistent with options: a production-like
// Vault (not a dev server), over TLS when the options name a certificate.
func StartPersistentWith(t testing.TB, o PersistentOptions) *Persistent {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	port, err := freePortPair()
	if err != nil {
		t.Fatal(err)
	}
	p := &Persistent{bin: bin, dir: dir, port: port, config: filepath.Join(dir, "vault.hcl"), scheme: "http",
		hc: &http.Client{Timeout: 2 * time.Minute}}
	tlsLines := "  tls_disable = true"
	if o.TLSCertFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatalf("%s: no certificate", o.TLSCAFile)
		}
		p.scheme = "https"
		p.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		tlsLines = fmt.Sprintf("  tls_cert_file = %q\n  tls_key_file  = %q", o.TLSCertFile, o.TLSKeyFile)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	hcl := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "node1"
}
listener "tcp" {
  address     = %q
%s
}
disable_mlock = true
api_addr      = "%s://%s"
cluster_addr  = "http://127.0.0.1:%d"
`, filepath.Join(dir, "data"), addr, tlsLines, p.scheme, addr, port+1)
	if err := os.WriteFile(p.config, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.launch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop() })
	var init struct {
		Keys      []string `json:"keys"`
		RootToken string   `json:"root_token"`
	}
	if err := p.call(http.MethodPut, "/v1/sys/init", map[string]any{"secret_shares": 1, "secret_threshold": 1}, &init); err != nil {
		t.Fatalf("init vault: %v", err)
	}
	p.unsealKey, p.RootToken = init.Keys[0], init.RootToken
	if err := p.Unseal(); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *Persistent) launch() error {
	logPath := filepath.Join(p.dir, "vault.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(p.bin, "server", "-config="+p.config, "-log-level=warn")
	cmd.Env = []string{"HOME=" + p.dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	root := ""
	if p.Server != nil {
		root = p.RootToken
	}
	p.Server = &Server{Addr: p.scheme + "://127.0.0.1:" + strconv.Itoa(p.port), RootToken: root, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	// Any answer from the health endpoint means it listens (501: not
	// initialised, 503: sealed).
	return p.poll(2*time.Minute, func(code int) bool { return code != 0 })
}

// Restart starts a stopped server again and unseals it.
func (p *Persistent) Restart() error {
	if err := p.launch(); err != nil {
		return err
	}
	return p.Unseal()
}

// Seal seals the server.
func (p *Persistent) Seal() error {
	return p.call(http.MethodPut, "/v1/sys/seal", nil, nil)
}

// Unseal unseals the server and waits until it is active.
func (p *Persistent) Unseal() error {
	if err := p.call(http.MethodPut, "/v1/sys/unseal", map[string]any{"key": p.unsealKey}, nil); err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	return p.poll(2*time.Minute, func(code int) bool { return code == http.StatusOK })
}

func (p *Persistent) poll(timeout time.Duration, ok func(code int) bool) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second, Transport: p.hc.Transport}
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("vault exited\n%s", p.Log())
		default:
		}
		code := 0
		if resp, err := c.Get(p.Addr + "/v1/sys/health"); err == nil {
			resp.Body.Close()
			code = resp.StatusCode
		}
		if ok(code) {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return errors.New("vault did not reach the expected health in time")
}

func (p *Persistent) call(method, path string, body, out any) error {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequest(method, p.Addr+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if p.RootToken != "" {
		req.Header.Set("X-Vault-Token", p.RootToken)
	}
	// Initialising bootstraps Raft and syncs to disk: slow on a busy machine
	// (p.hc waits up to two minutes).
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b.String())
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
