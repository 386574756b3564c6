package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// adminRoutes serves /v1/admin. Every route reads the administrator's Vault
// token; the admin service decides, by asking Vault, what it may do.
func adminRoutes(g *gin.RouterGroup, a *admin.Service, log *slog.Logger) {
	token := func(c *gin.Context) string { return c.GetHeader(wire.HeaderVaultToken) }
	g.GET("/devices", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		gen, err := admin.ParseGeneration(c.Query("generation"))
		if err != nil {
			return nil, err
		}
		since, err := admin.ParseSince(c.Query("seen_since"), time.Now())
		if err != nil {
			return nil, err
		}
		limit, _ := strconv.Atoi(c.Query("limit"))
		return a.Devices(ctx, token(c), admin.ListFilter{
			Fleet: c.Query("fleet"), Prefix: c.Query("prefix"), State: c.Query("state"), Generation: gen, SeenSince: since, Limit: limit, After: c.Query("after"),
		})
	}))
	g.GET("/devices/:fleet/:id", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		return a.Device(ctx, token(c), c.Param("fleet"), c.Param("id"))
	}))
	g.POST("/devices/:fleet/:id/:action", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		var req wire.Reason
		if c.Request.ContentLength != 0 {
			if err := decode(c, &req); err != nil {
				return nil, err
			}
		}
		return a.DeviceAction(ctx, token(c), c.Param("action"), c.Param("fleet"), c.Param("id"), req)
	}))
	g.POST("/fleets/:fleet/preauthorize", body(log, func(ctx context.Context, c *gin.Context, req wire.DeviceIDs) (any, error) {
		return gin.H{"status": "ok"}, a.Preauthorize(ctx, token(c), c.Param("fleet"), req)
	}))
	g.POST("/fleets/:fleet/batch", body(log, func(ctx context.Context, c *gin.Context, req wire.DeviceIDs) (any, error) {
		return a.Batch(ctx, token(c), c.Param("fleet"), req)
	}))
	g.GET("/fleets/:fleet/generations", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		return a.Generations(ctx, token(c), c.Param("fleet"))
	}))
	g.POST("/fleets/:fleet/rotate", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		return a.Rotate(ctx, token(c), c.Param("fleet"))
	}))
	g.POST("/fleets/:fleet/generations/:n/:end", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		n, err := strconv.Atoi(c.Param("n"))
		state := map[string]string{"retire": vault.GenerationRetired, "revoke": vault.GenerationRevoked}[c.Param("end")]
		if err != nil || n < 1 || state == "" {
			return nil, wire.Errorf(wire.CodeNotFound, "no such endpoint")
		}
		return a.EndGeneration(ctx, token(c), c.Param("fleet"), n, state, c.Query("force") == "true")
	}))
	g.GET("/alerts", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		return a.Alerts(ctx, token(c))
	}))
	g.POST("/alerts/:seq/acknowledge", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		seq, err := strconv.ParseUint(c.Param("seq"), 10, 64)
		if err != nil {
			return nil, wire.Errorf(wire.CodeNotFound, "no such alert")
		}
		return a.AcknowledgeAlert(ctx, token(c), seq)
	}))
	g.GET("/audit", func(c *gin.Context) {
		recs, err := a.Audit(c.Request.Context(), token(c))
		if err != nil {
			render(c, log, err)
			return
		}
		// JSON lines, one record each: the export format.
		c.Header("Content-Type", "application/x-ndjson")
		c.Status(http.StatusOK)
		for _, r := range recs {
			c.Render(-1, jsonLine{r})
		}
	})
	g.GET("/audit/verify", call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		return a.VerifyAudit(ctx, token(c), c.Query("head"))
	}))
}

// call is the shape of an admin endpoint: act, then render the answer as
// JSON or the error in the one error shape.
func call(log *slog.Logger, fn func(context.Context, *gin.Context) (any, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		out, err := fn(admin.WithSource(c.Request.Context(), c.ClientIP()), c)
		if err != nil {
			render(c, log, err)
			return
		}
		c.JSON(http.StatusOK, out)
	}
}

// body decodes a JSON body strictly, then calls fn (see call).
func body[Req any](log *slog.Logger, fn func(context.Context, *gin.Context, Req) (any, error)) gin.HandlerFunc {
	return call(log, func(ctx context.Context, c *gin.Context) (any, error) {
		var req Req
		if err := decode(c, &req); err != nil {
			return nil, err
		}
		return fn(ctx, c, req)
	})
}
