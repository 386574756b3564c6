// Package cli is enroll-client's command line.
package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/diagnostics"
	"github.com/edge-enroll/enroll/enroll-client/health"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/metrics"
	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/sink"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/cmdline"
	"github.com/edge-enroll/enroll/pkg/daemon"
	"github.com/edge-enroll/enroll/pkg/logging"
	"github.com/edge-enroll/enroll/pkg/version"
	"github.com/edge-enroll/enroll/pkg/wire"
)

const usage = `usage: enroll-client <command> [flags]

commands:
  run           enroll this device and keep its Vault token alive
  status        show the device's enrollment state (works while run is running)
  reset-state   move a damaged state file aside so the device can enroll again
  check-config  validate the configuration, bundle and state file, then exit
  doctor        check this device's setup online: config, bundle, CAs, clock, files, TPM
  tpm-info      show the TPM's endorsement key hash (for a fleet's EK allow-list)
  service       install | uninstall | start | stop | restart | status
  version       print the version
`

// Run is the whole program; main only adds signals and exits with its code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Program{Name: "enroll-client", Usage: usage, Commands: map[string]cmdline.Command{
		"run": func(ctx context.Context, args []string, _, stderr io.Writer) int { return run(ctx, args, stderr) },
		"status": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return status(args, stdout, stderr)
		},
		"reset-state": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return resetState(args, stdout, stderr)
		},
		"check-config": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return checkConfig(args, stdout, stderr)
		},
		"doctor": doctorCommand,
		"tpm-info": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return tpmInfo(args, stdout, stderr)
		},
		"service": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return serviceControl(args, stdout, stderr)
		},
	}}.Run(ctx, args, stdout, stderr)
}

func loadConfig(fs *flag.FlagSet, args []string, stderr io.Writer) (config.File, *bundle.Bundle, bool) {
	return loadConfigAt(fs, fs.String("config", config.DefaultPath, "configuration file"), args, stderr)
}

func loadConfigAt(fs *flag.FlagSet, path *string, args []string, stderr io.Writer) (config.File, *bundle.Bundle, bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return config.File{}, nil, false
	}
	cfg, err := config.Load(*path, os.Getenv, os.Hostname)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return cfg, nil, false
	}
	b, err := config.ReadBundle(cfg.BundlePath)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return cfg, nil, false
	}
	return cfg, b, true
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	once := fs.Bool("once", false, "exit once the device holds an acknowledged token")
	path := fs.String("config", config.DefaultPath, "configuration file")
	cfg, b, ok := loadConfigAt(fs, path, args, stderr)
	if !ok {
		return 1
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client: config:", err)
		return 1
	}
	// Under the Windows service manager: a log file and the Event Log.
	if svcLog, closer, err := daemon.ServiceLog(serviceSpec(*path), filepath.Dir(cfg.StatePath), nil); err != nil {
		log.Warn("service log", "err", err)
	} else if svcLog != nil {
		defer closer.Close()
		log = svcLog
	}
	if err := daemon.Harden(); err != nil {
		log.Warn("process hardening", "err", err)
	}
	var mx *metrics.Metrics
	if cfg.Metrics.Listen != "" || cfg.Diagnostics.Listen != "" {
		mx = metrics.New()
	}
	var diag *diagnostics.Server
	if cfg.Diagnostics.Listen != "" {
		diag = &diagnostics.Server{Metrics: mx.Handler()}
	}
	m, closeFn, err := build(cfg, b, log, mx, diag)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer closeFn()
	runMachine := func(ctx context.Context) error {
		return runWithListeners(ctx, func(ctx context.Context) error { return m.Run(ctx, *once) }, listeners(cfg, mx, diag, log)...)
	}
	if daemon.UnderManager() {
		err = daemon.Run(serviceSpec(*path), runMachine)
	} else {
		err = runMachine(ctx)
	}
	if err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

