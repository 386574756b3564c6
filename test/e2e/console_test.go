package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
)

// consoleEnv is a manual-approval fleet with the console on its own
// listener, an administrator (alice) and a read-only operator (olga), both
// Vault userpass logins.
func consoleEnv(t *testing.T) *env {
	e := newEnv(t, options{
		fleet:  func(f *config.Fleet) { f.Admission = "manual" },
		server: func(c *config.File) { c.Console.Listen = "127.0.0.1:0" },
	})
	e.loginAs("alice", time.Hour, vault.AdminPolicy)
	e.loginAs("olga", time.Hour, vault.OperatorPolicy)
	return e
}

// An administrator signs in to the console in a real Chromium with a
// Vault username and password and runs the fleet from it: approves a
// waiting device, which then enrolls, with the approval in the audit log
// under her name; rejects another with a reason the device is told;
// acknowledges an alert; revokes a device. The pages load with the
// Content-Security-Policy and no violation of it, on a phone's screen
// too.
func TestConsoleAdministratorInChromium(t *testing.T) {
	e := consoleEnv(t)
	a, b := e.newDevice("sensor-a", nil), e.newDevice("sensor-b", nil)
	runDaemon(t, a)
	runDaemon(t, b)
	for _, d := range []*device{a, b} {
		waitFor(t, 30*time.Second, d.id+" pending", func() bool { return d.state(t).Phase == lifecycle.PhasePending })
	}
	// An alert to acknowledge: an enrollment token presented twice.
	tok := e.bootstrapLogin()
	e.post("/v1/enroll", enrollBody(tok, "reuse-1", "key-reuse000000001"))
	e.post("/v1/enroll", enrollBody(tok, "reuse-2", "key-reuse000000002"))

	br := newBrowser(t)
	br.signIn(t, e.consoleURL, "alice", "correct horse")
	if got := br.text(t, "#devices-total"); got != "3" { // sensor-a, sensor-b and reuse-1
		t.Fatalf("overview counts %q devices, want 3", got)
	}
	br.screenshot(t, "console-overview")

	session := br.cookie(t, e.consoleURL, "__Host-enroll-console")
	if !session.HTTPOnly || !session.Secure || session.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: HttpOnly=%v Secure=%v SameSite=%q, want HttpOnly, Secure, Strict", session.HTTPOnly, session.Secure, session.SameSite)
	}

	// Approve sensor-a on the approvals page.
	br.run(t, chromedp.Navigate(e.consoleURL+"/approvals"), chromedp.WaitVisible(chromedp.CSS(`#pending`)))
	br.screenshot(t, "console-approvals")
	br.run(t, chromedp.Click(chromedp.CSS(`input[value="acme/sensor-a"]`)),
		chromedp.Click(chromedp.CSS(`#approve`)), chromedp.WaitVisible(chromedp.CSS(`.flash`)))
	if msg := br.text(t, ".flash"); !strings.Contains(msg, "approve: 1 done (sensor-a)") {
		t.Fatalf("after approving: %q", msg)
	}
	st := waitState(t, a, 60*time.Second, "approved device to enroll", func(s lifecycle.State) bool {
		return s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged
	})
	e.keep(st.SecretID, st.Token)
	if !hasRecord(t, e, func(r audit.Record) bool {
		return r.Action == "admin:approve" && r.DeviceID == "sensor-a" && strings.HasPrefix(r.Actor, "admin:alice (")
	}) {
		t.Fatal("the audit log holds no approval of sensor-a by alice")
	}

	// Reject sensor-b with a reason.
	br.run(t, chromedp.Navigate(e.consoleURL+"/approvals"), chromedp.WaitVisible(chromedp.CSS(`#pending`)),
		chromedp.Click(chromedp.CSS(`input[value="acme/sensor-b"]`)),
		chromedp.SendKeys(chromedp.CSS(`#reason`), "unknown serial number"),
		chromedp.Click(chromedp.CSS(`#reject`)), chromedp.WaitVisible(chromedp.CSS(`.flash`)))
	sb := waitState(t, b, 60*time.Second, "rejected device to stop", func(s lifecycle.State) bool { return s.Phase == lifecycle.PhaseRejected })
	if !strings.Contains(sb.Reason, "unknown serial number") {
		t.Fatalf("rejected device's reason %q does not carry the administrator's", sb.Reason)
	}

	// Acknowledge the alert.
	br.run(t, chromedp.Navigate(e.consoleURL+"/alerts"), chromedp.WaitVisible(chromedp.CSS(`#alerts`)),
		chromedp.Click(chromedp.CSS(`#alerts button`)), chromedp.WaitVisible(chromedp.CSS(`.flash`)))
	if msg := br.text(t, ".flash"); !strings.Contains(msg, "acknowledged by admin:alice") {
		t.Fatalf("after acknowledging: %q", msg)
	}
	alerts := adminAlerts(t, e)
	if len(alerts) == 0 || alerts[0].Kind != inventory.AlertEnrollmentTokenReuse || !strings.HasPrefix(alerts[0].AckedBy, "admin:alice (") || alerts[0].AckedAt.IsZero() {
		t.Fatalf("alerts after acknowledging: %+v", alerts)
	}

	// Revoke sensor-a from its page.
	br.run(t, chromedp.Navigate(e.consoleURL+"/devices/acme/sensor-a"), chromedp.WaitVisible(chromedp.CSS(`#revoke`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=reason]`), "stolen"),
		chromedp.Click(chromedp.CSS(`#revoke`)), chromedp.WaitVisible(chromedp.CSS(`.flash`)))
	if status, body := e.get("/v1/admin/devices/acme/sensor-a", e.vault.RootToken); status != 200 || !strings.Contains(body, `"state":"revoked"`) {
		t.Fatalf("sensor-a after revoking in the console: %d %s", status, body)
	}

	br.run(t, chromedp.Navigate(e.consoleURL+"/devices?fleet=acme"), chromedp.WaitVisible(chromedp.CSS(`#devices`)))
	if n := br.count(t, "#devices tr"); n != 4 { // a header and three devices
		t.Fatalf("devices table has %d rows, want 4", n)
	}
	br.screenshot(t, "console-devices")
	for _, p := range []string{"/generations", "/audit"} {
		br.run(t, chromedp.Navigate(e.consoleURL+p), chromedp.WaitVisible(chromedp.CSS(`main h1`)))
	}
	if head := br.text(t, "#head"); !regexp.MustCompile(`^\d+:[0-9a-f]{64}$`).MatchString(head) {
		t.Fatalf("audit head %q", head)
	}
	// A phone's screen: nothing wider than the screen but the tables,
	// which scroll inside their own box.
	br.run(t, chromedp.EmulateViewport(390, 844), chromedp.Navigate(e.consoleURL+"/devices"),
		chromedp.WaitVisible(chromedp.CSS(`#devices`)))
	if !get(t, br, chromedp.Evaluate[bool](`document.documentElement.scrollWidth <= window.innerWidth`)) {
		t.Fatal("the devices page is wider than a phone's screen")
	}
	resp := consoleGet(t, e, "/signin", "")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	br.noProblems(t)
}

// hasRecord reports whether the audit log holds a record that match
// accepts.
func hasRecord(t *testing.T, e *env, match func(audit.Record) bool) bool {
	t.Helper()
	status, body := e.get("/v1/admin/audit", e.vault.RootToken)
	if status != 200 {
		t.Fatalf("audit: %d %s", status, body)
	}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		var r audit.Record
		if json.Unmarshal([]byte(l), &r) == nil && match(r) {
			return true
		}
	}
	return false
}

