package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// login logs in with the device's own secret ID and hands the token to the
// sinks. A refused secret ID (expired, used up, destroyed) sends the device
// back to enrollment.
func (m *Machine) login(ctx context.Context, st *State) error {
	if !st.SecretIDExpiresAt.IsZero() && !m.clock.Now().Before(st.SecretIDExpiresAt) {
		// Vault removes expired secret IDs only by a periodic tidy, up to a
		// minute late; the device honours the TTL Vault gave it instead.
		m.log.Info("secret ID expired", "secret_id_accessor", st.SecretIDAccessor)
		return m.lostCredential(st, "secret ID expired")
	}
	a, err := m.cfg.Vault.Login(ctx, st.LoginMount, st.RoleID, st.SecretID)
	if errors.Is(err, vault.ErrCredentialRefused) {
		m.log.Warn("secret ID refused", "secret_id_accessor", st.SecretIDAccessor, "err", err)
		return m.lostCredential(st, "secret ID refused by vault")
	}
	if err != nil {
		return err
	}
	m.setToken(st, a)
	st.Phase = PhaseAuthenticated
	// The workloads get the new token first: it is no single-use
	// credential, and a state disk that cannot be written must not leave
	// them with a dead one.
	sinkErr := m.writeSinks(st.Token)
	if err := m.save(st); err != nil {
		return err
	}
	m.log.Info("logged in", "token_accessor", a.Accessor, "entity_id", a.EntityID, "ttl", a.TTL)
	return sinkErr
}

func (m *Machine) setToken(st *State, a vault.Auth) {
	st.Token, st.TokenAccessor, st.TokenRenewable = a.Token, a.Accessor, a.Renewable
	st.TokenIssuedAt = m.clock.Now().UTC()
	st.TokenExpiresAt = st.TokenIssuedAt.Add(a.TTL)
	st.LastRenewal = st.TokenIssuedAt // renewed or obtained: the token is fresh
	if a.EntityID != "" {
		st.EntityID = a.EntityID
	}
}

