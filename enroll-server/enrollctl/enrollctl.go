// Package enrollctl is the fleet administrator's command line: it sets up
// Vault for a fleet, writes bootstrap bundles for device images and the
// enrollment server's Vault credentials, with the administrator's own Vault
// token (VAULT_TOKEN) at VAULT_ADDR; to the enrollment server's admin API it
// sends a short-lived child of that token, never the token itself.
package enrollctl

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2/maybe"

	"github.com/edge-enroll/enroll/enroll-server/devca"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/cmdline"
)

const usage = `usage: enrollctl <command> [flags]

commands:
  setup               create the Vault objects of a fleet (idempotent)
  bundle              write a bootstrap bundle for a fleet's device images
  server-credentials  write the enrollment server's Vault credentials
  dev-ca              write a development CA and server certificate

fleet administration, through enroll-server's admin API (-server-url,
-server-ca or $ENROLL_SERVER_URL, $ENROLL_SERVER_CA):
  devices             list devices (filters: -fleet -state -generation; pages)
  approve | reject    decide on a device awaiting approval (-reason; -enrollment
                      names a request held for an enrolled device)
  revoke | readmit    cut a device off in Vault / let it enroll again
  preauthorize        put devices on a fleet's allow-list
  generations         show a fleet's bootstrap generations and their use
  rotate              start a new generation and write its bundle
  retire              end an old generation after its grace period
  revoke-generation   end a generation at once (emergency)
  batch               pre-provision wrapped credentials for an orchestrator
  alerts              list security alerts
  audit verify|export check or export the hash-chained audit log
  version             print the version

Vault is reached at $VAULT_ADDR with the administrator's $VAULT_TOKEN; the
server gets a five-minute child of that token, never the token itself.
`

// Env is how the CLI reads its environment; tests pass their own.
type Env struct {
	Getenv func(string) string
	Stdout io.Writer
	Stderr io.Writer
}

// Run is the whole program.
func Run(ctx context.Context, args []string, env Env) int {
	cmds := map[string]func(context.Context, []string, Env) error{
		"setup":              setup,
		"bundle":             writeBundle,
		"server-credentials": serverCredentials,
		"dev-ca":             devCA,
		"devices":            devices,
		"approve":            deviceAction("approve"),
		"reject":             deviceAction("reject"),
		"revoke":             deviceAction("revoke"),
		"readmit":            deviceAction("readmit"),
		"preauthorize":       preauthorize,
		"generations":        generations,
		"rotate":             rotate,
		"retire":             endGeneration("retire"),
		"revoke-generation":  endGeneration("revoke"),
		"batch":              batch,
		"alerts":             alerts,
		"audit":              auditCmd,
	}
	p := cmdline.Program{Name: "enrollctl", Usage: usage, Commands: make(map[string]cmdline.Command, len(cmds))}
	for name, fn := range cmds {
		p.Commands[name] = func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
			if err := fn(ctx, args, Env{Getenv: env.Getenv, Stdout: stdout, Stderr: stderr}); err != nil {
				if err != flag.ErrHelp {
					fmt.Fprintln(stderr, "enrollctl "+name+":", err)
				}
				return 1
			}
			return 0
		}
	}
	return p.Run(ctx, args, env.Stdout, env.Stderr)
}

type vaultFlags struct {
	layout vault.Layout
	caFile string
}

func addVaultFlags(fs *flag.FlagSet) *vaultFlags {
	v := &vaultFlags{layout: vault.DefaultLayout()}
	fs.StringVar(&v.layout.EnrollMount, "enroll-mount", v.layout.EnrollMount, "AppRole mount of enrollment roles")
	fs.StringVar(&v.layout.KVMount, "kv-mount", v.layout.KVMount, "KV v2 mount of fleet and device secrets")
	fs.StringVar(&v.caFile, "vault-ca", "", "PEM CA bundle for Vault's TLS certificate (default: $VAULT_CACERT, $VAULT_CAPATH or system roots)")
	return v
}

