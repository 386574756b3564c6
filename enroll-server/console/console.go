// Package console is the fleet console: server-rendered pages over the
// admin service. It holds no rights of its own: every page and every
// action is the admin service call the admin API makes, with the signed-in
// person's Vault token, so Vault policy decides and the audit log records
// it as it does for enrollctl. The HTTP side (routes, cookies, headers)
// lives in package httpapi, the one package that speaks gin.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/pkg/wire"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Static is the console's style sheet (no scripts: the pages work with
// forms alone, which keeps the Content-Security-Policy strict).
func Static() fs.FS {
	sub, _ := fs.Sub(staticFiles, "static")
	return sub
}

// CSP is the console's Content-Security-Policy: its own style sheet,
// nothing else; no scripts at all, forms post only to the console.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Console renders the pages.
type Console struct {
	admin    *admin.Service
	Sessions *Sessions
	fleets   []string
	mount    string // the Vault auth method people sign in through
	pages    map[string]*template.Template
	log      *slog.Logger
	now      func() time.Time
}

// New builds the console over the admin service, for fleets; people sign
// in through the Vault auth method mounted at mount (userpass, ldap).
func New(a *admin.Service, fleets []string, mount string, log *slog.Logger) (*Console, error) {
	c := &Console{admin: a, Sessions: NewSessions(), fleets: fleets, mount: mount,
		pages: map[string]*template.Template{}, log: log, now: time.Now}
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		c.pages[base] = t
	}
	return c, nil
}

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"may": func(s *Session, area string) bool { return s != nil && s.May[area] },
}

// Page is one page to render.
type Page struct {
	Name    string // its template
	Title   string
	Status  int // 0: 200
	Session *Session
	Flash   string
	Error   string
	Data    any
}

// Render writes page p.
func (c *Console) Render(w io.Writer, p Page) error {
	t, ok := c.pages[p.Name]
	if !ok {
		return fmt.Errorf("no console page %q", p.Name)
	}
	var buf bytes.Buffer // a failed render sends nothing half-written
	if err := t.Execute(&buf, p); err != nil {
		return err
	}
	_, err := buf.WriteTo(w)
	return err
}

// ErrorPage shows what went wrong: only the message of a *wire.Error (safe
// to show); anything else is logged and shown as an internal error.
func (c *Console) ErrorPage(sess *Session, err error) Page {
	var we *wire.Error
	if !errors.As(err, &we) {
		c.log.Warn("console request failed", "err", err)
		we = wire.Errorf(wire.CodeInternal, "internal error")
	}
	return Page{Name: "error", Title: "Refused", Status: we.Code.Status(), Session: sess, Error: we.Message}
}

// SignIn signs a person in: with a username and password through the
// configured Vault auth method, or with a Vault token they paste.
func (c *Console) SignIn(ctx context.Context, user, password, token string) (*Session, error) {
	owned := false
	var p admin.Person
	var err error
	if token == "" {
		token, p, err = c.admin.SignIn(ctx, c.mount, user, password)
		owned = true
	} else {
		if len(token) > 512 {
			return nil, wire.Errorf(wire.CodeInvalidRequest, "token: too long")
		}
		p, err = c.admin.Identify(ctx, token)
	}
	if err != nil {
		return nil, err
	}
	may := map[string]bool{"audit": c.admin.May(ctx, token, admin.AreaAudit, "")}
	for _, f := range c.fleets {
		may["devices/"+f] = c.admin.May(ctx, token, admin.AreaDevices, f)
		may["fleets/"+f] = c.admin.May(ctx, token, admin.AreaFleets, f)
	}
	return c.Sessions.Start(token, p.Name, p.TTL, owned, may, c.now()), nil
}

// SignOut ends a session, revoking the token the server obtained for it.
func (c *Console) SignOut(ctx context.Context, sess *Session) {
	c.Sessions.End(sess.ID)
	if sess.Owned {
		if err := c.admin.SignOut(ctx, sess.Token); err != nil {
			c.log.Warn("revoke a signed-out console token", "err", err)
		}
	}
}

// SignInPage is the sign-in form; csrf is the token its cookie carries.
func (c *Console) SignInPage(csrf, why string, status int) Page {
	return Page{Name: "signin", Title: "Sign in", Status: status, Error: why,
		Data: map[string]string{"CSRF": csrf, "Mount": c.mount}}
}