func adminAlerts(t *testing.T, e *env) []inventory.Alert {
	t.Helper()
	status, body := e.get("/v1/admin/alerts", e.vault.RootToken)
	var out struct {
		Alerts []inventory.Alert `json:"alerts"`
	}
	if status != 200 || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("alerts: %d %s", status, body)
	}
	return out.Alerts
}

// consoleClient speaks to the console as a script would: it follows no
// redirect.
func consoleClient(t *testing.T, e *env) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsTo(t, e.caPEM)},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// consoleGet gets a console page with the session cookie (when set).
func consoleGet(t *testing.T, e *env, path, session string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.consoleURL+path, nil)
	if session != "" {
		req.AddCookie(&http.Cookie{Name: "__Host-enroll-console", Value: session})
	}
	resp, err := consoleClient(t, e).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// consolePost posts a form with the session cookie and returns the status
// and the page.
func consolePost(t *testing.T, e *env, path, session string, form url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.consoleURL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: "__Host-enroll-console", Value: session})
	resp, err := consoleClient(t, e).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// The generations page rotates, and retires with the CLI's guard: within
// the fleet's rotation grace period a retire is refused, saying when the
// period ends, unless forced; the forced retire is audited as forced.
func TestConsoleRetireKeepsTheGraceGuard(t *testing.T) {
	e := newEnv(t, options{
		fleet:  func(f *config.Fleet) { f.RotationGrace = new(time.Hour) },
		server: func(c *config.File) { c.Console.Listen = "127.0.0.1:0" },
	})
	e.loginAs("alice", time.Hour, vault.AdminPolicy)
	status, body, session := consoleSession(t, e, "alice", "correct horse")
	if status != http.StatusSeeOther || session == "" {
		t.Fatalf("sign in: %d %s", status, tail(body, 300))
	}
	page, _ := io.ReadAll(consoleGet(t, e, "/generations", session).Body)
	m := csrfRE.FindSubmatch(page)
	if m == nil || !strings.Contains(string(page), `id="rotate-acme"`) {
		t.Fatalf("generations page: %s", tail(string(page), 500))
	}
	csrf := url.Values{"csrf": {string(m[1])}}
	if status, body := consolePost(t, e, "/generations/acme/rotate", session, csrf); status != http.StatusSeeOther {
		t.Fatalf("rotate: %d %s", status, tail(body, 300))
	}
	status, body = consolePost(t, e, "/generations/acme/1/retire", session, csrf)
	if status != http.StatusConflict || !strings.Contains(body, "grace period") {
		t.Fatalf("retire within the grace period: %d %s", status, tail(body, 500))
	}
	forced := url.Values{"csrf": csrf["csrf"], "force": {"true"}}
	if status, body := consolePost(t, e, "/generations/acme/1/retire", session, forced); status != http.StatusSeeOther {
		t.Fatalf("forced retire: %d %s", status, tail(body, 300))
	}
	if !hasRecord(t, e, func(r audit.Record) bool {
		return r.Action == "admin:retired" && strings.Contains(r.Detail, "forced: within its rotation grace period") && strings.HasPrefix(r.Actor, "admin:alice (")
	}) {
		t.Fatal("the audit log holds no forced retire by alice")
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// A read-only operator sees the pages without the action buttons, and a
// forged POST from that session, CSRF token and all, is refused by Vault
// policy (403) and changes nothing. A POST without the CSRF token is
// refused; once Vault revokes the session's token the session is refused.
func TestConsoleOperatorAndSessionGuards(t *testing.T) {
	e := consoleEnv(t)
	d := e.newDevice("sensor-a", nil)
	runDaemon(t, d)
	waitFor(t, 30*time.Second, "sensor-a pending", func() bool { return d.state(t).Phase == lifecycle.PhasePending })

	br := newBrowser(t)
	br.signIn(t, e.consoleURL, "olga", "correct horse")
	br.run(t, chromedp.Navigate(e.consoleURL+"/approvals"), chromedp.WaitVisible(chromedp.CSS(`#pending`)))
	if n := br.count(t, `#approve, #reject, input[name=pick]`); n != 0 {
		t.Fatalf("the operator's approvals page offers %d actions", n)
	}
	br.run(t, chromedp.Navigate(e.consoleURL+"/devices/acme/sensor-a"), chromedp.WaitVisible(chromedp.CSS(`main dl`)))
	if n := br.count(t, `#revoke, #readmit`); n != 0 {
		t.Fatalf("the operator's device page offers %d actions", n)
	}
	br.run(t, chromedp.Navigate(e.consoleURL+"/generations"), chromedp.WaitVisible(chromedp.CSS(`main h1`)))
	if n := br.count(t, `button.danger, [id^=rotate-]`); n != 0 {
		t.Fatalf("the operator's generations page offers %d actions", n)
	}
	session := br.cookie(t, e.consoleURL, "__Host-enroll-console").Value
	page, _ := io.ReadAll(consoleGet(t, e, "/devices", session).Body)
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the operator's page")
	}
	csrf := string(m[1])

	status, body := consolePost(t, e, "/approvals", session, url.Values{"csrf": {csrf}, "decision": {"approve"}, "pick": {"acme/sensor-a"}})
	if status != http.StatusForbidden || !strings.Contains(body, "may not update devices") {
		t.Fatalf("forged approval by the operator: %d %s", status, tail(body, 300))
	}
	status, body = consolePost(t, e, "/devices/acme/sensor-a/revoke", session, url.Values{"csrf": {csrf}, "reason": {"x"}})
	if status != http.StatusForbidden {
		t.Fatalf("forged revoke by the operator: %d %s", status, tail(body, 300))
	}
	if status, body := e.get("/v1/admin/devices/acme/sensor-a", e.vault.RootToken); status != 200 || !strings.Contains(body, `"state":"pending"`) {
		t.Fatalf("sensor-a after the forged posts: %d %s", status, body)
	}

	// An administrator's session, without the CSRF token: refused.
	admin := newBrowser(t)
	admin.signIn(t, e.consoleURL, "alice", "correct horse")
	adminSession := admin.cookie(t, e.consoleURL, "__Host-enroll-console").Value
	status, body = consolePost(t, e, "/approvals", adminSession, url.Values{"decision": {"approve"}, "pick": {"acme/sensor-a"}})
	if status != http.StatusForbidden || !strings.Contains(body, "CSRF") {
		t.Fatalf("approval without a CSRF token: %d %s", status, tail(body, 300))
	}
	status, _ = consolePost(t, e, "/approvals", adminSession, url.Values{"csrf": {"forged"}, "decision": {"approve"}, "pick": {"acme/sensor-a"}})
	if status != http.StatusForbidden {
		t.Fatalf("approval with a wrong CSRF token: %d", status)
	}

	// Vault revokes the operator's login: her session ends with it.
	if _, err := e.root.Logical().Write("sys/revoke-prefix/auth/userpass/login/olga", nil); err != nil {
		t.Fatal(err)
	}
	if resp := consoleGet(t, e, "/devices", session); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a session whose Vault token was revoked: %d, want 401", resp.StatusCode)
	}
	if resp := consoleGet(t, e, "/devices", session); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the ended session again: %d, want a redirect to sign in", resp.StatusCode)
	}
	if resp := consoleGet(t, e, "/devices", adminSession); resp.StatusCode != http.StatusOK {
		t.Fatalf("the administrator's session: %d", resp.StatusCode)
	}
	// A bad password is refused with a page, not a session.
	if status, body := consoleSignIn(t, e, "alice", "wrong"); status != http.StatusUnauthorized || !strings.Contains(body, "refused") {
		t.Fatalf("a wrong password: %d %s", status, tail(body, 300))
	}
	refused := false
	for _, l := range e.logs.lines("console sign-in refused") {
		refused = refused || (l["username"] == "alice" && l["source"] != "" && l["code"] == "unauthenticated")
	}
	if !refused {
		t.Error("the refused sign-in is not in the server's log with its username and source")
	}
}

