package daemon

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStartReturnsAtOnceAndStopWaits(t *testing.T) {
	stopped := make(chan struct{})
	p := &program{timeout: 5 * time.Second, run: func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped) // "flush state"
		return nil
	}}
	start := make(chan error, 1)
	go func() { start <- p.Start(nil) }()
	select {
	case err := <-start:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return while the service runs")
	}
	if err := p.Stop(nil); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Stop returned before the run function finished")
	}
}

func TestStopIsBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	p := &program{timeout: 50 * time.Millisecond, run: func(context.Context) error {
		<-block // ignores cancellation
		return nil
	}}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(nil); err == nil {
		t.Fatal("Stop of a run function that ignores cancellation returned nil")
	}
}

func TestStopReportsTheRunError(t *testing.T) {
	p := &program{timeout: time.Second, run: func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("flush failed")
	}}
	_ = p.Start(nil)
	if err := p.Stop(nil); err == nil || err.Error() != "flush failed" {
		t.Fatalf("Stop = %v, want the run function's error", err)
	}
}
