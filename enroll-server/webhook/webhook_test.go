package webhook

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A receiver that fails twice gets the event on the third attempt.
func TestRetriesUntilDelivered(t *testing.T) {
	var calls atomic.Int32
	got := make(chan map[string]any, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var m map[string]any
		raw, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(raw, &m)
		got <- m
	}))
	defer srv.Close()
	s := New(srv.URL, time.Second, slog.New(slog.DiscardHandler))
	s.sleep = func(context.Context, time.Duration) bool { return true } // no real waiting
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	s.Enqueue(map[string]string{"kind": "test"})
	select {
	case m := <-got:
		if m["kind"] != "test" || calls.Load() != 3 {
			t.Fatalf("delivered %v after %d calls", m, calls.Load())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("event not delivered")
	}
}
