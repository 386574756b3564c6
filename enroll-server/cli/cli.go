// Package cli is enroll-server's command line: `enroll-server run`,
// `check-config` and `version`.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/edge-enroll/enroll/enroll-server/app"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/pkg/logging"
	"github.com/edge-enroll/enroll/pkg/version"
)

const usage = `usage: enroll-server <command> [flags]

commands:
  run           serve the enrollment API
  check-config  validate a configuration file and exit
  audit verify  verify the audit log's hash chain (server stopped)
  audit export  print the audit log as JSON lines (server stopped)
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
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "audit":
		return auditCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version.String("enroll-server"))
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "enroll-server: unknown command %q\n%s", args[0], usage)
	return 2
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "/etc/enroll-server/config.yaml", "configuration file")
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
	log, err := logging.New(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintln(stderr, "enroll-server: config:", err)
		return 1
	}
	if *devPlain {
		log.Warn("serving plain HTTP: development only, never in production")
	}
	a, err := app.New(cfg, app.Options{DevPlainHTTP: *devPlain}, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := config.Load(*path, os.Getenv); err != nil {
		fmt.Fprintln(stderr, "enroll-server:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}
