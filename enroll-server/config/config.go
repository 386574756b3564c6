// Package config loads enroll-server's configuration file: strict YAML
// (an unknown key is an error that names it), defaults for every key,
// a few environment overrides, and validation with messages that name the
// key. The result is the File itself, every default filled in and checked.
package config

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/ekfetch"
	"github.com/edge-enroll/enroll/pkg/strictyaml"
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
	Address string `yaml:"address"`
	// FailoverAddresses are the other nodes of the Vault cluster, tried in
	// order when the one in use cannot take a request.
	FailoverAddresses []string      `yaml:"failover_addresses"`
	CAFile            string        `yaml:"ca_file"`
	CredentialsFile   string        `yaml:"credentials_file"`
	Timeout           time.Duration `yaml:"timeout"`
	EnrollMount       string        `yaml:"enroll_mount"`
	KVMount           string        `yaml:"kv_mount"`
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
	// BootPolicy, when set, is the fleet's measured-boot policy: devices
	// must send their TCG event log with every attestation, and the boot
	// it shows must match.
	BootPolicy *BootPolicy `yaml:"boot_policy"`
}

// BootPolicy judges the boot a device's event log shows, once it replayed
// against the quoted PCRs. `enrollctl boot-policy learn` prints one from a
// reference device.
type BootPolicy struct {
	// SecureBoot is required (the log must show Secure Boot on) or any
	// (the default).
	SecureBoot string `yaml:"secure_boot"`
	// PCR4Allowed lists the boot applications (boot loaders, shims,
	// kernels) that may be measured into PCR 4, as hex SHA-256 digests;
	// empty allows any.
	PCR4Allowed []string `yaml:"pcr4_allowed"`
}

// Default returns the configuration with every default filled in.
func Default() File {
	return File{
		Listen:    ":8443",
		TLS:       TLSFile{CertFile: "/etc/enroll-server/tls/server.crt", KeyFile: "/etc/enroll-server/tls/server.key"},
		Vault:     VaultFile{Address: "https://127.0.0.1:8200", FailoverAddresses: []string{}, CredentialsFile: "/etc/enroll-server/vault-credentials.json", Timeout: 10 * time.Second, EnrollMount: "edge-enroll", KVMount: "edge-kv"},
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
