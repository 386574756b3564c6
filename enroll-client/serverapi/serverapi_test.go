package serverapi_test

import (
	"context"
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
