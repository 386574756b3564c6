package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/fleetsim"
)

// vaultDropper sits between a device and Vault and, the first time the
// device unwraps, lets Vault do it and then drops the answer: the device's
// own unwrap whose answer was lost on the way.
func (e *env) vaultDropper() (*httptest.Server, *atomic.Int32) {
	e.t.Helper()
	target, _ := url.Parse(e.vault.Addr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var dropped atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/sys/wrapping/unwrap" && dropped.CompareAndSwap(0, 1) {
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r) // Vault unwraps...
			if rec.Code != http.StatusOK {
				e.t.Errorf("vault refused the unwrap: %d", rec.Code)
			}
			// ...and the answer never arrives.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	e.t.Cleanup(s.Close)
	return s, &dropped
}

// The answer to the device's own unwrap is lost: the device cannot tell
// that from an interception, asks the server again, and the server, seeing
// the secret ID never used, destroys it and mints another. The device ends
// enrolled with one live secret ID, and nobody is alerted.
func TestLostUnwrapAnswerIsReissued(t *testing.T) {
	e := newEnv(t)
	proxy, dropped := e.vaultDropper()
	d := e.newDevice("sensor-lost", func(b *bundle.Bundle) { b.VaultAddr = proxy.URL })
	st := e.enroll(d)
	if dropped.Load() != 1 {
		t.Fatal("no unwrap answer was dropped; the test proves nothing")
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only the device's %s", got, st.SecretIDAccessor)
	}
	if len(e.logs.lines("reissuing a credential the device lost before using it")) != 1 {
		t.Fatal("the server did not reissue")
	}
	devs, alerts := e.inventory()
	if len(alerts) != 0 || devs[0].State != inventory.DeviceEnrolled {
		t.Fatalf("alerts %+v, device %s", alerts, devs[0].State)
	}
}

// Someone on the path unwraps the device's secret ID and logs in with it
// before the device can: when the device asks again, the server sees the
// secret ID used, raises the alert and locks the device out; the
// attacker's token stops working.
func TestInterceptorWhoLogsInIsCaught(t *testing.T) {
	e := newEnv(t)
	var thief string
	var once atomic.Bool
	proxy := e.interceptor(func(r *wire.EnrollResponse) {
		if !once.CompareAndSwap(false, true) {
			return
		}
		sec, err := e.clientFor(r.WrappingToken).Logical().Unwrap("")
		if err != nil {
			t.Errorf("attacker unwrap: %v", err)
			return
		}
		sid, _ := sec.Data["secret_id"].(string)
		e.keep(sid)
		login, err := e.clientFor("").Logical().Write("auth/"+r.LoginMount+"/login", map[string]any{"role_id": r.RoleID, "secret_id": sid})
		if err != nil {
			t.Errorf("attacker login: %v", err)
			return
		}
		thief = login.Auth.ClientToken
		e.keep(thief)
	})
	st := e.runUntilStopped(e.newDevice("sensor-robbed", viaProxy(proxy)))
	if thief == "" {
		t.Fatal("the attacker did not log in; the test proves nothing")
	}
	if st.Refused != string(wire.CodeDeviceQuarantined) {
		t.Fatalf("the device stopped with %q (%s), want device_quarantined", st.Refused, st.Reason)
	}
	if _, err := e.clientFor(thief).Auth().Token().LookupSelf(); err == nil {
		t.Fatal("the attacker's token still works")
	}
	_, alerts := e.inventory()
	if len(alerts) != 1 || alerts[0].Kind != inventory.AlertWrappingTokenInvalid {
		t.Fatalf("alerts %+v, want one wrapping_token_invalid", alerts)
	}
}

