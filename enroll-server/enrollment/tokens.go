package enrollment

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
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

// tokensInFlight counts the requests under way with each enrollment token
// (by hash), from their lookup to their settling: a second request whose
// lookup finds the token already revoked by the first is a reuse even
// before the first has recorded the consumption.
type tokensInFlight struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tokensInFlight) add(hash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[hash]++
}

func (t *tokensInFlight) done(hash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[hash]--; t.n[hash] <= 0 {
		delete(t.n, hash)
	}
}

func (t *tokensInFlight) has(hash string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n[hash] > 0
}

// spend is an enrollment token proven to be the fleet's, on its way to
// being consumed: Vault revokes it while the request goes on, and the
// store records its consumption in the same commit as the enrollment's
// claim or, for a request that stops before one, on its own (settle).
type spend struct {
	inventory.TokenSpend
	revoked   chan error
	revokeErr error
	waited    bool
	// recorded: the store has settled the consumption (recorded it, or
	// found it recorded before); nothing is left to write.
	recorded bool
	// unsure: a claim carrying the consumption failed without saying
	// whether it was written (a commit whose answer was lost), so the
	// consumption found later may be its own.
	unsure bool
	// inFlight holds the token's hash until settled.
	inFlight *tokensInFlight
}

// finish tells inFlight the request is done with the token; once.
func (sp *spend) finish() {
	if sp.inFlight != nil {
		sp.inFlight.done(sp.Hash)
		sp.inFlight = nil
	}
}

// revocation waits for the token's revocation in Vault and returns how it
// went; it may be asked again.
func (sp *spend) revocation() error {
	if !sp.waited {
		sp.revokeErr, sp.waited = <-sp.revoked, true
	}
	return sp.revokeErr
}

// use is what a claim should record with itself: nil when there is no
// token, or its consumption is settled already.
func (sp *spend) use() *inventory.TokenSpend {
	if sp == nil || sp.recorded {
		return nil
	}
	return &sp.TokenSpend
}

// checkEnrollmentToken checks that token is a live token of the fleet's
// enrollment role and starts revoking it: a token is good for one request
// only, whatever the checks after this one say. Its consumption is
// recorded by the request's claim, or by settle.
//
// A token that is not an enrollment token of the fleet is refused and left
// alone: the server burns only what is provably its own to burn.
func (s *Service) checkEnrollmentToken(ctx context.Context, fleet, device, token string) (*spend, error) {
	hash := tokenHash(token)
	ti, err := s.vault.LookupToken(ctx, token)
	if errors.Is(err, vault.ErrInvalidToken) {
		if s.spending.has(hash) {
			return nil, s.tokenReused(ctx, fleet, device, "an enrollment token was presented twice at once")
		}
		if seen, _ := s.store.TokenConsumed(ctx, hash); seen {
			return nil, s.tokenReused(ctx, fleet, device, "an enrollment token was presented a second time")
		}
		return nil, fail(wire.CodeEnrollmentTokenBad, "enrollment token is not valid (expired, revoked or unknown)")
	}
	if err != nil {
		return nil, vaultError("look up the enrollment token", err)
	}
	layout := s.vault.Layout()
	if ti.Path != layout.EnrollLoginPath() || ti.Meta["role_name"] != vault.EnrollRole(fleet) {
		s.log.Warn("enrollment token from the wrong role", "fleet", fleet, "device_id", device,
			"token_path", ti.Path, "role_name", ti.Meta["role_name"], "accessor", ti.Accessor)
		return nil, fail(wire.CodeEnrollmentTokenBad, "token is not an enrollment token of fleet %s", fleet)
	}
	gen, genErr := strconv.Atoi(ti.Meta["generation"])
	if genErr != nil || gen < 1 {
		gen = 0 // refused by liveGeneration, once consumed
	}
	sp := &spend{TokenSpend: inventory.TokenSpend{Hash: hash, Expires: s.now().Add(consumedTokenMemory), Fleet: fleet, Generation: gen},
		revoked: make(chan error, 1), inFlight: &s.spending}
	s.spending.add(hash)
	go func() { sp.revoked <- s.vault.RevokeEnrollmentToken(ctx, token) }()
	return sp, nil
}

// liveGeneration refuses a token of a generation the fleet no longer
// accepts, or of none.
func (s *Service) liveGeneration(ctx context.Context, fleet string, gen int) error {
	if gen == 0 {
		return fail(wire.CodeEnrollmentTokenBad, "enrollment token carries no credential generation")
	}
	gens, err := s.generations(ctx, fleet, gen)
	if err != nil {
		return vaultError("read the fleet's credential generations", err)
	}
	if !gens.Live(gen) {
		return fail(wire.CodeRejected, "bootstrap credential generation %d of fleet %s is no longer accepted", gen, fleet)
	}
	return nil
}

// settle finishes an enrollment token's consumption for a request that
// ends with outcome err: it waits for Vault's revocation, records the
// consumption when no claim did, and turns the outcome into a reuse
// refusal when the token had been consumed before (the same token
// presented twice at once), or into a Vault error when the revocation
// failed.
func (s *Service) settle(ctx context.Context, fleet, device string, sp *spend, err error) error {
	if sp == nil {
		return err
	}
	revokeErr := sp.revocation()
	defer sp.finish() // once the consumption is recorded, the store tells a reuse
	if !sp.recorded {
		cerr := s.store.ConsumeToken(ctx, sp.TokenSpend)
		if cerr == nil || errors.Is(cerr, inventory.ErrConsumed) {
			sp.recorded = true
		}
		if errors.Is(cerr, inventory.ErrConsumed) && !sp.unsure {
			return s.tokenReused(ctx, fleet, device, "an enrollment token was presented twice at once")
		}
		if cerr != nil && err == nil {
			return cerr
		}
	}
	if revokeErr != nil && err == nil {
		return vaultError("revoke the enrollment token", revokeErr)
	}
	return err
}

// tokenReused raises the alert for a replayed enrollment token and returns
// the caller's error.
func (s *Service) tokenReused(ctx context.Context, fleet, device, detail string) error {
	s.alerts.Raise(ctx, inventory.Alert{Time: s.now(), Kind: inventory.AlertEnrollmentTokenReuse,
		Fleet: fleet, DeviceID: device, Detail: detail})
	return fail(wire.CodeEnrollmentTokenReused, "this enrollment token was already used; log in again for a new one")
}
