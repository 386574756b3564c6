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
	"runtime"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/sink"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/logging"
	"github.com/edge-enroll/enroll/pkg/version"
	"github.com/edge-enroll/enroll/pkg/wire"
)

const usage = `usage: enroll-client <command> [flags]

commands:
  run           enroll this device and keep its Vault token alive
  status        show the device's enrollment state
  check-config  validate the configuration and bundle, then exit
  version       print the version
`

// Run is the whole program; main only adds signals and exits with its code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return run(ctx, args[1:], stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version.String("enroll-client"))
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "enroll-client: unknown command %q\n%s", args[0], usage)
	return 2
}

func loadConfig(fs *flag.FlagSet, args []string, stderr io.Writer) (config.File, *bundle.Bundle, bool) {
	path := fs.String("config", config.DefaultPath, "configuration file")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return config.File{}, nil, false
	}
	cfg, err := config.Load(*path, os.Getenv, os.Hostname)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return cfg, nil, false
	}
	b, err := readBundle(cfg.BundlePath)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return cfg, nil, false
	}
	return cfg, b, true
}

func readBundle(path string) (*bundle.Bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	b, err := bundle.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	return b, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	once := fs.Bool("once", false, "exit once the device holds an acknowledged token")
	cfg, b, ok := loadConfig(fs, args, stderr)
	if !ok {
		return 1
	}
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client: config:", err)
		return 1
	}
	m, closeFn, err := build(cfg, b, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	defer closeFn()
	if err := m.Run(ctx, *once); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

func build(cfg config.File, b *bundle.Bundle, log *slog.Logger) (*lifecycle.Machine, func(), error) {
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
			err = fmt.Errorf("%w\nthe device will not start over on its own, which would give it a second identity; "+
				"to re-enroll it, move the file aside (enroll-client keeps no other copy) and ask an administrator to re-admit the device", err)
		}
		return nil, nil, err
	}
	sinks := make([]lifecycle.Sink, 0, len(cfg.Sinks))
	for _, s := range cfg.Sinks {
		sinks = append(sinks, sink.File{Path: s.Path})
	}
	hostname, _ := os.Hostname()
	m := lifecycle.New(lifecycle.Config{
		Bundle: b, DeviceID: cfg.DeviceID,
		Facts: wire.Facts{Hostname: hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, ClientVersion: version.Version},
		Vault: vc, Server: serverapi.New(b.ServerURL, serverCAs, cfg.Timeouts.Server),
		Store: st, Sinks: sinks, Log: log,
	})
	return m, func() { st.Close() }, nil
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
		return 1
	}
	st, err := state.Open(cfg.StatePath)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return 1
	}
	defer st.Close()
	m := lifecycle.New(lifecycle.Config{Bundle: b, DeviceID: cfg.DeviceID, Store: st, Log: slog.New(slog.DiscardHandler)})
	s, err := m.Load()
	if err != nil {
		fmt.Fprintln(stderr, "enroll-client:", err)
		return 1
	}
	v := lifecycle.StatusOf(s)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return 0
	}
	fmt.Fprint(stdout, v.Text())
	return 0
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	cfg, b, ok := loadConfig(fs, args, stderr)
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "ok: device %s, fleet %s, server %s, vault %s\n", cfg.DeviceID, b.Fleet, b.ServerURL, b.VaultAddr)
	return 0
}
