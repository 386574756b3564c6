package lifecycle

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

type rig struct {
	m      *Machine
	clock  *fakeClock
	vault  *fakeVault
	server *fakeServer
	store  *memStore
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{
		clock:  &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
		vault:  &fakeVault{failOn: map[int]error{}, tokenTTL: time.Hour},
		server: &fakeServer{},
		store:  &memStore{},
	}
	b := &bundle.Bundle{Fleet: "acme", EnrollMount: "edge-enroll", DeviceMount: "edge-devices-acme", RoleID: "r", SecretID: "s", Generation: 1}
	r.m = New(Config{
		Bundle: b, DeviceID: "dev-1", Vault: r.vault, Server: r.server, Store: r.store,
		Log: slog.New(slog.DiscardHandler), Clock: r.clock, Rand: func() float64 { return 0.5 },
	})
	return r
}

func (r *rig) enroll(t *testing.T) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.m.Run(ctx, true)
}

// Vault answers 503 on the third call (the unwrap): the machine backs off
// and resumes from the saved state without a second enrollment.
func TestVaultOutageMidEnrollmentResumes(t *testing.T) {
	r := newRig(t)
	r.vault.failOn[3] = errors.New("vault answered 503")
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if r.server.enrolls != 1 || r.server.acks != 1 {
		t.Fatalf("enrolls=%d acks=%d, want 1 and 1", r.server.enrolls, r.server.acks)
	}
	if len(r.clock.sleeps) != 1 || r.clock.sleeps[0] <= 0 || r.clock.sleeps[0] > time.Second {
		t.Fatalf("backoff sleeps %v, want one sleep within the first backoff step", r.clock.sleeps)
	}
}

// A server's Retry-After is a floor for the next attempt.
func TestRetryAfterIsHonoured(t *testing.T) {
	r := newRig(t)
	r.server.enrollErr = []error{&serverapi.Error{Status: 429, RetryAfter: 30 * time.Second,
		Err: wire.Error{Code: wire.CodeRateLimited, Message: "slow down"}}}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if len(r.clock.sleeps) != 1 || r.clock.sleeps[0] < 30*time.Second || r.clock.sleeps[0] >= 45*time.Second {
		t.Fatalf("sleeps %v, want one of at least the 30 s Retry-After", r.clock.sleeps)
	}
	if r.server.enrolls != 2 {
		t.Fatalf("enrolls = %d, want 2", r.server.enrolls)
	}
}

// A return time the server gave this device alone (a slot in its
// schedule of a shed crowd) is kept to: the device comes back then, not up
// to half as late again as it would after a plain Retry-After.
func TestScheduledSlotIsKept(t *testing.T) {
	r := newRig(t)
	r.server.enrollErr = []error{&serverapi.Error{Status: 429, RetryAfter: 30 * time.Second, Scheduled: true,
		Err: wire.Error{Code: wire.CodeRateLimited, Message: "slow down"}}}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if len(r.clock.sleeps) != 1 || r.clock.sleeps[0] < 30*time.Second || r.clock.sleeps[0] > 30*time.Second+200*time.Millisecond {
		t.Fatalf("sleeps %v, want one of the 30 s slot, at most 200 ms late", r.clock.sleeps)
	}
}

// A device told to wait hangs up meanwhile, so a crowd waiting out its
// Retry-After holds no connections on the server; a short backoff keeps
// the connection for the retry.
func TestLongWaitHangsUp(t *testing.T) {
	r := newRig(t)
	r.server.enrollErr = []error{&serverapi.Error{Status: 429, RetryAfter: 30 * time.Second,
		Err: wire.Error{Code: wire.CodeRateLimited, Message: "slow down"}}}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if r.server.hangUps != 1 {
		t.Fatalf("%d hang-ups for one 30 s wait, want 1", r.server.hangUps)
	}
	r = newRig(t)
	r.vault.failOn[3] = errors.New("vault answered 503")
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if r.server.hangUps != 0 {
		t.Fatalf("hung up for a sub-second backoff (sleeps %v)", r.clock.sleeps)
	}
}

