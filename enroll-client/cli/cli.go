// Package cli is enroll-client's command line.
package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/spf13/cobra"

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

// Run is the whole program; main only adds signals and exits with its code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Execute(ctx, Root(), args, stdout, stderr)
}

// Root is enroll-client's command tree.
func Root() *cobra.Command {
	root := cmdline.Root("enroll-client", "The edge-enroll device enrollment client", `
enroll-client enrolls this device with Vault through enroll-server, keeps its
token alive, writes it to the configured sinks and heals itself.`)
	root.AddCommand(runCmd(), statusCmd(), resetStateCmd(), checkConfigCmd(), doctorCmd(), tpmInfoCmd(),
		daemon.ServiceCommand("enroll-client", config.DefaultPath, serviceSpec))
	return root
}

func configFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("config", config.DefaultPath, "configuration file")
}

// loadConfig loads the configuration at path and the bundle it names.
func loadConfig(path string) (config.File, *bundle.Bundle, error) {
	cfg, err := config.Load(path, os.Getenv, os.Hostname)
	if err != nil {
		return cfg, nil, err
	}
	b, err := config.ReadBundle(cfg.BundlePath)
	return cfg, b, err
}

func runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Enroll this device and keep its Vault token alive",
		Long: `Enroll this device (or load its enrollment), keep its Vault token alive and
write it to the configured sinks, until interrupted or stopped by the service
manager. Logs go to stderr.`,
		Example: "  enroll-client run -config /etc/enroll-client/config.yaml\n" +
			"  enroll-client run -once -config config.yaml   # exit once enrolled",
		Args: cobra.NoArgs,
	}
	once := cmd.Flags().Bool("once", false, "exit once the device holds an acknowledged token")
	path := configFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return run(cmd.Context(), *path, *once, cmd.ErrOrStderr())
	}
	return cmd
}

func run(ctx context.Context, path string, once bool, stderr io.Writer) error {
	cfg, b, err := loadConfig(path)
	if err != nil {
		return err
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// Under the Windows service manager: a log file and the Event Log.
	if svcLog, closer, err := daemon.ServiceLog(serviceSpec(path), filepath.Dir(cfg.StatePath), nil); err != nil {
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
		return cmdline.Exit(cmdline.ExitFailure)
	}
	defer closeFn()
	runMachine := func(ctx context.Context) error {
		return runWithListeners(ctx, func(ctx context.Context) error { return m.Run(ctx, once) }, listeners(cfg, mx, diag, log)...)
	}
	if daemon.UnderManager() {
		err = daemon.Run(serviceSpec(path), runMachine)
	} else {
		err = runMachine(ctx)
	}
	if err != nil {
		log.Error("stopped", "err", err)
		return cmdline.Exit(cmdline.ExitFailure)
	}
	return nil
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
	dev, err := openTPM(cfg, b, st, log)
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

func statusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the device's enrollment state (works while run is running)",
		Long: `Show whether the daemon runs and is ready, the device's phase, device ID,
fleet, token and secret ID lifetimes, and a held enrollment's ID and key, from
the status run publishes next to its state file, or from the state file
itself when run has not written one. Exit codes: 0 running and ready, 1
error, 3 the daemon is not running, 4 running but not ready.`,
		Example: "  enroll-client status -config /etc/enroll-client/config.yaml\n" +
			"  enroll-client status -json",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	asJSON := cmdline.JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, b, err := loadConfig(*path)
		if err != nil {
			return err
		}
		r, err := statusReport(cfg, b, time.Now())
		if err != nil {
			return err
		}
		if *asJSON {
			if err := cmdline.WriteJSON(cmd.OutOrStdout(), r); err != nil {
				return err
			}
		} else {
			fmt.Fprint(cmd.OutOrStdout(), r.Text())
		}
		if code := r.ExitCode(); code != 0 {
			return cmdline.Exit(code)
		}
		return nil
	}
	return cmd
}

// configCheck is what check-config found.
type configCheck struct {
	Config    string `json:"config"`
	DeviceID  string `json:"device_id"`
	Fleet     string `json:"fleet"`
	ServerURL string `json:"server_url"`
	VaultAddr string `json:"vault_addr"`
	StatePath string `json:"state_path"`
}

func checkConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration, bundle and state file, then exit",
		Long: `Validate the configuration file, the bootstrap bundle it names (and its
file mode) and the state file, as run would; exit 0 when run would start, 1
(with the reason) when not.`,
		Example: "  enroll-client check-config -config /etc/enroll-client/config.yaml\n" +
			"  enroll-client check-config -json",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	asJSON := cmdline.JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, b, err := loadConfig(*path)
		if err != nil {
			return err
		}
		if err := checkState(cfg.StatePath); err != nil {
			return err
		}
		c := configCheck{Config: *path, DeviceID: cfg.DeviceID, Fleet: b.Fleet, ServerURL: b.ServerURL, VaultAddr: b.VaultAddr, StatePath: cfg.StatePath}
		if *asJSON {
			return cmdline.WriteJSON(cmd.OutOrStdout(), c)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "ok: device %s, fleet %s, server %s, vault %s, state %s\n", c.DeviceID, c.Fleet, c.ServerURL, c.VaultAddr, c.StatePath)
		return nil
	}
	return cmd
}

// checkState opens an existing state file as run would, to find what run
// would refuse of it. It creates nothing (run creates the file, as the
// service's user) and leaves alone a file the running daemon holds.
func checkState(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if held, err := state.InUse(path); err != nil || held {
		return err
	}
	st, err := state.Open(path)
	if err != nil {
		return err
	}
	return st.Close()
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
	dev, err := openTPM(cfg, b, st, slog.New(slog.DiscardHandler))
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

func resetStateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reset-state",
		Short: "Move a damaged state file aside so the device can enroll again",
		Long: `Move the state file aside (renamed with a timestamp) so that the next run
enrolls the device again. A readable state file is kept unless -force: the
device would get a second identity. Stop the service first.`,
		Example: "  enroll-client reset-state -config /etc/enroll-client/config.yaml\n" +
			"  enroll-client reset-state -force -config /etc/enroll-client/config.yaml",
		Args: cobra.NoArgs,
	}
	force := cmd.Flags().Bool("force", false, "move the state aside even if it is readable (the device enrolls again as new)")
	path := configFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, _, err := loadConfig(*path)
		if err != nil {
			return err
		}
		return resetState(cfg, *force, cmd.OutOrStdout())
	}
	return cmd
}

func resetState(cfg config.File, force bool, stdout io.Writer) error {
	if _, err := os.Stat(cfg.StatePath); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(stdout, "no state file; nothing to reset")
		return nil
	}
	st, err := state.Open(cfg.StatePath)
	switch {
	case err == nil:
		st.Close()
		if !force {
			return fmt.Errorf("%s is readable; refusing to reset it without -force", cfg.StatePath)
		}
	case errors.Is(err, state.ErrLocked):
		return err
	}
	aside := fmt.Sprintf("%s.reset-%s", cfg.StatePath, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(cfg.StatePath, aside); err != nil {
		return err
	}
	_ = os.Remove(statusPath(cfg))
	fmt.Fprintf(stdout, "moved %s to %s; the next run enrolls the device again\n", cfg.StatePath, aside)
	return nil
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
