// Package cli is enroll-server's command line: `enroll-server run`,
// `check-config` and `version`.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/app"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/doctor"
	"github.com/edge-enroll/enroll/pkg/cmdline"
	"github.com/edge-enroll/enroll/pkg/daemon"
	"github.com/edge-enroll/enroll/pkg/logging"
)

const usage = `usage: enroll-server <command> [flags]

commands:
  run           serve the enrollment API
  check-config  validate a configuration file and exit
  doctor        check the configuration, TLS, Vault, fleets and store online
  service       install | uninstall | start | stop | restart | status
  audit verify  verify the audit log's hash chain (server stopped)
  audit export  print the audit log as JSON lines (server stopped)
  version       print the version
`

// Run is the whole program; main only adds signals and exits with its code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Program{Name: "enroll-server", Usage: usage, Commands: map[string]cmdline.Command{
		"run": func(ctx context.Context, args []string, _, stderr io.Writer) int { return run(ctx, args, stderr) },
		"check-config": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return checkConfig(args, stdout, stderr)
		},
		"doctor": func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			return doctorCmd(ctx, args, stdout, stderr)
		},
		"audit": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return auditCmd(args, stdout, stderr)
		},
		"service": func(_ context.Context, args []string, stdout, stderr io.Writer) int {
			return daemon.ControlCommand("enroll-server", defaultConfig, serviceSpec, args, stdout, stderr)
		},
	}}.Run(ctx, args, stdout, stderr)
}

const defaultConfig = "/etc/enroll-server/config.yaml"

// serviceSpec is how enroll-server runs as a service with configPath.
func serviceSpec(configPath string) daemon.Spec {
	return daemon.RunSpec("enroll-server",
		"edge-enroll enrollment server: exchanges fleet bootstrap proofs for per-device Vault credentials", configPath)
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", defaultConfig, "configuration file")
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	devPlain := fs.Bool("dev-plain-http", false, "serve plain HTTP without TLS (local development only)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
	}
	level := new(slog.LevelVar)
	lv, _ := logging.ParseLevel(cfg.Log.Level) // config.Load checked it
	level.Set(lv)
	log, err := logging.NewLeveled(stderr, level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server: config:", err)
		return 1
	}
	if *devPlain {
		log.Warn("serving plain HTTP: development only, never in production")
	}
	a, err := app.New(cfg, app.Options{DevPlainHTTP: *devPlain, LogLevel: level,
		ReloadConfig: func() (config.File, error) { return config.Load(*path, os.Getenv) }}, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := daemon.Harden(); err != nil {
		log.Warn("process hardening", "err", err)
	}
	if daemon.UnderManager() {
		err = daemon.Run(serviceSpec(*path), a.Run)
	} else {
		err = a.Run(ctx)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	devPlain := fs.Bool("dev-plain-http", false, "check for serving plain HTTP without TLS, as run -dev-plain-http")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
	}
	// What run would refuse before it binds a port, check-config refuses
	// too, by the same code.
	if err := app.Check(cfg, app.Options{DevPlainHTTP: *devPlain}); err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

func doctorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	devPlain := fs.Bool("dev-plain-http", false, "check for serving plain HTTP without TLS, as run -dev-plain-http")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r := doctor.Run(ctx, doctor.Options{ConfigPath: *path, Getenv: os.Getenv, DevPlainHTTP: *devPlain, Now: time.Now()})
	if err := r.Write(stdout, *asJSON); err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
	}
	return r.ExitCode()
}
