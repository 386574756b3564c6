package httpapi

import (
	"errors"
	"log/slog"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// render writes err as the one error shape. Only the *wire.Error in err's
// chain reaches the caller; everything else is logged and sent as a generic
// internal error.
func render(c *gin.Context, log *slog.Logger, err error) {
	var we *wire.Error
	if !errors.As(err, &we) {
		we = wire.Errorf(wire.CodeInternal, "internal error")
	}
	status := we.Code.Status()
	if status >= 500 || err != error(we) {
		// Keep the cause for operators; never for the caller.
		log.Warn("request failed", "path", c.Request.URL.Path, "code", we.Code, "err", err)
	}
	if we.RetryAfterSeconds > 0 {
		c.Header("Retry-After", strconv.Itoa(we.RetryAfterSeconds))
	}
	c.AbortWithStatusJSON(status, wire.ErrorBody{Error: *we})
}
