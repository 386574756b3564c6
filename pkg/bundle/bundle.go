// Package bundle defines the bootstrap bundle baked into device images: where
// the enrollment server and Vault are, which CAs to trust, and the fleet's
// shared enrollment credential.
//
// A bundle holds a secret (the enrollment secret ID), so it is written
// owner-only and parsed as hostile input: size-capped, strictly decoded and
// fully validated before anything uses it.
package bundle

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strconv"

	"github.com/edge-enroll/enroll/pkg/ekprofile"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Version is the bundle format this package reads and writes.
const Version = 1

// MaxSize caps the size of a bundle file.
const MaxSize = 64 << 10

// Bundle is the bootstrap bundle of one fleet.
type Bundle struct {
	Version     int    `json:"version"`
	Fleet       string `json:"fleet"`
	ServerURL   string `json:"server_url"`
	ServerCAPEM string `json:"server_ca_pem,omitempty"`
	VaultAddr   string `json:"vault_addr"`
	VaultCAPEM  string `json:"vault_ca_pem,omitempty"`
	// EnrollMount is the AppRole mount of the fleet's enrollment role.
	EnrollMount string `json:"enroll_mount"`
	// DeviceMount is the AppRole mount holding the fleet's device roles; the
	// device derives the creation path of its wrapped secret ID from it.
	DeviceMount string `json:"device_mount"`
	// RoleID and SecretID are the fleet's shared enrollment credential;
	// both empty for devices that are only ever pre-provisioned.
	RoleID     string `json:"role_id,omitempty"`
	SecretID   string `json:"secret_id,omitempty"`
	Generation int    `json:"generation"`
	// TPMEK is the fleet's EK preference: the kinds (rsa2048, ecc256,
	// ecc384, rsa3072) a device with tpm.ek auto looks for a certificate
	// of, in this order. Empty: the client's default order.
	TPMEK []string `json:"tpm_ek,omitempty"`
}

// LogValue keeps the secret out of logs even if a bundle is logged whole.
func (b Bundle) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("fleet", b.Fleet),
		slog.Int("generation", b.Generation),
		slog.String("server_url", b.ServerURL),
		slog.String("vault_addr", b.VaultAddr),
	)
}

var (
	mountRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	idRE    = regexp.MustCompile(`^[A-Za-z0-9-]{1,128}$`)
)

// Parse reads and validates a bundle. Unknown fields, trailing data, a
// missing or invalid field are all errors that name the field.
func Parse(r io.Reader) (*Bundle, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("bundle larger than %d bytes", MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var b Bundle
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("decode bundle: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode bundle: trailing data after the JSON object")
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Marshal validates the bundle and encodes it.
func (b *Bundle) Marshal() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// Validate checks every field and returns all problems at once.
func (b *Bundle) Validate() error {
	var errs []error
	add := func(field string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("bundle %s: %w", field, err))
		}
	}
	if b.Version != Version {
		add("version", fmt.Errorf("unsupported version %d (want %d)", b.Version, Version))
	}
	add("fleet", wire.ValidateFleet(b.Fleet))
	if _, err := ekprofile.ParseKinds(b.TPMEK); err != nil {
		add("tpm_ek", err)
	}
	add("server_url", ValidateURL(b.ServerURL))
	add("vault_addr", ValidateURL(b.VaultAddr))
	add("server_ca_pem", validateOptionalPEM(b.ServerCAPEM))
	add("vault_ca_pem", validateOptionalPEM(b.VaultCAPEM))
	add("enroll_mount", matches(mountRE, b.EnrollMount))
	add("device_mount", matches(mountRE, b.DeviceMount))
	// A bundle for pre-provisioned devices may carry no shared credential.
	if b.RoleID != "" || b.SecretID != "" {
		add("role_id", matches(idRE, b.RoleID))
		add("secret_id", matches(idRE, b.SecretID))
	}
	if b.Generation < 1 {
		add("generation", fmt.Errorf("must be at least 1, got %d", b.Generation))
	}
	return errors.Join(errs...)
}

func matches(re *regexp.Regexp, s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if !re.MatchString(s) {
		return errors.New("malformed")
	}
	return nil
}

// ValidateURL accepts https URLs, and plain http only to a loopback address
// (a local development setup): credentials never cross a network in clear.
func ValidateURL(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q: want scheme://host[:port][/path]", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %s is not between 1 and 65535", s, p)
		}
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("%q: plain http is allowed only to a loopback address", s)
	}
	return fmt.Errorf("%q: scheme must be https (or http to a loopback address)", s)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validateOptionalPEM(s string) error {
	if s == "" {
		return nil
	}
	_, err := CertPool(s)
	return err
}

// CertPool parses a PEM bundle of CA certificates. Every block must be a
// certificate; an empty bundle is an error.
func CertPool(pemData string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	rest := []byte(pemData)
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n+1, block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("data after the last PEM block")
	}
	if n == 0 {
		return nil, errors.New("no certificate found")
	}
	return pool, nil
}
