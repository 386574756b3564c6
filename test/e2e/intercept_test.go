package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// interceptor sits between a device and the server, like an attacker on the
// path, and may rewrite the enroll answer.
func (e *env) interceptor(rewrite func(*wire.EnrollResponse)) *httptest.Server {
	e.t.Helper()
	target, _ := url.Parse(e.serverURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: tlsTo(e.t, e.caPEM)}
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != wire.PathEnroll || r.StatusCode != http.StatusOK {
			return nil
		}
		var resp wire.EnrollResponse
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &resp); err != nil {
			return err
		}
		e.keep(resp.WrappingToken)
		rewrite(&resp)
		out, _ := json.Marshal(resp)
		r.Body = io.NopCloser(bytes.NewReader(out))
		r.ContentLength = int64(len(out))
		r.Header.Set("Content-Length", strconv.Itoa(len(out)))
		return nil
	}
	s := httptest.NewServer(proxy)
	e.t.Cleanup(s.Close)
	return s
}

func viaProxy(s *httptest.Server) func(*bundle.Bundle) {
	return func(b *bundle.Bundle) { b.ServerURL, b.ServerCAPEM = s.URL, "" }
}

// runUntilStopped runs a device that is expected to stop permanently.
func (e *env) runUntilStopped(d *device) lifecycle.State {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := d.machine.Run(ctx, true)
	if !errors.Is(err, lifecycle.ErrRejected) {
		e.t.Fatalf("device %s: Run = %v, want it to stop with ErrRejected", d.id, err)
	}
	st := d.state(e.t)
	if st.Phase != lifecycle.PhaseRejected || st.SecretID != "" || st.Token != "" {
		e.t.Fatalf("device %s: phase %s with credentials set; want rejected with none", d.id, st.Phase)
	}
	return st
}

// Someone unwraps the device's secret ID before the device does: the device
// refuses, reports, the server raises an alert, destroys the secret ID and
// quarantines the device.
func TestWrappingTokenUnwrappedBySomeoneElse(t *testing.T) {
	e := newEnv(t)
	var stolen string
	proxy := e.interceptor(func(r *wire.EnrollResponse) {
		sec, err := e.clientFor(r.WrappingToken).Logical().Unwrap("")
		if err != nil {
			t.Errorf("attacker unwrap: %v", err)
			return
		}
		stolen, _ = sec.Data["secret_id"].(string)
		e.keep(stolen)
	})
	d := e.newDevice("sensor-a", viaProxy(proxy))
	st := e.runUntilStopped(d)
	if stolen == "" {
		t.Fatal("the interceptor did not get the secret ID; the test proves nothing")
	}
	if st.Reason == "" {
		t.Fatal("the device stopped without saying why")
	}
	// The stolen secret ID is useless: the server destroyed it.
	if got := e.deviceSecretIDAccessors("sensor-a"); len(got) != 0 {
		t.Fatalf("after the report the device still has %d secret IDs", len(got))
	}
	_, err := e.clientFor("").Logical().Write("auth/edge-devices-acme/login", map[string]any{"role_id": st.RoleID, "secret_id": stolen})
	if err == nil {
		t.Fatal("the stolen secret ID still logs in")
	}
	alerts := e.logs.lines("security alert")
	if len(alerts) != 1 || alerts[0]["kind"] != inventory.AlertWrappingTokenInvalid || alerts[0]["security"] != true {
		t.Fatalf("security alert log lines = %v", alerts)
	}
	devs, stored := e.inventory()
	if len(stored) != 1 || len(devs) != 1 || devs[0].State != inventory.DeviceQuarantined {
		t.Fatalf("inventory after the report: devices %+v alerts %+v", devs, stored)
	}
}

// A wrapping token minted at another path is refused before unwrapping.
func TestWrongCreationPathIsRefusedBeforeUnwrap(t *testing.T) {
	e := newEnv(t)
	var substitute string
	proxy := e.interceptor(func(r *wire.EnrollResponse) {
		// A token the attacker controls: real, unused, but minted at
		// sys/wrapping/wrap with a secret ID of their choosing.
		sec, err := e.root.Logical().WriteWithContext(context.Background(), "sys/wrapping/wrap",
			map[string]any{"secret_id": "attacker-chosen", "secret_id_accessor": "x"})
		if err != nil || sec.WrapInfo == nil {
			t.Errorf("mint substitute: %v", err)
			return
		}
		substitute = sec.WrapInfo.Token
		e.keep(substitute)
		r.WrappingToken = substitute
	})
	d := e.newDevice("sensor-a", viaProxy(proxy))
	e.runUntilStopped(d)
	if substitute == "" {
		t.Fatal("no substitute token was minted; the test proves nothing")
	}
	// The device never unwrapped it: it is still valid.
	if _, err := e.root.Logical().Write("sys/wrapping/lookup", map[string]any{"token": substitute}); err != nil {
		t.Fatalf("the substitute wrapping token was consumed: %v", err)
	}
	alerts := e.logs.lines("security alert")
	if len(alerts) != 1 || alerts[0]["kind"] != inventory.AlertCreationPathMismatch {
		t.Fatalf("security alert log lines = %v", alerts)
	}
	// The genuine secret ID, which the attacker may hold, is destroyed.
	if got := e.deviceSecretIDAccessors("sensor-a"); len(got) != 0 {
		t.Fatalf("after the report the device still has %d secret IDs", len(got))
	}
}
