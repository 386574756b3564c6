package enrollctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path/filepath"

	"github.com/edge-enroll/enroll/pkg/bundle"
)

// probe checks that a device trusting caPEM (the system roots when empty)
// would accept the TLS certificate served at addr: the same handshake and
// verification the device makes. A plain-http address (a dev Vault) is
// only dialled. Errors name the flag and file to fix.
func probe(ctx context.Context, addr, caPEM, what, addrFlag string, ca caSource) error {
	u, err := url.Parse(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", addrFlag, addr, err)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	hostPort := net.JoinHostPort(u.Hostname(), port)
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	nd := &net.Dialer{}
	if u.Scheme != "https" {
		conn, err := nd.DialContext(ctx, "tcp", hostPort)
		if err != nil {
			return unreachable(what, addr, addrFlag, err)
		}
		return conn.Close()
	}
	var roots *x509.CertPool // nil: the system roots, as on the device
	if caPEM != "" {
		if roots, err = bundle.CertPool(caPEM); err != nil {
			return fmt.Errorf("%s: %w", ca, err)
		}
	}
	d := &tls.Dialer{NetDialer: nd, Config: &tls.Config{RootCAs: roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err == nil {
		return conn.Close()
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%s at %s: its certificate is not signed by a CA in %s: %w; pass the CA that issued %s's certificate with %s",
			what, addr, ca, err, what, ca.flag)
	case errors.As(err, &host):
		return fmt.Errorf("%s at %s: its certificate is not for %q: %w; use in %s a name the certificate holds, or reissue it",
			what, addr, u.Hostname(), err, addrFlag)
	case errors.As(err, &invalid):
		return fmt.Errorf("%s at %s: its certificate is not valid: %w; renew it, or check this machine's clock", what, addr, err)
	}
	return unreachable(what, addr, addrFlag, err)
}

func unreachable(what, addr, addrFlag string, err error) error {
	return fmt.Errorf("%s at %s (%s) cannot be reached from here: %w; start it first or check the address", what, addr, addrFlag, err)
}

// readCADir reads every certificate under dir (the files of a CA
// directory, as Vault's VAULT_CAPATH is read), once each.
func readCADir(dir, from string) (string, error) {
	var out bytes.Buffer
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := readLimited(path)
		if err != nil {
			return err
		}
		if _, err := bundle.CertPool(string(data)); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if !seen[string(b.Bytes)] {
				seen[string(b.Bytes)] = true
				_ = pem.Encode(&out, b)
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("%s=%s (or pass -device-vault-ca): %w", from, dir, err)
	}
	if out.Len() == 0 {
		return "", fmt.Errorf("%s=%s (or pass -device-vault-ca): no certificate found", from, dir)
	}
	return out.String(), nil
}
