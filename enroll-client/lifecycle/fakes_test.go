package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// These fakes inject failures the real Vault and server cannot be made to
// produce on demand; the real flow is proven in test/e2e.

// fakeClock advances only when the machine sleeps.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

type memStore struct {
	mu     sync.Mutex
	m      map[string][]byte
	writes int
	// failWrites makes these write numbers fail (a full or read-only disk).
	failWrites map[int]bool
	// onWrite, when set, sees each successful write's number.
	onWrite func(n int)
}

func (s *memStore) ReadState(k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return nil, state.ErrNotFound
	}
	return v, nil
}

func (s *memStore) WriteState(k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failWrites[s.writes] {
		return errors.New("write /var/lib/enroll-client/state.db: no space left on device")
	}
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[k] = append([]byte(nil), v...)
	if s.onWrite != nil {
		s.onWrite(s.writes)
	}
	return nil
}

// fakeVault answers like Vault, with failures injected per call.
type fakeVault struct {
	calls       int
	failOn      map[int]error // call number → error
	tokenTTL    time.Duration
	secretIDTTL time.Duration
	unwrapped   bool // every wrapping token reads as used
	deadLookups int  // this many wrapping tokens in a row read as dead (lost answers)
	used        map[string]bool
	logins      map[string]int // by mount
	onRenew     func()
}

func (v *fakeVault) next() error {
	v.calls++
	return v.failOn[v.calls]
}

func (v *fakeVault) Login(_ context.Context, mount, roleID, secretID string) (vault.Auth, error) {
	if err := v.next(); err != nil {
		return vault.Auth{}, err
	}
	if v.logins == nil {
		v.logins = map[string]int{}
	}
	v.logins[mount]++
	return vault.Auth{Token: "tok-" + mount + "-" + secretID, Accessor: "acc", TTL: v.tokenTTL, Renewable: true}, nil
}

func (v *fakeVault) LookupWrapping(_ context.Context, tok string) (vault.WrapInfo, error) {
	if err := v.next(); err != nil {
		return vault.WrapInfo{}, err
	}
	if v.unwrapped || v.used[tok] {
		return vault.WrapInfo{}, vault.ErrWrappingInvalid
	}
	if v.deadLookups > 0 {
		v.deadLookups--
		return vault.WrapInfo{}, vault.ErrWrappingInvalid
	}
	return vault.WrapInfo{CreationPath: wire.SecretIDCreationPath("edge-devices-acme", "dev-1")}, nil
}

func (v *fakeVault) UnwrapSecretID(_ context.Context, tok string) (vault.SecretID, error) {
	if err := v.next(); err != nil {
		return vault.SecretID{}, err
	}
	if v.used == nil {
		v.used = map[string]bool{}
	}
	v.used[tok] = true
	return vault.SecretID{ID: "sid-" + tok, Accessor: "sid-acc-" + tok, TTL: v.secretIDTTL}, nil
}

func (v *fakeVault) RenewSelf(_ context.Context, token string, _ time.Duration) (vault.Auth, error) {
	if v.onRenew != nil {
		v.onRenew()
	}
	if err := v.next(); err != nil {
		return vault.Auth{}, err
	}
	return vault.Auth{Token: token, Accessor: "acc", TTL: v.tokenTTL, Renewable: true}, nil
}

// fakeServer answers enroll requests, with failures injected per call. For
// refreshes and rejoins it keeps a device key and join-state sequence as the
// real server does, and checks signatures with them.
type fakeServer struct {
	enrolls, acks, reports, admits int
	hangUps                        int     // CloseIdleConnections calls
	enrollErr                      []error // consumed one per call while non-empty
	admitErr                       []error // consumed one per call while non-empty

	refreshes, rejoins int
	renewErr           []error // consumed one per refresh or rejoin while non-empty
	key                string  // registered device key
	nextKey            string  // registered at the next acknowledgement
	seq, pendingSeq    uint64
	nonces             map[string][]byte
	rotate             bool // ask for a key rotation
	lastReport         wire.ReportRequest
	lastEnroll         wire.EnrollRequest
	lastIdentity       wire.IdentityRequest
}

func (s *fakeServer) wrapped(req string, deviceID string) wire.EnrollResponse {
	s.pendingSeq = s.seq + 1
	return wire.EnrollResponse{
		Status: wire.StatusWrapped, EnrollmentID: "enr-" + req[:4], RoleID: "role",
		LoginMount: "edge-devices-acme", WrappingToken: "wrap-" + req, WrappingAccessor: "wacc",
		CreationPath: wire.SecretIDCreationPath("edge-devices-acme", deviceID), Sequence: s.pendingSeq,
	}
}

