// Package swtpm runs a software TPM 2.0 (swtpm, from Debian's swtpm and
// swtpm-tools packages) for tests: manufactured by swtpm_setup with EK
// certificates from a local CA of its own, and served on a unix socket
// that enroll-client and tpm2-tools both speak to.
package swtpm

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TPM is a running swtpm.
type TPM struct {
	// Socket is the TPM command socket; Socket+".ctrl" is its control
	// channel, where tpm2-tools' swtpm TCTI expects it.
	Socket string
	// TCTI names the TPM to tpm2-tools.
	TCTI string
	// CABundle holds the local CA's root and issuing certificates, which
	// the EK certificates chain to; RootPEM the root alone, IssuerDER the
	// issuing CA.
	CABundle  []byte
	RootPEM   []byte
	IssuerDER []byte
	// StateDir is the TPM's persistent state.
	StateDir string
}

// Require returns the path of each tool, skipping the test where they are
// missing outside CI, and failing it in CI (which installs them).
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (.ci/install-deps installs it): %v", tool, err)
			}
			t.Skipf("%s is not installed; run .ci/install-deps", tool)
		}
	}
}

// Start manufactures a new TPM (new seeds, new EKs, new certificates from
// a new local CA) and serves it until the test ends. swtpm_setup certifies
// an RSA 2048 EK (low range) and an ECC P-384 EK (high range).
func Start(t testing.TB) *TPM { return StartWith(t, Options{}) }

// Options change how the TPM is manufactured.
type Options struct {
	// RSAKeySize 3072 makes the RSA EK an RSA 3072 one, certified in the
	// high range (H-6); default 2048.
	RSAKeySize int
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *TPM {
	t.Helper()
	Require(t, "swtpm", "swtpm_setup", "swtpm_localca")
	// Unix socket paths are short: not under t.TempDir().
	dir, err := os.MkdirTemp("", "swtpm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ca, state := filepath.Join(dir, "ca"), filepath.Join(dir, "state")
	for _, d := range []string{ca, state} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	localca := write("localca.conf", fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/issuercert.pem\ncertserial = %[1]s/certserial\n", ca))
	setup := write("setup.conf", fmt.Sprintf("create_certs_tool = swtpm_localca\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n", localca))
	args := []string{"--tpm2", "--tpm-state", state, "--createek", "--create-ek-cert",
		"--config", setup, "--overwrite", "--logfile", filepath.Join(dir, "setup.log")}
	if o.RSAKeySize != 0 {
		args = append(args, "--rsa-keysize", fmt.Sprint(o.RSAKeySize))
	}
	run(t, "swtpm_setup", args...)

	tpm := &TPM{Socket: filepath.Join(dir, "tpm.sock"), StateDir: state}
	tpm.TCTI = "swtpm:path=" + tpm.Socket
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--server", "type=unixio,path="+tpm.Socket, "--ctrl", "type=unixio,path="+tpm.Socket+".ctrl",
		"--flags", "not-need-init,startup-clear", "--log", "file="+filepath.Join(dir, "swtpm.log"))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(tpm.Socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("swtpm did not open its socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range []string{"swtpm-localca-rootca-cert.pem", "issuercert.pem"} {
		data, err := os.ReadFile(filepath.Join(ca, name))
		if err != nil {
			t.Fatalf("swtpm local CA: %v", err)
		}
		tpm.CABundle = append(tpm.CABundle, data...)
		if name == "issuercert.pem" {
			b, _ := pem.Decode(data)
			if b == nil {
				t.Fatal("swtpm local CA: issuercert.pem holds no PEM block")
			}
			tpm.IssuerDER = b.Bytes
		} else {
			tpm.RootPEM = data
		}
	}
	return tpm
}

// Run runs a tpm2-tools command against the TPM in dir and returns its
// standard output.
func (p *TPM) Run(t testing.TB, dir string, tool string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+p.TCTI)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, stderr.String())
	}
	return out
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

// Try runs a tpm2-tools command and returns its error instead of failing.
func (p *TPM) Try(dir string, tool string, args ...string) ([]byte, error) {
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+p.TCTI)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", tool, err, out)
	}
	return out, nil
}