// The server is killed while 50 devices enroll and comes back 25 s later,
// with an acknowledgement timeout of 10 s: every device ends enrolled, and
// the server's own downtime raises no alert and quarantines nobody.
func TestServerRestartMidEnrollmentRaisesNoFalseAlarm(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a 25 s outage")
	}
	e := newEnv(t, options{
		fleet:  func(f *config.Fleet) { f.WrapTTL, f.AckTimeout = 10*time.Second, 10*time.Second },
		server: func(c *config.File) { c.Alerts.SweepInterval = time.Second },
	})
	b := e.bundle
	done := make(chan fleetsim.Result, 1)
	go func() {
		res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &b, Devices: 50, Prefix: "restart",
			Ramp: 4 * time.Second, Timeout: 3 * time.Minute})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	waitFor(t, 30*time.Second, "some devices given their credential", func() bool {
		return len(e.logs.lines("issued wrapped secret ID")) >= 15
	})
	e.stop()
	time.Sleep(25 * time.Second)
	e.startServer(e.cfg)
	res := <-done
	if res.Enrolled != 50 {
		t.Fatalf("%s", res)
	}
	time.Sleep(3 * time.Second) // a sweep or two
	devs, alerts := e.inventory()
	quarantined := 0
	for _, d := range devs {
		if d.State != inventory.DeviceEnrolled {
			quarantined++
		}
	}
	if len(alerts) != 0 || quarantined != 0 {
		t.Fatalf("%d alerts (%+v), %d devices not enrolled", len(alerts), alerts, quarantined)
	}
	for id, st := range res.States {
		e.keep(st.Token, st.SecretID)
		if got := e.deviceSecretIDAccessors(id); len(got) != 1 {
			t.Errorf("%s: %d live secret IDs", id, len(got))
		}
	}
}

// One answer is lost at each step of a first enrollment and of a refresh —
// every request a device sends to Vault or to the server, found by tracing
// a clean run — and, in a second pass, the real client is killed with
// SIGKILL at the same points (the peer has acted; the device never hears
// it). Every device ends authenticated and acknowledged with one live
// secret ID, its own, its bootstrap credential used once, and nobody is
// alerted.
func TestLostAnswerAtEveryStep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a device per step and fault")
	}
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = time.Hour, time.Hour, 9*time.Second
	}})
	bin := clientBinary(t)
	refreshed := func(s lifecycle.Status) bool { return s.Refreshes >= 1 }
	enrolled := func(lifecycle.Status) bool { return true }

	// A clean run traces both flows.
	line := e.faultLine()
	d := e.deviceDir("trace")
	d.writeBundle(t, line.bundle)
	dm := e.startDaemon(bin, d)
	if !waitAuthenticated(t, d, dm, 40*time.Second, enrolled) {
		t.FailNow()
	}
	mid := line.mark()
	if !waitAuthenticated(t, d, dm, 40*time.Second, refreshed) {
		t.FailNow()
	}
	dm.stop()
	enrollSteps, refreshSteps := positions(line.since(0)[:mid]), positions(line.since(mid))
	t.Logf("first enrollment: %v", enrollSteps)
	t.Logf("refresh: %v", refreshSteps)
	if len(enrollSteps) < 6 || len(refreshSteps) < 5 {
		t.Fatalf("the trace is too short to cover the flows: %d and %d steps", len(enrollSteps), len(refreshSteps))
	}

	type run struct {
		name    string
		refresh bool
		fault   fault
		kill    bool
	}
	var runs []run
	for _, kill := range []bool{false, true} {
		for _, f := range enrollSteps {
			runs = append(runs, run{"enroll", false, f, kill})
		}
		for _, f := range refreshSteps {
			runs = append(runs, run{"refresh", true, f, kill})
		}
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, 8)
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			id := fmt.Sprintf("fault-%s-%d", r.name, i)
			what := fmt.Sprintf("%s (%s, kill %v)", id, r.fault, r.kill)
			line := e.faultLine()
			d := e.deviceDir(id)
			d.writeBundle(t, line.bundle)
			f := r.fault
			var running atomic.Pointer[daemon] // the hook runs on the line's goroutine
			if r.kill {
				f.hook = func() {
					dm := running.Load()
					for dm == nil { // the daemon's first request may come before startDaemon returns
						time.Sleep(time.Millisecond)
						dm = running.Load()
					}
					_ = dm.cmd.Process.Kill()
					<-dm.done
				}
			}
			if !r.refresh {
				line.arm(&f)
			}
			dm := e.startDaemon(bin, d)
			running.Store(dm)
			if r.refresh {
				if !waitAuthenticated(t, d, dm, 40*time.Second, enrolled) {
					return
				}
				line.arm(&f)
			}
			select {
			case <-f.hit:
			case <-time.After(40 * time.Second):
				t.Errorf("%s: the step never came", what)
				return
			}
			if r.kill {
				dm = e.startDaemon(bin, d)
			}
			done := enrolled
			if r.refresh {
				done = refreshed
			}
			if !waitAuthenticated(t, d, dm, 60*time.Second, done) {
				return
			}
			dm.stop()
			st, err := d.readState()
			if err != nil {
				t.Error(err)
				return
			}
			e.keep(st.Token, st.SecretID)
			// A first enrollment whose answer was lost asks again with a
			// fresh enrollment token, so a second bootstrap login; a
			// refresh never uses the bootstrap credential.
			maxBootstrap := 2
			if r.refresh {
				maxBootstrap = 1
			}
			if st.BootstrapLogins < 1 || st.BootstrapLogins > maxBootstrap || st.Rejoins != 0 || st.Enrollments != 1 {
				t.Errorf("%s: %d bootstrap logins, %d rejoins, %d enrollments; want at most %d, 0, 1",
					what, st.BootstrapLogins, st.Rejoins, st.Enrollments, maxBootstrap)
			}
			if got := e.deviceSecretIDAccessors(id); len(got) != 1 || got[0] != st.SecretIDAccessor {
				t.Errorf("%s: live secret IDs %v, want only %s", what, got, st.SecretIDAccessor)
			}
			if _, err := e.clientFor(readToken(d.sinkPath)).Auth().Token().LookupSelf(); err != nil {
				t.Errorf("%s: the token file does not work: %v", what, err)
			}
		}()
	}
	wg.Wait()
	devs, alerts := e.inventory()
	if len(alerts) != 0 {
		t.Fatalf("lost answers raised alerts: %+v", alerts)
	}
	for _, dv := range devs {
		if dv.State != inventory.DeviceEnrolled {
			t.Errorf("device %s is %s", dv.ID, dv.State)
		}
	}
	t.Logf("%d faults, each ended enrolled", len(runs))
}

