package enrollctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
)

// bundleOptions is what `enrollctl bundle` was asked for.
type bundleOptions struct {
	Fleet     string
	ServerURL string
	// ServerCAFile is the PEM CA bundle devices trust for the server;
	// empty: their system roots.
	ServerCAFile string
	// DeviceVaultAddr and DeviceVaultCAFile are Vault's address and CA as
	// devices see them; empty: $VAULT_ADDR, and $VAULT_CACERT, else the
	// certificates in $VAULT_CAPATH, else the system roots.
	DeviceVaultAddr   string
	DeviceVaultCAFile string
	Out               string
	// Offline skips the TLS handshakes with the server and Vault.
	Offline bool
	// DevHTTPVault lets devices reach Vault over plain http on a loopback
	// address: a local Vault dev server.
	DevHTTPVault bool
	// TPMEK is the fleet's EK preference, written into the bundle.
	TPMEK []string
}

// probeTimeout bounds each TLS check.
const probeTimeout = 15 * time.Second

// makeBundle writes a bootstrap bundle. Nothing is minted or written until
// every input is valid and, unless offline, both the server and Vault
// passed a TLS handshake against the CAs the devices will trust.
func makeBundle(ctx context.Context, o bundleOptions, vf *vaultFlags, env Env) error {
	if o.Out == "" || o.ServerURL == "" {
		return errors.New("-out and -server-url are required")
	}
	addrFlag := "-device-vault-addr"
	if o.DeviceVaultAddr == "" {
		o.DeviceVaultAddr, addrFlag = env.Getenv("VAULT_ADDR"), "-device-vault-addr (default: $VAULT_ADDR)"
	}
	if err := requireHTTPS("-server-url", o.ServerURL, "the server", ""); err != nil {
		return err
	}
	if !o.DevHTTPVault {
		if err := requireHTTPS(addrFlag, o.DeviceVaultAddr, "Vault", "; for a local Vault dev server, pass -dev-http-vault"); err != nil {
			return err
		}
	}
	serverCA := caSource{flag: "-server-ca", path: o.ServerCAFile}
	serverPEM, err := serverCA.read()
	if err != nil {
		return err
	}
	vaultCA := deviceVaultCA(o.DeviceVaultCAFile, env.Getenv)
	vaultPEM, err := vaultCA.read()
	if err != nil {
		return err
	}
	b := &bundle.Bundle{
		Version: bundle.Version, Fleet: o.Fleet, ServerURL: o.ServerURL, ServerCAPEM: serverPEM,
		VaultAddr: o.DeviceVaultAddr, VaultCAPEM: vaultPEM, EnrollMount: vf.layout.EnrollMount,
		DeviceMount: vault.DeviceMount(o.Fleet), TPMEK: o.TPMEK,
	}
	// Validate what the admin typed before minting a credential for it.
	b.RoleID, b.SecretID, b.Generation = "placeholder", "placeholder", 1
	if err := b.Validate(); err != nil {
		return err
	}
	if o.Offline {
		fmt.Fprintf(env.Stderr, "warning: -offline: the server's and Vault's certificates were not checked against %s and %s; "+
			"the first device to boot is the check\n", serverCA, vaultCA)
	} else {
		err := errors.Join(
			probe(ctx, o.ServerURL, serverPEM, "the server", "-server-url", serverCA),
			probe(ctx, o.DeviceVaultAddr, vaultPEM, "Vault", addrFlag, vaultCA))
		if err != nil {
			return fmt.Errorf("%w\nno bundle written (-offline skips this check, for an image built where neither can be reached)", err)
		}
	}
	a, err := vf.admin(env)
	if err != nil {
		return err
	}
	cred, err := a.MintEnrollmentCredential(ctx, o.Fleet)
	if err != nil {
		return err
	}
	b.RoleID, b.SecretID, b.Generation = cred.RoleID, cred.SecretID, cred.Generation
	data, err := b.Marshal()
	if err != nil {
		return err
	}
	if len(data) > bundle.MaxSize {
		return fmt.Errorf("the bundle would be %d bytes, over the %d devices read: %s holds too many certificates; name only the CAs needed",
			len(data), bundle.MaxSize, vaultCA)
	}
	if err := writeOwnerOnly(o.Out, data); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "wrote %s: fleet %s, generation %d, a new enrollment secret ID (accessor %s)\n", o.Out, o.Fleet, cred.Generation, cred.Accessor)
	if vaultPEM == "" && strings.HasPrefix(o.DeviceVaultAddr, "https://") {
		fmt.Fprintln(env.Stdout, "note: the bundle names no CA for Vault: devices trust their system roots for", o.DeviceVaultAddr,
			"(pass -device-vault-ca for a private CA)")
	}
	return nil
}

// requireHTTPS refuses an address devices would reach in clear.
func requireHTTPS(flag, addr, what, hint string) error {
	if addr == "" {
		return fmt.Errorf("%s is required: the address devices reach %s at", flag, what)
	}
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("%s %q: devices reach %s over https only%s", flag, addr, what, hint)
	}
	return nil
}

// caSource is where a CA bundle for the devices comes from, named as the
// administrator would fix it.
type caSource struct {
	flag string // the flag that sets it
	from string // the variable it defaulted from, if any
	path string // a file, or a directory for $VAULT_CAPATH
	dir  bool
}

func (c caSource) String() string {
	switch {
	case c.path == "":
		return "the system roots (no " + c.flag + ")"
	case c.from != "":
		return fmt.Sprintf("%s=%s (or pass %s)", c.from, c.path, c.flag)
	}
	return c.path + " (" + c.flag + ")"
}

// read returns the PEM bundle, checked to hold only certificates.
func (c caSource) read() (string, error) {
	if c.path == "" {
		return "", nil
	}
	if c.dir {
		return readCADir(c.path, c.from)
	}
	data, err := readLimited(c.path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", c, err)
	}
	if _, err := bundle.CertPool(string(data)); err != nil {
		return "", fmt.Errorf("%s: %w", c, err)
	}
	return string(data), nil
}

// deviceVaultCA is the CA devices trust for Vault: the flag's file, else
// what the vault command would trust ($VAULT_CACERT before $VAULT_CAPATH).
func deviceVaultCA(flagFile string, getenv func(string) string) caSource {
	c := caSource{flag: "-device-vault-ca", path: flagFile}
	switch {
	case flagFile != "":
	case getenv("VAULT_CACERT") != "":
		c.from, c.path = "$VAULT_CACERT", getenv("VAULT_CACERT")
	case getenv("VAULT_CAPATH") != "":
		c.from, c.path, c.dir = "$VAULT_CAPATH", getenv("VAULT_CAPATH"), true
	}
	return c
}

// readLimited reads a CA file no larger than a bundle.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, bundle.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > bundle.MaxSize {
		return nil, fmt.Errorf("larger than a bundle may be (%d bytes)", bundle.MaxSize)
	}
	return data, nil
}
