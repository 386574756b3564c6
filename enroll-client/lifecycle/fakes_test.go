package lifecycle

import (
	"context"
	"sync"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/vault"
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
	mu sync.Mutex
	m  map[string][]byte
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
	if s.m == nil {
		s.m = map[string][]byte{}
	}
	s.m[k] = append([]byte(nil), v...)
	return nil
}

// fakeVault answers like Vault, with failures injected per call.
type fakeVault struct {
	calls     int
	failOn    map[int]error // call number → error
	tokenTTL  time.Duration
	unwrapped bool
	onRenew   func()
}

func (v *fakeVault) next() error {
	v.calls++
	return v.failOn[v.calls]
}

func (v *fakeVault) Login(_ context.Context, mount, roleID, secretID string) (vault.Auth, error) {
	if err := v.next(); err != nil {
		return vault.Auth{}, err
	}
	return vault.Auth{Token: "tok-" + mount, Accessor: "acc", TTL: v.tokenTTL, Renewable: true}, nil
}

func (v *fakeVault) LookupWrapping(context.Context, string) (vault.WrapInfo, error) {
	if err := v.next(); err != nil {
		return vault.WrapInfo{}, err
	}
	if v.unwrapped {
		return vault.WrapInfo{}, vault.ErrWrappingInvalid
	}
	return vault.WrapInfo{CreationPath: wire.SecretIDCreationPath("edge-devices-acme", "dev-1")}, nil
}

func (v *fakeVault) UnwrapSecretID(context.Context, string) (vault.SecretID, error) {
	if err := v.next(); err != nil {
		return vault.SecretID{}, err
	}
	v.unwrapped = true
	return vault.SecretID{ID: "sid", Accessor: "sid-acc"}, nil
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

// fakeServer answers enroll requests, with failures injected per call.
type fakeServer struct {
	enrolls, acks, reports, admits int
	hangUps                        int     // CloseIdleConnections calls
	enrollErr                      []error // consumed one per call while non-empty
	admitErr                       []error // consumed one per call while non-empty
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
	return wire.EnrollResponse{
		Status: wire.StatusWrapped, EnrollmentID: "enr-" + req.IdempotencyKey[:4], RoleID: "role",
		LoginMount: "edge-devices-acme", WrappingToken: "wrap", WrappingAccessor: "wacc",
		CreationPath: wire.SecretIDCreationPath("edge-devices-acme", req.DeviceID),
	}, nil
}

func (s *fakeServer) CloseIdleConnections() { s.hangUps++ }

func (s *fakeServer) Acknowledge(context.Context, wire.AckRequest) (wire.AckResponse, error) {
	s.acks++
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

func (s *fakeServer) Report(context.Context, wire.ReportRequest) (wire.ReportResponse, error) {
	s.reports++
	return wire.ReportResponse{Status: "quarantined"}, nil
}
