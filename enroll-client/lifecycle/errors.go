package lifecycle

import (
	"errors"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/backoff"
)

// ErrRejected is returned (wrapped) when the device stopped for a
// permanent reason; State.Reason says which.
var ErrRejected = errors.New("enrollment stopped permanently")

// permanentError marks a failure that retrying cannot fix.
type permanentError struct{ reason string }

func (e *permanentError) Error() string { return e.reason }

func permanent(format string, args ...any) error {
	return &permanentError{reason: fmt.Sprintf(format, args...)}
}

// retryDelay is the wait before the step that failed with err is tried
// again: a return time the server gave this device alone is kept to (the
// server spaced the crowd already); a Retry-After is a floor under the
// backoff.
func retryDelay(b *backoff.Backoff, err error) time.Duration {
	var se *serverapi.Error
	if !errors.As(err, &se) {
		return b.Next(0)
	}
	if se.Scheduled {
		return b.Scheduled(se.RetryAfter)
	}
	return b.Next(se.RetryAfter)
}

// untrusted names the bundle field to fix when Vault's or the server's
// TLS certificate is not signed by a CA the bundle trusts for it, and
// says so in the error. The device keeps retrying (the far end's
// certificate may be what changes), but only a new bundle fixes its own
// side: the status and the log say which field.
func untrusted(err error) (field string, explained error) {
	switch {
	case errors.Is(err, vault.ErrUntrustedCertificate):
		return "vault_ca_pem", fmt.Errorf("%w; fix the bundle's vault_ca_pem: it must hold the CA that issued Vault's certificate "+
			"(enrollctl bundle -device-vault-ca), then restart enroll-client", err)
	case errors.Is(err, serverapi.ErrUntrustedCertificate):
		return "server_ca_pem", fmt.Errorf("%w; fix the bundle's server_ca_pem: it must hold the CA that issued the server's certificate "+
			"(enrollctl bundle -server-ca), then restart enroll-client", err)
	}
	return "", err
}
