package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
)

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestMetricsFollowStatus(t *testing.T) {
	m := New()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, addr) }()
	exp := time.Unix(2000000000, 0)
	m.WriteStatus(lifecycle.Status{Phase: lifecycle.PhaseAuthenticated, TokenExpiresAt: exp, Enrollments: 2, Acknowledged: true,
		TokenAccessor: "acc-secret-looking"})
	m.WriteStatus(lifecycle.Status{Phase: lifecycle.PhaseAuthenticated, TokenExpiresAt: exp, Enrollments: 2, Acknowledged: true,
		LastError: "vault: 503", NextRetry: exp})
	var out string
	for range 50 {
		if _, err := net.Dial("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	out = scrape(t, addr)
	for _, want := range []string{
		`enroll_client_phase{phase="authenticated"} 1`,
		`enroll_client_phase{phase="enrolling"} 0`,
		`enroll_client_token_expiry_timestamp_seconds 2e+09`,
		`enroll_client_enrollments 2`,
		`enroll_client_acknowledged 1`,
		`enroll_client_step_failures_total 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(out, "acc-secret-looking") {
		t.Error("an accessor reached the metrics")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v after its context ended", err)
	}
	if err := m.Serve(context.Background(), "256.0.0.1:1"); err == nil {
		t.Fatal("Serve on a bad address succeeded")
	}
}
