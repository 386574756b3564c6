// Package lifecycle is enroll-client's core: a crash-safe state machine that
// enrolls the device, keeps its Vault token alive, hands it to workloads and
// heals itself when a credential expires.
//
// Every transition is written to the state store before the next network
// call, so a crash or power cut at any point resumes without burning a
// single-use credential and without a second enrollment.
//
// The fleet's shared bootstrap credential is used for the first enrollment
// only. After it, the device's own key and join-state sequence keep it
// enrolled: it refreshes its secret ID before it expires and rejoins when
// every Vault credential is dead (identity.go). Its sequence advances only
// once the server confirmed an acknowledgement, and a rotated key replaces
// the old only then.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/backoff"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// stateKey is where the device's state lives in the store.
const stateKey = "device"

// Vault is what the machine needs from Vault.
type Vault interface {
	Login(ctx context.Context, mount, roleID, secretID string) (vault.Auth, error)
	LookupWrapping(ctx context.Context, wrappingToken string) (vault.WrapInfo, error)
	UnwrapSecretID(ctx context.Context, wrappingToken string) (vault.SecretID, error)
	RenewSelf(ctx context.Context, token string, increment time.Duration) (vault.Auth, error)
}

// Server is what the machine needs from enroll-server.
type Server interface {
	Enroll(ctx context.Context, req wire.EnrollRequest) (wire.EnrollResponse, error)
	Acknowledge(ctx context.Context, req wire.AckRequest) (wire.AckResponse, error)
	Report(ctx context.Context, req wire.ReportRequest) (wire.ReportResponse, error)
	Challenge(ctx context.Context, req wire.ChallengeRequest) (wire.ChallengeResponse, error)
	Admit(ctx context.Context, req wire.AdmitRequest) (wire.AdmitResponse, error)
	IdentityChallenge(ctx context.Context, req wire.IdentityChallengeRequest) (wire.IdentityChallengeResponse, error)
	Refresh(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error)
	Rejoin(ctx context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error)
}

// Attestor is the device's TPM, when it has one.
type Attestor interface {
	// Identity returns the EK, its certificate if any, and the AK.
	Identity() (wire.ChallengeRequest, error)
	// Answer activates a challenge's credential and quotes its PCRs.
	Answer(wire.ChallengeResponse) (wire.Evidence, error)
}

// KeyStore holds device keys inside the device's TPM: DeviceKey returns the
// key named name, making it the first time.
type KeyStore interface {
	DeviceKey(name string) (identity.Signer, error)
}

// Sealer encrypts the state record so that it opens only with the
// device's TPM.
type Sealer interface {
	Seal(plain []byte) ([]byte, error)
	Open(sealed []byte) ([]byte, error)
}

// Store persists opaque state; see package state.
type Store interface {
	ReadState(key string) ([]byte, error)
	WriteState(key string, value []byte) error
}

// Sink receives every new token.
type Sink interface {
	Write(token string) error
}

// StatusSink publishes the device's status; it must never block for long.
type StatusSink interface {
	WriteStatus(Status) error
}

// StatusFunc adapts a function to a StatusSink.
type StatusFunc func(Status) error

// WriteStatus calls f.
func (f StatusFunc) WriteStatus(s Status) error { return f(s) }

// Clock is time, injectable so tests never sleep for real.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends; it returns ctx.Err() in the latter case.
	Sleep(ctx context.Context, d time.Duration) error
}

