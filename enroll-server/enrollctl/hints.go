package enrollctl

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Errors that say what to do: the causes an administrator meets on a first
// day (an expired Vault login, a CA not passed) are named with the flag or
// variable that fixes them.

// hinted is an error that already says what to do; with whole set, the
// hint says all there is to say.
type hinted struct {
	err   error
	hint  string
	whole bool
}

func (h *hinted) Error() string {
	if h.whole {
		return h.hint
	}
	return h.err.Error() + ": " + h.hint
}
func (h *hinted) Unwrap() error { return h.err }

// untrusted reports whether err is a TLS certificate verification failure.
func untrusted(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// serverHint explains a failed call to the enrollment server.
func serverHint(err error, serverURL, caPath string) error {
	if !untrusted(err) {
		return err
	}
	var he x509.HostnameError
	if errors.As(err, &he) {
		return &hinted{err: err, hint: fmt.Sprintf("the enrollment server's certificate is not issued for the name in %s: use a name it was issued for in -server-url or $ENROLL_SERVER_URL", serverURL)}
	}
	now := "the system roots"
	if caPath != "" {
		now = caPath
	}
	return &hinted{err: err, hint: fmt.Sprintf("the enrollment server's TLS certificate is not trusted (trusted now: %s): pass the PEM CA that signed it with -server-ca or $ENROLL_SERVER_CA", now)}
}

// vaultHint explains a failed call to Vault; enrollctl only ever talks to
// Vault and the enrollment server, and every server failure is explained
// by serverHint before it gets here.
func vaultHint(err error, env Env) error {
	var h *hinted
	switch {
	case err == nil || errors.As(err, &h):
		return err
	case errors.Is(err, vault.ErrInvalidToken):
		return &hinted{err: err, hint: fmt.Sprintf("Vault at %s does not accept $VAULT_TOKEN (expired, revoked or mistyped): log in to Vault again (vault login) and export the new VAULT_TOKEN", env.Getenv("VAULT_ADDR")), whole: true}
	case untrusted(err):
		now := "the system roots"
		if ca := env.Getenv("VAULT_CACERT"); ca != "" {
			now = ca
		}
		return &hinted{err: err, hint: fmt.Sprintf("Vault's TLS certificate at %s is not trusted (trusted now: %s): set $VAULT_CACERT (or -vault-ca, where the command has it) to the PEM CA that signed it", env.Getenv("VAULT_ADDR"), now)}
	}
	return err
}

// refusedHint adds to the server's refusal of a token enrollctl has just
// made at $VAULT_ADDR: the server asks its own Vault, which may be another.
func refusedHint(err error, env Env) error {
	if wire.CodeOf(err) != wire.CodeInvalidToken {
		return err
	}
	return &hinted{err: err, hint: fmt.Sprintf("enrollctl made that token at %s moments ago; if your Vault login is fresh, check that $VAULT_ADDR is the Vault the enrollment server uses", env.Getenv("VAULT_ADDR"))}
}
