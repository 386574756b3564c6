// Package webhook posts security alerts to an operator's endpoint: JSON,
// each post bounded by a timeout and retried with backoff, from a queue so
// that a slow receiver never slows enrollments down.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/edge-enroll/enroll/pkg/backoff"
)

// Sender posts queued events to one URL.
type Sender struct {
	url      string
	client   *http.Client
	log      *slog.Logger
	queue    chan []byte
	attempts int
	sleep    func(context.Context, time.Duration) bool
}

// New builds a sender; Run delivers what Enqueue queues.
func New(url string, timeout time.Duration, log *slog.Logger) *Sender {
	return &Sender{
		url: url, client: &http.Client{Timeout: timeout}, log: log,
		queue: make(chan []byte, 1024), attempts: 5, sleep: backoff.Sleep,
	}
}

// Enqueue queues an event. It never blocks: when the queue is full the
// event is dropped with an error log (the alert is in the log and the store
// regardless).
func (s *Sender) Enqueue(v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		s.log.Error("webhook: encode event", "err", err)
		return
	}
	select {
	case s.queue <- raw:
	default:
		s.log.Error("webhook: queue full, event dropped", "security", true)
	}
}

// Run delivers queued events until ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case raw := <-s.queue:
			s.deliver(ctx, raw)
		}
	}
}

func (s *Sender) deliver(ctx context.Context, raw []byte) {
	b := backoff.New(500*time.Millisecond, 30*time.Second, nil)
	for attempt := 1; attempt <= s.attempts; attempt++ {
		err := s.post(ctx, raw)
		if err == nil {
			return
		}
		s.log.Warn("webhook: delivery failed", "attempt", attempt, "err", err)
		if attempt == s.attempts || !s.sleep(ctx, b.Next(0)) {
			break
		}
	}
	s.log.Error("webhook: event not delivered", "security", true, "attempts", s.attempts)
}

func (s *Sender) post(ctx context.Context, raw []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}
