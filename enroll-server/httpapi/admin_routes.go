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
	reply := func(c *gin.Context, v any, err error) {
		if err != nil {
			render(c, log, err)
			return
		}
		c.JSON(http.StatusOK, v)
	}
	g.GET("/devices", func(c *gin.Context) {
		gen, err := admin.ParseGeneration(c.Query("generation"))
		if err != nil {
			render(c, log, err)
			return
		}
		since, err := admin.ParseSince(c.Query("seen_since"), time.Now())
		if err != nil {
			render(c, log, err)
			return
		}
		limit, _ := strconv.Atoi(c.Query("limit"))
		list, err := a.Devices(c.Request.Context(), token(c), admin.ListFilter{
			Fleet: c.Query("fleet"), State: c.Query("state"), Generation: gen, SeenSince: since, Limit: limit, After: c.Query("after"),
		})
		reply(c, list, err)
	})
	g.GET("/devices/:fleet/:id", func(c *gin.Context) {
		d, err := a.Device(c.Request.Context(), token(c), c.Param("fleet"), c.Param("id"))
		reply(c, d, err)
	})
	g.POST("/devices/:fleet/:id/:action", func(c *gin.Context) {
		var req wire.Reason
		if c.Request.ContentLength != 0 {
			if err := decode(c, &req); err != nil {
				render(c, log, err)
				return
			}
		}
		d, err := a.DeviceAction(c.Request.Context(), token(c), c.Param("action"), c.Param("fleet"), c.Param("id"), req)
		reply(c, d, err)
	})
	g.POST("/fleets/:fleet/preauthorize", body(log, func(ctx context.Context, c *gin.Context, req wire.DeviceIDs) (any, error) {
		return gin.H{"status": "ok"}, a.Preauthorize(ctx, token(c), c.Param("fleet"), req)
	}))
	g.POST("/fleets/:fleet/batch", body(log, func(ctx context.Context, c *gin.Context, req wire.DeviceIDs) (any, error) {
		return a.Batch(ctx, token(c), c.Param("fleet"), req)
	}))
	g.GET("/fleets/:fleet/generations", func(c *gin.Context) {
		gens, err := a.Generations(c.Request.Context(), token(c), c.Param("fleet"))
		reply(c, gens, err)
	})
	g.POST("/fleets/:fleet/rotate", func(c *gin.Context) {
		r, err := a.Rotate(c.Request.Context(), token(c), c.Param("fleet"))
		reply(c, r, err)
	})
	g.POST("/fleets/:fleet/generations/:n/:end", func(c *gin.Context) {
		n, err := strconv.Atoi(c.Param("n"))
		state := map[string]string{"retire": vault.GenerationRetired, "revoke": vault.GenerationRevoked}[c.Param("end")]
		if err != nil || n < 1 || state == "" {
			render(c, log, wire.Errorf(wire.CodeNotFound, "no such endpoint"))
			return
		}
		ended, err := a.EndGeneration(c.Request.Context(), token(c), c.Param("fleet"), n, state, c.Query("force") == "true")
		reply(c, ended, err)
	})
	g.GET("/alerts", func(c *gin.Context) {
		al, err := a.Alerts(c.Request.Context(), token(c))
		reply(c, al, err)
	})
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
	g.GET("/audit/verify", func(c *gin.Context) {
		res, err := a.VerifyAudit(c.Request.Context(), token(c), c.Query("head"))
		reply(c, res, err)
	})
}

// body decodes a JSON body strictly, then calls fn.
func body[Req any](log *slog.Logger, fn func(context.Context, *gin.Context, Req) (any, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		var req Req
		if err := decode(c, &req); err != nil {
			render(c, log, err)
			return
		}
		out, err := fn(c.Request.Context(), c, req)
		if err != nil {
			render(c, log, err)
			return
		}
		c.JSON(http.StatusOK, out)
	}
}
