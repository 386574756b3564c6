package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/ekfetch"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/logging"
	"github.com/edge-enroll/enroll/pkg/wire"
)

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
	nodes := map[string]bool{vaultNode(f.Vault.Address): true}
	for i, a := range f.Vault.FailoverAddresses {
		key := fmt.Sprintf("vault.failover_addresses[%d]", i)
		if err := bundle.ValidateURL(a); err != nil {
			bad(key, "%v", err)
		} else if nodes[vaultNode(a)] {
			bad(key, "%s is listed twice", a)
		}
		nodes[vaultNode(a)] = true
	}
	if len(f.Vault.FailoverAddresses) > 16 {
		bad("vault.failover_addresses", "at most 16")
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
		if t.BootPolicy != nil {
			bad("boot_policy", "a boot policy needs TPM attestation: set mode to required")
		}
		return errs
	case wire.TPMOptional:
		// A device that says it has no TPM would skip the policy: with
		// optional attestation it is no policy of the fleet's boot.
		if t.BootPolicy != nil {
			bad("boot_policy", "a boot policy needs mode: required (with optional, a device enrolling without a TPM is never judged)")
		}
	case wire.TPMRequired:
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
	if bp := t.BootPolicy; bp != nil {
		switch bp.SecureBoot {
		case "", "any", "required":
		default:
			bad("boot_policy.secure_boot", "want required or any, got %q", bp.SecureBoot)
		}
		for i, h := range bp.PCR4Allowed {
			if !isHexDigest(h) {
				bad(fmt.Sprintf("boot_policy.pcr4_allowed[%d]", i), "want 64 hex digits (SHA-256), got %q", h)
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

// vaultNode is a Vault address as a node: scheme and host in lower case,
// no trailing slash, so that one node is not listed twice under two
// spellings.
func vaultNode(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return addr
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimSuffix(u.Path, "/")
}
