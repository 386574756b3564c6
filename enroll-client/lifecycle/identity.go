package lifecycle

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// After its first acknowledged enrollment the device keeps itself enrolled
// by its own identity: it refreshes its secret ID before it expires
// (proving its live token and signing a server nonce with its device key),
// and rejoins with the key alone when every Vault credential is dead. The
// fleet's bootstrap credential is used once, for the first enrollment.
//
// A refresh or rejoin walks the same persisted steps as a first
// enrollment — request, wrapped, unwrapped, authenticated, acknowledged —
// so each guarantee holds: the idempotency key is saved before the request,
// the creation path is checked before the unwrap, and the join-state
// sequence advances only once the server confirmed the acknowledgement.

// ensureDeviceKey makes the device key the first time it is needed; it
// reports whether it made one (the caller saves the state before the key
// goes on the wire).
func (m *Machine) ensureDeviceKey(st *State) (bool, error) {
	if st.hasDeviceKey() {
		return false, nil
	}
	name, seed, key, err := m.newDeviceKey(1)
	if err != nil {
		return false, err
	}
	st.DeviceKey, st.DeviceKeyTPM, st.DeviceKeyPublic, st.KeyCreatedAt = seed, name, key.Public(), m.clock.Now().UTC()
	return true, nil
}

// newDeviceKey makes a device key: in the TPM when there is one (named
// by n; nothing but its TPM-wrapped blob is kept), else Ed25519 (its seed
// kept in the state).
func (m *Machine) newDeviceKey(n int) (tpmName string, seed []byte, key identity.Signer, err error) {
	if m.cfg.DeviceKeys != nil {
		tpmName = fmt.Sprintf("tpm/device-key/%d", n)
		key, err = m.cfg.DeviceKeys.DeviceKey(tpmName)
		if err != nil {
			return "", nil, nil, fmt.Errorf("make the device key in the TPM: %w", err)
		}
		return tpmName, nil, key, nil
	}
	key, seed, err = identity.NewEd25519()
	if err != nil {
		return "", nil, nil, fmt.Errorf("make the device key: %w", err)
	}
	return "", seed, key, nil
}

// hasDeviceKey reports whether the device holds a key of its own.
func (s *State) hasDeviceKey() bool { return len(s.DeviceKey) != 0 || s.DeviceKeyTPM != "" }

// deviceKey returns the device's key (or, with next, the one a rotation
// is about to adopt).
func (m *Machine) deviceKey(st *State, next bool) (identity.Signer, error) {
	seed, name := st.DeviceKey, st.DeviceKeyTPM
	if next {
		seed, name = st.NextDeviceKey, st.NextDeviceKeyTPM
	}
	if name != "" {
		if m.cfg.DeviceKeys == nil {
			return nil, permanent("the device key is inside a TPM that is not in use (check tpm.mode and tpm.path)")
		}
		return m.cfg.DeviceKeys.DeviceKey(name)
	}
	k, err := identity.Ed25519FromSeed(seed)
	if err != nil {
		return nil, permanent("device key in state: %v", err)
	}
	return k, nil
}

// startRenewal begins a refresh or a rejoin with a fresh idempotency key,
// saved before any request is sent. The current token, if any, stays in
// place (and in the sinks) until the new one replaces it.
func (m *Machine) startRenewal(st *State, flow, why string) error {
	st.Flow, st.IdempotencyKey, st.AskedAgain = flow, rand.Text(), 0
	st.Phase = PhaseRefreshing
	if flow == FlowRejoin {
		st.Phase = PhaseRejoining
	}
	st.NextDeviceKey, st.NextDeviceKeyTPM = nil, ""
	m.log.Info("renewing the device's credential by its identity", "flow", flow, "reason", why, "sequence", st.Sequence)
	return m.save(st)
}

