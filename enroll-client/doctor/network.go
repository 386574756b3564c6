package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Clock skew thresholds against the server's Date header.
const (
	SkewWarn = time.Minute
	SkewFail = 5 * time.Minute
)

// endpoint is one TLS peer the bundle names.
type endpoint struct {
	check   string // "server" or "vault"
	url     string
	caPEM   string
	caField string // the bundle field holding caPEM
	urlKey  string // the bundle field holding url
	path    string // what to ask for
	who     string // whose CA, in a fix
}

func checkNetwork(ctx context.Context, cfg config.File, b *bundle.Bundle, opts Options) []Result {
	server := endpoint{"server", b.ServerURL, b.ServerCAPEM, "server_ca_pem", "server_url", wire.PathHealth, "the enrollment server's"}
	vlt := endpoint{"vault", b.VaultAddr, b.VaultCAPEM, "vault_ca_pem", "vault_addr", "/v1/sys/health", "Vault's"}
	var out []Result

	before := opts.Now()
	resp, _, r := reach(ctx, cfg, server, opts)
	after := opts.Now()
	out = append(out, r)
	if resp != nil {
		if resp.StatusCode != http.StatusOK {
			out = append(out, res(Warn, "server", fmt.Sprintf("%s answered %s on %s", b.ServerURL, resp.Status, wire.PathHealth),
				"check that server_url in "+cfg.BundlePath+" is the enrollment server's address"))
		}
	}
	out = append(out, checkClock(resp, before, after))

	resp, body, r := reach(ctx, cfg, vlt, opts)
	out = append(out, r)
	if resp != nil {
		h := vaultHealth(cfg, b, resp, body)
		out = append(out, h)
		if h.Status == OK {
			out = append(out, checkBootstrap(ctx, cfg, b, opts))
		}
	}
	return out
}

// checkBootstrap logs in to Vault with the bundle's bootstrap credential,
// as a device's first boot does, and has the token it gets (which can do
// nothing else) revoke itself at once. A refusal fails a device that has
// no state yet and no TPM to prove itself with: it can never enroll. For
// any other it is a warning: a device that has enrolled no longer needs
// the credential (its fleet may have retired that generation since), and
// one bound to its TPM enrolls again with attestation alone.
func checkBootstrap(ctx context.Context, cfg config.File, b *bundle.Bundle, opts Options) Result {
	const name = "bootstrap"
	if b.RoleID == "" {
		return res(OK, name, "the bundle holds no bootstrap credential: devices enroll with a pre-provisioned credential or their TPM", "")
	}
	vc, err := vault.New(b.VaultAddr, b.VaultCAPEM, opts.Timeout)
	if err != nil {
		return res(Fail, name, err.Error(), "fix vault_addr and vault_ca_pem in "+cfg.BundlePath)
	}
	defer vc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	a, err := vc.Login(ctx, b.EnrollMount, b.RoleID, b.SecretID)
	if errors.Is(err, vault.ErrCredentialRefused) {
		status := Warn
		if _, serr := os.Stat(cfg.StatePath); errors.Is(serr, os.ErrNotExist) && cfg.TPM.Mode == "off" {
			status = Fail // never enrolled, nothing else to prove itself with
		}
		return res(status, name, fmt.Sprintf("Vault refused the bundle's bootstrap credential (fleet %s, generation %d, mount %s): %v",
			b.Fleet, b.Generation, b.EnrollMount, err),
			"a device that never enrolled cannot enroll with it: install the fleet's current bundle (enrollctl bundle); an enrolled device does not need it")
	}
	if err != nil {
		return res(Fail, name, fmt.Sprintf("bootstrap login at %s: %v", b.EnrollMount, err), "check enroll_mount in "+cfg.BundlePath+" and Vault's health")
	}
	revoked := "its token revoked"
	if err := vc.RevokeSelf(ctx, a.Token); err != nil {
		revoked = "its token left to expire (" + err.Error() + ")"
	}
	return res(OK, name, fmt.Sprintf("the bundle's bootstrap credential (generation %d) logs in at %s; %s", b.Generation, b.EnrollMount, revoked), "")
}

