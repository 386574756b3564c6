package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// webhookReceiver collects the alerts the server posts.
type webhookReceiver struct {
	mu    sync.Mutex
	kinds []string
	srv   *httptest.Server
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	w := &webhookReceiver{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var al inventory.Alert
		raw, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(raw, &al) != nil {
			rw.WriteHeader(http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.kinds = append(w.kinds, al.Kind)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) has(kind string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range w.kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Each secret-bridge alert is raised by a real event and seen in the log,
// the metric and the webhook.
func TestEveryAlertReachesLogMetricAndWebhook(t *testing.T) {
	hook := newWebhookReceiver(t)
	e := newEnv(t, options{
		fleet: func(f *config.Fleet) {
			zero := 0
			f.WrapTTL, f.AckTimeout, f.RecoveryBudget = 10*time.Second, 10*time.Second, &zero
			f.RecoveryWindow = time.Hour
		},
		server: func(c *config.File) { c.Alerts.WebhookURL, c.Alerts.SweepInterval = hook.srv.URL, time.Second },
	})
	// 1. An enrollment token presented twice.
	tok := e.bootstrapLogin()
	_, first := e.post("/v1/enroll", enrollBody(tok, "reuse-1", "key-reuse000000001"))
	e.keep(jsonField(t, first, "wrapping_token"))
	e.post("/v1/enroll", enrollBody(tok, "reuse-2", "key-reuse000000002"))
	// 2. A wrapping token unwrapped by someone else.
	stealer := e.interceptor(func(r *wire.EnrollResponse) {
		if sec, err := e.clientFor(r.WrappingToken).Logical().Unwrap(""); err == nil {
			e.keep(sec.Data["secret_id"].(string))
		}
	})
	e.runUntilStopped(e.newDevice("stolen", viaProxy(stealer)))
	// 3. A wrapping token minted at another path.
	swapper := e.interceptor(func(r *wire.EnrollResponse) {
		sec, err := e.root.Logical().Write("sys/wrapping/wrap", map[string]any{"x": "y"})
		if err == nil {
			r.WrappingToken = sec.WrapInfo.Token
			e.keep(r.WrappingToken)
		}
	})
	e.runUntilStopped(e.newDevice("swapped", viaProxy(swapper)))
	// 4. A recovery budget exhausted: budget 0, so a rejoin is one too many.
	st := e.enroll(e.newDevice("budget", nil))
	e.keep(st.SecretID, st.Token)
	status, body := e.call(identityCall{purpose: identity.PurposeRejoin, device: "budget", key: deviceKey(t, st), sequence: st.Sequence})
	if status != 403 || errorCode(t, body) != "device_quarantined" {
		t.Fatalf("over budget: %d %s", status, body)
	}
	// 5. No acknowledgement in time: mint, never acknowledge.
	_, silent := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "silent", "key-silent00000001"))
	e.keep(jsonField(t, silent, "wrapping_token"))

	kinds := []string{inventory.AlertEnrollmentTokenReuse, inventory.AlertWrappingTokenInvalid,
		inventory.AlertCreationPathMismatch, inventory.AlertRecoveryBudget, inventory.AlertAckMissing}
	// reuse-1's credential, minted by the first use of the reused token, was
	// never acknowledged either: two such alerts.
	counts := map[string]int{inventory.AlertAckMissing: 2}
	metricLine := func(k string) string {
		return fmt.Sprintf("enroll_server_security_alerts_total{kind=%q} %d", k, max(counts[k], 1))
	}
	var metrics string
	waitFor(t, 40*time.Second, "every alert counted and at the webhook", func() bool {
		metrics = e.metrics()
		for _, k := range kinds {
			if !hook.has(k) || !strings.Contains(metrics, metricLine(k)) {
				return false
			}
		}
		return true
	})
	for _, k := range kinds {
		logged := false
		for _, l := range e.logs.lines("security alert") {
			if l["kind"] == k && l["security"] == true {
				logged = true
			}
		}
		if !logged {
			t.Errorf("alert %s: no log line", k)
		}
	}
	if !strings.Contains(metrics, `enroll_server_enrollments_total{fleet="acme",outcome="wrapped",path="bootstrap"}`) ||
		!strings.Contains(metrics, `enroll_server_enrollments_total{fleet="acme",outcome="enrollment_token_reused",path="bootstrap"} 1`) ||
		!strings.Contains(metrics, `enroll_server_enrollments_total{fleet="acme",outcome="device_quarantined",path="rejoin"} 1`) {
		t.Error("enrollment outcomes are not counted")
	}
	for _, m := range []string{
		`enroll_server_enrollment_duration_seconds_count{fleet="acme"}`,
		`enroll_server_admissions_total{fleet="acme",outcome="admitted"}`,
		`enroll_server_vault_request_duration_seconds_count{status="2xx"}`,
		`enroll_server_vault_request_duration_seconds_count{status="4xx"}`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	// The silent device's wrapping token was revoked and it is quarantined.
	if _, err := e.root.Logical().Write("sys/wrapping/lookup", map[string]any{"token": jsonField(t, silent, "wrapping_token")}); err == nil {
		t.Error("the unacknowledged wrapping token is still valid")
	}
	waitFor(t, 20*time.Second, "every affected device quarantined", func() bool {
		_, body := e.get("/v1/admin/devices?fleet=acme&state=quarantined", e.vault.RootToken)
		for _, id := range []string{"stolen", "swapped", "budget", "silent", "reuse-1"} {
			if !strings.Contains(body, `"id":"`+id+`"`) {
				return false
			}
		}
		return true
	})
}
