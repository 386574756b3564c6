package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/console"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Cookie names: the __Host- prefix makes the browser refuse them unless
// they are Secure, for the whole site and for this host only.
const (
	sessionCookie = "__Host-enroll-console"
	loginCookie   = "__Host-enroll-console-login"
)

// maxConsoleForm bounds a console form's body.
const maxConsoleForm = 64 << 10

// NewConsole returns the fleet console's handler, served on its own
// listener (console.listen).
func NewConsole(con *console.Console, log *slog.Logger) http.Handler {
	r := gin.New()
	r.ContextWithFallback = true
	_ = r.SetTrustedProxies(nil)
	r.Use(recovery(log), accessLog(log), consoleHeaders)
	r.StaticFS("/static", http.FS(console.Static()))
	// Browsers ask for an icon by themselves; there is none.
	r.GET("/favicon.ico", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	r.GET("/signin", func(c *gin.Context) { signInForm(c, con, log, "", http.StatusOK) })
	r.POST("/signin", func(c *gin.Context) { signIn(c, con, log) })

	g := r.Group("/", withSession(con, log))
	g.POST("/signout", func(c *gin.Context) {
		con.SignOut(context.WithoutCancel(c.Request.Context()), session(c))
		setCookie(c, sessionCookie, "", time.Unix(1, 0))
		c.Redirect(http.StatusSeeOther, "/signin")
	})
	g.GET("/", view(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (console.Page, error) {
		return con.Overview(ctx, s)
	}))
	g.GET("/devices", view(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (console.Page, error) {
		return con.Devices(ctx, s, c.Request.URL.Query())
	}))
	g.GET("/devices/:fleet/:id", view(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (console.Page, error) {
		return con.Device(ctx, s, c.Param("fleet"), c.Param("id"))
	}))
	g.POST("/devices/:fleet/:id/:action", act(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (string, error) {
		return con.DeviceAction(ctx, s, c.Param("fleet"), c.Param("id"), c.Param("action"), c.PostForm("reason"))
	}))
	g.GET("/approvals", view(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (console.Page, error) {
		return con.Approvals(ctx, s)
	}))
	g.POST("/approvals", act(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (string, error) {
		return con.Decide(ctx, s, c.PostForm("decision"), c.PostForm("reason"), c.PostFormArray("pick"))
	}))
	g.GET("/alerts", view(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (console.Page, error) {
		return con.Alerts(ctx, s)
	}))
	g.POST("/alerts/:seq/acknowledge", act(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (string, error) {
		return con.Acknowledge(ctx, s, c.Param("seq"))
	}))
	g.GET("/generations", view(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (console.Page, error) {
		return con.Generations(ctx, s)
	}))
	g.POST("/generations/:fleet/rotate", act(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (string, error) {
		return con.Rotate(ctx, s, c.Param("fleet"))
	}))
	g.POST("/generations/:fleet/:n/retire", act(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (string, error) {
		return con.Retire(ctx, s, c.Param("fleet"), c.Param("n"), c.PostForm("force") == "true")
	}))
	g.GET("/audit", view(con, log, func(ctx context.Context, c *gin.Context, s *console.Session) (console.Page, error) {
		return con.Audit(ctx, s, c.Query("head"))
	}))
	r.NoRoute(func(c *gin.Context) {
		page(c, con, log, console.Page{Name: "error", Title: "Not found", Status: http.StatusNotFound, Error: "no such page"})
	})
	return r
}

// consoleHeaders sends the strict Content-Security-Policy and keeps pages
// out of caches and frames.
func consoleHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", console.CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if c.Request.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if c.Request.Method == http.MethodPost {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, maxConsoleForm)
	}
	c.Next()
}

// withSession finds the request's session or sends the browser to sign
// in; a POST must carry the session's CSRF token.
func withSession(con *console.Console, log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, _ := c.Cookie(sessionCookie)
		s, ok := con.Sessions.Get(id, time.Now())
		if !ok {
			if c.Request.Method == http.MethodGet {
				c.Redirect(http.StatusSeeOther, "/signin")
				c.Abort()
				return
			}
			signInForm(c, con, log, "Your session has ended: sign in again.", http.StatusUnauthorized)
			c.Abort()
			return
		}
		if c.Request.Method == http.MethodPost && !console.CheckCSRF(s.CSRF, c.PostForm("csrf")) {
			page(c, con, log, console.Page{Name: "error", Title: "Refused", Status: http.StatusForbidden, Session: s,
				Error: "this form is stale or did not come from the console (CSRF token missing or wrong): reload the page and try again"})
			c.Abort()
			return
		}
		c.Set("session", s)
		c.Next()
	}
}