// A permanent refusal stops the loop, is recorded, and is not retried.
func TestPermanentRefusalStops(t *testing.T) {
	r := newRig(t)
	r.server.enrollErr = []error{&serverapi.Error{Status: 404, Err: wire.Error{Code: wire.CodeUnknownFleet, Message: "fleet acme is not served here"}}}
	err := r.enroll(t)
	if !errors.Is(err, ErrRejected) {
		t.Fatalf("Run = %v, want ErrRejected", err)
	}
	st, _ := r.m.Load()
	if st.Phase != PhaseRejected || !strings.Contains(st.Reason, "unknown_fleet") {
		t.Fatalf("state %s reason %q", st.Phase, st.Reason)
	}
	if r.server.enrolls != 1 || len(r.clock.sleeps) != 0 {
		t.Fatalf("enrolls=%d sleeps=%v: a permanent refusal was retried", r.server.enrolls, r.clock.sleeps)
	}
	// A restart tries once more, at once (its operator may have dealt with
	// the cause); refused again, it stops again.
	r.server.enrollErr = []error{&serverapi.Error{Status: 404, Err: wire.Error{Code: wire.CodeUnknownFleet, Message: "fleet acme is not served here"}}}
	if err := r.enroll(t); !errors.Is(err, ErrRejected) || r.server.enrolls != 2 || len(r.clock.sleeps) != 0 {
		t.Fatalf("after restart: %v, enrolls %d, sleeps %v; want one more attempt, at once", err, r.server.enrolls, r.clock.sleeps)
	}
}

// The same idempotency key is sent on every retry of one enrollment.
func TestRetriesKeepTheIdempotencyKey(t *testing.T) {
	r := newRig(t)
	var keys []string
	srv := &recordingServer{fakeServer: r.server, keys: &keys}
	r.m.cfg.Server = srv
	r.server.enrollErr = []error{errors.New("connection reset"), errors.New("connection reset")}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0] != keys[1] || keys[1] != keys[2] || keys[0] == "" {
		t.Fatalf("keys sent: %v, want the same key three times", keys)
	}
}

type recordingServer struct {
	*fakeServer
	keys *[]string
}

func (s *recordingServer) Enroll(ctx context.Context, req wire.EnrollRequest) (wire.EnrollResponse, error) {
	*s.keys = append(*s.keys, req.IdempotencyKey)
	return s.fakeServer.Enroll(ctx, req)
}

// A wrapping token someone else unwrapped is reported, never unwrapped.
func TestUsedWrappingTokenIsReported(t *testing.T) {
	r := newRig(t)
	r.vault.unwrapped = true
	if err := r.enroll(t); !errors.Is(err, ErrRejected) {
		t.Fatalf("Run = %v, want ErrRejected", err)
	}
	if r.server.reports != 1 {
		t.Fatalf("reports = %d, want 1", r.server.reports)
	}
}

// Five answers lost in a row (a flaky path): the device asks again each
// time, at once and then after a backoff, and never reports: telling a lost
// credential from a used one is the server's job.
func TestLostAnswersInARowAreAskedAgain(t *testing.T) {
	r := newRig(t)
	r.vault.deadLookups = 5
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if r.server.reports != 0 || r.server.enrolls != 6 {
		t.Fatalf("reports = %d, enrolls = %d; want 0 and 6", r.server.reports, r.server.enrolls)
	}
	if len(r.clock.sleeps) < 2 {
		t.Fatalf("sleeps %v: asking again past the third time must back off", r.clock.sleeps)
	}
}

// The token is renewed at about two thirds of its TTL, jitter included.
func TestRenewalIsScheduledAtTwoThirds(t *testing.T) {
	r := newRig(t)
	r.vault.tokenTTL = 90 * time.Second
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.vault.onRenew = cancel // stop right after the first renewal
	_ = r.m.Run(ctx, false)
	// Rand is 0.5: 2/3 of 90 s is 60 s, less half of a tenth of 90 s = 55.5 s.
	if len(r.clock.sleeps) == 0 || r.clock.sleeps[0] != 55500*time.Millisecond {
		t.Fatalf("first sleep %v, want 55.5s", r.clock.sleeps)
	}
}