// consoleSignIn posts the sign-in form as a browser would (its CSRF
// cookie and field) and returns the status and page.
func consoleSignIn(t *testing.T, e *env, user, password string) (int, string) {
	status, body, _ := consoleSession(t, e, user, password)
	return status, body
}

// consoleSession signs in as consoleSignIn does, and returns the session
// cookie's value too ("" when refused).
func consoleSession(t *testing.T, e *env, user, password string) (int, string, string) {
	t.Helper()
	form := consoleGet(t, e, "/signin", "")
	page, _ := io.ReadAll(form.Body)
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the sign-in form")
	}
	req, _ := http.NewRequest(http.MethodPost, e.consoleURL+"/signin",
		strings.NewReader(url.Values{"csrf": {string(m[1])}, "username": {user}, "password": {password}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range form.Cookies() {
		req.AddCookie(c)
	}
	resp, err := consoleClient(t, e).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	session := ""
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-enroll-console" {
			session = c.Value
		}
	}
	return resp.StatusCode, string(body), session
}

// enrollctl acknowledges an alert with the admin API call the console's
// button makes; an operator may list alerts but not acknowledge them.
func TestAckAlertFromTheCLI(t *testing.T) {
	e := newEnv(t)
	tok := e.bootstrapLogin()
	_, first := e.post("/v1/enroll", enrollBody(tok, "reuse-1", "key-reuse000000001"))
	e.keep(jsonField(t, first, "wrapping_token"))
	e.post("/v1/enroll", enrollBody(tok, "reuse-2", "key-reuse000000002"))
	alerts := adminAlerts(t, e)
	if len(alerts) != 1 {
		t.Fatalf("alerts: %+v", alerts)
	}
	seq := strconv.FormatUint(alerts[0].Seq, 10)
	operator := e.loginAs("olga", time.Hour, vault.OperatorPolicy)
	if r := e.enrollctl(map[string]string{"VAULT_TOKEN": operator}, nil, "ack-alert", seq); r.code == 0 || !strings.Contains(r.errOut, "may not update audit") {
		t.Fatalf("operator's ack-alert: %d %s %s", r.code, r.out, r.errOut)
	}
	if r := e.enrollctl(nil, nil, "ack-alert", seq); r.code != 0 || !strings.Contains(r.out, "acknowledged by admin:") {
		t.Fatalf("ack-alert: %d %s %s", r.code, r.out, r.errOut)
	}
	if r := e.enrollctl(nil, nil, "alerts"); r.code != 0 || !strings.Contains(r.out, "ACKNOWLEDGED") || !strings.Contains(r.out, "admin:") {
		t.Fatalf("alerts after the acknowledgement: %d %s", r.code, r.out)
	}
	if !hasRecord(t, e, func(r audit.Record) bool {
		return r.Action == "admin:acknowledge-alert" && strings.Contains(r.Detail, "alert "+seq+" ("+inventory.AlertEnrollmentTokenReuse+")")
	}) {
		t.Fatal("no audit record of the acknowledgement")
	}
	if r := e.enrollctl(nil, nil, "ack-alert", "999"); r.code == 0 || !strings.Contains(r.errOut, "no alert 999") {
		t.Fatalf("ack-alert of an unknown alert: %d %s", r.code, r.errOut)
	}
}
