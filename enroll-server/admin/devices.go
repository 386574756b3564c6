package admin

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// ListFilter selects devices.
type ListFilter struct {
	Fleet string
	// Prefix keeps devices whose ID starts with it.
	Prefix     string
	State      string
	Generation int
	// SeenSince keeps devices heard from (any change) at or after it.
	SeenSince time.Time
	Limit     int
	After     string // cursor: "fleet/id" of the last device of the previous page
}

// Devices lists devices, filtered and paginated: one page is read from
// the store, never the whole inventory.
func (s *Service) Devices(ctx context.Context, token string, f ListFilter) (wire.DeviceList, error) {
	if _, err := s.authorize(ctx, token, AreaDevices, f.Fleet, canRead); err != nil {
		return wire.DeviceList{}, err
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	if len(f.Prefix) > 64 || len(f.After) > 128 || len(f.State) > 32 {
		return wire.DeviceList{}, wire.Errorf(wire.CodeInvalidRequest, "prefix, after or state: too long")
	}
	if f.After != "" && f.Fleet != "" && !strings.Contains(f.After, "/") {
		f.After = f.Fleet + "/" + f.After // a device ID within the fleet listed
	}
	if _, _, ok := inventory.SplitCursor(f.After); f.After != "" && !ok {
		return wire.DeviceList{}, wire.Errorf(wire.CodeInvalidRequest, "after: want the next cursor of the page before")
	}
	devs, next, err := s.store.DevicesPage(ctx, inventory.DeviceQuery{Fleet: f.Fleet, Prefix: f.Prefix, State: f.State,
		Generation: f.Generation, SeenSince: f.SeenSince, After: f.After, Limit: f.Limit})
	if err != nil {
		return wire.DeviceList{}, err
	}
	out := wire.DeviceList{Devices: make([]wire.Device, 0, len(devs)), Next: next}
	for _, d := range devs {
		out.Devices = append(out.Devices, deviceOut(d))
	}
	return out, nil
}

// ParseGeneration reads a generation filter.
func ParseGeneration(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, wire.Errorf(wire.CodeInvalidRequest, "generation: want a positive number")
	}
	return n, nil
}

// ParseSince reads a last-seen filter: an RFC 3339 time or a duration ago.
func ParseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, wire.Errorf(wire.CodeInvalidRequest, "seen_since: want an RFC 3339 time or a duration such as 24h")
	}
	return t, nil
}

// Device shows one device.
func (s *Service) Device(ctx context.Context, token, fleet, id string) (wire.Device, error) {
	if _, err := s.authorize(ctx, token, AreaDevices, fleet, canRead); err != nil {
		return wire.Device{}, err
	}
	d, err := s.core.Device(ctx, fleet, id)
	return deviceOut(d), err
}

// DeviceAction is approve, reject, revoke or readmit.
func (s *Service) DeviceAction(ctx context.Context, token, action, fleet, id string, req wire.Reason) (wire.Device, error) {
	reason := req.Reason
	actor, err := s.authorize(ctx, token, AreaDevices, fleet, canUpdate)
	if err != nil {
		return wire.Device{}, err
	}
	if len(reason) > 512 {
		return wire.Device{}, wire.Errorf(wire.CodeInvalidRequest, "reason: longer than 512 bytes")
	}
	var d inventory.Device
	switch action {
	case "approve":
		if err := s.seen(ctx, fleet, id, req.Preauthorize); err != nil {
			return wire.Device{}, err
		}
		d, err = s.core.Approve(ctx, actor, fleet, id, req.Enrollment)
	case "reject":
		d, err = s.core.Reject(ctx, actor, fleet, id, reason)
	case "revoke":
		d, err = s.core.Revoke(ctx, actor, fleet, id, reason)
	case "readmit":
		d, err = s.core.Readmit(ctx, actor, fleet, id)
	case "rebind":
		d, err = s.core.AllowRebind(ctx, actor, fleet, id, reason, req.EKHash)
	default:
		return wire.Device{}, wire.Errorf(wire.CodeNotFound, "no device action %q", action)
	}
	return deviceOut(d), err
}

// Preauthorize puts devices on their fleet's allow-list.
func (s *Service) Preauthorize(ctx context.Context, token, fleet string, req wire.DeviceIDs) error {
	actor, err := s.authorize(ctx, token, AreaDevices, fleet, canUpdate)
	if err != nil {
		return err
	}
	if err := s.fleet(fleet); err != nil {
		return err
	}
	if len(req.DeviceIDs) == 0 || len(req.DeviceIDs) > 1000 {
		return wire.Errorf(wire.CodeInvalidRequest, "device_ids: want 1 to 1000 devices")
	}
	return s.core.Preauthorize(ctx, actor, fleet, req.DeviceIDs)
}

// seen refuses an approval of a device the server never heard from (most
// likely a mistyped ID, which would otherwise be approved in advance and
// sit waiting for a device nobody has), unless the administrator said
// that is what they mean.
func (s *Service) seen(ctx context.Context, fleet, id string, preauthorize bool) error {
	if preauthorize {
		return nil
	}
	_, err := s.core.Device(ctx, fleet, id)
	if wire.CodeOf(err) != wire.CodeNotFound {
		return err
	}
	return wire.Errorf(wire.CodeUnknownDevice,
		"fleet %s has no device %s: nothing has asked to enroll under that ID. Check the ID (enrollctl devices -fleet %s -state pending lists the devices waiting), or approve it in advance with -preauthorize",
		fleet, id, fleet)
}
