package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

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