// A state of another device is refused, never adopted.
func TestStateOfAnotherDeviceIsRefused(t *testing.T) {
	r := newRig(t)
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	other := New(Config{Bundle: r.m.cfg.Bundle, DeviceID: "dev-2", Store: r.store, Log: slog.New(slog.DiscardHandler)})
	if _, err := other.Load(); err == nil || !strings.Contains(err.Error(), "belongs to device") {
		t.Fatalf("Load = %v, want a refusal", err)
	}
}

// A request the server shed with 429 left its enrollment token unused: the
// retry sends it again instead of logging in to Vault once more.
func TestShedRequestKeepsItsEnrollmentToken(t *testing.T) {
	r := newRig(t)
	r.vault.tokenTTL = time.Minute
	shed := &serverapi.Error{Status: 429, RetryAfter: time.Second, Err: wire.Error{Code: wire.CodeRateLimited, Message: "busy"}}
	r.server.enrollErr = []error{shed, shed}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	// Vault calls: one bootstrap login for three enroll attempts, then
	// lookup, unwrap, device login.
	if r.server.enrolls != 3 || r.vault.calls != 4 {
		t.Fatalf("enrolls=%d vault calls=%d, want 3 and 4", r.server.enrolls, r.vault.calls)
	}
}

// A kept token too close to its end is not sent again.
func TestShedRequestTokenExpires(t *testing.T) {
	r := newRig(t)
	r.vault.tokenTTL = time.Minute
	shed := &serverapi.Error{Status: 429, RetryAfter: 50 * time.Second, Err: wire.Error{Code: wire.CodeRateLimited, Message: "busy"}}
	r.server.enrollErr = []error{shed}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if r.vault.calls != 5 {
		t.Fatalf("vault calls=%d, want 5 (a second bootstrap login)", r.vault.calls)
	}
}

// A state that cannot be written stops the machine where it is: the
// secret ID just unwrapped is not used to log in until it is on disk, and
// then the enrollment goes on as if nothing happened.
func TestFailedSaveStopsBeforeTheNextNetworkStep(t *testing.T) {
	r := newRig(t)
	// Writes: 1 enrolling, 2 wrapped, 3 unwrapped — which fails twice.
	r.store.failWrites = map[int]bool{3: true, 4: true}
	loginsBeforeSaved := -1
	r.store.onWrite = func(n int) {
		if n == 5 {
			loginsBeforeSaved = r.vault.logins["edge-devices-acme"]
		}
	}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if loginsBeforeSaved != 0 {
		t.Fatalf("the device logged in %d times with a secret ID not yet on disk", loginsBeforeSaved)
	}
	if r.server.enrolls != 1 || r.server.acks != 1 || len(r.clock.sleeps) != 2 {
		t.Fatalf("enrolls=%d acks=%d sleeps=%v; want one enrollment, and two waits for the disk", r.server.enrolls, r.server.acks, r.clock.sleeps)
	}
	st, _ := r.m.Load()
	if st.SecretID == "" || st.Phase != PhaseAuthenticated {
		t.Fatalf("state %s", st.Phase)
	}
}

type recordingSink struct{ tokens []string }

func (s *recordingSink) Write(tok string) error { s.tokens = append(s.tokens, tok); return nil }

// A new token reaches the sinks even while the state cannot be saved.
func TestSinkGetsTheTokenWhenTheStateCannotBeSaved(t *testing.T) {
	r := newRig(t)
	sink := &recordingSink{}
	r.m.cfg.Sinks = []Sink{sink}
	// Writes: 1 enrolling, 2 wrapped, 3 unwrapped, 4 authenticated — fails.
	r.store.failWrites = map[int]bool{4: true}
	sinkBeforeSaved := 0
	r.store.onWrite = func(n int) {
		if n == 5 {
			sinkBeforeSaved = len(sink.tokens)
		}
	}
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if sinkBeforeSaved != 1 || !strings.HasPrefix(sink.tokens[0], "tok-edge-devices-acme") {
		t.Fatalf("sink held %v before the state was saved; want the device's token", sink.tokens)
	}
}

