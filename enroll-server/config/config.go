// Package config loads enroll-server's configuration file: strict YAML
// (an unknown key is an error that names it), defaults for every key,
// a few environment overrides, and validation with messages that name the
// key. The result is the File itself, every default filled in and checked.
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/ekfetch"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/logging"
	"github.com/edge-enroll/enroll/pkg/strictyaml"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// File is the configuration file as written by an operator.
type File struct {
	Listen string `yaml:"listen"`
	// MetricsListen serves Prometheus metrics (plain HTTP) on an address
	// of its own, off the devices' listener; empty: no metrics.
	MetricsListen string    `yaml:"metrics_listen"`
	TLS           TLSFile   `yaml:"tls"`
	Vault         VaultFile `yaml:"vault"`
	StatePath     string    `yaml:"state_path"`
	// DatabaseURL, when set, keeps the inventory in PostgreSQL instead of
	// the bbolt file at StatePath, so several replicas can share it.
	DatabaseURL string  `yaml:"database_url"`
	Log         LogFile `yaml:"log"`
	Alerts      Alerts  `yaml:"alerts"`
	Audit       Audit   `yaml:"audit"`
	Console     Console `yaml:"console"`
	Fleets      []Fleet `yaml:"fleets"`
}

// Console configures the fleet console in the browser.
type Console struct {
	// Listen serves the console on an address of its own (TLS with the
	// server's certificate), so that it can be kept to the admins'
	// network while the enrollment listener faces devices. Empty: no
	// console.
	Listen string `yaml:"listen"`
	// AuthMount is the Vault auth method people sign in through with a
	// username and password (a userpass or ldap mount); a Vault token
	// works as well.
	AuthMount string `yaml:"auth_mount"`
}

// Audit configures the audit log.
type Audit struct {
	// KeyFile holds the key (at least 32 bytes, mode 0600) whose HMAC
	// every audit record carries, so that whoever can write the database
	// cannot rewrite the log unseen. Keep it off the database's host and
	// backups. Empty: the hash chain alone.
	KeyFile string `yaml:"key_file"`
}