// Config is what the machine is built from.
type Config struct {
	Bundle   *bundle.Bundle
	DeviceID string
	Facts    wire.Facts
	Vault    Vault
	Server   Server
	Store    Store
	Sinks    []Sink
	Log      *slog.Logger
	// Status, when set, receives the device's public status after every
	// transition and failure, for `enroll-client status`.
	Status StatusSink
	Clock  Clock          // nil: the real clock
	Rand   func() float64 // nil: math/rand/v2
	// Preprovisioned is a wrapped credential an orchestrator injected
	// ("batch" introduction); a device that never enrolled uses it instead
	// of asking the server. OnPreprovisioned runs once it is saved, so the
	// caller can delete the injected copy.
	Preprovisioned   *wire.EnrollResponse
	OnPreprovisioned func()
	// RecheckAfter is how long a daemon that was refused permanently waits
	// before trying once more, in case an administrator re-admitted it
	// (default one hour, jittered).
	RecheckAfter time.Duration
	// Attestor, when set, proves the device's TPM to the server at every
	// enrollment; a device bound to its TPM can then re-enroll even when
	// its bootstrap credential was retired.
	Attestor Attestor
	// Sealer, when set, seals the state record to the TPM. A sealed record
	// is never read without it.
	Sealer Sealer
	// DeviceKeys, when set, makes and keeps the device key inside the TPM
	// (non-exportable); without it the key is an Ed25519 seed in the state.
	DeviceKeys KeyStore
	// AfterSave, when set, runs after every durable transition; tests use it
	// to crash the process at a chosen step.
	AfterSave func(State)
}

// Machine is the device's life. Build it with New.
type Machine struct {
	cfg     Config
	log     *slog.Logger
	clock   Clock
	backoff *backoff.Backoff

	// spareToken is an enrollment token a shed request left unused, good
	// until spareUntil. Memory only: never saved, never logged.
	spareToken string
	spareUntil time.Time

	// identity caches the TPM's identity (creating an RSA EK can take a
	// real TPM seconds); noAttestation records that the fleet does not use
	// attestation. Memory only.
	identity      *wire.ChallengeRequest
	noAttestation bool

	// ticket is the server's admission ticket for the enrollment in
	// progress, good until ticketUntil; noAdmit records a server without
	// admission tickets. Memory only.
	ticket      string
	ticketUntil time.Time
	noAdmit     bool
}

// New builds a machine.
func New(cfg Config) *Machine {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	return &Machine{
		cfg:     cfg,
		log:     cfg.Log.With("device_id", cfg.DeviceID, "fleet", cfg.Bundle.Fleet),
		clock:   cfg.Clock,
		backoff: backoff.New(time.Second, 5*time.Minute, cfg.Rand),
	}
}

// Load returns the stored state, or a fresh unenrolled one. A state that
// belongs to another device ID or fleet is refused: the device never
// silently becomes someone else.
func (m *Machine) Load() (State, error) {
	raw, err := m.cfg.Store.ReadState(stateKey)
	if errors.Is(err, state.ErrNotFound) {
		return State{Phase: PhaseUnenrolled, DeviceID: m.cfg.DeviceID, Fleet: m.cfg.Bundle.Fleet}, nil
	}
	if err != nil {
		return State{}, err
	}
	if sealed(raw) {
		if m.cfg.Sealer == nil {
			return State{}, errors.New("the device state is sealed to a TPM, but no TPM is in use (check tpm.mode and tpm.path)")
		}
		if raw, err = m.cfg.Sealer.Open(raw); err != nil {
			return State{}, err
		}
	}
	st, err := decodeState(raw)
	if err != nil {
		return State{}, err
	}
	if st.DeviceID != m.cfg.DeviceID || st.Fleet != m.cfg.Bundle.Fleet {
		return State{}, fmt.Errorf("state belongs to device %q of fleet %q, but this is device %q of fleet %q",
			st.DeviceID, st.Fleet, m.cfg.DeviceID, m.cfg.Bundle.Fleet)
	}
	return st, nil
}

func (m *Machine) save(st *State) error {
	st.UpdatedAt = m.clock.Now().UTC()
	raw, err := encodeState(*st)
	if err != nil {
		return err
	}
	if m.cfg.Sealer != nil {
		if raw, err = m.cfg.Sealer.Seal(raw); err != nil {
			return fmt.Errorf("seal state: %w", err)
		}
	}
	if err := m.cfg.Store.WriteState(stateKey, raw); err != nil {
		return &saveError{err}
	}
	m.publish(*st, time.Time{})
	if m.cfg.AfterSave != nil {
		m.cfg.AfterSave(*st)
	}
	return nil
}

// saveError is a state that could not be written. The machine then makes
// no further network call until the same state is on disk (see Run).
type saveError struct{ err error }

func (e *saveError) Error() string { return "save state: " + e.err.Error() }
func (e *saveError) Unwrap() error { return e.err }

