// Package cli is enroll-server's command line: `enroll-server run`,
// `check-config`, `service`, `audit` and `version`.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/edge-enroll/enroll/enroll-server/app"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/vault"
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
	root.AddCommand(runCmd(), checkConfigCmd(),
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
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if devPlain {
		log.Warn("serving plain HTTP: development only, never in production")
	}
	a, err := app.New(cfg, app.Options{DevPlainHTTP: devPlain}, log)
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
		Long: `Validate a configuration file as run would, including the Vault credentials
file it names; exit 0 when run would accept it, 1 (with the reason) when not.`,
		Example: "  enroll-server check-config -config /etc/enroll-server/config.yaml\n" +
			"  enroll-server check-config -config config.yaml -json",
		Args: cobra.NoArgs,
	}
	path := configFlag(cmd)
	asJSON := cmdline.JSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := config.Load(*path, os.Getenv)
		if err != nil {
			return err
		}
		// What run would refuse, check-config refuses too: the files it names.
		if _, err := vault.LoadCredentials(cfg.Vault.CredentialsFile); err != nil {
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