func (v *vaultFlags) admin(env Env) (*vault.Admin, error) {
	addr := env.Getenv("VAULT_ADDR")
	if addr == "" {
		return nil, fmt.Errorf("VAULT_ADDR is not set")
	}
	ca, caPath := v.caFile, ""
	if ca == "" {
		ca, caPath = env.Getenv("VAULT_CACERT"), env.Getenv("VAULT_CAPATH")
	}
	return vault.NewAdmin(vault.Options{Address: addr, CAFile: ca, CAPath: caPath, Token: env.Getenv("VAULT_TOKEN"), Timeout: 30 * time.Second}, v.layout)
}

func parse(fs *flag.FlagSet, args []string, env Env) error {
	if err := parseWithArgs(fs, "", args, env); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}

// parseWithArgs parses a command's flags; operands, when the command takes
// any, are named in its usage (-h prints it as enrollctl's own).
func parseWithArgs(fs *flag.FlagSet, operands string, args []string, env Env) error {
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: enrollctl %s [flags]%s\n\nflags:\n", fs.Name(), operands)
		fs.PrintDefaults()
	}
	return fs.Parse(args)
}

func setup(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("setup", flag.ContinueOnError)
	fleet := fs.String("fleet", "", "fleet name (required)")
	vf := addVaultFlags(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	a, err := vf.admin(env)
	if err != nil {
		return err
	}
	rep, err := a.SetupFleet(ctx, *fleet)
	for _, c := range rep.Changes {
		fmt.Fprintf(env.Stdout, "%-10s %s\n", c.Action, c.Object)
	}
	if err != nil {
		return err
	}
	if rep.Changed() {
		fmt.Fprintf(env.Stdout, "fleet %s is set up\n", *fleet)
	} else {
		fmt.Fprintf(env.Stdout, "fleet %s was already set up: nothing changed\n", *fleet)
	}
	return nil
}

func writeBundle(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("bundle", flag.ContinueOnError)
	var o bundleOptions
	fs.StringVar(&o.Fleet, "fleet", "", "fleet name (required)")
	fs.StringVar(&o.ServerURL, "server-url", "", "enrollment server URL devices use, https (required)")
	fs.StringVar(&o.ServerCAFile, "server-ca", "", "PEM CA bundle devices trust for the enrollment server (default: their system roots)")
	fs.StringVar(&o.DeviceVaultAddr, "device-vault-addr", "", "Vault address devices use (default: $VAULT_ADDR)")
	fs.StringVar(&o.DeviceVaultAddr, "vault-addr", "", "former name of -device-vault-addr")
	fs.StringVar(&o.DeviceVaultCAFile, "device-vault-ca", "", "PEM CA bundle devices trust for Vault (default: $VAULT_CACERT, else the certificates in $VAULT_CAPATH)")
	fs.StringVar(&o.Out, "out", "", "output file, written 0600 (required)")
	fs.BoolVar(&o.Offline, "offline", false, "skip the TLS check of the server and Vault (an image built where neither can be reached)")
	fs.BoolVar(&o.DevHTTPVault, "dev-http-vault", false, "let devices reach Vault over plain http on a loopback address (a Vault dev server; never in production)")
	vf := addVaultFlags(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	return makeBundle(ctx, o, vf, env)
}

func readOptional(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if _, err := bundle.CertPool(string(data)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return string(data), nil
}

func serverCredentials(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("server-credentials", flag.ContinueOnError)
	out := fs.String("out", "", "output file, written 0600 (required)")
	vf := addVaultFlags(fs)
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("-out is required")
	}
	a, err := vf.admin(env)
	if err != nil {
		return err
	}
	creds, err := a.MintServerCredentials(ctx)
	if err != nil {
		return err
	}
	data, _ := json.MarshalIndent(creds, "", "  ")
	if err := writeOwnerOnly(*out, append(data, '\n')); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s\n", *out)
	return nil
}

func devCA(_ context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("dev-ca", flag.ContinueOnError)
	dir := fs.String("dir", "", "output directory (required)")
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated names and addresses of the server")
	validity := fs.Duration("validity", 30*24*time.Hour, "certificate lifetime")
	if err := parse(fs, args, env); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("-dir is required")
	}
	f, err := devca.Write(*dir, strings.Split(*hosts, ","), *validity)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s, %s, %s\n", f.CACert, f.ServerCert, f.ServerKey)
	return nil
}

// writeOwnerOnly writes a file holding a credential: mode 0600, in a
// directory created 0700 when missing, replaced atomically.
func writeOwnerOnly(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return maybe.WriteFile(path, data, 0o600)
}