// A status read after the daemon stopped says so.
func TestStatusSaysWhenTheDaemonStopped(t *testing.T) {
	r := newRig(t)
	var last Status
	r.m.cfg.Status = StatusFunc(func(s Status) error { last = s; return nil })
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	if !last.DaemonStopped.IsZero() {
		t.Fatal("a run that ended enrolled (run -once) marked the daemon stopped")
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.vault.onRenew = cancel
	_ = r.m.Run(ctx, false)
	if last.DaemonStopped.IsZero() || last.Phase != PhaseAuthenticated || !strings.Contains(last.Text(), "daemon stopped") {
		t.Fatalf("status after the daemon stopped: %+v", last)
	}
}

// The state disk refuses every write for ten minutes after enrollment:
// the machine takes no enrollment step, but keeps its token renewed on
// schedule the whole time, so the workloads never hold a dead one.
func TestTokenKeptAliveWhileTheDiskRefuses(t *testing.T) {
	t.Run("secret ID lives on", func(t *testing.T) { tokenKeptAliveWhileTheDiskRefuses(t, 0) })
	// Past the secret ID's life no new token can be had: the one the
	// device holds is renewed for as long as Vault extends it.
	t.Run("secret ID expires meanwhile", func(t *testing.T) { tokenKeptAliveWhileTheDiskRefuses(t, 3*time.Minute) })
}

func tokenKeptAliveWhileTheDiskRefuses(t *testing.T, secretIDTTL time.Duration) {
	r := newRig(t)
	r.vault.tokenTTL, r.vault.secretIDTTL = 30*time.Second, secretIDTTL
	if err := r.enroll(t); err != nil {
		t.Fatal(err)
	}
	r.store.mu.Lock()
	from := r.store.writes + 1
	r.store.failWrites = map[int]bool{}
	for n := from; n < from+100_000; n++ {
		r.store.failWrites[n] = true
	}
	r.store.mu.Unlock()
	start := r.clock.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var renewals int
	var lapsed time.Duration
	last := start
	r.vault.onRenew = func() {
		now := r.clock.Now()
		renewals++
		if gap := now.Sub(last); gap > r.vault.tokenTTL {
			lapsed = max(lapsed, gap)
		}
		last = now
		if now.Sub(start) > 10*time.Minute {
			cancel()
		}
	}
	enrolls, acks := r.server.enrolls, r.server.acks
	done := make(chan error, 1)
	go func() { done <- r.m.Run(ctx, false) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the machine did not get through ten minutes of a failing disk")
	}
	if renewals < 25 || lapsed > 0 {
		t.Fatalf("%d renewals in ten minutes with a %v token, longest gap %v", renewals, r.vault.tokenTTL, lapsed)
	}
	if r.server.enrolls != enrolls || r.server.acks != acks {
		t.Fatal("the machine talked to the server while its state could not be saved")
	}
}

// A wrapped answer the device cannot use says exactly what is wrong with it.
func TestIncompleteAnswerSaysWhatIsWrong(t *testing.T) {
	r := newRig(t)
	st := State{}
	err := r.m.acceptWrapped(&st, wire.EnrollResponse{WrappingToken: "w", LoginMount: "edge-devices-acme"})
	if err == nil || !strings.Contains(err.Error(), "lacks enrollment_id, role_id") {
		t.Fatalf("err = %v", err)
	}
	err = r.m.acceptWrapped(&st, wire.EnrollResponse{WrappingToken: "w", RoleID: "r", EnrollmentID: "e", LoginMount: "edge-devices-other"})
	if err == nil || !strings.Contains(err.Error(), `names login mount "edge-devices-other", but the bundle's device mount is "edge-devices-acme"`) {
		t.Fatalf("err = %v", err)
	}
}