// The acknowledgement deadline passes while the device's acknowledgement is
// being checked (the server's Vault answers it slowly): the sweep finds the
// enrollment claimed by that acknowledgement and leaves it alone. One
// decision per enrollment: the device ends enrolled, nobody is alerted.
func TestSweepNeverRacesAnAcknowledgement(t *testing.T) {
	var ready atomic.Pointer[env]
	var slowed atomic.Bool
	e := newEnv(t, options{
		fleet: func(f *config.Fleet) { f.WrapTTL, f.AckTimeout = 10*time.Second, 10*time.Second },
		server: func(c *config.File) {
			c.Alerts.SweepInterval = 500 * time.Millisecond
			c.Vault.Timeout = 30 * time.Second // the slowed call must not time out
			interceptVault(t, c, func(w http.ResponseWriter, r *http.Request) bool {
				// The acknowledgement's lookup of the device's token, once
				// the credential is out: answered after the deadline.
				if e := ready.Load(); r.URL.Path == "/v1/auth/token/lookup" && e != nil &&
					len(e.logs.lines("issued wrapped secret ID")) > 0 && slowed.CompareAndSwap(false, true) {
					time.Sleep(13 * time.Second)
				}
				return false
			})
		},
	})
	ready.Store(e)
	d := e.newDevice("sensor-slow-ack", nil)
	st := e.enroll(d)
	if !slowed.Load() {
		t.Fatal("no acknowledgement was slowed; the test proves nothing")
	}
	if !st.Acknowledged {
		t.Fatal("the device was not acknowledged")
	}
	devs, alerts := e.inventory()
	if len(alerts) != 0 || devs[0].State != inventory.DeviceEnrolled {
		t.Fatalf("alerts %+v, device %s", alerts, devs[0].State)
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only %s", got, st.SecretIDAccessor)
	}
}