func (m *Machine) writeSinks(token string) error {
	var errs []error
	for _, s := range m.cfg.Sinks {
		if err := s.Write(token); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// maintain acknowledges a new enrollment, then keeps the token alive:
// renew at about two thirds of its TTL (with jitter), and log in again when
// renewal is refused or the token nears its end.
func (m *Machine) maintain(ctx context.Context, st *State) (time.Duration, error) {
	now := m.clock.Now()
	if !st.Acknowledged && (m.renewDelay(st, now) > 0 || !st.TokenRenewable || !now.Before(st.TokenExpiresAt)) {
		// While the server does not answer, the token is still renewed
		// on its schedule (below), so the sinks never hold a dead one.
		return 0, m.acknowledge(ctx, st)
	}
	remaining := st.TokenExpiresAt.Sub(now)
	if remaining <= 0 {
		m.log.Info("token expired; logging in again", "token_accessor", st.TokenAccessor)
		st.Phase = PhaseUnwrapped
		return 0, m.save(st)
	}
	if !st.hasDeviceKey() && st.Acknowledged {
		// Enrolled before device keys: register one now, with the token.
		return 0, m.startRenewal(st, FlowRefresh, "register a device key")
	}
	refreshIn, refreshes := m.refreshDelay(st, now)
	if !st.Acknowledged {
		refreshes = false // the acknowledgement first
	}
	if refreshes && refreshIn <= 0 {
		return 0, m.startRenewal(st, FlowRefresh, "secret ID at two thirds of its life")
	}
	wait := m.renewDelay(st, now)
	if refreshes && refreshIn < wait {
		wait = refreshIn
	}
	if wait > 0 {
		return wait, nil
	}
	if !st.TokenRenewable {
		st.Phase = PhaseUnwrapped
		return 0, m.save(st)
	}
	a, err := m.cfg.Vault.RenewSelf(ctx, st.Token, 0)
	if errors.Is(err, vault.ErrTokenInvalid) {
		m.log.Warn("renewal refused; logging in again", "token_accessor", st.TokenAccessor, "err", err)
		st.Phase = PhaseUnwrapped
		return 0, m.save(st)
	}
	if err != nil {
		return 0, err
	}
	prevExpiry := st.TokenExpiresAt
	m.setToken(st, a)
	// A renewal that cannot extend the token (max TTL reached) means it is
	// time to log in again before it runs out.
	if !st.TokenExpiresAt.After(prevExpiry.Add(time.Second)) && a.TTL < time.Minute {
		st.Phase = PhaseUnwrapped
	}
	if err := m.save(st); err != nil {
		return 0, err
	}
	m.log.Info("token renewed", "token_accessor", st.TokenAccessor, "ttl", a.TTL)
	return 0, nil
}

// keepTokenAlive renews the token, or logs in again with the secret ID the
// device still holds, while a refresh waits for the server: the sinks keep
// a working token whatever the server does. It reports false when neither
// works and the device must rejoin.
func (m *Machine) keepTokenAlive(ctx context.Context, st *State) (bool, error) {
	now := m.clock.Now()
	if now.Before(st.TokenExpiresAt) && (m.renewDelay(st, now) > 0 || !st.TokenRenewable && st.TokenExpiresAt.Sub(now) > time.Minute) {
		return true, nil // nothing due
	}
	if now.Before(st.TokenExpiresAt) && st.TokenRenewable {
		a, err := m.cfg.Vault.RenewSelf(ctx, st.Token, 0)
		if err != nil && !errors.Is(err, vault.ErrTokenInvalid) {
			return true, err
		}
		// A renewal counts when it pushed the expiry out; one capped by
		// the token's max TTL calls for a new token instead.
		if err == nil && m.clock.Now().Add(a.TTL).After(st.TokenExpiresAt.Add(time.Second)) {
			m.setToken(st, a)
			st.LastRenewal = m.clock.Now().UTC()
			m.log.Info("token renewed to keep it", "token_accessor", st.TokenAccessor, "ttl", a.TTL)
			return true, m.save(st)
		}
	}
	// Renewal refused or at its end: a new token from the current secret
	// ID, if it still works.
	if st.SecretID == "" || (!st.SecretIDExpiresAt.IsZero() && !now.Before(st.SecretIDExpiresAt)) {
		return false, nil
	}
	a, err := m.cfg.Vault.Login(ctx, st.LoginMount, st.RoleID, st.SecretID)
	if errors.Is(err, vault.ErrCredentialRefused) {
		return false, nil
	}
	if err != nil {
		return true, err
	}
	m.setToken(st, a)
	sinkErr := m.writeSinks(st.Token)
	m.log.Info("logged in again to keep a token", "token_accessor", a.Accessor, "ttl", a.TTL)
	if err := m.save(st); err != nil {
		return true, err
	}
	return true, sinkErr
}

// retryCap bounds a retry's delay by the token's schedule: a device whose
// token is due for renewal never waits out a backoff that grew while the
// server or Vault was away.
func (m *Machine) retryCap(st *State, delay time.Duration) time.Duration {
	if st.Token == "" || st.TokenIssuedAt.IsZero() {
		return delay
	}
	return max(min(delay, m.renewDelay(st, m.clock.Now())), time.Second)
}

// renewDelay is how long until the token should be renewed: two thirds of
// its remaining life, less up to a tenth of jitter.
func (m *Machine) renewDelay(st *State, now time.Time) time.Duration {
	issued := st.TokenIssuedAt
	life := st.TokenExpiresAt.Sub(issued)
	at := issued.Add(life * 2 / 3)
	if m.cfg.Rand != nil {
		at = at.Add(-time.Duration(m.cfg.Rand() * float64(life) / 10))
	}
	return at.Sub(now)
}

// acknowledge proves the login to the server.
func (m *Machine) acknowledge(ctx context.Context, st *State) error {
	_, err := m.cfg.Server.Acknowledge(ctx, wire.AckRequest{
		Fleet: m.cfg.Bundle.Fleet, DeviceID: m.cfg.DeviceID, EnrollmentID: st.EnrollmentID,
		Token: st.Token, SecretIDAccessor: st.SecretIDAccessor, Ticket: m.ticket,
	})
	if err == nil {
		m.ticket = "" // the admission is over
	}
	var se *serverapi.Error
	if errors.As(err, &se) && !se.Retryable() {
		st.Refused = string(se.Err.Code)
		return permanent("enroll-server refused the acknowledgement: %s: %s", se.Err.Code, se.Err.Message)
	}
	if err != nil {
		return fmt.Errorf("acknowledge: %w", err)
	}
	// The server has moved on: so does the device's join state, and a
	// rotated key replaces the old one.
	st.Acknowledged = true
	if st.PendingSequence != 0 {
		st.Sequence, st.PendingSequence = st.PendingSequence, 0
	}
	if len(st.NextDeviceKey) != 0 || st.NextDeviceKeyTPM != "" {
		if next, err := m.deviceKey(st, true); err == nil {
			st.DeviceKeyPublic = next.Public()
		}
		st.DeviceKey, st.DeviceKeyTPM, st.KeyCreatedAt = st.NextDeviceKey, st.NextDeviceKeyTPM, m.clock.Now().UTC()
		st.NextDeviceKey, st.NextDeviceKeyTPM = nil, ""
	}
	switch st.Flow {
	case FlowRefresh:
		st.Refreshes++
	case FlowRejoin:
		st.Rejoins++
		st.Enrollments++
	default:
		st.Enrollments++
	}
	st.LastError = ""
	if err := m.save(st); err != nil {
		return err
	}
	m.log.Info("credential acknowledged", "enrollment_id", st.EnrollmentID, "flow", st.Flow, "sequence", st.Sequence)
	return nil
}
