// Package cli is enroll-server's command line: `enroll-server run`,
// `check-config`, `service`, `audit` and `version`.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/enroll-server/app"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/doctor"
	"github.com/edge-enroll/enroll/pkg/cmdline"
	"github.com/edge-enroll/enroll/pkg/daemon"
	"github.com/edge-enroll/enroll/pkg/logging"
)

// Run is the whole program; main only adds signals and exits with its code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cmdline.Execute(ctx, Root(), args, stdout, stderr)
}

// Root is enroll-server's command tree.
func Root() *cobra.Command {
	root := cmdline.Root("enroll-server", "The edge-enroll self-service enrollment server", `
enroll-server exchanges a device's proof of its fleet's bootstrap credential
for a unique, response-wrapped Vault AppRole secret ID.`)
	root.AddCommand(runCmd(), checkConfigCmd(), doctorCmd(),
		daemon.ServiceCommand("enroll-server", defaultConfig, serviceSpec), auditCmd())
	return root
}

const defaultConfig = "/etc/enroll-server/config.yaml"

// serviceSpec is how enroll-server runs as a service with configPath.
func serviceSpec(configPath string) daemon.Spec {
	return daemon.RunSpec("enroll-server",
		"edge-enroll enrollment server: exchanges fleet bootstrap proofs for per-device Vault credentials", configPath)
}

func configFlag(cmd *cobra.Command) *string {
	return cmd.Flags().String("config", defaultConfig, "configuration file")
}

func runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Serve the enrollment API",
		Long: `Serve the enrollment API until interrupted (SIGINT, SIGTERM) or stopped by
the service manager. Logs go to stderr.`,
		Example: "  enroll-server run -config /etc/enroll-server/config.yaml\n" +
			"  enroll-server run -config dev.yaml -dev-plain-http   # local development only",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	devPlain := cmd.Flags().Bool("dev-plain-http", false, "serve plain HTTP without TLS (local development only)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return run(cmd.Context(), *path, *devPlain, cmd.ErrOrStderr())
	}
	return cmd
}

func run(ctx context.Context, path string, devPlain bool, stderr io.Writer) error {
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	lv, _ := logging.ParseLevel(cfg.Log.Level) // config.Load checked it
	level.Set(lv)
	log, err := logging.NewLeveled(stderr, level, cfg.Log.Format)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if devPlain {
		log.Warn("serving plain HTTP: development only, never in production")
	}
	a, err := app.New(cfg, app.Options{DevPlainHTTP: devPlain, LogLevel: level,
		ReloadConfig: func() (config.File, error) { return config.Load(path, os.Getenv) }}, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return cmdline.Exit(cmdline.ExitFailure)
	}
	if err := daemon.Harden(); err != nil {
		log.Warn("process hardening", "err", err)
	}
	if daemon.UnderManager() {
		err = daemon.Run(serviceSpec(path), a.Run)
	} else {
		err = a.Run(ctx)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with an error", "err", err)
		return cmdline.Exit(cmdline.ExitFailure)
	}
	return nil
}

func checkConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate a configuration file and the files it names, then exit",
		Long: `Validate a configuration file and every file it names (certificate and key,
Vault credentials, audit key, fleet TPM files) by the same code run uses
before it serves; exit 0 when run would accept it, 1 (with the reason) when
not. Online checks are doctor's.`,
		Example: "  enroll-server check-config -config /etc/enroll-server/config.yaml\n" +
			"  enroll-server check-config -config config.yaml -json",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	devPlain := cmd.Flags().Bool("dev-plain-http", false, "check for serving plain HTTP without TLS, as run -dev-plain-http")
	asJSON := cmdline.JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := config.Load(*path, os.Getenv)
		if err != nil {
			return err
		}
		// What run would refuse before it binds a port, check-config
		// refuses too, by the same code.
		if err := app.Check(cfg, app.Options{DevPlainHTTP: *devPlain}); err != nil {
			return err
		}
		if *asJSON {
			return cmdline.WriteJSON(cmd.OutOrStdout(), map[string]any{"config": *path, "ok": true})
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", *path)
		return nil
	}
	return cmd
}

func doctorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the configuration, TLS, Vault, fleets and store online",
		Long: `Check, online, everything the server depends on: the configuration and its
files (as run reads them), the certificate's names and days left, the
store, Vault's address and CA, a login with the server's credentials and
its policy, and each fleet's objects in Vault. One line per check, ok, warn
or fail, with the fix; exit 1 when any check fails.`,
		Example: "  enroll-server doctor -config /etc/enroll-server/config.yaml\n" +
			"  enroll-server doctor -config config.yaml -json",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	devPlain := cmd.Flags().Bool("dev-plain-http", false, "check for serving plain HTTP without TLS, as run -dev-plain-http")
	asJSON := cmdline.JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		r := doctor.Run(cmd.Context(), doctor.Options{ConfigPath: *path, Getenv: os.Getenv, DevPlainHTTP: *devPlain, Now: time.Now()})
		if err := r.Write(cmd.OutOrStdout(), *asJSON); err != nil {
			return err
		}
		if code := r.ExitCode(); code != 0 {
			return cmdline.Exit(code)
		}
		return nil
	}
	return cmd
}
