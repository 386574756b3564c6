// Package doctor checks an enroll-server installation online: its
// configuration (by the checks run makes), its TLS certificate, Vault (the
// address, the CA, the server's credentials and policy), each fleet's
// objects in Vault, and the store.
package doctor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/app"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/pgstore"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/doctor"
)

// CertWarning is how close to its expiry the server's certificate makes
// doctor warn.
const CertWarning = 14 * 24 * time.Hour

// Options say what to check.
type Options struct {
	ConfigPath   string
	Getenv       func(string) string
	DevPlainHTTP bool
	Now          time.Time
}

// Run makes every check and returns the report.
func Run(ctx context.Context, o Options) *doctor.Report {
	r := &doctor.Report{}
	cfg, err := config.Load(o.ConfigPath, o.Getenv)
	if err != nil {
		r.Add(doctor.Failed("configuration", err.Error(), "fix the key the message names; `enroll-server check-config` repeats this check"))
		return r
	}
	r.Add(doctor.Passed("configuration", "%s is valid", o.ConfigPath))
	if err := app.Check(cfg, app.Options{DevPlainHTTP: o.DevPlainHTTP}); err != nil {
		r.Add(doctor.Failed("files", err.Error(), "run refuses to start until this is fixed"))
	} else {
		r.Add(doctor.Passed("files", "credentials, TLS, audit key and fleet files read as run reads them"))
	}
	if !o.DevPlainHTTP {
		r.Add(certificate(cfg, o.Now))
	}
	r.Add(store(ctx, cfg))
	creds, err := vault.LoadCredentials(cfg.Vault.CredentialsFile)
	if err != nil {
		r.Add(doctor.Failed("vault login", "no usable credentials: "+err.Error(), "write them with `enrollctl server-credentials -out "+cfg.Vault.CredentialsFile+"`"))
		return r
	}
	layout := vault.Layout{EnrollMount: cfg.Vault.EnrollMount, KVMount: cfg.Vault.KVMount}
	// Each node of a cluster on its own: a standby down is worth knowing
	// before the active one goes too.
	if len(cfg.Vault.FailoverAddresses) > 0 {
		for _, addr := range append([]string{cfg.Vault.Address}, cfg.Vault.FailoverAddresses...) {
			r.Add(vaultNode(ctx, cfg, addr, layout, creds))
		}
	}
	vc, err := vault.NewServer(vault.Options{Address: cfg.Vault.Address, Failover: cfg.Vault.FailoverAddresses,
		CAFile: cfg.Vault.CAFile, Timeout: 10 * time.Second}, layout, creds, slog.New(slog.DiscardHandler))
	if err != nil {
		r.Add(doctor.Failed("vault", err.Error(), "check vault.address and vault.ca_file"))
		return r
	}
	if err := vc.Health(ctx); err != nil {
		r.Add(doctor.Failed("vault", err.Error(), vaultFix(cfg, err)))
		return r
	}
	if len(cfg.Vault.FailoverAddresses) > 0 {
		r.Add(doctor.Passed("vault", "the cluster answers, initialised and unsealed (through %s and its failover addresses)", cfg.Vault.Address))
	} else {
		r.Add(doctor.Passed("vault", "%s answers, initialised and unsealed", cfg.Vault.Address))
	}
	policies, err := vc.LoginOnce(ctx)
	if err != nil {
		r.Add(doctor.Failed("vault login", vault.Brief(err),
			"the credentials in "+cfg.Vault.CredentialsFile+" are refused: mint new ones with `enrollctl server-credentials`"))
		return r
	}
	if !slices.Contains(policies, vault.ServerPolicy) {
		r.Add(doctor.Failed("vault login", fmt.Sprintf("logged in, but the token holds %v, not %s", policies, vault.ServerPolicy),
			"run `enrollctl setup -fleet NAME` and `enrollctl server-credentials` again"))
	} else {
		r.Add(doctor.Passed("vault login", "logged in with the server's credentials (policy %s)", vault.ServerPolicy))
	}
	for _, f := range cfg.Fleets {
		r.Add(fleet(ctx, vc, f.Name))
	}
	return r
}

