// Package vaulttest runs a real Vault server for tests: a dev server on a free
// loopback port, started from the vault binary built by `make vault` (or one
// on PATH, or named by VAULT_BIN).
//
// Tests that need Vault skip when no binary is found, except under CI=true,
// where a missing Vault is a failure.
package vaulttest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// RootToken is the dev server's root token.
const RootToken = "root"

// Binary returns the path of a vault binary: $VAULT_BIN, then `vault` on
// PATH, then the one `make vault` builds into the repository's cache.
func Binary() (string, error) {
	if p := os.Getenv("VAULT_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("VAULT_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("vault"); err == nil {
		return p, nil
	}
	cached := filepath.Join(RepoRoot(), ".cache", "bin", "vault")
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	return "", errors.New("no vault binary: run `make vault`, put vault on PATH or set VAULT_BIN")
}

// RepoRoot is the root of this repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Require returns the vault binary or ends the test: a skip locally, a
// failure under CI.
func Require(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("vault is required under CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	return bin
}

// Server is a running Vault.
type Server struct {
	Addr      string // http://127.0.0.1:port
	RootToken string
	cmd       *exec.Cmd
	logPath   string
	done      chan struct{}
}

// StartDev starts an in-memory dev server and stops it when the test ends.
func StartDev(t testing.TB) *Server {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	var lastErr error
	for range 5 {
		port, err := freePortPair()
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		s, err := startDev(bin, dir, port)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("start vault dev server: %v", lastErr)
	return nil
}

func startDev(bin, dir string, port int) (*Server, error) {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, "vault-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{bin, "server", "-dev",
		"-dev-listen-address=" + addr,
		"-dev-root-token-id=" + RootToken,
		"-dev-no-store-token",
		"-log-level=warn"}
	if cpus := os.Getenv("VAULT_CPUS"); cpus != "" {
		// Vault on processors of its own (taskset's list, such as "0"), as
		// when it runs on a machine of its own.
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	// A clean environment: no VAULT_* variable of the caller's may change
	// how the server starts.
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: "http://" + addr, RootToken: RootToken, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\n%s", err, s.Log())
	}
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("vault exited during start")
		default:
		}
		resp, err := client.Get(s.Addr + "/v1/sys/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return errors.New("vault did not become ready in time")
}

// Stop ends the server (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Log returns what the server printed.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(bytes.TrimSpace(b))
}

// freePortPair finds a loopback port p such that p and p+1 are both free:
// the dev server also binds its cluster listener on p+1.
func freePortPair() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		l.Close()
		if err == nil {
			l2.Close()
			return p, nil
		}
	}
	return 0, errors.New("no free pair of ports")
}

// CPUTime is the processor time the Vault process has used so far (user and
// system), or 0 when it cannot be read.
func (s *Server) CPUTime() time.Duration {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return procCPU(s.cmd.Process.Pid)
}

// SelfCPUTime is the processor time this process has used so far, to the
// microsecond (/proc counts whole clock ticks, 10 ms here).
func SelfCPUTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return procCPU(os.Getpid())
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func procCPU(pid int) time.Duration {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return time.Duration(st.CPUTime() * float64(time.Second))
}
