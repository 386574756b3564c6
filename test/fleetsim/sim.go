// Package fleetsim simulates a fleet of devices enrolling at once: each
// simulated device runs the real client core (package lifecycle) with its
// own state, through the real enroll-server against the real Vault.
package fleetsim

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-client/state"
	"github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/pkg/backoff"
	"github.com/edge-enroll/enroll/pkg/bundle"
)

// Options describe a simulation.
type Options struct {
	Bundle  *bundle.Bundle
	Devices int
	// Prefix names the devices <prefix>-<n>.
	Prefix string
	// Ramp spreads arrivals evenly over this long; 0: all at once.
	Ramp time.Duration
	// Concurrency bounds devices enrolling at once; 0: all of them.
	Concurrency int
	// Timeout bounds the whole run.
	Timeout time.Duration
	// Progress, when set, gets a progress line about once a second.
	Progress io.Writer
	// LiveFor, when set, keeps each enrolled device running (renewing,
	// refreshing, rejoining) until this long after the start; each then
	// finishes what it is doing and stops holding an acknowledged
	// credential.
	LiveFor time.Duration
}

// Result is what a run measured.
type Result struct {
	Devices, Enrolled, Pending, Failed int
	Retries                            int64
	// RetryCauses counts retries by what went wrong (numbers masked).
	RetryCauses map[string]int
	// VaultFailures counts the devices' own Vault calls (logins, wrapping
	// lookups, unwraps, renewals) that failed.
	VaultFailures int64
	Latencies     []time.Duration // per enrolled device, sorted
	// Done is when each enrolled device finished, from the start, sorted.
	Done    []time.Duration
	Elapsed time.Duration
	States  map[string]lifecycle.State
}

// Outcome is where one device ended: no credential, only what identifies
// its secret ID in Vault.
type Outcome struct {
	Phase            lifecycle.Phase `json:"phase"`
	Acknowledged     bool            `json:"acknowledged,omitempty"`
	SecretIDAccessor string          `json:"secret_id_accessor,omitempty"`
}

// Enrolled reports whether the device ended logged in with a credential
// the server acknowledged.
func (o Outcome) Enrolled() bool { return o.Phase == lifecycle.PhaseAuthenticated && o.Acknowledged }

// Report is what a run leaves for checking against the server and Vault:
// how many times devices were told to retry, and each device's outcome.
type Report struct {
	Retries       int64              `json:"retries"`
	RetryCauses   map[string]int     `json:"retry_causes"`
	VaultFailures int64              `json:"vault_failures"`
	Devices       map[string]Outcome `json:"devices"`
	// Done is when each enrolled device finished, from the start, sorted;
	// Elapsed is the whole run.
	Done    []time.Duration `json:"done"`
	Elapsed time.Duration   `json:"elapsed"`
}

// Rates returns a run's overall enrollment rate (every enrolled device over
// the whole run, its first seconds included) and its steady rate: the rate
// at which the middle 80% of the devices finished, between the tenth and
// the ninetieth percentile of finishing times. Their ratio is what the
// start of a storm (every handshake at once, load shed) and its tail cost.
func (r Report) Rates() (overall, steady float64) {
	n := len(r.Done)
	if n == 0 || r.Elapsed <= 0 {
		return 0, 0
	}
	overall = float64(n) / r.Elapsed.Seconds()
	lo, hi := n/10, n-1-n/10
	if span := r.Done[hi] - r.Done[lo]; hi > lo && span > 0 {
		steady = float64(hi-lo) / span.Seconds()
	}
	return overall, steady
}

// Report returns the run's report.
func (r Result) Report() Report {
	out := Report{Retries: r.Retries, RetryCauses: r.RetryCauses, VaultFailures: r.VaultFailures,
		Devices: make(map[string]Outcome, len(r.States)), Done: r.Done, Elapsed: r.Elapsed}
	for id, st := range r.States {
		out.Devices[id] = Outcome{Phase: st.Phase, Acknowledged: st.Acknowledged, SecretIDAccessor: st.SecretIDAccessor}
	}
	return out
}

// Percentile returns the p-th percentile (0-100) of enrollment latency.
func (r Result) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Percentile returns the p-th percentile (0-100) of sorted durations.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p/100)]
}

// PerSecond is enrollments per second over the run.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Enrolled) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	return fmt.Sprintf("%d devices: %d enrolled, %d pending, %d failed, %d retries; %.1f enrollments/s; latency p50 %v p99 %v; %v",
		r.Devices, r.Enrolled, r.Pending, r.Failed, r.Retries, r.PerSecond(),
		r.Percentile(50).Round(time.Millisecond), r.Percentile(99).Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))
}

// memStore is one simulated device's state.
type memStore struct {
	mu sync.Mutex
	v  []byte
}

func (s *memStore) ReadState(string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v == nil {
		return nil, state.ErrNotFound
	}
	return s.v, nil
}

func (s *memStore) WriteState(_ string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v = append([]byte(nil), v...)
	return nil
}