// resave writes st again until it is on disk or ctx ends, backing off,
// with the reason in the status.
func (m *Machine) resave(ctx context.Context, st *State, first error) bool {
	err := first
	for {
		delay := m.retryCap(st, m.backoff.Next(0))
		m.log.Error("cannot save the device state; no enrollment step until it is saved", "err", err, "retry_in", delay.Round(time.Millisecond))
		st.LastError = err.Error()
		m.publish(*st, m.clock.Now().Add(delay))
		if m.sleep(ctx, delay) != nil {
			return false
		}
		// The token is no single-use credential: while the disk refuses,
		// it is still renewed (or a new one obtained with the secret ID
		// the device holds) and handed to the sinks, so the workloads
		// never wait for the disk. Nothing single-use is touched.
		if st.Token != "" {
			if _, kerr := m.keepTokenAlive(ctx, st); kerr != nil && !errors.As(kerr, new(*saveError)) {
				m.log.Warn("keep the token alive while the state cannot be saved", "err", kerr)
			}
		}
		if err = m.save(st); err == nil {
			m.log.Info("device state saved again")
			return true
		}
	}
}

// publish hands the public status to the status sink, if any.
func (m *Machine) publish(st State, nextRetry time.Time) {
	if m.cfg.Status == nil {
		return
	}
	s := StatusOf(st)
	s.NextRetry = nextRetry
	if err := m.cfg.Status.WriteStatus(s); err != nil {
		m.log.Warn("write status", "err", err)
	}
}