func session(c *gin.Context) *console.Session {
	s, _ := c.MustGet("session").(*console.Session)
	return s
}

// view renders a page, or the error that stopped it.
func view(con *console.Console, log *slog.Logger, fn func(context.Context, *gin.Context, *console.Session) (console.Page, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		s := session(c)
		p, err := fn(admin.WithSource(c.Request.Context(), c.ClientIP()), c, s)
		if err != nil {
			failed(c, con, log, s, err)
			return
		}
		page(c, con, log, p)
	}
}

// act makes an action and sends the browser on to the page it names
// (post, redirect, get: a reload never repeats the action).
func act(con *console.Console, log *slog.Logger, fn func(context.Context, *gin.Context, *console.Session) (string, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		s := session(c)
		ctx, cancel := context.WithTimeout(admin.WithSource(context.WithoutCancel(c.Request.Context()), c.ClientIP()), requestTimeout)
		defer cancel()
		next, err := fn(ctx, c, s)
		if err != nil {
			failed(c, con, log, s, err)
			return
		}
		c.Redirect(http.StatusSeeOther, next)
	}
}

// failed shows an error; a token Vault no longer accepts ends the session.
func failed(c *gin.Context, con *console.Console, log *slog.Logger, s *console.Session, err error) {
	if wire.CodeOf(err) == wire.CodeInvalidToken {
		con.Sessions.End(s.ID)
		setCookie(c, sessionCookie, "", time.Unix(1, 0))
		signInForm(c, con, log, "Vault no longer accepts your token (expired or revoked): sign in again.", http.StatusUnauthorized)
		return
	}
	page(c, con, log, con.ErrorPage(s, err))
}

func page(c *gin.Context, con *console.Console, log *slog.Logger, p console.Page) {
	status := p.Status
	if status == 0 {
		status = http.StatusOK
	}
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	if err := con.Render(c.Writer, p); err != nil {
		log.Error("render console page", "err", err, "page", p.Name)
	}
	c.Abort()
}

func signInForm(c *gin.Context, con *console.Console, log *slog.Logger, why string, status int) {
	csrf := console.NewLoginCSRF()
	setCookie(c, loginCookie, csrf, time.Now().Add(15*time.Minute))
	page(c, con, log, con.SignInPage(csrf, why, status))
}

func signIn(c *gin.Context, con *console.Console, log *slog.Logger) {
	want, _ := c.Cookie(loginCookie)
	if !console.CheckCSRF(want, c.PostForm("csrf")) {
		signInForm(c, con, log, "The sign-in form was stale (CSRF token missing or wrong): try again.", http.StatusForbidden)
		return
	}
	ctx := admin.WithSource(c.Request.Context(), c.ClientIP())
	s, err := con.SignIn(ctx, c.PostForm("username"), c.PostForm("password"), c.PostForm("token"))
	if err != nil {
		var msg string
		status := wire.CodeOf(err).Status()
		switch wire.CodeOf(err) {
		case wire.CodeUnauthenticated, wire.CodeInvalidToken, wire.CodeInvalidRequest, wire.CodeRateLimited:
			msg = console.Message(err)
			// Who was tried, from where: what a security team looks for
			// in a password-guessing run. Never the password or token.
			log.Warn("console sign-in refused", "security", true, "username", c.PostForm("username"),
				"with_token", c.PostForm("token") != "", "source", c.ClientIP(), "code", wire.CodeOf(err))
		default:
			log.Warn("console sign-in failed", "err", err)
			msg = "Vault could not be asked; try again shortly."
		}
		signInForm(c, con, log, msg, status)
		return
	}
	log.Info("console sign-in", "name", s.Name, "owned_token", s.Owned)
	setCookie(c, loginCookie, "", time.Unix(1, 0))
	setCookie(c, sessionCookie, s.ID, s.Expires)
	c.Redirect(http.StatusSeeOther, "/")
}

// setCookie sets an HttpOnly, Secure, SameSite=Strict cookie for the whole
// console; an expiry in the past deletes it.
func setCookie(c *gin.Context, name, value string, expires time.Time) {
	http.SetCookie(c.Writer, &http.Cookie{Name: name, Value: value, Path: "/", Expires: expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}
