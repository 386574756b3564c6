package app

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/backoff"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// fleetCheck watches that every fleet the server enrolls is set up in
// Vault. The server is not ready until each one is: a fleet an
// administrator forgot to set up would otherwise answer its devices with
// errors forever behind a ready server.
type fleetCheck struct {
	fleets   []string
	read     func(ctx context.Context, fleet string) (vault.Generations, error)
	loggedIn <-chan struct{}
	log      *slog.Logger
	// Checked every `every` while all are set up, every `retry` while one
	// is missing or Vault did not answer.
	every, retry time.Duration
	missing      atomic.Pointer[[]string] // nil until the first full check
}

func (f *fleetCheck) run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-f.loggedIn:
	}
	for {
		wait := f.every
		missing, err := f.check(ctx)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			f.log.Warn("cannot check the fleets in vault; will retry", "err", err, "retry_in", f.retry.String())
			wait = f.retry
		default:
			prev := f.missing.Swap(&missing)
			if len(missing) > 0 {
				wait = f.retry
			}
			if prev == nil || !slices.Equal(*prev, missing) {
				if len(missing) > 0 {
					f.log.Error("fleets not set up in vault: the server is not ready until an administrator runs `enrollctl setup -fleet NAME` for each",
						"fleets", strings.Join(missing, ","))
				} else if prev != nil {
					f.log.Info("every fleet is set up in vault")
				}
			}
		}
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}

// check reads each fleet's generation record; missing lists the fleets
// Vault has none of.
func (f *fleetCheck) check(ctx context.Context) ([]string, error) {
	missing := []string{}
	for _, name := range f.fleets {
		_, err := f.read(ctx, name)
		if errors.Is(err, vault.ErrNotFound) {
			missing = append(missing, name)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return missing, nil
}

// ready says why the server is not ready on the fleets' account. The
// fleets' names go to the log, not to the public endpoint.
func (f *fleetCheck) ready() error {
	m := f.missing.Load()
	if m == nil {
		return wire.Errorf(wire.CodeUnavailable, "not ready: the fleets are not checked in Vault yet")
	}
	if len(*m) > 0 {
		return wire.Errorf(wire.CodeUnavailable, "not ready: %d configured fleet(s) not set up in Vault (named in the server's log and by `enroll-server doctor`)", len(*m))
	}
	return nil
}

// Missing lists the configured fleets Vault has no objects of, as last
// checked; ok is false before the first check.
func (f *fleetCheck) Missing() (missing []string, ok bool) {
	m := f.missing.Load()
	if m == nil {
		return nil, false
	}
	return *m, true
}
