// Package doctor checks a device's enroll-client setup online, one line
// per check: `ok|warn|fail  <check>: <detail> — <fix>`. It validates the
// configuration and the bundle with the very functions `run` uses (so it
// can never pass what run refuses), proves the bundle's CAs by real TLS
// handshakes with the enrollment server and Vault, compares the device's
// clock with the server's, and looks at the state and sink directories and
// the TPM. It never prints a secret.
package doctor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/tpm"
	"github.com/edge-enroll/enroll/pkg/bundle"
	report "github.com/edge-enroll/enroll/pkg/doctor"
)

// Result is one check's outcome (see package pkg/doctor).
type Result = report.Result

// The outcomes; any Fail makes the doctor exit non-zero.
const (
	OK   = report.OK
	Warn = report.Warn
	Fail = report.Fail
)

func res(status report.Status, check, detail, fix string) Result {
	return Result{Status: status, Check: check, Detail: detail, Fix: fix}
}

// TPM is what the doctor asks of the device's TPM.
type TPM interface {
	EKKind() string
	HasEKCert() bool
	Close() error
}

// Options are the doctor's inputs; zero values mean the real thing.
type Options struct {
	ConfigPath string
	Getenv     func(string) string
	Hostname   func() (string, error)
	// Now is the device's clock, compared with the server's.
	Now func() time.Time
	// OpenTPM opens the TPM the configuration names (tests pass the
	// simulator).
	OpenTPM func(path, ekKind string) (TPM, error)
	// Timeout bounds each network check.
	Timeout time.Duration
}

func (o *Options) defaults() {
	if o.ConfigPath == "" {
		o.ConfigPath = config.DefaultPath
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Hostname == nil {
		o.Hostname = os.Hostname
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.OpenTPM == nil {
		o.OpenTPM = func(path, ek string) (TPM, error) { return tpm.Open(path, nil, ek) }
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
}

// Exit codes of `enroll-client doctor`.
const (
	ExitOK   = 0 // every check ok or warn
	ExitFail = 1 // a check failed
)

// Run runs every check, writes one line per check to w (or, with
// asJSON, one JSON document), and returns the exit code. Checks that need
// the configuration or the bundle are skipped when those fail (their own
// line says why).
func Run(ctx context.Context, opts Options, w io.Writer, asJSON bool) int {
	r := Check(ctx, opts)
	if err := r.Write(w, asJSON); err != nil {
		return ExitFail
	}
	return r.ExitCode()
}

// Check runs every check and returns the report.
func Check(ctx context.Context, opts Options) *report.Report {
	opts.defaults()
	r := &report.Report{}
	cfg, res := checkConfig(opts)
	r.Add(res)
	if res.Status == Fail {
		return r
	}
	b, res := checkBundle(cfg)
	r.Add(res)
	r.Add(checkState(cfg)...)
	r.Add(checkSinks(cfg)...)
	r.Add(checkTPM(cfg, opts))
	if b != nil {
		r.Add(checkNetwork(ctx, cfg, b, opts)...)
	}
	return r
}

func checkConfig(opts Options) (config.File, Result) {
	cfg, err := config.Load(opts.ConfigPath, opts.Getenv, opts.Hostname)
	if err != nil {
		return cfg, res(Fail, "config", err.Error(), "edit "+opts.ConfigPath+" (configs/enroll-client.yaml documents every key); `enroll-client run` refuses it as it is")
	}
	return cfg, res(OK, "config", fmt.Sprintf("%s valid: device %s, state %s, %d sink(s)", opts.ConfigPath, cfg.DeviceID, cfg.StatePath, len(cfg.Sinks)), "")
}

func checkBundle(cfg config.File) (*bundle.Bundle, Result) {
	const name = "bundle"
	b, err := config.ReadBundle(cfg.BundlePath)
	if err != nil {
		return nil, res(Fail, name, err.Error(), "install the fleet's bundle (enrollctl bundle) at bundle_path, chmod 600, owned by the service's user")
	}
	fi, err := os.Stat(cfg.BundlePath)
	if err == nil && !isWindows && fi.Mode().Perm()&0o022 != 0 {
		return b, res(Fail, name, fmt.Sprintf("%s has mode %v: other users can change where the device enrolls and whom it trusts", cfg.BundlePath, fi.Mode().Perm()),
			"chmod 600 "+cfg.BundlePath)
	}
	return b, res(OK, name, fmt.Sprintf("%s: fleet %s, generation %d, server %s, vault %s", cfg.BundlePath, b.Fleet, b.Generation, b.ServerURL, b.VaultAddr), "")
}

// get fetches url with client, keeping at most 64 KiB of the answer.
func get(ctx context.Context, client *http.Client, url string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, body, err
}
