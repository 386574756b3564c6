package enrollment

import (
	"context"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// clientMaxBackoff is the longest a device waits between two attempts.
const clientMaxBackoff = 5 * time.Minute

// SweepUnacknowledged closes the loop on wrapped secret IDs that were never
// acknowledged in time: someone else may have unwrapped them. For each, the
// server revokes the wrapping token and raises an alert. A first enrollment's
// device is cut off and quarantined; a refresh's or rejoin's secret ID is
// destroyed while the device keeps its identity. It returns how many it swept.
func (s *Service) SweepUnacknowledged(ctx context.Context) (int, error) {
	waiting, err := s.store.AwaitingAck(ctx)
	if err != nil {
		return 0, err
	}
	now := s.now()
	n := 0
	for _, e := range waiting {
		if e.AckDeadline.IsZero() || now.Before(e.AckDeadline) {
			continue
		}
		// The server's own downtime is not the device's fault: a device
		// given its credential before the server (re)started gets, after
		// the start, its whole acknowledgement time plus the longest wait
		// its backoff may have grown to while the server was away.
		if f, ok := s.fleet(e.Fleet); ok && e.CreatedAt.Before(s.startedAt) && now.Before(s.startedAt.Add(f.AckTimeout+clientMaxBackoff)) {
			continue
		}
		// An acknowledgement may be in flight: whoever claims the
		// enrollment first decides it.
		swept, err := s.sweepOne(ctx, e, now)
		if err != nil {
			return n, err
		}
		if swept {
			n++
		}
	}
	return n, nil
}

// sweepOne decides one enrollment whose acknowledgement is late, unless an
// acknowledgement claimed it first; it reports whether it swept.
func (s *Service) sweepOne(ctx context.Context, e inventory.Enrollment, now time.Time) (swept bool, err error) {
	won, err := s.claimAwaiting(ctx, e.ID)
	if err != nil || !won {
		return false, err
	}
	defer func() {
		if !swept {
			s.releaseAwaiting(e.ID)
		}
	}()
	// An acknowledgement may have landed since the list was read.
	if e, err = s.store.Enrollment(ctx, e.ID); err != nil || e.State != inventory.EnrollmentWrapped {
		return false, nil
	}
	d, err := s.store.Device(ctx, e.Fleet, e.DeviceID)
	if err != nil {
		return false, err
	}
	// Whoever holds the wrapping token gets nothing from it: the secret
	// ID inside is destroyed below (with every other of the device's,
	// for a quarantine).
	detail := fmt.Sprintf("no acknowledgement within %v of minting", e.AckDeadline.Sub(e.CreatedAt).Round(time.Second))
	renewal := isRenewal(e.Kind)
	if renewal || d.EnrollmentID != e.ID {
		// A refresh or rejoin, or a superseded enrollment: the device's
		// identity, and its current credential, are untouched. Only this
		// secret ID may be in other hands: it is destroyed, and the
		// device renews again with the same join state.
		if _, err := s.vault.DestroyEnrollmentSecretIDs(ctx, e.Fleet, e.DeviceID, e.ID); err != nil {
			return false, vaultError("destroy the unacknowledged secret ID", err)
		}
		detail += "; its secret ID was destroyed"
	}
	s.alerts.Raise(ctx, inventory.Alert{Time: now.UTC(), Kind: inventory.AlertAckMissing, Fleet: e.Fleet,
		DeviceID: e.DeviceID, EnrollmentID: e.ID, Detail: detail})
	if d.EnrollmentID != e.ID || renewal {
		// A newer enrollment replaced this one; only the old one ends.
		e.State, e.WrappingToken, e.UpdatedAt = inventory.EnrollmentFailed, "", now.UTC()
		if err := s.store.Record(ctx, e, d, nil); err != nil {
			return false, err
		}
	} else if err := s.quarantine(ctx, &e, &d, "no acknowledgement of its credential in time"); err != nil {
		return false, err
	}
	return true, nil
}
