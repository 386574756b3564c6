package enrollment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// consumedTokenMemory is how long a consumed enrollment token's hash is
// remembered: longer than any enrollment token can live.
const consumedTokenMemory = 10 * time.Minute

func tokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// consumeEnrollmentToken checks that token is a live token of the fleet's
// enrollment role and revokes it: a token is good for one request only.
// Then it checks the token's generation is live, and returns it.
//
// A token that is not an enrollment token of the fleet is refused and left
// alone: the server burns only what is provably its own to burn.
func (s *Service) consumeEnrollmentToken(ctx context.Context, fleet, device, token string) (int, error) {
	hash := tokenHash(token)
	ti, err := s.vault.LookupToken(ctx, token)
	if errors.Is(err, vault.ErrInvalidToken) {
		if seen, _ := s.store.TokenConsumed(ctx, hash); seen {
			return 0, s.tokenReused(ctx, fleet, device, "an enrollment token was presented a second time")
		}
		return 0, fail(wire.CodeEnrollmentTokenBad, "enrollment token is not valid (expired, revoked or unknown)")
	}
	if err != nil {
		return 0, vaultError("look up the enrollment token", err)
	}
	layout := s.vault.Layout()
	if ti.Path != layout.EnrollLoginPath() || ti.Meta["role_name"] != vault.EnrollRole(fleet) {
		s.log.Warn("enrollment token from the wrong role", "fleet", fleet, "device_id", device,
			"token_path", ti.Path, "role_name", ti.Meta["role_name"], "accessor", ti.Accessor)
		return 0, fail(wire.CodeEnrollmentTokenBad, "token is not an enrollment token of fleet %s", fleet)
	}
	// The generation is counted with the consumption: one write.
	gen, genErr := strconv.Atoi(ti.Meta["generation"])
	if genErr != nil || gen < 1 {
		gen = 0
	}
	// Record the consumption and burn the token, both before anything else
	// whatever the checks below say; they do not depend on each other, so
	// the disk and Vault do them at the same time.
	revoked := make(chan error, 1)
	go func() { revoked <- s.vault.RevokeEnrollmentToken(ctx, token) }()
	err = s.store.ConsumeToken(ctx, hash, s.now().Add(consumedTokenMemory), fleet, gen)
	revokeErr := <-revoked
	if errors.Is(err, inventory.ErrConsumed) {
		return 0, s.tokenReused(ctx, fleet, device, "an enrollment token was presented twice at once")
	}
	if err != nil {
		return 0, err
	}
	if revokeErr != nil {
		return 0, vaultError("revoke the enrollment token", revokeErr)
	}
	if gen == 0 {
		return 0, fail(wire.CodeEnrollmentTokenBad, "enrollment token carries no credential generation")
	}
	gens, err := s.generations(ctx, fleet, gen)
	if err != nil {
		return 0, vaultError("read the fleet's credential generations", err)
	}
	if !gens.Live(gen) {
		return 0, fail(wire.CodeRejected, "bootstrap credential generation %d of fleet %s is no longer accepted", gen, fleet)
	}
	return gen, nil
}

// tokenReused raises the alert for a replayed enrollment token and returns
// the caller's error.
func (s *Service) tokenReused(ctx context.Context, fleet, device, detail string) error {
	s.alerts.Raise(ctx, inventory.Alert{Time: s.now(), Kind: inventory.AlertEnrollmentTokenReuse,
		Fleet: fleet, DeviceID: device, Detail: detail})
	return fail(wire.CodeEnrollmentTokenReused, "this enrollment token was already used; log in again for a new one")
}