func (s *fakeServer) IdentityChallenge(_ context.Context, req wire.IdentityChallengeRequest) (wire.IdentityChallengeResponse, error) {
	if s.nonces == nil {
		s.nonces = map[string][]byte{}
	}
	id := fmt.Sprintf("ch-%d", len(s.nonces))
	s.nonces[id] = []byte(id + "-nonce")
	return wire.IdentityChallengeResponse{ChallengeID: id, Nonce: s.nonces[id], RegisterKey: s.key == "", RotateKey: s.rotate}, nil
}

func (s *fakeServer) renew(purpose string, req wire.IdentityRequest) (wire.EnrollResponse, error) {
	s.lastIdentity = req
	if len(s.renewErr) > 0 {
		err := s.renewErr[0]
		s.renewErr = s.renewErr[1:]
		if err != nil {
			return wire.EnrollResponse{}, err
		}
	}
	refuse := func(code wire.Code) error {
		return &serverapi.Error{Status: 403, Err: wire.Error{Code: code, Message: string(code)}}
	}
	nonce, ok := s.nonces[req.ChallengeID]
	delete(s.nonces, req.ChallengeID)
	if !ok {
		return wire.EnrollResponse{}, refuse(wire.CodeChallengeInvalid)
	}
	key := s.key
	if key == "" {
		key = req.NewKey
	}
	msg := identity.Claim{Purpose: purpose, Fleet: req.Fleet, DeviceID: req.DeviceID, IdempotencyKey: req.IdempotencyKey,
		Nonce: nonce, Sequence: req.Sequence, NewKey: req.NewKey}.Message()
	if identity.Verify(key, msg, req.Signature) != nil {
		return wire.EnrollResponse{}, refuse(wire.CodeProofInvalid)
	}
	if req.Sequence != s.seq {
		return wire.EnrollResponse{}, &serverapi.Error{Status: 409, Err: wire.Error{Code: wire.CodeClonedState, Message: "stale"}}
	}
	s.nextKey = req.NewKey
	return s.wrapped(req.IdempotencyKey, req.DeviceID), nil
}

func (s *fakeServer) Refresh(_ context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error) {
	s.refreshes++
	return s.renew(identity.PurposeRefresh, req)
}

func (s *fakeServer) Rejoin(_ context.Context, req wire.IdentityRequest) (wire.EnrollResponse, error) {
	s.rejoins++
	return s.renew(identity.PurposeRejoin, req)
}

func (s *fakeServer) Enroll(_ context.Context, req wire.EnrollRequest) (wire.EnrollResponse, error) {
	s.enrolls++
	if len(s.enrollErr) > 0 {
		err := s.enrollErr[0]
		s.enrollErr = s.enrollErr[1:]
		if err != nil {
			return wire.EnrollResponse{}, err
		}
	}
	s.lastEnroll, s.nextKey = req, req.DeviceKey
	return s.wrapped(req.IdempotencyKey, req.DeviceID), nil
}

func (s *fakeServer) CloseIdleConnections() { s.hangUps++ }

func (s *fakeServer) Acknowledge(context.Context, wire.AckRequest) (wire.AckResponse, error) {
	s.acks++
	s.seq = s.pendingSeq
	if s.nextKey != "" {
		s.key, s.nextKey = s.nextKey, ""
	}
	return wire.AckResponse{Status: wire.StatusEnrolled}, nil
}

func (s *fakeServer) Challenge(context.Context, wire.ChallengeRequest) (wire.ChallengeResponse, error) {
	return wire.ChallengeResponse{}, &serverapi.Error{Status: 409, Err: wire.Error{Code: wire.CodeAttestationDisabled}}
}

func (s *fakeServer) Admit(context.Context, wire.AdmitRequest) (wire.AdmitResponse, error) {
	s.admits++
	if len(s.admitErr) > 0 {
		err := s.admitErr[0]
		s.admitErr = s.admitErr[1:]
		if err != nil {
			return wire.AdmitResponse{}, err
		}
	}
	return wire.AdmitResponse{Ticket: "ticket"}, nil
}

func (s *fakeServer) Report(_ context.Context, req wire.ReportRequest) (wire.ReportResponse, error) {
	s.reports++
	s.lastReport = req
	return wire.ReportResponse{Status: "quarantined"}, nil
}
