package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	clientconfig "github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

// The README's "Setting up a fleet", performed as an operator would: its
// shell commands run as written (through bash, with the real binaries on
// PATH), its configuration files are written as shown, against a
// production-like Vault (Raft storage, initialised and unsealed, not a dev
// server) whose TLS certificate comes from a private CA. It ends with an
// enrolled device whose sink holds a working Vault token.
//
// Only the README's example names are replaced: Vault's and the server's
// addresses, the admin token, and absolute paths (put under a scratch
// root). A README that stops naming one of them, or drops one of the
// steps, fails this test: the section cannot drift from what works.
func TestReadmeSettingUpAFleet(t *testing.T) {
	section := readmeSection(t, "Setting up a fleet")
	blocks := fencedBlocks(section)
	// The steps the section must keep: an operator who follows it ends
	// with an enrolled device.
	joined := ""
	for _, b := range blocks {
		joined += b.text + "\n"
	}
	for _, step := range []string{"enrollctl setup", "enrollctl server-credentials", "enrollctl dev-ca",
		"enroll-server check-config", "enroll-server run", "enrollctl bundle", "enroll-client run"} {
		if !strings.Contains(joined, step) {
			t.Fatalf("the README's %q section no longer runs %q", "Setting up a fleet", step)
		}
	}

	dir := t.TempDir()
	admin := filepath.Join(dir, "admin") // the operator's working directory
	root := filepath.Join(dir, "root")   // stands for / on the hosts
	vaultDir := filepath.Join(dir, "vault")
	for _, d := range []string{admin, root, vaultDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The operator's private CA: its certificate is the README's
	// vault-ca.crt in the operator's directory.
	ca, err := vaulttest.NewPrivateCA(admin, "vault-ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(vaultDir, "vault", "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	v := vaulttest.StartPersistentWith(t, vaulttest.PersistentOptions{TLSCertFile: cert, TLSKeyFile: key, TLSCAFile: ca.CertFile})
	bin := buildBinaries(t)
	port := freePort(t)

	replace := []struct{ readme, here string }{
		{"https://vault.example.com:8200", v.Addr},
		{"https://enroll.example.com:8443", "https://localhost:" + strconv.Itoa(port)},
		{"enroll.example.com", "localhost"},
		{`":8443"`, `"127.0.0.1:` + strconv.Itoa(port) + `"`},
		{"<an admin token>", v.RootToken},
	}
	for _, r := range replace {
		if !strings.Contains(joined, r.readme) {
			t.Fatalf("the README no longer says %q; update this test to what it says now", r.readme)
		}
	}
	absPath := regexp.MustCompile(`(^|[\s:=])(/etc/|/var/lib/|/run/)`)
	subst := func(s string) string {
		for _, r := range replace {
			s = strings.ReplaceAll(s, r.readme, r.here)
		}
		return absPath.ReplaceAllString(s, "${1}"+root+"${2}")
	}

	sh := &operatorShell{t: t, dir: admin, env: map[string]string{
		"PATH": bin + string(os.PathListSeparator) + os.Getenv("PATH"), "HOME": admin,
	}}
	var clientConfig string
	ran := map[string]bool{}
	for _, b := range blocks {
		switch b.lang {
		case "yaml":
			first, _, _ := strings.Cut(b.text, "\n")
			path, ok := strings.CutPrefix(first, "# /")
			if !ok {
				t.Fatalf("a YAML block in the section does not start with the file it is: %q", first)
			}
			path = subst("/" + path)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, []byte(subst(b.text)))
			if strings.Contains(path, "enroll-client") {
				clientConfig = path
			}
		case "sh":
			for _, line := range shellLines(b.text) {
				line = subst(line)
				switch {
				case strings.HasPrefix(line, "export "):
					sh.export(line)
				case strings.HasPrefix(line, "enroll-server run"):
					sh.background(line, false, `"msg":"serving"`)
					ran["server"] = true
				case strings.HasPrefix(line, "enroll-client run"):
					sh.background(line, true, "")
					ran["client"] = true
				default:
					// The device's commands run without the admin's Vault
					// session: a device has none.
					sh.run(line, strings.HasPrefix(line, "enroll-client") || strings.HasPrefix(line, "install "))
				}
			}
		}
	}
	if !ran["server"] || !ran["client"] || clientConfig == "" {
		t.Fatalf("the section started no server or no device (%v, client config %q)", ran, clientConfig)
	}

	cfg, err := clientconfig.Load(clientConfig, func(string) string { return "" }, os.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	vc := trustingClient(t, v.Addr, ca.CertFile)
	var lastErr error
	deadline := time.Now().Add(90 * time.Second)
	for {
		tok := readToken(cfg.Sinks[0].Path)
		if tok != "" {
			vc.SetToken(tok)
			sec, err := vc.Auth().Token().LookupSelf()
			if err == nil {
				if role, _ := sec.Data["meta"].(map[string]any)["role_name"].(string); role != cfg.DeviceID {
					t.Fatalf("the device's token belongs to role %q, want %q", role, cfg.DeviceID)
				}
				break
			}
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("no working token at %s after 90s (last: %v)\n%s", cfg.Sinks[0].Path, lastErr, sh.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	out := sh.run("enroll-client status -config "+clientConfig, true)
	if !strings.Contains(out, "authenticated") {
		t.Fatalf("enroll-client status:\n%s", out)
	}
	t.Logf("the operator's session:\n%s", sh.logs())
}

// readmeSection returns the text of the README's section named title.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(vaulttest.RepoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("README.md has no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

type fencedBlock struct{ lang, text string }

// fencedBlocks returns the fenced code blocks of markdown, in order.
func fencedBlocks(markdown string) []fencedBlock {
	var out []fencedBlock
	var cur *fencedBlock
	for _, l := range strings.Split(markdown, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(l, "```"):
			cur = &fencedBlock{lang: strings.TrimPrefix(l, "```")}
		case cur != nil && l == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	return out
}

// shellLines joins continued lines and drops blank and comment lines.
func shellLines(block string) []string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(block, "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// operatorShell runs the README's commands with bash, carrying exported
// variables from one command to the next as a shell would.
type operatorShell struct {
	t   *testing.T
	dir string
	env map[string]string
	mu  sync.Mutex
	log bytes.Buffer // everything every command printed
}

// export runs an export line in bash and keeps the environment it leaves.
func (s *operatorShell) export(line string) {
	s.t.Helper()
	out, err := s.command(line+"\nenv -0", false).Output()
	if err != nil {
		s.t.Fatalf("$ %s: %v", line, err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		if !slices.Contains([]string{"PWD", "OLDPWD", "SHLVL", "_"}, k) {
			env[k] = v
		}
	}
	s.env = env
}

func (s *operatorShell) command(line string, device bool) *exec.Cmd {
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", line)
	cmd.Dir = s.dir
	for k, v := range s.env {
		if device && strings.HasPrefix(k, "VAULT_") {
			continue
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	slices.Sort(cmd.Env)
	return cmd
}

// run runs line to its end and returns what it printed.
func (s *operatorShell) run(line string, device bool) string {
	s.t.Helper()
	cmd := s.command(line, device)
	out, err := cmd.CombinedOutput()
	s.record("$ "+line, out)
	if err != nil {
		s.t.Fatalf("$ %s\n%s\n%v", line, out, err)
	}
	return string(out)
}

// background starts a daemon's line, stops it when the test ends, and
// waits until its output holds ready (when not empty).
func (s *operatorShell) background(line string, device bool, ready string) {
	s.t.Helper()
	s.record("$ "+line+" &", nil)
	cmd := s.command("exec "+line, device)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if s.t.Failed() {
			s.t.Logf("$ %s\n%s", line, out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for ready != "" && !strings.Contains(out.String(), ready) {
		select {
		case <-done:
			s.t.Fatalf("$ %s: exited\n%s", line, out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("$ %s: not ready after 30s\n%s", line, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *operatorShell) record(what string, out []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(&s.log, "%s\n%s\n", what, out)
}

func (s *operatorShell) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// buildBinaries builds enrollctl, enroll-server and enroll-client once
// per test run, and returns their directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "enroll-e2e-cmds")
		if binErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(os.PathSeparator),
			"./cmd/enrollctl", "./cmd/enroll-server", "./cmd/enroll-client")
		cmd.Dir = vaulttest.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("build the binaries: %v", binErr)
	}
	return binDir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// trustingClient is a Vault client that trusts only the CA in caFile.
func trustingClient(t *testing.T, addr, caFile string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = addr
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: caFile}); err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