// Run drives the machine until ctx ends (nil), a permanent refusal stops it
// (an error wrapping ErrRejected), or — with untilEnrolled — the device holds
// an acknowledged token.
func (m *Machine) Run(ctx context.Context, untilEnrolled bool) error {
	st, err := m.Load()
	if err != nil {
		return err
	}
	m.log.Info("starting", "phase", st.Phase, "sequence", st.Sequence)
	// Published at once: the status a previous run left (stopped, or
	// killed mid-retry) is not this run's, and a device that has nothing
	// to do until its next renewal would otherwise publish nothing.
	m.publish(st, time.Time{})
	defer func() {
		// A status read after the daemon stopped must not look live.
		if ctx.Err() != nil && m.cfg.Status != nil {
			s := StatusOf(st)
			s.DaemonStopped = m.clock.Now().UTC()
			_ = m.cfg.Status.WriteStatus(s)
			m.log.Info("stopped", "phase", st.Phase)
		}
	}()
	if st.Phase == PhaseRejected {
		// Restarted by its operator after a refusal (an administrator may
		// have re-admitted the device, or a new bundle been installed):
		// try again at once — by the device key where the device has an
		// identity (after a cloned-state lockout and a readmit, the first
		// copy to prove the key is let back), else from the start.
		m.log.Info("restarted after a refusal; trying again", "reason", st.Reason)
		st.Refused = ""
		st.clearEnrollment()
		if st.hasIdentity() {
			err = m.startRenewal(&st, FlowRejoin, "restarted after a refusal")
		} else {
			err = m.save(&st)
		}
		if err != nil {
			return err
		}
	}
	if st.Phase == PhaseAuthenticated && st.Token != "" {
		// A crash may have come between saving the token and handing it
		// over: hand it over again.
		if err := m.writeSinks(st.Token); err != nil {
			m.log.Warn("write token sinks", "err", err)
		}
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if st.Phase == PhaseRejected {
			if untilEnrolled {
				return fmt.Errorf("%w: %s", ErrRejected, st.Reason)
			}
			if !m.recheck(ctx, &st) {
				return nil
			}
			continue
		}
		if untilEnrolled && st.Phase == PhaseAuthenticated && st.Acknowledged {
			return nil
		}
		wait, err := m.step(ctx, &st)
		if err == nil {
			m.backoff.Reset()
			if wait > 0 {
				if m.sleep(ctx, wait) != nil {
					return nil
				}
			}
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if se := (*saveError)(nil); errors.As(err, &se) {
			// The state in memory moved on and the disk did not: the same
			// state is written before anything else happens.
			if !m.resave(ctx, &st, err) {
				return nil
			}
			continue
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			m.log.Error("stopping: permanent refusal", "phase", st.Phase, "reason", perm.reason)
			st.Phase, st.Reason, st.LastError = PhaseRejected, perm.reason, perm.reason
			if err := m.save(&st); err != nil {
				return err
			}
			continue
		}
		delay := m.retryCap(&st, retryDelay(m.backoff, err))
		if field, explained := untrusted(err); field != "" {
			err = explained
			m.log.Error("step failed: the bundle does not trust the certificate; will retry", "phase", st.Phase,
				"bundle_field", field, "err", err, "retry_in", delay.Round(time.Millisecond))
		} else {
			m.log.Warn("step failed; will retry", "phase", st.Phase, "err", err, "retry_in", delay.Round(time.Millisecond))
		}
		st.LastError = err.Error()
		m.publish(st, m.clock.Now().Add(delay))
		if m.sleep(ctx, delay) != nil {
			return nil
		}
	}
}

// hangUpAfter: a device about to wait longer than this closes its idle
// connections first. A fleet waiting out a Retry-After or its next renewal
// holds no connection on the server or on Vault meanwhile.
const hangUpAfter = 5 * time.Second

// sleep waits d (see Clock.Sleep), hanging up first when the wait is long.
func (m *Machine) sleep(ctx context.Context, d time.Duration) error {
	if d >= hangUpAfter {
		for _, c := range []any{m.cfg.Server, m.cfg.Vault} {
			if h, ok := c.(interface{ CloseIdleConnections() }); ok {
				h.CloseIdleConnections()
			}
		}
	}
	return m.clock.Sleep(ctx, d)
}

// recheck waits, then tries again: an administrator may have re-admitted
// the device meanwhile. A device with an identity rejoins by its key; one
// without enrolls afresh. A refusal comes back as cheaply as it went, so
// this never hammers the server.
//
// A copy of an identity refused as cloned never tries again on its own:
// if it is the clone, each attempt would lock the real device out anew.
// It waits for its operator to restart it.
func (m *Machine) recheck(ctx context.Context, st *State) bool {
	if st.Refused == string(wire.CodeClonedState) {
		m.log.Error("stopped: this device's identity is held by another copy; restart the service once an administrator re-admitted the real device (enrollctl readmit)", "reason", st.Reason)
		m.publish(*st, time.Time{})
		<-ctx.Done()
		return false
	}
	every := m.cfg.RecheckAfter
	if every <= 0 {
		every = time.Hour
	}
	wait := every/2 + time.Duration(m.cfg.Rand()*float64(every))
	m.log.Info("stopped; will check again later", "reason", st.Reason, "check_in", wait.Round(time.Second))
	m.publish(*st, m.clock.Now().Add(wait))
	if m.sleep(ctx, wait) != nil {
		return false
	}
	st.Refused = ""
	if st.hasIdentity() {
		st.clearEnrollment()
		if err := m.startRenewal(st, FlowRejoin, "checking again after a refusal"); err != nil {
			m.log.Error("save state", "err", err)
			return false
		}
		return true
	}
	st.clearEnrollment()
	if err := m.save(st); err != nil {
		m.log.Error("save state", "err", err)
		return false
	}
	return true
}

// step performs one transition from st and saves it. It returns how long to
// wait before the next step when there is nothing to do until then.
func (m *Machine) step(ctx context.Context, st *State) (time.Duration, error) {
	switch st.Phase {
	case PhaseUnenrolled:
		return 0, m.startEnrollment(st)
	case PhaseEnrolling, PhasePending:
		return m.enroll(ctx, st)
	case PhaseWrapped:
		return 0, m.unwrap(ctx, st)
	case PhaseUnwrapped:
		return 0, m.login(ctx, st)
	case PhaseAuthenticated:
		return m.maintain(ctx, st)
	case PhaseRefreshing, PhaseRejoining:
		return m.renewCredential(ctx, st)
	}
	return 0, permanent("unknown phase %q in state", st.Phase)
}

// sealed reports whether a stored record is sealed: a plain record is a
// JSON object.
func sealed(raw []byte) bool { return len(raw) > 0 && raw[0] != '{' }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if !backoff.Sleep(ctx, d) {
		return ctx.Err()
	}
	return nil
}
