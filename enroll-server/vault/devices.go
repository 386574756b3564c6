package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/vault/api"
)

// DeviceRole are the token and secret ID settings of a device's own role.
type DeviceRole struct {
	RoleID      string
	TokenTTL    time.Duration
	TokenMaxTTL time.Duration
	SecretIDTTL time.Duration
}

func deviceRolePath(fleet, device string) string {
	return "auth/" + DeviceMount(fleet) + "/role/" + device
}

// UpsertDeviceRole creates or updates the device's own AppRole role. Its
// tokens carry the fleet's device policy only (Vault's ACL on the server's
// policy refuses any other); the role ID is chosen by the server so that no
// read is needed.
func (s *Server) UpsertDeviceRole(ctx context.Context, fleet, device string, r DeviceRole) error {
	_, err := s.c.Logical().WriteWithContext(ctx, deviceRolePath(fleet, device), map[string]any{
		"role_id":        r.RoleID,
		"bind_secret_id": true,
		"token_policies": []string{DevicePolicy(fleet)},
		"token_type":     "service",
		"token_ttl":      seconds(r.TokenTTL),
		"token_max_ttl":  seconds(r.TokenMaxTTL),
		"secret_id_ttl":  seconds(r.SecretIDTTL),
	})
	if err != nil {
		return fmt.Errorf("write device role: %w", err)
	}
	return nil
}

// MintWrappedSecretID creates a secret ID for the device's role, wrapped
// with wrapTTL. The server never sees the secret ID itself.
func (s *Server) MintWrappedSecretID(ctx context.Context, fleet, device string, meta map[string]string, wrapTTL time.Duration) (WrapInfo, error) {
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return WrapInfo{}, err
	}
	req := api.NewLogicalWriteRequest(deviceRolePath(fleet, device)+"/secret-id",
		map[string]any{"metadata": string(metaJSON), "num_uses": SecretIDUses},
		http.Header{"X-Vault-Wrap-Ttl": []string{seconds(wrapTTL)}})
	sec, err := s.c.Logical().WriteWithRequest(ctx, req)
	if roleMissing(err) {
		return WrapInfo{}, fmt.Errorf("mint wrapped secret ID: %w: %w", ErrRoleMissing, err)
	}
	if err != nil {
		return WrapInfo{}, fmt.Errorf("mint wrapped secret ID: %w", err)
	}
	if sec == nil || sec.WrapInfo == nil || sec.WrapInfo.Token == "" {
		return WrapInfo{}, errors.New("mint wrapped secret ID: response was not wrapped")
	}
	wi := sec.WrapInfo
	return WrapInfo{
		Token:           wi.Token,
		Accessor:        wi.Accessor,
		WrappedAccessor: wi.WrappedAccessor,
		CreationPath:    wi.CreationPath,
		TTL:             time.Duration(wi.TTL) * time.Second,
		CreationTime:    wi.CreationTime,
	}, nil
}

// SecretIDUses is how many logins a device secret ID is minted for: far
// more than a device makes in the secret ID's life, and a count that tells
// whether it was ever used: a secret ID with all its uses left never logged
// anyone in. A wrapped secret ID whose answer was lost is told apart from
// an intercepted one this way (see SecretIDUsesLeft).
const SecretIDUses = 1_000_000

// SecretIDUsesLeft returns how many logins a device secret ID has left, or
// ErrNotFound.
func (s *Server) SecretIDUsesLeft(ctx context.Context, fleet, device, accessor string) (int, error) {
	sec, err := s.lookupSecretID(ctx, fleet, device, accessor)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(fmt.Sprint(sec.Data["secret_id_num_uses"]))
	if err != nil {
		return 0, fmt.Errorf("secret ID accessor lookup: uses %v", sec.Data["secret_id_num_uses"])
	}
	return n, nil
}

// WrappingAlive reports whether a wrapping token can still be unwrapped.
func (s *Server) WrappingAlive(ctx context.Context, token string) (bool, error) {
	_, err := s.c.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": token})
	if err == nil {
		return true, nil
	}
	if st := statusOf(err); st == http.StatusBadRequest || st == http.StatusNotFound || st == http.StatusForbidden {
		return false, nil
	}
	return false, fmt.Errorf("look up wrapping token: %w", err)
}

// DeviceSecretIDAccessors lists the accessors of the device's live secret IDs.
func (s *Server) DeviceSecretIDAccessors(ctx context.Context, fleet, device string) ([]string, error) {
	return listWrapped(ctx, s.c, deviceRolePath(fleet, device)+"/secret-id")
}