// reach makes a real request to e, through TLS with the bundle's CA, and
// names the bundle field to fix when it fails.
func reach(ctx context.Context, cfg config.File, e endpoint, opts Options) (*http.Response, []byte, Result) {
	name := e.check + " TLS"
	u, err := url.Parse(e.url)
	if err != nil {
		return nil, nil, res(Fail, name, fmt.Sprintf("%s: %v", e.url, err), "fix "+e.urlKey+" in "+cfg.BundlePath)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	caFrom := "the system's roots (the bundle has no " + e.caField + ")"
	if e.caPEM != "" {
		pool, err := bundle.CertPool(e.caPEM)
		if err != nil {
			return nil, nil, res(Fail, name, fmt.Sprintf("%s in %s: %v", e.caField, cfg.BundlePath, err), "rebuild the bundle with a valid PEM CA (enrollctl bundle)")
		}
		tlsCfg.RootCAs = pool
		caFrom = e.caField + " of " + cfg.BundlePath
	}
	client := &http.Client{
		Timeout:   opts.Timeout,
		Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil, TLSHandshakeTimeout: opts.Timeout},
		// A redirect is not followed: the device's own clients do not
		// either.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	resp, body, err := get(ctx, client, strings.TrimRight(e.url, "/")+e.path)
	if err != nil {
		return nil, nil, res(Fail, name, fmt.Sprintf("%s: %v", e.url, err), tlsFix(err, cfg, e))
	}
	if u.Scheme != "https" {
		return resp, body, res(Warn, name, fmt.Sprintf("%s is plain HTTP: nothing proves who answers", e.url),
			"use an https "+e.urlKey+" in the bundle outside a test setup")
	}
	return resp, body, res(OK, name, fmt.Sprintf("%s: certificate of %s verified with %s", e.url, u.Hostname(), caFrom), "")
}

// tlsFix says what to change for a failed request.
func tlsFix(err error, cfg config.File, e endpoint) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown):
		return fmt.Sprintf("%s in %s does not sign the certificate %s presents: rebuild the bundle with %s CA (enrollctl bundle), or fix %s if it names the wrong host",
			e.caField, cfg.BundlePath, e.url, e.who, e.urlKey)
	case errors.As(err, &host):
		return fmt.Sprintf("the certificate is not for this host: fix %s in %s to a name the certificate holds, or reissue the certificate", e.urlKey, cfg.BundlePath)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Sprintf("the certificate is expired or not yet valid: renew it, or set the device's clock (see the clock check); CA from %s in %s", e.caField, cfg.BundlePath)
	case errors.As(err, &verify), errors.As(err, &invalid):
		return fmt.Sprintf("check %s in %s against the certificate %s presents", e.caField, cfg.BundlePath, e.url)
	}
	return fmt.Sprintf("check %s in %s, that %s runs there, and the network and firewall between them", e.urlKey, cfg.BundlePath, e.check)
}

// checkClock compares the device's clock with the server's Date header,
// taken halfway through the request.
func checkClock(resp *http.Response, before, after time.Time) Result {
	const name = "clock"
	if resp == nil {
		return res(Warn, name, "not compared: the server did not answer", "fix the server check first")
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return res(Warn, name, "not compared: the server sent no valid Date header", "check that server_url is the enrollment server")
	}
	local := before.Add(after.Sub(before) / 2)
	skew := local.Sub(date)
	abs := skew.Abs()
	// Date has a resolution of one second: past a minute, minutes say it.
	shown := abs.Round(time.Second)
	if abs >= time.Minute {
		shown = abs.Round(time.Minute)
	}
	detail := fmt.Sprintf("the device's clock is %s %s the server's", shown, map[bool]string{true: "ahead of", false: "behind"}[skew > 0])
	fix := "set the device's clock (enable NTP, e.g. timedatectl set-ntp true): token and certificate lifetimes depend on it"
	switch {
	case abs > SkewFail:
		return res(Fail, name, detail, fix)
	case abs > SkewWarn:
		return res(Warn, name, detail, fix)
	}
	return res(OK, name, fmt.Sprintf("within %s of the server's", SkewWarn), "")
}

// vaultHealth reads Vault's sys/health answer.
func vaultHealth(cfg config.File, b *bundle.Bundle, resp *http.Response, body []byte) Result {
	const name = "vault"
	var h struct {
		Initialized *bool  `json:"initialized"`
		Sealed      bool   `json:"sealed"`
		Version     string `json:"version"`
	}
	if json.Unmarshal(body, &h) != nil || h.Initialized == nil {
		return res(Fail, name, fmt.Sprintf("%s answered %s on /v1/sys/health, not as Vault does", b.VaultAddr, resp.Status),
			"fix vault_addr in "+cfg.BundlePath+": it must be Vault's address")
	}
	switch {
	case !*h.Initialized:
		return res(Fail, name, b.VaultAddr+" is not initialized", "initialize Vault, or fix vault_addr in "+cfg.BundlePath)
	case h.Sealed:
		return res(Fail, name, b.VaultAddr+" is sealed", "have Vault unsealed; the device cannot log in meanwhile")
	}
	return res(OK, name, fmt.Sprintf("%s is Vault %s, unsealed", b.VaultAddr, h.Version), "")
}