func certificate(cfg config.File, now time.Time) doctor.Result {
	const check = "tls certificate"
	leaf, err := app.ServerCertificate(cfg, now)
	if err != nil {
		return doctor.Failed(check, err.Error(), "install a certificate and its key at tls.cert_file and tls.key_file")
	}
	names := append(slices.Clone(leaf.DNSNames), ipStrings(leaf)...)
	left := leaf.NotAfter.Sub(now)
	detail := fmt.Sprintf("valid until %s (%d days), for %s", leaf.NotAfter.UTC().Format(time.RFC3339), int(left.Hours()/24), strings.Join(names, ", "))
	switch {
	case len(names) == 0:
		return doctor.Failed(check, "the certificate names no DNS name or IP address (subjectAltName)", "devices verify the name in the server URL: reissue the certificate with it")
	case left < CertWarning:
		return doctor.Warned(check, detail, "renew it, then `kill -HUP` the server (no restart needed)")
	}
	return doctor.Passed(check, "%s", detail)
}

func ipStrings(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.IPAddresses))
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func store(ctx context.Context, cfg config.File) doctor.Result {
	const check = "store"
	if cfg.DatabaseURL != "" {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		s, err := pgstore.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return doctor.Failed(check, err.Error(), "check database_url, the database's reachability and the role's rights")
		}
		s.Close()
		return doctor.Passed(check, "PostgreSQL answers and its schema is current")
	}
	fi, err := os.Stat(cfg.StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return doctor.Passed(check, "%s does not exist yet: the server creates it", cfg.StatePath)
	}
	if err != nil {
		return doctor.Failed(check, err.Error(), "check state_path and its directory's permissions")
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return doctor.Warned(check, fmt.Sprintf("%s has mode %v", cfg.StatePath, fi.Mode().Perm()), "chmod 600 "+cfg.StatePath)
	}
	s, err := boltstore.Open(cfg.StatePath)
	if errors.Is(err, boltstore.ErrLocked) {
		return doctor.Passed(check, "%s is in use by the running server", cfg.StatePath)
	}
	if err != nil {
		return doctor.Failed(check, err.Error(), "check state_path; restore it from a backup if it is damaged")
	}
	s.Close()
	return doctor.Passed(check, "%s opens and its schema is current", cfg.StatePath)
}

// vaultNode checks one address of a cluster alone: a node down or sealed is
// a warning while another serves.
func vaultNode(ctx context.Context, cfg config.File, addr string, layout vault.Layout, creds vault.Credentials) doctor.Result {
	check := "vault node " + addr
	vc, err := vault.NewServer(vault.Options{Address: addr, CAFile: cfg.Vault.CAFile, Timeout: 5 * time.Second},
		layout, creds, slog.New(slog.DiscardHandler))
	if err == nil {
		err = vc.Health(ctx)
	}
	if err != nil {
		return doctor.Warned(check, err.Error(), "the server fails over past it; bring the node back or remove it from vault.failover_addresses")
	}
	return doctor.Passed(check, "answers, initialised and unsealed")
}

func fleet(ctx context.Context, vc *vault.Server, name string) doctor.Result {
	check := "fleet " + name
	g, err := vc.Generations(ctx, name)
	if errors.Is(err, vault.ErrNotFound) {
		return doctor.Failed(check, "not set up in Vault", "run `enrollctl setup -fleet "+name+"`")
	}
	if err != nil {
		return doctor.Failed(check, vault.Brief(err), "check the server's policy: run `enrollctl setup -fleet "+name+"` again")
	}
	return doctor.Passed(check, "set up in Vault, generation %d current", g.Current)
}

// vaultFix names what to change for a failure to reach Vault.
func vaultFix(cfg config.File, err error) string {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		if cfg.Vault.CAFile == "" {
			return "Vault's certificate is from a CA this machine does not trust: set vault.ca_file to that CA"
		}
		return "vault.ca_file (" + cfg.Vault.CAFile + ") does not hold the CA of Vault's certificate"
	case errors.As(err, &hostname):
		return "vault.address names a host Vault's certificate is not for: use the name in its certificate"
	case strings.Contains(err.Error(), "connection refused"), strings.Contains(err.Error(), "no such host"):
		return "nothing answers at vault.address (" + cfg.Vault.Address + "): check the address and that Vault runs"
	case strings.Contains(err.Error(), "sealed=true"):
		return "Vault is sealed: unseal it"
	}
	return "check vault.address and vault.ca_file"
}