// renewCredential performs one attempt of a refresh or rejoin: a nonce, a
// signature, the request. The wrapped answer is saved like a first
// enrollment's.
func (m *Machine) renewCredential(ctx context.Context, st *State) (time.Duration, error) {
	if !st.hasDeviceKey() {
		if _, err := m.ensureDeviceKey(st); err != nil {
			return 0, err
		}
		if err := m.save(st); err != nil {
			return 0, err
		}
	}
	key, err := m.deviceKey(st, false)
	if err != nil {
		return 0, err
	}
	if st.Phase == PhaseRefreshing {
		alive, err := m.keepTokenAlive(ctx, st)
		if err != nil {
			return 0, err
		}
		if !alive {
			return 0, m.startRenewal(st, FlowRejoin, "the token and secret ID ran out while refreshing")
		}
	}
	rejoin := st.Phase == PhaseRejoining
	ch, err := m.cfg.Server.IdentityChallenge(ctx, wire.IdentityChallengeRequest{Fleet: m.cfg.Bundle.Fleet, DeviceID: m.cfg.DeviceID})
	if err != nil {
		return 0, m.classifyRenewal(st, err)
	}
	var newKey string
	switch {
	case ch.RegisterKey:
		// Enrolled before device keys: register the one the device holds.
		newKey = key.Public()
	case ch.RotateKey:
		if len(st.NextDeviceKey) == 0 && st.NextDeviceKeyTPM == "" {
			n := 2
			if _, err := fmt.Sscanf(st.DeviceKeyTPM, "tpm/device-key/%d", &n); err == nil {
				n++
			}
			name, seed, _, err := m.newDeviceKey(n)
			if err != nil {
				return 0, err
			}
			st.NextDeviceKey, st.NextDeviceKeyTPM = seed, name
			if err := m.save(st); err != nil {
				return 0, err
			}
		}
		next, err := m.deviceKey(st, true)
		if err != nil {
			return 0, err
		}
		newKey = next.Public()
	}
	req := wire.IdentityRequest{
		Fleet: m.cfg.Bundle.Fleet, DeviceID: m.cfg.DeviceID, IdempotencyKey: st.IdempotencyKey,
		ChallengeID: ch.ChallengeID, Sequence: st.Sequence, NewKey: newKey, Facts: m.cfg.Facts,
	}
	purpose := identity.PurposeRefresh
	if rejoin {
		purpose = identity.PurposeRejoin
		if ev, err := m.rejoinAttestation(ctx); err != nil {
			return 0, m.classifyRenewal(st, err)
		} else {
			req.Attestation = ev
		}
	} else {
		req.Token = st.Token
		// A device with a TPM attests at every refresh too: a fleet with a
		// boot policy judges its boot again.
		if ev, err := m.rejoinAttestation(ctx); err != nil {
			return 0, m.classifyRenewal(st, err)
		} else {
			req.Attestation = ev
		}
	}
	req.Signature, err = key.Sign(identity.Claim{Purpose: purpose, Fleet: req.Fleet, DeviceID: req.DeviceID,
		IdempotencyKey: req.IdempotencyKey, Nonce: ch.Nonce, Sequence: req.Sequence, NewKey: req.NewKey}.Message())
	if err != nil {
		return 0, fmt.Errorf("sign: %w", err)
	}
	var resp wire.EnrollResponse
	if rejoin {
		resp, err = m.cfg.Server.Rejoin(ctx, req)
	} else {
		resp, err = m.cfg.Server.Refresh(ctx, req)
	}
	if err != nil {
		return 0, m.classifyRenewal(st, err)
	}
	if resp.Status != wire.StatusWrapped && resp.Status != wire.StatusEnrolled {
		return 0, fmt.Errorf("server answered a %s with status %q", st.Flow, resp.Status)
	}
	if err := m.acceptWrapped(st, resp); err != nil {
		return 0, err
	}
	m.log.Info("received wrapped secret ID", "flow", st.Flow, "enrollment_id", st.EnrollmentID, "wrapping_accessor", st.WrappingAccessor)
	return 0, nil
}

// rejoinAttestation answers a TPM challenge for a rejoin or a refresh,
// where the device has a TPM its fleet uses.
func (m *Machine) rejoinAttestation(ctx context.Context) (*wire.Evidence, error) {
	if m.cfg.Attestor == nil || m.noAttestation {
		return nil, nil
	}
	ticket, err := m.admission(ctx)
	if err != nil {
		return nil, err
	}
	return m.attest(ctx, ticket)
}

// classifyRenewal decides what a refused refresh or rejoin means.
func (m *Machine) classifyRenewal(st *State, err error) error {
	var se *serverapi.Error
	if !errors.As(err, &se) {
		return err // network: retry
	}
	switch se.Err.Code {
	case wire.CodeProofInvalid:
		if st.Phase == PhaseRefreshing {
			// The token is no longer good enough (revoked, expired, or
			// the server holds no key for this device): the key alone,
			// then.
			m.log.Warn("refresh refused; rejoining with the device key", "err", se.Err.Message)
			return errors.Join(err, m.startRenewal(st, FlowRejoin, "refresh refused"))
		}
	case wire.CodeIdempotencyConflict:
		return errors.Join(err, m.startRenewal(st, st.Flow, "the server ended the previous attempt"))
	case wire.CodeChallengeInvalid:
		return err // a fresh nonce at the next attempt
	case wire.CodeUnknownDevice:
		// The server has no record of this device (its inventory was
		// lost): only the bootstrap credential can introduce it again.
		m.log.Warn("the server does not know this device; enrolling with the fleet's bootstrap credential", "err", se.Err.Message)
		st.clearEnrollment()
		st.Sequence = 0
		return errors.Join(err, m.save(st))
	case wire.CodeClonedState:
		st.Refused = string(se.Err.Code)
		return permanent("%s: %s", se.Err.Code, se.Err.Message)
	}
	if se.Retryable() {
		return err
	}
	st.Refused = string(se.Err.Code)
	return permanent("enroll-server refused the %s: %s: %s", st.Flow, se.Err.Code, se.Err.Message)
}

// refreshDelay is how long until the secret ID should be refreshed: at two
// thirds of its life, less up to a tenth of jitter. Zero or less means now;
// a secret ID without expiry is never refreshed.
func (m *Machine) refreshDelay(st *State, now time.Time) (time.Duration, bool) {
	if st.SecretIDExpiresAt.IsZero() || st.SecretIDIssuedAt.IsZero() {
		return 0, false
	}
	life := st.SecretIDExpiresAt.Sub(st.SecretIDIssuedAt)
	at := st.SecretIDIssuedAt.Add(life * 2 / 3)
	if m.cfg.Rand != nil {
		at = at.Add(-time.Duration(m.cfg.Rand() * float64(life) / 10))
	}
	return at.Sub(now), true
}

// lostCredential sends a device whose secret ID is expired or refused on
// its way back: by refresh while its token lives, by rejoin when it does
// not, and by the bootstrap credential only when it never had an identity.
func (m *Machine) lostCredential(st *State, why string) error {
	if !st.hasIdentity() {
		m.log.Info(why + "; enrolling again")
		st.clearEnrollment()
		return m.save(st)
	}
	if st.Token != "" && m.clock.Now().Before(st.TokenExpiresAt) {
		return m.startRenewal(st, FlowRefresh, why)
	}
	return m.startRenewal(st, FlowRejoin, why)
}