// lookupSecretID looks one of the device's secret IDs up by accessor, or
// returns ErrNotFound.
func (s *Server) lookupSecretID(ctx context.Context, fleet, device, accessor string) (*api.Secret, error) {
	sec, err := s.c.Logical().WriteWithContext(ctx, deviceRolePath(fleet, device)+"/secret-id-accessor/lookup",
		map[string]any{"secret_id_accessor": accessor})
	if err != nil {
		if s := statusOf(err); s == http.StatusNotFound || s == http.StatusBadRequest {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("look up secret ID accessor: %w", err)
	}
	if sec == nil || sec.Data == nil {
		// An unknown accessor is answered with an error (above); an
		// empty answer comes from a node in a leader change.
		return nil, errors.New("look up secret ID accessor: vault gave an empty answer")
	}
	return sec, nil
}

// DeviceSecretIDMeta returns the metadata of one of the device's secret IDs,
// or ErrNotFound.
func (s *Server) DeviceSecretIDMeta(ctx context.Context, fleet, device, accessor string) (map[string]string, error) {
	sec, err := s.lookupSecretID(ctx, fleet, device, accessor)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if m, ok := sec.Data["metadata"].(map[string]any); ok {
		for k, v := range m {
			out[k] = str(v)
		}
	}
	return out, nil
}

// DestroyDeviceSecretIDs destroys every secret ID of the device's role and
// returns how many there were.
func (s *Server) DestroyDeviceSecretIDs(ctx context.Context, fleet, device string) (int, error) {
	return s.DestroyDeviceSecretIDsExcept(ctx, fleet, device, "")
}

// DestroyDeviceSecretIDsExcept destroys every secret ID of the device's
// role but the one with accessor keep, and returns how many it destroyed:
// once a refreshed secret ID is acknowledged, it is the device's only one.
func (s *Server) DestroyDeviceSecretIDsExcept(ctx context.Context, fleet, device, keep string) (int, error) {
	accs, err := s.DeviceSecretIDAccessors(ctx, fleet, device)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range accs {
		if a == keep {
			continue
		}
		if err := s.destroySecretIDAccessor(ctx, deviceRolePath(fleet, device), a); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// DestroyEnrollmentSecretIDs destroys the device's secret IDs minted by one
// enrollment (by their metadata) and returns how many there were.
func (s *Server) DestroyEnrollmentSecretIDs(ctx context.Context, fleet, device, enrollmentID string) (int, error) {
	accs, err := s.DeviceSecretIDAccessors(ctx, fleet, device)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range accs {
		meta, err := s.DeviceSecretIDMeta(ctx, fleet, device, a)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if meta["enrollment_id"] != enrollmentID {
			continue
		}
		if err := s.destroySecretIDAccessor(ctx, deviceRolePath(fleet, device), a); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func (s *Server) destroySecretIDAccessor(ctx context.Context, rolePath, accessor string) error {
	_, err := s.c.Logical().WriteWithContext(ctx, rolePath+"/secret-id-accessor/destroy",
		map[string]any{"secret_id_accessor": accessor})
	if err != nil && statusOf(err) != http.StatusNotFound && statusOf(err) != http.StatusBadRequest {
		return fmt.Errorf("destroy secret ID: %w", err)
	}
	return nil
}

func listKeys(ctx context.Context, c *api.Client, path string) ([]string, error) {
	sec, err := c.Logical().ListWithContext(ctx, path)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	if sec == nil || sec.Data == nil {
		return nil, nil
	}
	return strs(sec.Data["keys"]), nil
}

// listWrapped lists path with the answer response-wrapped, as the server's
// policy demands for device secret IDs, and unwraps it with the wrapping
// token itself.
func listWrapped(ctx context.Context, c *api.Client, path string) ([]string, error) {
	wc, err := c.Clone()
	if err != nil {
		return nil, err
	}
	wc.SetToken(c.Token())
	wc.SetWrappingLookupFunc(func(string, string) string { return "30s" })
	sec, err := wc.Logical().ListWithContext(ctx, path)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	if sec == nil {
		return nil, nil // nothing to list
	}
	if sec.WrapInfo == nil || sec.WrapInfo.Token == "" {
		return nil, fmt.Errorf("list %s: vault did not wrap the answer", path)
	}
	uc, err := c.Clone()
	if err != nil {
		return nil, err
	}
	uc.SetToken(sec.WrapInfo.Token)
	uc.SetWrappingLookupFunc(nil)
	data, err := uc.Logical().UnwrapWithContext(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("unwrap the list of %s: %w", path, err)
	}
	if data == nil || data.Data == nil {
		return nil, nil
	}
	return strs(data.Data["keys"]), nil
}

// DeviceEntityID finds the Vault entity of a device's role, by its AppRole
// alias (the role ID): it exists once anyone logged in with one of the
// role's secret IDs, the device or someone who intercepted its credential.
// It returns "" when nobody ever did.
func (s *Server) DeviceEntityID(ctx context.Context, fleet, roleID string) (string, error) {
	auths, err := s.c.Logical().ReadWithContext(ctx, "sys/auth")
	if err != nil {
		return "", fmt.Errorf("read auth mounts: %w", err)
	}
	var accessor string
	if auths != nil {
		if m, ok := auths.Data[DeviceMount(fleet)+"/"].(map[string]any); ok {
			accessor, _ = m["accessor"].(string)
		}
	}
	if accessor == "" {
		return "", fmt.Errorf("no auth mount %s", DeviceMount(fleet))
	}
	sec, err := s.c.Logical().WriteWithContext(ctx, "identity/lookup/entity",
		map[string]any{"alias_name": roleID, "alias_mount_accessor": accessor})
	if err != nil {
		return "", fmt.Errorf("look up the device's entity: %w", err)
	}
	if sec == nil || sec.Data == nil {
		return "", nil // 204: no such entity
	}
	id, _ := sec.Data["id"].(string)
	return id, nil
}

// DisableEntity disables a device's Vault entity: the tokens of a disabled
// entity cannot be used, whoever holds them. The server's policy allows
// nothing else on entities, so it can never enable one again.
func (s *Server) DisableEntity(ctx context.Context, entityID string) error {
	if entityID == "" {
		return nil
	}
	_, err := s.c.Logical().WriteWithContext(ctx, "identity/entity/id/"+entityID, map[string]any{"disabled": true})
	if err != nil {
		return fmt.Errorf("disable entity: %w", err)
	}
	return nil
}
