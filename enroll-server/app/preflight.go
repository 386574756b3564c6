package app

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admission"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/enrollment"
	"github.com/edge-enroll/enroll/enroll-server/vault"
)

// files is what the files a configuration names hold, read and checked.
type files struct {
	creds    vault.Credentials
	tls      *tls.Config // nil when serving plain HTTP
	cert     *certificate
	auditKey audit.Key // nil without audit.key_file
	fleets   []enrollment.Fleet
}

// Check makes every check New makes before it opens the store and binds
// its listeners: the configuration's own rules (config.Load made them),
// then every file it names. `check-config` runs exactly this, so it can
// never pass what `run` refuses.
func Check(cfg config.File, opts Options) error {
	f, err := readFiles(cfg, opts)
	if err != nil {
		return err
	}
	_, err = vault.NewServer(vaultOptions(cfg, nil), vault.Layout{EnrollMount: cfg.Vault.EnrollMount, KVMount: cfg.Vault.KVMount},
		f.creds, slog.New(slog.DiscardHandler))
	return err
}

func vaultOptions(cfg config.File, observe func(string, int, time.Duration)) vault.Options {
	return vault.Options{Address: cfg.Vault.Address, Failover: cfg.Vault.FailoverAddresses, CAFile: cfg.Vault.CAFile, Timeout: cfg.Vault.Timeout, Observe: observe}
}

func readFiles(cfg config.File, opts Options) (files, error) {
	var f files
	var err error
	if f.creds, err = vault.LoadCredentials(cfg.Vault.CredentialsFile); err != nil {
		return f, err
	}
	if !opts.DevPlainHTTP {
		if f.cert, err = loadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile, time.Now()); err != nil {
			return f, err
		}
		f.tls = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: f.cert.get}
	}
	if cfg.Audit.KeyFile != "" {
		if f.auditKey, err = audit.LoadKey(cfg.Audit.KeyFile); err != nil {
			return f, fmt.Errorf("audit.key_file: %w", err)
		}
	}
	if f.fleets, err = buildFleets(cfg); err != nil {
		return f, err
	}
	return f, nil
}

// buildFleets builds the enrollment core's fleets, reading each one's TPM
// files.
func buildFleets(cfg config.File) ([]enrollment.Fleet, error) {
	out := make([]enrollment.Fleet, 0, len(cfg.Fleets))
	for i, f := range cfg.Fleets {
		tpm, err := tpmPolicy(f.TPM)
		if err != nil {
			return nil, fmt.Errorf("fleets[%d].tpm: %w", i, err)
		}
		out = append(out, enrollment.Fleet{Name: f.Name, WrapTTL: f.WrapTTL, TPM: tpm,
			TokenTTL: f.DeviceTokenTTL, TokenMaxTTL: f.DeviceTokenMaxTTL, SecretIDTTL: f.DeviceSecretIDTTL,
			RecoveryBudget: *f.RecoveryBudget, RecoveryWindow: f.RecoveryWindow,
			Approval: f.Admission, AckTimeout: f.AckTimeout, KeyMaxAge: f.DeviceKeyMaxAge, RotationGrace: *f.RotationGrace,
			Limits: admission.Limits{Rate: f.RateLimit, Burst: f.RateBurst, MaxConcurrent: f.MaxConcurrent, MaxPerSource: f.MaxPerSource, Closed: f.Enrollment == "closed"}})
	}
	return out, nil
}

// loadCertificate reads the server's certificate and key and refuses a
// pair that does not match or a certificate outside its validity at now:
// devices would refuse every handshake.
func loadCertificate(certFile, keyFile string, now time.Time) (*certificate, error) {
	if fi, err := os.Stat(keyFile); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o007 != 0 {
		// Group access stays allowed: Debian's ssl-cert group reads keys.
		return nil, fmt.Errorf("tls.key_file %s: mode %v lets every user read the server's private key: chmod 600 (or 640 with a group)", keyFile, fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls (tls.cert_file %s, tls.key_file %s): %w", certFile, keyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s: %w", certFile, err)
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("tls.cert_file %s: the certificate expired at %s: renew it", certFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("tls.cert_file %s: the certificate is not valid before %s: check this machine's clock", certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	pair.Leaf = leaf
	c := &certificate{certFile: certFile, keyFile: keyFile}
	c.cur.Store(&pair)
	return c, nil
}

// ServerCertificate reads the server's certificate as run does (key
// matching, within validity at now) and returns it.
func ServerCertificate(cfg config.File, now time.Time) (*x509.Certificate, error) {
	c, err := loadCertificate(cfg.TLS.CertFile, cfg.TLS.KeyFile, now)
	if err != nil {
		return nil, err
	}
	return c.cur.Load().Leaf, nil
}
