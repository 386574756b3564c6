// Package enrollctl is the fleet administrator's command line: it sets up
// Vault for a fleet, writes bootstrap bundles for device images and the
// enrollment server's Vault credentials, with the administrator's own Vault
// token (VAULT_TOKEN) at VAULT_ADDR; to the enrollment server's admin API it
// sends a short-lived child of that token, never the token itself.
package enrollctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2/maybe"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/edge-enroll/enroll/enroll-server/devca"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/cmdline"
)

// Env is how the CLI reads its environment; tests pass their own.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader // nil reads as empty
	Stdout io.Writer
	Stderr io.Writer
}

// Run is the whole program.
func Run(ctx context.Context, args []string, env Env) int {
	return cmdline.Execute(ctx, Root(env), args, env.Stdout, env.Stderr)
}

// Command groups of enrollctl's help.
const (
	groupVault = "vault"
	groupAdmin = "admin"
)

// Root is enrollctl's command tree; commands read the environment
// through env.Getenv.
func Root(env Env) *cobra.Command {
	root := cmdline.Root("enrollctl", "The edge-enroll fleet administrator's tool", `
enrollctl sets up Vault for a fleet and writes bootstrap bundles and the
enrollment server's Vault credentials, with the administrator's own Vault
token ($VAULT_TOKEN) at $VAULT_ADDR. The fleet administration commands go
through enroll-server's admin API (-server-url, -server-ca, or
$ENROLL_SERVER_URL, $ENROLL_SERVER_CA): the server gets a five-minute child
of that token, never the token itself.`)
	root.AddGroup(&cobra.Group{ID: groupVault, Title: "Setting up a fleet (in Vault):"},
		&cobra.Group{ID: groupAdmin, Title: "Fleet administration (through enroll-server's admin API):"})
	for _, c := range []*cobra.Command{setupCmd(env), bundleCmd(env), serverCredentialsCmd(env), devCACmd(env)} {
		c.GroupID = groupVault
		root.AddCommand(c)
	}
	for _, c := range []*cobra.Command{
		devicesCmd(env),
		deviceActionCmd(env, "approve"), deviceActionCmd(env, "reject"),
		deviceActionCmd(env, "revoke"), deviceActionCmd(env, "readmit"), deviceActionCmd(env, "rebind"),
		preauthorizeCmd(env), generationsCmd(env), rotateCmd(env),
		endGenerationCmd(env, "retire"), endGenerationCmd(env, "revoke"),
		batchCmd(env), alertsCmd(env), ackAlertCmd(env), auditCmd(env), bootPolicyCmd(env),
	} {
		c.GroupID = groupAdmin
		root.AddCommand(c)
	}
	return root
}

// withRun sets cmd's RunE to run, which gets the environment with the
// command's own stdout and stderr.
func withRun(env Env, cmd *cobra.Command, run func(ctx context.Context, env Env, args []string) error) *cobra.Command {
	cmd.RunE = func(c *cobra.Command, args []string) error {
		return vaultHint(run(c.Context(), Env{Getenv: env.Getenv, Stdin: env.Stdin, Stdout: c.OutOrStdout(), Stderr: c.ErrOrStderr()}, args), env)
	}
	return cmd
}

// required marks flags a command cannot run without: missing, they are a
// usage error.
func required(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(err) // a flag of that name was never defined
		}
	}
}

type vaultFlags struct {
	layout vault.Layout
	caFile string
}

func addVaultFlags(fs *pflag.FlagSet) *vaultFlags {
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

func setupCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Create the Vault objects of a fleet (idempotent)",
		Long: `Create or update the Vault objects of a fleet: mounts, policies (the
server's and the admin and operator ones), the enrollment role and the
fleet's first bootstrap generation. It prints what it changed; run it again
after upgrading enroll-server, or to check (it then changes nothing).`,
		Example: "  enrollctl setup -fleet acme",
		Args:    cobra.NoArgs,
	}
	fleet := cmd.Flags().String("fleet", "", "fleet name (required)")
	vf := addVaultFlags(cmd.Flags())
	required(cmd, "fleet")
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
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
	})
}

func bundleCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Write a bootstrap bundle for a fleet's device images",
		Long: `Write a bootstrap bundle (0600) for a fleet's device images: the server's
and Vault's addresses and CAs, and a new enrollment secret ID of the fleet's
current generation, minted each time it runs. Before it mints anything it
checks, by a real TLS handshake, that devices will trust the server
(-server-ca) and Vault (-device-vault-ca, default $VAULT_CACERT or
$VAULT_CAPATH); an http:// server URL is refused. -offline skips the check
for an image built where neither can be reached.`,
		Example: "  enrollctl bundle -fleet acme -server-url https://enroll.example.com:8443 \\\n" +
			"    -server-ca server-ca.crt -device-vault-ca vault-ca.crt -out bundle.json",
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	var o bundleOptions
	fs.StringVar(&o.Fleet, "fleet", "", "fleet name (required)")
	fs.StringVar(&o.ServerURL, "server-url", "", "enrollment server URL devices use, https (required)")
	fs.StringVar(&o.ServerCAFile, "server-ca", "", "PEM CA bundle devices trust for the enrollment server (default: their system roots)")
	fs.StringVar(&o.DeviceVaultAddr, "device-vault-addr", "", "Vault address devices use (default: $VAULT_ADDR)")
	fs.StringVar(&o.DeviceVaultAddr, "vault-addr", "", "former name of -device-vault-addr")
	fs.StringVar(&o.DeviceVaultCAFile, "device-vault-ca", "", "PEM CA bundle devices trust for Vault (default: $VAULT_CACERT, else the certificates in $VAULT_CAPATH)")
	fs.StringVar(&o.Out, "out", "", "output file, written 0600 (required)")
	fs.BoolVar(&o.Offline, "offline", false, "skip the TLS check of the server and Vault (an image built where neither can be reached)")
	fs.StringSliceVar(&o.TPMEK, "tpm-ek", nil, "the fleet's EK preference, in order (rsa2048, ecc256, ecc384, rsa3072): devices with tpm.ek auto use the first kind their TPM holds a certificate for (default: rsa2048,ecc256,ecc384,rsa3072)")
	fs.BoolVar(&o.DevHTTPVault, "dev-http-vault", false, "let devices reach Vault over plain http on a loopback address (a Vault dev server; never in production)")
	_ = fs.MarkHidden("vault-addr")
	vf := addVaultFlags(fs)
	required(cmd, "fleet", "server-url", "out")
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
		return makeBundle(ctx, o, vf, env)
	})
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

func serverCredentialsCmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server-credentials",
		Short: "Write the enrollment server's Vault credentials",
		Long: `Write the enrollment server's AppRole credentials (role ID and a new secret
ID) to a file, 0600, for its vault.credentials_file.`,
		Example: "  enrollctl server-credentials -out /etc/enroll-server/vault-credentials.json",
		Args:    cobra.NoArgs,
	}
	out := cmd.Flags().String("out", "", "output file, written 0600 (required)")
	vf := addVaultFlags(cmd.Flags())
	required(cmd, "out")
	return withRun(env, cmd, func(ctx context.Context, env Env, _ []string) error {
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
	})
}

func devCACmd(env Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev-ca",
		Short: "Write a development CA and server certificate",
		Long: `Write a throwaway CA and a server certificate and key signed by it, to try
things with (use your own CA in production).`,
		Example: "  enrollctl dev-ca -dir tls -hosts localhost,127.0.0.1",
		Args:    cobra.NoArgs,
	}
	dir := cmd.Flags().String("dir", "", "output directory (required)")
	hosts := cmd.Flags().String("hosts", "localhost,127.0.0.1,::1", "comma-separated names and addresses of the server")
	validity := cmd.Flags().Duration("validity", 30*24*time.Hour, "certificate lifetime")
	required(cmd, "dir")
	return withRun(env, cmd, func(_ context.Context, env Env, _ []string) error {
		f, err := devca.Write(*dir, strings.Split(*hosts, ","), *validity)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "wrote %s, %s, %s\n", f.CACert, f.ServerCert, f.ServerKey)
		return nil
	})
}

// writeOwnerOnly writes a file holding a credential: mode 0600, in a
// directory created 0700 when missing, replaced atomically.
func writeOwnerOnly(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return maybe.WriteFile(path, data, 0o600)
}
