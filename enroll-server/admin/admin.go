// Package admin is the fleet administrators' side of the server. Admins
// authenticate with their own Vault token; what each may do is decided by
// Vault policy, by asking Vault what that token may do on a path that stands
// for the action. There is no second user database.
package admin

import (
	"context"
	"errors"
	"slices"
	"sort"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Vault is what the admin service needs from Vault.
type Vault interface {
	Capabilities(ctx context.Context, token, path string) ([]string, error)
}

// Service answers admin requests.
type Service struct {
	vault Vault
	store inventory.Store
}

// New builds the admin service.
func New(v Vault, s inventory.Store) *Service { return &Service{vault: v, store: s} }

// Action paths, under vault.AdminActionPrefix.
const (
	ActionDevices = "devices"
)

// authorize checks that token has capability on the action's path.
func (s *Service) authorize(ctx context.Context, token, action, capability string) error {
	if token == "" {
		return wire.Errorf(wire.CodeUnauthenticated, "an administrator's Vault token is required (X-Vault-Token)")
	}
	caps, err := s.vault.Capabilities(ctx, token, vault.AdminActionPrefix+action)
	if err != nil {
		return &wire.Error{Code: wire.CodeUnavailable, Message: "vault could not check the token's capabilities", RetryAfterSeconds: 2}
	}
	if slices.Contains(caps, "root") || slices.Contains(caps, capability) {
		return nil
	}
	return wire.Errorf(wire.CodeForbidden, "this token may not %s %s", capability, action)
}

// Devices lists devices, optionally of one fleet.
func (s *Service) Devices(ctx context.Context, token, fleet string) (wire.DeviceList, error) {
	if err := s.authorize(ctx, token, ActionDevices, "list"); err != nil {
		return wire.DeviceList{}, err
	}
	if fleet != "" {
		if err := wire.ValidateFleet(fleet); err != nil {
			return wire.DeviceList{}, wire.Errorf(wire.CodeInvalidRequest, "%v", err)
		}
	}
	devs, err := s.store.Devices(ctx, fleet)
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return wire.DeviceList{}, err
	}
	out := wire.DeviceList{Devices: make([]wire.Device, 0, len(devs))}
	for _, d := range devs {
		out.Devices = append(out.Devices, wire.Device{
			Fleet: d.Fleet, ID: d.ID, State: d.State, Generation: d.Generation,
			Enrollments: d.Enrollments, SecretIDAccessor: d.SecretIDAccessor,
			EnrolledAt: d.EnrolledAt, UpdatedAt: d.UpdatedAt, Reason: d.Reason,
		})
	}
	sort.Slice(out.Devices, func(i, j int) bool {
		a, b := out.Devices[i], out.Devices[j]
		return a.Fleet < b.Fleet || (a.Fleet == b.Fleet && a.ID < b.ID)
	})
	return out, nil
}
