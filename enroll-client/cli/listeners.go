package cli

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/edge-enroll/enroll/enroll-client/config"
	"github.com/edge-enroll/enroll/enroll-client/diagnostics"
	"github.com/edge-enroll/enroll/enroll-client/metrics"
)

// listeners are the optional HTTP listeners the configuration asks for.
func listeners(cfg config.File, mx *metrics.Metrics, diag *diagnostics.Server, log *slog.Logger) []func(context.Context) error {
	var ls []func(context.Context) error
	if cfg.Metrics.Listen != "" {
		ls = append(ls, func(ctx context.Context) error {
			log.Info("serving metrics", "listen", cfg.Metrics.Listen)
			if err := mx.Serve(ctx, cfg.Metrics.Listen); err != nil {
				return fmt.Errorf("metrics listener (metrics.listen): %w", err)
			}
			return nil
		})
	}
	if diag != nil {
		ls = append(ls, func(ctx context.Context) error {
			if err := diag.Serve(ctx, cfg.Diagnostics.Addr(), log); err != nil {
				return fmt.Errorf("diagnostics listener (diagnostics.listen): %w", err)
			}
			return nil
		})
	}
	return ls
}

// runWithListeners runs the machine and the listeners together: the
// listeners end with the machine, and a listener that fails stops it.
func runWithListeners(ctx context.Context, machine func(context.Context) error, ls ...func(context.Context) error) error {
	if len(ls) == 0 {
		return machine(ctx)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	for _, l := range ls {
		g.Go(func() error { return l(ctx) })
	}
	g.Go(func() error {
		defer cancel() // the listeners end with the machine
		return machine(ctx)
	})
	return g.Wait()
}