// Alerts configures where security alerts go besides the log, the metric
// and the store.
type Alerts struct {
	// WebhookURL receives each alert as a JSON POST; empty: none.
	WebhookURL     string        `yaml:"webhook_url"`
	WebhookTimeout time.Duration `yaml:"webhook_timeout"`
	// SweepInterval is how often the server looks for credentials that
	// were never acknowledged.
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// TLSFile is the server's certificate.
type TLSFile struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// VaultFile says how to reach Vault and log in.
type VaultFile struct {
	Address         string        `yaml:"address"`
	CAFile          string        `yaml:"ca_file"`
	CredentialsFile string        `yaml:"credentials_file"`
	Timeout         time.Duration `yaml:"timeout"`
	EnrollMount     string        `yaml:"enroll_mount"`
	KVMount         string        `yaml:"kv_mount"`
}

// LogFile configures logging.
type LogFile struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Fleet is one fleet the server enrolls devices of.
type Fleet struct {
	Name              string        `yaml:"name"`
	WrapTTL           time.Duration `yaml:"wrap_ttl"`
	DeviceTokenTTL    time.Duration `yaml:"device_token_ttl"`
	DeviceTokenMaxTTL time.Duration `yaml:"device_token_max_ttl"`
	DeviceSecretIDTTL time.Duration `yaml:"device_secret_id_ttl"`
	// RecoveryBudget is how many automatic re-enrollments a device may make
	// within RecoveryWindow before it is quarantined; 0 allows none. Unset
	// means the default.
	RecoveryBudget *int          `yaml:"recovery_budget"`
	RecoveryWindow time.Duration `yaml:"recovery_window"`
	// Admission is auto, allow-list (pre-authorised devices only) or
	// manual (devices wait, pending, for an administrator).
	Admission string `yaml:"admission"`
	// AckTimeout is how long after minting a credential the server waits
	// for the device's acknowledgement before treating it as intercepted.
	AckTimeout time.Duration `yaml:"ack_timeout"`
	// DeviceKeyMaxAge is how old a device key may grow before the device
	// makes a new one at its next refresh, signed by the old; 0 keeps keys
	// for the device's life.
	DeviceKeyMaxAge time.Duration `yaml:"device_key_max_age"`
	// Admission control in front of Vault, per fleet: admissions per
	// second (and burst), and devices enrolling at once, from admission to
	// acknowledgement; over either the server answers 429 with Retry-After.
	RateLimit     float64 `yaml:"rate_limit"`
	RateBurst     int     `yaml:"rate_burst"`
	MaxConcurrent int     `yaml:"max_concurrent"`
	// MaxPerSource bounds the admissions one network address may hold at
	// once, so that invented device IDs from one place cannot fill
	// max_concurrent; 0 means no bound (devices behind one NAT share an
	// address: set it above the most devices any one site enrolls at once).
	MaxPerSource int `yaml:"max_sessions_per_source"`
	// Enrollment is open or closed (the fleet's enrollment window).
	Enrollment string `yaml:"enrollment"`
	// RotationGrace is how long after a rotation the generation it
	// superseded must stay live (devices still in the field with the old
	// image enroll meanwhile) before an administrator may retire it
	// without -force; 0 lets a retire follow at once. Unset means the
	// default.
	RotationGrace *time.Duration `yaml:"rotation_grace"`
	// TPM is the fleet's attestation policy.
	TPM TPM `yaml:"tpm"`
}

// TPM is a fleet's TPM attestation policy.
type TPM struct {
	// Mode is off, optional (attested devices are bound to their TPM) or
	// required (every device must attest).
	Mode string `yaml:"mode"`
	// EKCAFile is a PEM bundle of TPM manufacturer CAs, roots and
	// intermediates, that EK certificates must chain to.
	EKCAFile string `yaml:"ek_ca_file"`
	// EKAllowList lists TPMs without an EK certificate that may enroll: the
	// hex SHA-256 of each EK public key in PKIX DER form (what
	// `enroll-client tpm-info` prints).
	EKAllowList []string `yaml:"ek_allow_list"`
	// PCRs are quoted, from the SHA-256 bank.
	PCRs []int `yaml:"pcrs"`
	// PCRPolicy, when set, lists the hex SHA-256 values each PCR may hold.
	PCRPolicy    map[int][]string `yaml:"pcr_policy"`
	ChallengeTTL time.Duration    `yaml:"challenge_ttl"`
	// EKCertFetch is off (default) or allowed: the server fetches the EK
	// certificate a TPM's manufacturer publishes (firmware TPMs) when the
	// device has none in NV, from EKCertURL (an https base; default the
	// manufacturer's) in EKCertFormat's naming (intel, the default, or
	// amd), trusting the system roots or EKCertFetchCAFile. The fetched
	// certificate must chain to ek_ca_file like any other.
	EKCertFetch       string `yaml:"ek_cert_fetch"`
	EKCertURL         string `yaml:"ek_cert_url"`
	EKCertFormat      string `yaml:"ek_cert_format"`
	EKCertFetchCAFile string `yaml:"ek_cert_fetch_ca_file"`
}

// Default returns the configuration with every default filled in.
func Default() File {
	return File{
		Listen:    ":8443",
		TLS:       TLSFile{CertFile: "/etc/enroll-server/tls/server.crt", KeyFile: "/etc/enroll-server/tls/server.key"},
		Vault:     VaultFile{Address: "https://127.0.0.1:8200", CredentialsFile: "/etc/enroll-server/vault-credentials.json", Timeout: 10 * time.Second, EnrollMount: "edge-enroll", KVMount: "edge-kv"},
		StatePath: "/var/lib/enroll-server/state.db",
		Log:       LogFile{Level: "info", Format: "json"},
		Alerts:    Alerts{WebhookTimeout: 5 * time.Second, SweepInterval: 15 * time.Second},
		Console:   Console{AuthMount: "userpass"},
	}
}

// DefaultRotationGrace is a fleet's rotation_grace when unset.
const DefaultRotationGrace = 24 * time.Hour

// FleetDefaults fills in a fleet's unset durations.
func FleetDefaults(f Fleet) Fleet {
	if f.WrapTTL == 0 {
		f.WrapTTL = 2 * time.Minute
	}
	if f.DeviceTokenTTL == 0 {
		f.DeviceTokenTTL = time.Hour
	}
	if f.DeviceTokenMaxTTL == 0 {
		f.DeviceTokenMaxTTL = 24 * time.Hour
	}
	if f.DeviceSecretIDTTL == 0 {
		f.DeviceSecretIDTTL = 30 * 24 * time.Hour
	}
	if f.RecoveryBudget == nil {
		five := 5
		f.RecoveryBudget = &five
	}
	if f.RecoveryWindow == 0 {
		f.RecoveryWindow = 24 * time.Hour
	}
	if f.Admission == "" {
		f.Admission = "auto"
	}
	if f.AckTimeout == 0 {
		f.AckTimeout = 10 * time.Minute
	}
	if f.RateLimit == 0 {
		f.RateLimit = 100
	}
	if f.RateBurst == 0 {
		f.RateBurst = 200
	}
	if f.MaxConcurrent == 0 {
		f.MaxConcurrent = 64
	}
	if f.Enrollment == "" {
		f.Enrollment = "open"
	}
	if f.RotationGrace == nil {
		f.RotationGrace = new(DefaultRotationGrace)
	}
	if f.TPM.Mode == "" {
		f.TPM.Mode = "off"
	}
	if f.TPM.EKCertFetch == "" {
		f.TPM.EKCertFetch = "off"
	}
	if f.TPM.EKCertFormat == "" {
		f.TPM.EKCertFormat = ekfetch.Intel
	}
	if f.TPM.PCRs == nil {
		f.TPM.PCRs = []int{0, 7}
	}
	if len(f.TPM.EKAllowList) == 0 {
		f.TPM.EKAllowList = nil
	}
	if len(f.TPM.PCRPolicy) == 0 {
		f.TPM.PCRPolicy = nil
	}
	if f.TPM.ChallengeTTL == 0 {
		f.TPM.ChallengeTTL = time.Minute
	}
	return f
}

// Env names the environment variables that override the file.
var Env = map[string]func(*File, string){
	"ENROLL_SERVER_LISTEN":     func(f *File, v string) { f.Listen = v },
	"ENROLL_SERVER_VAULT_ADDR": func(f *File, v string) { f.Vault.Address = v },
	"ENROLL_SERVER_STATE_PATH": func(f *File, v string) { f.StatePath = v },
	// A connection string often carries a password: keep it out of files.
	"ENROLL_SERVER_DATABASE_URL": func(f *File, v string) { f.DatabaseURL = v },
	"ENROLL_SERVER_LOG_LEVEL":    func(f *File, v string) { f.Log.Level = v },
}

// Load reads, overrides from the environment and validates a file.
func Load(path string, getenv func(string) string) (File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return File{}, fmt.Errorf("config: %w", err)
	}
	defer fh.Close()
	f, err := Parse(fh)
	if err != nil {
		return File{}, fmt.Errorf("config %s: %w", path, err)
	}
	for name, set := range Env {
		if v := getenv(name); v != "" {
			set(&f, v)
		}
	}
	if err := f.Validate(); err != nil {
		return File{}, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a file over the defaults, refusing unknown keys.
func Parse(r io.Reader) (File, error) {
	f := Default()
	if err := strictyaml.Decode(r, &f); err != nil {
		return File{}, err
	}
	for i := range f.Fleets {
		f.Fleets[i] = FleetDefaults(f.Fleets[i])
	}
	return f, nil
}

// mountRE is a Vault auth mount path: letters, digits, '-', '_', inner '/'.
var mountRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$`)

// Validate checks every key and reports all problems, each naming its key.
func (f File) Validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if f.Listen == "" {
		bad("listen", "required")
	}
	if err := bundle.ValidateURL(f.Vault.Address); err != nil {
		bad("vault.address", "%v", err)
	}
	if f.Vault.CredentialsFile == "" {
		bad("vault.credentials_file", "required")
	}
	if f.Vault.Timeout <= 0 {
		bad("vault.timeout", "must be positive")
	}
	if f.Vault.EnrollMount == "" {
		bad("vault.enroll_mount", "required")
	}
	if f.Vault.KVMount == "" {
		bad("vault.kv_mount", "required")
	}
	if f.StatePath == "" && f.DatabaseURL == "" {
		bad("state_path", "required unless database_url is set")
	}
	if f.DatabaseURL != "" && !strings.HasPrefix(f.DatabaseURL, "postgres://") && !strings.HasPrefix(f.DatabaseURL, "postgresql://") {
		bad("database_url", "want postgres://user@host:port/db")
	}
	if _, err := logging.ParseLevel(f.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if err := logging.ValidFormat(f.Log.Format); err != nil {
		bad("log.format", "%v", err)
	}
	if f.Alerts.WebhookURL != "" {
		if err := bundle.ValidateURL(f.Alerts.WebhookURL); err != nil {
			bad("alerts.webhook_url", "%v", err)
		}
	}
	if f.Alerts.WebhookTimeout <= 0 {
		bad("alerts.webhook_timeout", "must be positive")
	}
	if f.Alerts.SweepInterval <= 0 {
		bad("alerts.sweep_interval", "must be positive")
	}
	for _, l := range []struct{ key, addr string }{{"listen", f.Listen}, {"metrics_listen", f.MetricsListen}, {"console.listen", f.Console.Listen}} {
		if l.addr == "" {
			continue
		}
		if err := validListenAddr(l.addr); err != nil {
			bad(l.key, "%v", err)
		}
	}
	if f.MetricsListen != "" && f.MetricsListen == f.Listen && !strings.HasSuffix(f.Listen, ":0") {
		bad("metrics_listen", "must differ from listen")
	}
	if f.Console.Listen != "" && !mountRE.MatchString(f.Console.AuthMount) {
		bad("console.auth_mount", "want a Vault auth mount path such as userpass or ldap")
	}
	if f.Console.Listen != "" && !strings.HasSuffix(f.Console.Listen, ":0") && (f.Console.Listen == f.Listen || f.Console.Listen == f.MetricsListen) {
		bad("console.listen", "must differ from listen and metrics_listen")
	}
	if len(f.Fleets) == 0 {
		bad("fleets", "at least one fleet is required")
	}
	seen := map[string]bool{}
	for i, fl := range f.Fleets {
		key := fmt.Sprintf("fleets[%d]", i)
		if err := wire.ValidateFleet(fl.Name); err != nil {
			bad(key+".name", "%v", err)
		}
		if seen[fl.Name] {
			bad(key+".name", "fleet %q is listed twice", fl.Name)
		}
		seen[fl.Name] = true
		if fl.WrapTTL < 10*time.Second || fl.WrapTTL > time.Hour {
			bad(key+".wrap_ttl", "want between 10s and 1h, got %v", fl.WrapTTL)
		}
		if fl.DeviceTokenTTL < time.Second || fl.DeviceTokenMaxTTL < fl.DeviceTokenTTL {
			bad(key+".device_token_ttl", "want at least 1s and at most device_token_max_ttl")
		}
		if fl.RecoveryBudget != nil && *fl.RecoveryBudget < 0 {
			bad(key+".recovery_budget", "must not be negative")
		}
		if fl.RecoveryWindow <= 0 {
			bad(key+".recovery_window", "must be positive")
		}
		if fl.Admission != "auto" && fl.Admission != "allow-list" && fl.Admission != "manual" {
			bad(key+".admission", "want auto, allow-list or manual, got %q", fl.Admission)
		}
		if fl.RateLimit < 0 || fl.RateBurst < 0 || fl.MaxConcurrent < 0 || fl.MaxPerSource < 0 {
			bad(key+".rate_limit", "rate_limit, rate_burst, max_concurrent and max_sessions_per_source must not be negative")
		}
		if fl.Enrollment != "open" && fl.Enrollment != "closed" {
			bad(key+".enrollment", "want open or closed, got %q", fl.Enrollment)
		}
		if fl.AckTimeout < fl.WrapTTL {
			bad(key+".ack_timeout", "must be at least wrap_ttl (%v)", fl.WrapTTL)
		}
		if fl.DeviceSecretIDTTL < 0 {
			bad(key+".device_secret_id_ttl", "must not be negative")
		}
		if fl.RotationGrace != nil && *fl.RotationGrace < 0 {
			bad(key+".rotation_grace", "must not be negative")
		}
		if fl.DeviceKeyMaxAge < 0 {
			bad(key+".device_key_max_age", "must not be negative")
		}
		for _, err := range fl.TPM.validate() {
			bad(key+".tpm."+err.key, "%s", err.msg)
		}
	}
	return errors.Join(errs...)
}

type keyErr struct{ key, msg string }

func (t TPM) validate() []keyErr {
	var errs []keyErr
	bad := func(key, format string, args ...any) { errs = append(errs, keyErr{key, fmt.Sprintf(format, args...)}) }
	switch t.Mode {
	case wire.TPMOff:
		return nil
	case wire.TPMOptional, wire.TPMRequired:
	default:
		bad("mode", "want off, optional or required, got %q", t.Mode)
		return errs
	}
	switch t.EKCertFetch {
	case "", "off":
	case "allowed":
		if t.EKCAFile == "" {
			bad("ek_cert_fetch", "a fetched EK certificate must chain to manufacturer CAs: set ek_ca_file")
		}
		if _, err := ekfetch.NewSource(orString(t.EKCertFormat, ekfetch.Intel), t.EKCertURL, nil); err != nil {
			bad("ek_cert_url", "%v", err)
		}
	default:
		bad("ek_cert_fetch", "want off or allowed, got %q", t.EKCertFetch)
	}
	if t.EKCAFile == "" && len(t.EKAllowList) == 0 {
		bad("ek_ca_file", "a TPM fleet needs manufacturer CAs (ek_ca_file) or an ek_allow_list, or both")
	}
	for i, h := range t.EKAllowList {
		if !isHexDigest(h) {
			bad(fmt.Sprintf("ek_allow_list[%d]", i), "want 64 hex digits (SHA-256), got %q", h)
		}
	}
	if len(t.PCRs) == 0 || len(t.PCRs) > wire.MaxQuotedPCRs {
		bad("pcrs", "want 1 to %d PCRs", wire.MaxQuotedPCRs)
	}
	seen := map[int]bool{}
	for _, p := range t.PCRs {
		if p < 0 || p >= wire.MaxQuotedPCRs {
			bad("pcrs", "PCR %d is out of range 0-%d", p, wire.MaxQuotedPCRs-1)
		}
		if seen[p] {
			bad("pcrs", "PCR %d is listed twice", p)
		}
		seen[p] = true
	}
	for p, values := range t.PCRPolicy {
		if !seen[p] {
			bad("pcr_policy", "PCR %d is not among the quoted pcrs", p)
		}
		if len(values) == 0 {
			bad("pcr_policy", "PCR %d allows no value", p)
		}
		for _, v := range values {
			if !isHexDigest(v) {
				bad("pcr_policy", "PCR %d: want 64 hex digits (SHA-256), got %q", p, v)
			}
		}
	}
	if t.ChallengeTTL < 5*time.Second || t.ChallengeTTL > 10*time.Minute {
		bad("challenge_ttl", "want between 5s and 10m, got %v", t.ChallengeTTL)
	}
	return errs
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func isHexDigest(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// validListenAddr checks what net.Listen would refuse of a TCP address:
// a missing or out-of-range port.
func validListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port or :port, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q of %q is not a number from 0 to 65535", port, addr)
	}
	return nil
}
