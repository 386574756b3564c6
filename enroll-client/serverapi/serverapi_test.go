package serverapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// A device whose connection was closed resumes its TLS session when it
// comes back: the server does not sign a handshake again.
func TestComingBackResumesTheTLSSession(t *testing.T) {
	var mu sync.Mutex
	var resumed []bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.TLS.DidResume)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ticket":"t","retry_after_seconds":0}`))
	}))
	defer srv.Close()
	pool := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	c := serverapi.New(srv.URL, pool, 5*time.Second)
	for range 2 {
		if _, err := c.Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d"}); err != nil {
			t.Fatal(err)
		}
		c.CloseIdleConnections()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(resumed) != 2 || resumed[0] || !resumed[1] {
		t.Fatalf("resumed %v; want a full handshake, then a resumed one", resumed)
	}
}

// A refusal with a slot of the device's own (retry_after_ms) is read to the
// millisecond and marked scheduled; a slot beyond the hour is not trusted
// as one, and the plain Retry-After is kept.
func TestScheduledRetryIsReadToTheMillisecond(t *testing.T) {
	for _, c := range []struct {
		body      string
		want      time.Duration
		scheduled bool
	}{
		{`{"error":{"code":"rate_limited","message":"m","retry_after_seconds":13,"retry_after_ms":12345}}`, 12345 * time.Millisecond, true},
		{`{"error":{"code":"rate_limited","message":"m","retry_after_seconds":13}}`, 13 * time.Second, false},
		{`{"error":{"code":"rate_limited","message":"m","retry_after_seconds":13,"retry_after_ms":99999999}}`, 13 * time.Second, false},
		{`{"error":{"code":"rate_limited","message":"m","retry_after_seconds":13,"retry_after_ms":-5}}`, 13 * time.Second, false},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "13")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(c.body))
		}))
		_, err := serverapi.New(srv.URL, nil, 5*time.Second).Admit(context.Background(), wire.AdmitRequest{Fleet: "acme", DeviceID: "d"})
		srv.Close()
		var se *serverapi.Error
		if !errors.As(err, &se) {
			t.Fatalf("%s: %v", c.body, err)
		}
		if se.RetryAfter != c.want || se.Scheduled != c.scheduled {
			t.Errorf("%s: retry after %v scheduled %v, want %v %v", c.body, se.RetryAfter, se.Scheduled, c.want, c.scheduled)
		}
	}
}
