package diagnostics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/diagnostics"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/metrics"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, strings.TrimSpace(string(body))
}

func TestProbes(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	mx := metrics.New()
	s := &diagnostics.Server{Metrics: mx.Handler(), Now: func() time.Time { return now }}
	h := s.Handler()

	if code, body := get(t, h, "/livez"); code != 200 || body != "ok" {
		t.Fatalf("/livez = %d %q", code, body)
	}
	if code, body := get(t, h, "/readyz"); code != 503 || body != "starting: no status published yet" {
		t.Fatalf("/readyz before any status = %d %q", code, body)
	}
	st := lifecycle.Status{Phase: lifecycle.PhaseAuthenticated, TokenAccessor: "accessor-xyz", TokenExpiresAt: now.Add(time.Minute),
		SecretIDAccessor: "sid-accessor-xyz", EntityID: "entity-xyz"}
	for _, sink := range []lifecycle.StatusSink{s, mx} {
		if err := sink.WriteStatus(st); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := get(t, h, "/readyz"); code != 200 || body != "ready" {
		t.Fatalf("/readyz with a live token = %d %q", code, body)
	}
	now = now.Add(2 * time.Minute)
	if code, body := get(t, h, "/readyz"); code != 503 || body != "token expired" {
		t.Fatalf("/readyz once the token expired = %d %q", code, body)
	}
	st.Phase, st.Refused = lifecycle.PhaseRejected, "cloned_state"
	_ = s.WriteStatus(st)
	if code, body := get(t, h, "/readyz"); code != 503 || body != "quarantined: cloned_state" {
		t.Fatalf("/readyz locked out = %d %q", code, body)
	}
	code, body := get(t, h, "/metrics")
	if code != 200 || !strings.Contains(body, `enroll_client_phase{phase="authenticated"} 1`) {
		t.Fatalf("/metrics = %d:\n%s", code, body)
	}
	for _, path := range []string{"/livez", "/readyz", "/metrics"} {
		if _, body := get(t, h, path); strings.Contains(body, "xyz") {
			t.Errorf("%s shows an accessor or entity:\n%s", path, body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/readyz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz = %d, want 405", rec.Code)
	}
	if code, _ := get(t, (&diagnostics.Server{}).Handler(), "/metrics"); code != 404 {
		t.Errorf("/metrics without a registry = %d, want 404", code)
	}
}
