// Package httpapi serves the enrollment API over HTTP. It is the only
// package that imports gin: it reads and validates requests, calls the core,
// and renders every error in the one JSON shape of package wire.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/enrollment"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Core is the enrollment logic behind the API.
type Core interface {
	Enroll(ctx context.Context, req wire.EnrollRequest) (wire.EnrollResponse, error)
	Acknowledge(ctx context.Context, req wire.AckRequest) (wire.AckResponse, error)
	Report(ctx context.Context, req wire.ReportRequest) (wire.ReportResponse, error)
	Challenge(ctx context.Context, req wire.ChallengeRequest) (wire.ChallengeResponse, error)
	Admit(ctx context.Context, req wire.AdmitRequest) (wire.AdmitResponse, error)
	IdentityChallenge(ctx context.Context, req wire.IdentityChallengeRequest) (wire.IdentityChallengeResponse, error)
	Refresh(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error)
	Rejoin(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error)
}

// ReadyFunc reports whether the server can serve requests (Vault reachable).
type ReadyFunc func(ctx context.Context) error

func init() { gin.SetMode(gin.ReleaseMode) }

// requestTimeout bounds one device request's work, whether or not its
// client is still there.
const requestTimeout = 60 * time.Second

// New returns the API handler.
func New(core Core, admin *admin.Service, ready ReadyFunc, log *slog.Logger) http.Handler {
	r := gin.New()
	r.ContextWithFallback = true
	_ = r.SetTrustedProxies(nil)
	r.Use(recovery(log), accessLog(log))
	r.NoRoute(func(c *gin.Context) { render(c, log, wire.Errorf(wire.CodeNotFound, "no such endpoint")) })
	r.NoMethod(func(c *gin.Context) { render(c, log, wire.Errorf(wire.CodeNotFound, "no such endpoint")) })
	r.HandleMethodNotAllowed = true

	r.GET(wire.PathHealth, func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET(wire.PathReady, func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			log.Warn("not ready", "err", err)
			var why *wire.Error
			if !errors.As(err, &why) {
				why = wire.Errorf(wire.CodeUnavailable, "not ready: vault is not reachable")
			}
			render(c, log, why)
			return
		}
		c.JSON(http.StatusOK, gin.H{"status": "ready"})
	})
	r.POST(wire.PathEnroll, handleLimit(log, wire.MaxAttestedBodyBytes, core.Enroll))
	r.POST(wire.PathAck, handle(log, core.Acknowledge))
	r.POST(wire.PathReport, handle(log, core.Report))
	r.POST(wire.PathChallenge, handle(log, core.Challenge))
	r.POST(wire.PathAdmit, handle(log, core.Admit))
	r.POST(wire.PathIdentityChallenge, handle(log, core.IdentityChallenge))
	r.POST(wire.PathRefresh, handleLimit(log, wire.MaxAttestedBodyBytes, core.Refresh))
	r.POST(wire.PathRejoin, handleLimit(log, wire.MaxAttestedBodyBytes, core.Rejoin))
	adminRoutes(r.Group(wire.PathAdmin), admin, log)
	return r
}

// handle is the shape of every endpoint: read → validate (in decode and the
// core) → act → render.
func handle[Req, Resp any](log *slog.Logger, fn func(context.Context, Req) (Resp, error)) gin.HandlerFunc {
	return handleLimit(log, wire.MaxBodyBytes, fn)
}

// handleLimit is handle with another cap on the request body.
func handleLimit[Req, Resp any](log *slog.Logger, limit int64, fn func(context.Context, Req) (Resp, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req Req
		if err := decodeLimit(c, &req, limit); err != nil {
			render(c, log, err)
			return
		}
		// A client hanging up does not cancel a request half way (a mint
		// between Vault and the store): it finishes within its own bound,
		// so that the client's retry finds the outcome at once.
		ctx, cancel := context.WithTimeout(enrollment.WithSource(context.WithoutCancel(c.Request.Context()), c.ClientIP()), requestTimeout)
		defer cancel()
		resp, err := fn(ctx, req)
		if err != nil {
			render(c, log, err)
			return
		}
		c.JSON(http.StatusOK, resp)
	}
}

func recovery(log *slog.Logger) gin.HandlerFunc {
	return gin.CustomRecoveryWithWriter(nil, func(c *gin.Context, v any) {
		log.Error("handler panicked", "panic", v, "path", c.FullPath())
		render(c, log, wire.Errorf(wire.CodeInternal, "internal error"))
	})
}

func accessLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		log.LogAttrs(c.Request.Context(), slog.LevelInfo, "request",
			slog.String("method", c.Request.Method),
			slog.String("path", c.Request.URL.Path),
			slog.Int("status", c.Writer.Status()),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", c.ClientIP()))
	}
}