// One of the server's Vault calls fails while it checks a device's
// acknowledgement: the acknowledgement is refused as unavailable, and its
// retry goes through at once (the failed attempt gave its claim on the
// enrollment back).
func TestFailedAcknowledgementIsRetriedAtOnce(t *testing.T) {
	var ready atomic.Pointer[env]
	var failed atomic.Bool
	e := newEnv(t, options{server: func(c *config.File) {
		interceptVault(t, c, func(w http.ResponseWriter, r *http.Request) bool {
			// The lookup of the device's secret ID by its accessor,
			// during the acknowledgement: Vault does not answer.
			if e := ready.Load(); strings.HasSuffix(r.URL.Path, "/secret-id-accessor/lookup") && e != nil &&
				len(e.logs.lines("issued wrapped secret ID")) > 0 && failed.CompareAndSwap(false, true) {
				w.WriteHeader(http.StatusBadGateway)
				return true
			}
			return false
		})
	}})
	ready.Store(e)
	d := e.newDevice("sensor-ack-retry", nil)
	start := time.Now()
	st := e.enroll(d)
	if !failed.Load() {
		t.Fatal("no Vault call failed; the test proves nothing")
	}
	if busy := e.logs.lines("step failed; will retry"); len(busy) > 3 {
		t.Fatalf("the acknowledgement was retried %d times (%v after the start)", len(busy), time.Since(start))
	}
	for _, l := range e.logs.lines("step failed; will retry") {
		if strings.Contains(fmt.Sprint(l["err"]), "being decided") {
			t.Fatalf("the retried acknowledgement found the enrollment still claimed: %v", l["err"])
		}
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only %s", got, st.SecretIDAccessor)
	}
	if _, alerts := e.inventory(); len(alerts) != 0 {
		t.Fatalf("alerts: %+v", alerts)
	}
}

// Vault fails to revoke a device's enrollment token once: the server mints
// nothing for that request (its claim and the token's consumption were
// one commit, the mint waits for the revocation), the device's retry with
// a fresh token resumes the same enrollment at once, and the token whose
// revocation failed, still live in Vault until its TTL, is refused by the
// server as spent.
func TestFailedRevocationMintsNothing(t *testing.T) {
	var failedToken atomic.Pointer[string]
	e := newEnv(t, options{server: func(c *config.File) {
		interceptVault(t, c, func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/auth/token/revoke-self") {
				tok := r.Header.Get("X-Vault-Token")
				if failedToken.CompareAndSwap(nil, &tok) {
					w.WriteHeader(http.StatusServiceUnavailable)
					return true
				}
			}
			return false
		})
	}})
	d := e.newDevice("sensor-revoke", nil)
	st := e.enroll(d)
	tok := failedToken.Load()
	if tok == nil {
		t.Fatal("no revocation failed; the test proves nothing")
	}
	e.keep(*tok)
	// The failed request left its enrollment unminted: the retry resumed
	// it and minted, rather than replaying a credential already minted.
	if n := len(e.logs.lines("issued wrapped secret ID")); n != 1 {
		t.Fatalf("%d secret IDs issued, want 1", n)
	}
	if resumed, replayed := len(e.logs.lines("resuming an interrupted enrollment")), len(e.logs.lines("idempotent replay of an enrollment")); resumed != 1 || replayed != 0 {
		t.Fatalf("the retry resumed %d and replayed %d enrollments: the request whose token Vault did not revoke minted", resumed, replayed)
	}
	for _, l := range e.logs.lines("step failed; will retry") {
		if strings.Contains(fmt.Sprint(l["err"]), "being processed") {
			t.Fatalf("the retry found the enrollment still in progress: %v", l["err"])
		}
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only %s", got, st.SecretIDAccessor)
	}
	// The token Vault kept: spent all the same.
	status, body := e.post("/v1/enroll", enrollBody(*tok, "sensor-other", "key-0000000000-other"))
	if status != 401 || errorCode(t, body) != "enrollment_token_reused" {
		t.Fatalf("the token whose revocation failed, sent again: %d %s, want 401 enrollment_token_reused", status, body)
	}
}

