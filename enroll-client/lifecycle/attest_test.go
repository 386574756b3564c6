package lifecycle

import (
	"context"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

type fakeAttestor struct{ identities, answers int }

func (a *fakeAttestor) Identity() (wire.ChallengeRequest, error) {
	a.identities++
	return wire.ChallengeRequest{EKPublic: []byte{1}, AKPublic: []byte{2}}, nil
}

func (a *fakeAttestor) Answer(c wire.ChallengeResponse) (wire.Evidence, error) {
	a.answers++
	return wire.Evidence{ChallengeID: c.ChallengeID, Secret: []byte{3}}, nil
}

// attestServer answers challenges as scripted, and records enrollments.
type attestServer struct {
	*fakeServer
	challengeErr []error // one per challenge while non-empty
	enrollErrs   []error // one per enrollment while non-empty
	requests     []wire.EnrollRequest
}

func (s *attestServer) Challenge(_ context.Context, req wire.ChallengeRequest) (wire.ChallengeResponse, error) {
	if req.Fleet != "acme" || req.DeviceID != "dev-1" {
		return wire.ChallengeResponse{}, &serverapi.Error{Status: 400, Err: wire.Error{Code: wire.CodeInvalidRequest}}
	}
	if len(s.challengeErr) > 0 {
		err := s.challengeErr[0]
		s.challengeErr = s.challengeErr[1:]
		if err != nil {
			return wire.ChallengeResponse{}, err
		}
	}
	return wire.ChallengeResponse{ChallengeID: "ch"}, nil
}

func (s *attestServer) Enroll(ctx context.Context, req wire.EnrollRequest) (wire.EnrollResponse, error) {
	s.requests = append(s.requests, req)
	if len(s.enrollErrs) > 0 {
		err := s.enrollErrs[0]
		s.enrollErrs = s.enrollErrs[1:]
		if err != nil {
			return wire.EnrollResponse{}, err
		}
	}
	return s.fakeServer.Enroll(ctx, req)
}

func refusal(code wire.Code) error {
	return &serverapi.Error{Status: code.Status(), Err: wire.Error{Code: code}}
}

func attestRig(t *testing.T) (*rig, *attestServer, *fakeAttestor) {
	r := newRig(t)
	srv := &attestServer{fakeServer: r.server}
	att := &fakeAttestor{}
	r.m.cfg.Server, r.m.cfg.Attestor = srv, att
	return r, srv, att
}

// A device whose bootstrap credential Vault refuses (its generation was
// retired) enrolls with attestation alone.
func TestBootstrapRefusedFallsBackToAttestation(t *testing.T) {
	r, srv, att := attestRig(t)
	r.vault.failOn[1] = vault.ErrCredentialRefused
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if len(srv.requests) != 1 || srv.requests[0].EnrollmentToken != "" || srv.requests[0].Attestation == nil ||
		srv.requests[0].Attestation.ChallengeID != "ch" || att.answers != 1 {
		t.Fatalf("requests %+v, answers %d; want one with attestation and no token", srv.requests, att.answers)
	}
}

// Without a TPM the same refusal is permanent.
func TestBootstrapRefusedWithoutTPMStops(t *testing.T) {
	r := newRig(t)
	r.vault.failOn[1] = vault.ErrCredentialRefused
	if err := r.enroll(t); err == nil {
		t.Fatal("a device without bootstrap credential or TPM enrolled")
	}
}

// A fleet that does not attest is asked once; when it starts requiring
// attestation, the device attests at its next attempt.
func TestAttestationDisabledThenRequired(t *testing.T) {
	r, srv, att := attestRig(t)
	srv.challengeErr = []error{refusal(wire.CodeAttestationDisabled)}
	srv.enrollErrs = []error{refusal(wire.CodeAttestationRequired)}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if len(srv.requests) != 2 || srv.requests[0].Attestation != nil || srv.requests[1].Attestation == nil {
		t.Fatalf("requests %+v; want the first without attestation and the second with", srv.requests)
	}
	if att.identities != 1 {
		t.Fatalf("read the TPM identity %d times, want once", att.identities)
	}
	if srv.requests[1].EnrollmentToken == "" {
		t.Fatal("an attested device with a working bootstrap credential sent no token")
	}
}

// A refused attestation is permanent and says why.
func TestAttestationFailedStops(t *testing.T) {
	r, srv, _ := attestRig(t)
	srv.challengeErr = []error{refusal(wire.CodeAttestationFailed)}
	err := r.enroll(t)
	if err == nil || len(srv.requests) != 0 {
		t.Fatalf("Run = %v with %d enroll requests; want a permanent stop before enrolling", err, len(srv.requests))
	}
}

func shed() error {
	return &serverapi.Error{Status: 429, Err: wire.Error{Code: wire.CodeRateLimited}, RetryAfter: 2 * time.Second}
}

// A device shed at admission never logs in to Vault; one shed at
// enrollment keeps its ticket and its unused token.
func TestAdmissionBeforeVault(t *testing.T) {
	r := newRig(t)
	r.server.admitErr = []error{shed(), shed()}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	// bootstrap login, wrapping lookup, unwrap, device login: nothing more.
	if r.server.admits != 3 || r.vault.calls != 4 {
		t.Fatalf("admissions %d, Vault calls %d; want 3 and 4", r.server.admits, r.vault.calls)
	}
	if len(r.clock.sleeps) < 2 || r.clock.sleeps[0] < 2*time.Second {
		t.Fatalf("sleeps %v; want Retry-After honoured", r.clock.sleeps)
	}

	r = newRig(t)
	r.server.enrollErr = []error{shed()}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if r.server.admits != 1 || r.vault.calls != 4 || r.server.enrolls != 2 {
		t.Fatalf("admissions %d, Vault calls %d, enrollments %d; want 1, 4, 2", r.server.admits, r.vault.calls, r.server.enrolls)
	}
}
