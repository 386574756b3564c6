package health_test

import (
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/health"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
)

var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func authenticated() lifecycle.Status {
	return lifecycle.Status{Phase: lifecycle.PhaseAuthenticated, DeviceID: "sensor-1", Fleet: "acme",
		TokenAccessor: "acc", TokenExpiresAt: now.Add(time.Hour), Acknowledged: true}
}

func TestNotReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*lifecycle.Status)
		want string // "" means ready
	}{
		{"authenticated, live token", func(*lifecycle.Status) {}, ""},
		{"refreshing, old token still live", func(s *lifecycle.Status) { s.Phase = lifecycle.PhaseRefreshing }, ""},
		{"not acknowledged yet, token live", func(s *lifecycle.Status) { s.Acknowledged = false }, ""},
		{"nothing published", func(s *lifecycle.Status) { *s = lifecycle.Status{} }, "starting: no status published yet"},
		{"token expired", func(s *lifecycle.Status) { s.TokenExpiresAt = now.Add(-time.Second) }, "token expired"},
		{"token expires this instant", func(s *lifecycle.Status) { s.TokenExpiresAt = now }, "token expired"},
		{"rejoining", func(s *lifecycle.Status) { s.Phase = lifecycle.PhaseRejoining }, "no working token: rejoining"},
		{"cloned state", func(s *lifecycle.Status) { s.Phase, s.Refused = lifecycle.PhaseRejected, "cloned_state" }, "quarantined: cloned_state"},
		{"quarantined", func(s *lifecycle.Status) { s.Phase, s.Refused = lifecycle.PhaseRejected, "device_quarantined" }, "quarantined: device_quarantined"},
		{"retired generation", func(s *lifecycle.Status) { s.Phase, s.Refused = lifecycle.PhaseRejected, "enrollment_token_invalid" }, "refused: enrollment_token_invalid"},
		{"refused by the client itself", func(s *lifecycle.Status) { s.Phase, s.Reason = lifecycle.PhaseRejected, "creation path mismatch" }, "refused: see enroll-client status"},
		{"pending approval", func(s *lifecycle.Status) {
			s.Phase, s.TokenExpiresAt, s.TokenAccessor = lifecycle.PhasePending, time.Time{}, ""
		}, "not enrolled yet: waiting for approval"},
		{"first enrollment under way", func(s *lifecycle.Status) {
			s.Phase, s.TokenExpiresAt, s.TokenAccessor = lifecycle.PhaseWrapped, time.Time{}, ""
		}, "not enrolled yet: wrapped"},
		{"stopped", func(s *lifecycle.Status) { s.DaemonStopped = now.Add(-time.Minute) }, "daemon stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := authenticated()
			tc.edit(&s)
			if got := health.NotReady(s, now); got != tc.want {
				t.Fatalf("NotReady = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReport(t *testing.T) {
	past := authenticated()
	past.Phase, past.LastError, past.NextRetry = lifecycle.PhaseEnrolling, "server unreachable", now.Add(-10*time.Minute)
	stopped := authenticated()
	stopped.DaemonStopped = now.Add(-time.Hour)
	for _, tc := range []struct {
		name      string
		s         lifecycle.Status
		running   bool
		wantCode  int
		wantText  []string
		wantStale bool
	}{
		{"running and ready", authenticated(), true, health.ExitReady, []string{"daemon:                running", "ready:                 yes"}, false},
		{"running, token expired", func() lifecycle.Status { s := authenticated(); s.TokenExpiresAt = now.Add(-time.Minute); return s }(),
			true, health.ExitNotReady, []string{"ready:                 no: token expired"}, false},
		{"killed mid-retry", past, false, health.ExitNotRunning,
			[]string{"NOT RUNNING (it did not stop cleanly", "(stale: in the past, and no daemon is running to retry)", "enroll-client service start"}, true},
		{"stopped cleanly", stopped, false, health.ExitNotRunning, []string{"NOT RUNNING (stopped 2030-01-02T02:04:05Z)"}, false},
		{"restarted, new daemon not published yet", stopped, true, health.ExitNotReady, []string{"daemon:                running", "no: starting"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := health.NewReport(tc.s, tc.running, now)
			if r.ExitCode() != tc.wantCode || r.NextRetryStale != tc.wantStale {
				t.Fatalf("exit %d, stale %v; want %d, %v", r.ExitCode(), r.NextRetryStale, tc.wantCode, tc.wantStale)
			}
			text := r.Text()
			for _, w := range tc.wantText {
				if !strings.Contains(text, w) {
					t.Errorf("text lacks %q:\n%s", w, text)
				}
			}
			if tc.wantStale && strings.Count(text, "next retry:") != 1 {
				t.Errorf("next retry shown %d times:\n%s", strings.Count(text, "next retry:"), text)
			}
		})
	}
}