// Run enrolls the fleet and reports.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Prefix == "" {
		o.Prefix = "sim"
	}
	var pool *x509.CertPool
	if o.Bundle.ServerCAPEM != "" {
		p, err := bundle.CertPool(o.Bundle.ServerCAPEM)
		if err != nil {
			return Result{}, err
		}
		pool = p
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	var enrolled, failed atomic.Int64
	retries := &retryLog{causes: map[string]int{}}
	var vaultFailures atomic.Int64
	res := Result{Devices: o.Devices, States: make(map[string]lifecycle.State, o.Devices)}
	var mu sync.Mutex
	start := time.Now()
	stopProgress := progress(ctx, o, start, &enrolled, &failed, &retries.n)
	defer stopProgress()

	var slots chan struct{}
	if o.Concurrency > 0 {
		slots = make(chan struct{}, o.Concurrency)
	}
	var wg sync.WaitGroup
	for i := range o.Devices {
		id := fmt.Sprintf("%s-%05d", o.Prefix, i)
		arrive := time.Duration(0)
		if o.Ramp > 0 {
			arrive = o.Ramp * time.Duration(i) / time.Duration(o.Devices)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if arrive > 0 && !backoff.Sleep(ctx, arrive) {
				return
			}
			if slots != nil {
				slots <- struct{}{}
				defer func() { <-slots }()
			}
			st, latency, err := enrollOne(ctx, o.Bundle, pool, id, start.Add(o.LiveFor), o.LiveFor > 0, retries, &vaultFailures)
			mu.Lock()
			defer mu.Unlock()
			res.States[id] = st
			switch {
			case err == nil:
				enrolled.Add(1)
				res.Latencies = append(res.Latencies, latency)
				res.Done = append(res.Done, time.Since(start))
			case st.Phase == lifecycle.PhasePending:
				res.Pending++
			default:
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Enrolled, res.Failed = int(enrolled.Load()), int(failed.Load())
	res.Retries, res.VaultFailures = retries.n.Load(), vaultFailures.Load()
	retries.mu.Lock()
	res.RetryCauses = retries.causes
	retries.mu.Unlock()
	slices.Sort(res.Latencies)
	slices.Sort(res.Done)
	return res, nil
}

// retryLog counts the retries devices were told to make, and why.
type retryLog struct {
	n      atomic.Int64
	mu     sync.Mutex
	causes map[string]int
}

var digits = regexp.MustCompile(`[0-9]+`)

func (l *retryLog) add(phase lifecycle.Phase, lastError string) {
	l.n.Add(1)
	cause := string(phase) + ": " + digits.ReplaceAllString(lastError, "#")
	if len(cause) > 160 {
		cause = cause[:160]
	}
	l.mu.Lock()
	l.causes[cause]++
	l.mu.Unlock()
}

// countedVault is a device's Vault client that counts its failed calls.
type countedVault struct {
	*vault.Client
	failures *atomic.Int64
}

func (v countedVault) count(err error) error {
	if err != nil {
		v.failures.Add(1)
	}
	return err
}

func (v countedVault) Login(ctx context.Context, mount, roleID, secretID string) (vault.Auth, error) {
	a, err := v.Client.Login(ctx, mount, roleID, secretID)
	return a, v.count(err)
}

func (v countedVault) LookupWrapping(ctx context.Context, token string) (vault.WrapInfo, error) {
	w, err := v.Client.LookupWrapping(ctx, token)
	return w, v.count(err)
}

func (v countedVault) UnwrapSecretID(ctx context.Context, token string) (vault.SecretID, error) {
	s, err := v.Client.UnwrapSecretID(ctx, token)
	return s, v.count(err)
}

func (v countedVault) RenewSelf(ctx context.Context, token string, increment time.Duration) (vault.Auth, error) {
	a, err := v.Client.RenewSelf(ctx, token, increment)
	return a, v.count(err)
}

func enrollOne(ctx context.Context, b *bundle.Bundle, pool *x509.CertPool, id string, liveUntil time.Time, live bool,
	retries *retryLog, vaultFailures *atomic.Int64) (lifecycle.State, time.Duration, error) {
	client, err := vault.New(b.VaultAddr, b.VaultCAPEM, 30*time.Second)
	if err != nil {
		return lifecycle.State{}, 0, err
	}
	vc := countedVault{Client: client, failures: vaultFailures}
	// A device that is done hangs up, as a real one would be on a machine
	// of its own: no simulated device leaves connections open here.
	defer vc.CloseIdleConnections()
	srv := serverapi.New(b.ServerURL, pool, 30*time.Second)
	defer srv.CloseIdleConnections()
	store := &memStore{}
	m := lifecycle.New(lifecycle.Config{
		Bundle: b, DeviceID: id, Vault: vc, Store: store,
		Server: srv,
		Log:    slog.New(slog.DiscardHandler),
		Status: lifecycle.StatusFunc(func(s lifecycle.Status) error {
			if !s.NextRetry.IsZero() {
				retries.add(s.Phase, s.LastError)
			}
			return nil
		}),
	})
	start := time.Now()
	err = m.Run(ctx, true)
	latency := time.Since(start)
	if err == nil && live {
		liveCtx, cancel := context.WithDeadline(ctx, liveUntil)
		err = m.Run(liveCtx, false)
		cancel()
		if err == nil {
			err = m.Run(ctx, true) // finish what is in flight
		}
	}
	st, _ := m.Load()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	return st, latency, err
}

func progress(ctx context.Context, o Options, start time.Time, enrolled, failed, retries *atomic.Int64) func() {
	if o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				fmt.Fprintf(o.Progress, "\r%6.0fs  enrolled %d/%d  failed %d  retries %d   ",
					time.Since(start).Seconds(), enrolled.Load(), o.Devices, failed.Load(), retries.Load())
			}
		}
	}()
	return func() { close(done); fmt.Fprintln(o.Progress) }
}
