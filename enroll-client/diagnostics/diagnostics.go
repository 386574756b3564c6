// Package diagnostics is enroll-client's optional health listener, in the
// manner of Vault's tbot: /livez answers while the process runs, /readyz
// only while the device holds a live Vault token and is neither refused
// nor quarantined (health.NotReady), and /metrics serves the client's
// Prometheus metrics. No answer holds a secret or an accessor.
package diagnostics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/health"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
)

// Server keeps the status the state machine last published and answers
// probes from it. Its zero value answers /livez and /readyz (not ready
// until a status arrives); Metrics adds /metrics.
type Server struct {
	// Metrics, when set, is served on /metrics (metrics.Metrics.Handler).
	Metrics http.Handler
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu     sync.Mutex
	status lifecycle.Status
}

// WriteStatus records the latest status; it implements
// lifecycle.StatusSink.
func (s *Server) WriteStatus(st lifecycle.Status) error {
	s.mu.Lock()
	s.status = st
	s.mu.Unlock()
	return nil
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler serves /livez, /readyz and, with Metrics, /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		st := s.status
		s.mu.Unlock()
		if why := health.NotReady(st, s.now()); why != "" {
			plain(w, http.StatusServiceUnavailable, why)
			return
		}
		plain(w, http.StatusOK, "ready")
	})
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}
	return mux
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}

// Serve listens on addr and serves Handler until ctx ends. It logs the
// address it bound (addr may ask for any free port).
func (s *Server) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
	}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	attrs := []any{"listen", ln.Addr().String()}
	if ip, ok := ln.Addr().(*net.TCPAddr); ok && !ip.IP.IsLoopback() {
		attrs = append(attrs, "warning", "not on loopback: anyone who reaches this address sees the device's health and metrics")
	}
	log.Info("serving diagnostics", attrs...)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