func build(cfg config.File, b *bundle.Bundle, log *slog.Logger, mx *metrics.Metrics, diag *diagnostics.Server) (*lifecycle.Machine, func(), error) {
	var serverCAs, err = optionalPool(b.ServerCAPEM)
	if err != nil {
		return nil, nil, err
	}
	vc, err := vault.New(b.VaultAddr, b.VaultCAPEM, cfg.Timeouts.Vault)
	if err != nil {
		return nil, nil, err
	}
	st, err := state.Open(cfg.StatePath)
	if err != nil {
		if errors.Is(err, state.ErrCorrupt) {
			err = fmt.Errorf("%w\nThe device will not start over on its own: that would give it a second identity.\n"+
				"To enroll it again, run `enroll-client reset-state -config <file>` (it moves the file aside);\n"+
				"its request then waits until an administrator approves it (`enrollctl approve`, with the\n"+
				"enrollment ID `enroll-client status` shows)", err)
		}
		return nil, nil, err
	}
	sinks := make([]lifecycle.Sink, 0, len(cfg.Sinks))
	for _, s := range cfg.Sinks {
		f, err := sinkFile(s)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		sinks = append(sinks, f)
	}
	pre, err := readPreprovisioned(cfg, b)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	dev, err := openTPM(cfg, st, log)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	var attestor lifecycle.Attestor
	var sealer lifecycle.Sealer
	var keys lifecycle.KeyStore
	closeAll := func() { st.Close() }
	if dev != nil {
		s, err := sealerFor(dev, cfg, b.Fleet)
		if err != nil {
			dev.Close()
			st.Close()
			return nil, nil, err
		}
		attestor, sealer, keys = dev, s, dev
		closeAll = func() { dev.Close(); st.Close() }
		log.Info("using the TPM", "ek", dev.EKKind(), "ek_certificate", dev.HasEKCert())
	}
	hostname, _ := os.Hostname()
	m := lifecycle.New(lifecycle.Config{
		Preprovisioned:   pre,
		OnPreprovisioned: func() { _ = os.Remove(cfg.PreprovisionedPath) },
		Bundle:           b, DeviceID: cfg.DeviceID,
		Facts: wire.Facts{Hostname: hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, ClientVersion: version.Version},
		Vault: vc, Server: serverapi.New(b.ServerURL, serverCAs, cfg.Timeouts.Server),
		Store: st, Sinks: sinks, Log: log,
		Status: lifecycle.StatusFunc(func(s lifecycle.Status) error {
			if mx != nil {
				_ = mx.WriteStatus(s)
			}
			if diag != nil {
				_ = diag.WriteStatus(s)
			}
			return sink.StatusFile{Path: statusPath(cfg)}.WriteStatus(s)
		}),
		AfterSave: crashHook(),
		Attestor:  attestor, Sealer: sealer, DeviceKeys: keys,
	})
	return m, closeAll, nil
}

// sinkFile is a configured sink, its mode and group resolved as the
// configuration's validation resolved them.
func sinkFile(s config.Sink) (sink.File, error) {
	mode, err := s.FileMode()
	if err != nil {
		return sink.File{}, fmt.Errorf("sink %s: mode: %w", s.Path, err)
	}
	gid, err := s.GID()
	if err != nil {
		return sink.File{}, fmt.Errorf("sink %s: group: %w", s.Path, err)
	}
	return sink.File{Path: s.Path, Mode: mode, GID: gid, HasGID: gid >= 0}, nil
}

func optionalPool(pemData string) (*x509.CertPool, error) {
	if pemData == "" {
		return nil, nil
	}
	return bundle.CertPool(pemData)
}

func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	cfg, b, ok := loadConfig(fs, args, stderr)
	if !ok {
		return health.ExitError
	}
	r, err := statusReport(cfg, b, time.Now())
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return health.ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	} else {
		fmt.Fprint(stdout, r.Text())
	}
	return r.ExitCode()
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	cfg, b, ok := loadConfig(fs, args, stderr)
	if !ok {
		return 1
	}
	st, err := state.Open(cfg.StatePath)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return 1
	}
	st.Close()
	fmt.Fprintf(stdout, "ok: device %s, fleet %s, server %s, vault %s, state %s\n", cfg.DeviceID, b.Fleet, b.ServerURL, b.VaultAddr, cfg.StatePath)
	return 0
}

// statusPath is where the daemon publishes its status, next to its state.
func statusPath(cfg config.File) string {
	return filepath.Join(filepath.Dir(cfg.StatePath), "status.json")
}