// A request that repeats an enrollment whose wrapping token was lost
// unused is answered with a new credential (reissue.go); when Vault fails
// to revoke that request's enrollment token, nothing is reissued (no
// secret ID destroyed, none minted) until a request whose token was
// revoked comes.
func TestReplayWaitsForTheTokensRevocation(t *testing.T) {
	var failFor atomic.Pointer[string]
	e := newEnv(t, options{server: func(c *config.File) {
		interceptVault(t, c, func(w http.ResponseWriter, r *http.Request) bool {
			if tok := failFor.Load(); tok != nil && strings.HasSuffix(r.URL.Path, "/auth/token/revoke-self") && r.Header.Get("X-Vault-Token") == *tok {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		})
	}})
	const key = "key-replay-0000000001"
	status, body := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-replay", key))
	if status != 200 {
		t.Fatalf("first request: %d %s", status, body)
	}
	// The answer is lost: its wrapping token is used up, its secret ID never.
	if _, err := e.root.Logical().Unwrap(jsonField(t, body, "wrapping_token")); err != nil {
		t.Fatal(err)
	}
	tok := e.bootstrapLogin()
	failFor.Store(&tok)
	status, body = e.post("/v1/enroll", enrollBody(tok, "sensor-replay", key))
	if status != http.StatusServiceUnavailable && status != http.StatusBadGateway {
		t.Fatalf("the repeat whose token Vault did not revoke: %d %s, want a Vault error", status, body)
	}
	if n := len(e.logs.lines("reissuing a credential the device lost before using it")); n != 0 {
		t.Fatal("a credential was reissued for a request whose token Vault did not revoke")
	}
	status, body = e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-replay", key))
	if status != 200 {
		t.Fatalf("the repeat with a revoked token: %d %s", status, body)
	}
	e.keep(jsonField(t, body, "wrapping_token"))
	if n := len(e.logs.lines("reissuing a credential the device lost before using it")); n != 1 {
		t.Fatalf("%d credentials reissued, want 1", n)
	}
}

// interceptVault puts a proxy in front of the server's Vault: hook sees
// every request first, and answers it itself by returning true.
func interceptVault(t *testing.T, c *config.File, hook func(w http.ResponseWriter, r *http.Request) bool) {
	target, _ := url.Parse(c.Vault.Address)
	proxy := httputil.NewSingleHostReverseProxy(target)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hook(w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(s.Close)
	c.Vault.Address = s.URL
}

// The server's Vault call that mints a device's secret ID fails once: the
// device's retry resumes the same enrollment at once, instead of being told
// it is in progress until it goes stale.
func TestFailedMintIsResumedAtOnce(t *testing.T) {
	var failed atomic.Bool
	e := newEnv(t, options{server: func(c *config.File) {
		interceptVault(t, c, func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/role/sensor-mint/secret-id") && r.Method == http.MethodPut && failed.CompareAndSwap(false, true) {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		})
	}})
	d := e.newDevice("sensor-mint", nil)
	st := e.enroll(d)
	if !failed.Load() {
		t.Fatal("no mint failed; the test proves nothing")
	}
	for _, l := range e.logs.lines("step failed; will retry") {
		if strings.Contains(fmt.Sprint(l["err"]), "being processed") {
			t.Fatalf("the retry found the enrollment still in progress: %v", l["err"])
		}
	}
	if st.Enrollments != 1 || len(e.logs.lines("resuming an interrupted enrollment")) != 1 {
		t.Fatalf("enrollments %d; the retry did not resume the enrollment", st.Enrollments)
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only %s", got, st.SecretIDAccessor)
	}
}
