package lifecycle

import (
	"errors"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
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

// retryAfterOf returns the delay a server asked for, if any.
func retryAfterOf(err error) time.Duration {
	var se *serverapi.Error
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}
