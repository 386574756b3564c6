package enrollment

import (
	"fmt"

	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// fail builds a caller-safe error: the one way the core makes one.
func fail(code wire.Code, format string, args ...any) *wire.Error {
	return wire.Errorf(code, format, args...)
}

// failRetry is fail with the Retry-After the caller should honour.
func failRetry(retryAfter int, code wire.Code, format string, args ...any) *wire.Error {
	e := wire.Errorf(code, format, args...)
	e.RetryAfterSeconds = retryAfter
	return e
}

// vaultError turns a Vault failure into what the caller may see: a
// retryable "unavailable" when Vault could not answer, an internal error
// otherwise. The cause stays in the wrapped chain for the server's log.
func vaultError(op string, err error) error {
	safe := wire.Errorf(wire.CodeInternal, "vault could not %s; try again later", op)
	if vault.IsUnavailable(err) {
		// Vault is down, sealed or shedding load: tell clients when to come
		// back rather than letting them hammer it.
		safe.Code, safe.RetryAfterSeconds = wire.CodeUnavailable, unavailableRetryAfter
	}
	return &causeError{safe: safe, cause: err}
}

// unavailableRetryAfter is the Retry-After sent while Vault is unavailable.
const unavailableRetryAfter = 5

// causeError carries a safe error for the caller and the real cause for
// the log.
type causeError struct {
	safe  *wire.Error
	cause error
}

func (e *causeError) Error() string { return fmt.Sprintf("%v: %v", e.safe, e.cause) }

func (e *causeError) Unwrap() []error { return []error{e.safe, e.cause} }