// statusReport tells whether a daemon is running (it holds the state
// file), and what it last published.
func statusReport(cfg config.File, b *bundle.Bundle, now time.Time) (health.Report, error) {
	running, err := state.InUse(cfg.StatePath)
	if err != nil {
		return health.Report{}, fmt.Errorf("is the daemon running? %w", err)
	}
	v, err := readStatus(cfg, b, running)
	if err != nil {
		return health.Report{}, err
	}
	return health.NewReport(v, running, now), nil
}

// readStatus reads the status the daemon publishes; with no daemon having
// published one, it reads the state file itself, unless a daemon holds it
// (one starting up: its status comes in a moment).
func readStatus(cfg config.File, b *bundle.Bundle, running bool) (lifecycle.Status, error) {
	var v lifecycle.Status
	data, err := readCapped(statusPath(cfg), 1<<20)
	if err == nil {
		if err := json.Unmarshal(data, &v); err != nil {
			return v, fmt.Errorf("status file %s: %w", statusPath(cfg), err)
		}
		return v, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return v, err
	}
	if running {
		return v, nil
	}
	st, err := state.Open(cfg.StatePath)
	if err != nil {
		return v, err
	}
	defer st.Close()
	var sealer lifecycle.Sealer
	dev, err := openTPM(cfg, st, slog.New(slog.DiscardHandler))
	if err != nil {
		return v, err
	}
	if dev != nil {
		defer dev.Close()
		s, err := sealerFor(dev, cfg, b.Fleet)
		if err != nil {
			return v, err
		}
		sealer = s
	}
	m := lifecycle.New(lifecycle.Config{Bundle: b, DeviceID: cfg.DeviceID, Store: st, Log: slog.New(slog.DiscardHandler), Sealer: sealer})
	s, err := m.Load()
	if err != nil {
		return v, err
	}
	return lifecycle.StatusOf(s), nil
}

func resetState(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reset-state", flag.ContinueOnError)
	force := fs.Bool("force", false, "move the state aside even if it is readable (the device enrolls again as new)")
	cfg, _, ok := loadConfig(fs, args, stderr)
	if !ok {
		return 1
	}
	if _, err := os.Stat(cfg.StatePath); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(stdout, "no state file; nothing to reset")
		return 0
	}
	st, err := state.Open(cfg.StatePath)
	switch {
	case err == nil:
		st.Close()
		if !*force {
			fmt.Fprintf(stderr, "enroll-client: %s is readable; refusing to reset it without -force\n", cfg.StatePath)
			return 1
		}
	case errors.Is(err, state.ErrLocked):
		fmt.Fprintln(stderr, "enroll-client:", err)
		return 1
	}
	aside := fmt.Sprintf("%s.reset-%s", cfg.StatePath, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(cfg.StatePath, aside); err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return 1
	}
	_ = os.Remove(statusPath(cfg))
	fmt.Fprintf(stdout, "moved %s to %s; the next run enrolls the device again\n", cfg.StatePath, aside)
	return 0
}

// readPreprovisioned reads an injected credential, if there is one. It is
// hostile input like any file: size-capped, strict, and it must name this
// device and fleet.
func readPreprovisioned(cfg config.File, b *bundle.Bundle) (*wire.EnrollResponse, error) {
	f, err := os.Open(cfg.PreprovisionedPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var item wire.BatchItem
	dec := json.NewDecoder(io.LimitReader(f, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&item); err != nil {
		return nil, fmt.Errorf("pre-provisioned credential %s: %w", cfg.PreprovisionedPath, err)
	}
	if item.Fleet != b.Fleet || item.DeviceID != cfg.DeviceID {
		return nil, fmt.Errorf("pre-provisioned credential %s is for device %q of fleet %q, not this one",
			cfg.PreprovisionedPath, item.DeviceID, item.Fleet)
	}
	return &item.EnrollResponse, nil
}

// readCapped reads a file of at most limit bytes.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// serviceSpec is how enroll-client runs as a service with configPath.
func serviceSpec(configPath string) daemon.Spec {
	return daemon.RunSpec("enroll-client",
		"edge-enroll device enrollment client: keeps this device's Vault token alive", configPath)
}

func serviceControl(args []string, stdout, stderr io.Writer) int {
	return daemon.ControlCommand("enroll-client", config.DefaultPath, serviceSpec, args, stdout, stderr)
}
