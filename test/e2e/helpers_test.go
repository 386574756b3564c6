package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/sink"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/pkg/bundle"
)

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustPool(t testing.TB, pemData string) *x509.CertPool {
	t.Helper()
	if pemData == "" {
		return nil
	}
	p, err := bundle.CertPool(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tlsTo(t testing.TB, caPEM string) *tls.Config {
	return &tls.Config{RootCAs: mustPool(t, caPEM)}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func sinkFile(path string) lifecycle.Sink { return sink.File{Path: path} }
