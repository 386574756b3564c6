package httpapi_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/console"
	"github.com/edge-enroll/enroll/enroll-server/httpapi"
)

// The console's guards that need no Vault: a page without a session sends
// the browser to sign in, a POST without one or without the session's
// CSRF token is refused, and every answer carries the security headers.
// (What Vault decides is tested against a real one in test/e2e.)
func TestConsoleGuards(t *testing.T) {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	log := slog.New(slog.DiscardHandler)
	con, err := console.New(admin.New(grantingVault{}, servingCore{}, s, nil, log), []string{"acme"}, "userpass", log)
	if err != nil {
		t.Fatal(err)
	}
	h := httpapi.NewConsole(con, log)
	sess := con.Sessions.Start("token", "alice", time.Hour, false, nil, time.Now())
	tests := []struct {
		name, method, path, session string
		form                        url.Values
		status                      int
		says                        string
	}{
		{"a page without a session", "GET", "/devices", "", nil, http.StatusSeeOther, ""},
		{"a page with an unknown session", "GET", "/devices", "forged", nil, http.StatusSeeOther, ""},
		{"the sign-in form", "GET", "/signin", "", nil, http.StatusOK, `name="csrf"`},
		{"a page with a session", "GET", "/devices", sess.ID, nil, http.StatusOK, "no device matches"},
		{"a post without a session", "POST", "/approvals", "", url.Values{"csrf": {sess.CSRF}}, http.StatusUnauthorized, "sign in again"},
		{"a post without the CSRF token", "POST", "/approvals", sess.ID, url.Values{"decision": {"approve"}}, http.StatusForbidden, "CSRF"},
		{"a post with another CSRF token", "POST", "/approvals", sess.ID, url.Values{"csrf": {"x" + sess.CSRF}}, http.StatusForbidden, "CSRF"},
		{"a sign-in without the form's token", "POST", "/signin", "", url.Values{"username": {"a"}, "password": {"b"}}, http.StatusForbidden, "stale"},
		{"no such page", "GET", "/nosuch", sess.ID, nil, http.StatusNotFound, "no such page"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req *http.Request
			if tt.method == "POST" {
				req = httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			} else {
				req = httptest.NewRequest(tt.method, tt.path, nil)
			}
			if tt.session != "" {
				req.AddCookie(&http.Cookie{Name: "__Host-enroll-console", Value: tt.session})
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.says) {
				t.Fatalf("%d, want %d saying %q: %s", rec.Code, tt.status, tt.says, rec.Body.String())
			}
			if csp := rec.Header().Get("Content-Security-Policy"); csp != console.CSP {
				t.Fatalf("Content-Security-Policy %q", csp)
			}
			for _, c := range rec.Result().Cookies() {
				if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || !strings.HasPrefix(c.Name, "__Host-") {
					t.Fatalf("cookie %s: HttpOnly=%v Secure=%v SameSite=%v", c.Name, c.HttpOnly, c.Secure, c.SameSite)
				}
			}
		})
	}
}
