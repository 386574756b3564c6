package enrollment

import (
	"context"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// SweepUnacknowledged closes the loop on wrapped secret IDs that were never
// acknowledged in time: someone else may have unwrapped them. For each, the
// server revokes the wrapping token, cuts the device off, quarantines it
// and raises an alert. It returns how many it swept.
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
		d, err := s.store.Device(ctx, e.Fleet, e.DeviceID)
		if err != nil {
			return n, err
		}
		if err := s.vault.RevokeAccessor(ctx, e.WrappingAccessor); err != nil {
			return n, vaultError("revoke the wrapping token", err)
		}
		s.alerts.Raise(ctx, inventory.Alert{Time: now.UTC(), Kind: inventory.AlertAckMissing, Fleet: e.Fleet,
			DeviceID: e.DeviceID, EnrollmentID: e.ID,
			Detail: fmt.Sprintf("no acknowledgement within %v of minting", e.AckDeadline.Sub(e.CreatedAt).Round(time.Second))})
		if d.EnrollmentID != e.ID {
			// A newer enrollment replaced this one; only the old one ends.
			e.State, e.WrappingToken, e.UpdatedAt = inventory.EnrollmentFailed, "", now.UTC()
			if err := s.store.Record(ctx, e, d, nil); err != nil {
				return n, err
			}
		} else if err := s.quarantine(ctx, &e, &d, "no acknowledgement of its credential in time"); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
