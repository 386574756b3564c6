package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/test/fleetsim"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

const benchWorkers = 32

var benchRun atomic.Int64

// BenchmarkEnrollment measures, in one run on one machine: enrollments per
// second through the server with benchWorkers devices at once; the same
// Vault call sequence made directly by a minimal client (the physical limit
// of this design here); their ratio; the processor time each side costs
// per enrollment; and enrollment latency one at a time (the time a device
// waits) and with benchWorkers at once (which, at saturation, is the queue:
// benchWorkers ÷ rate). Run it with -benchtime=Nx: N devices per phase.
func BenchmarkEnrollment(b *testing.B) {
	open := func() *env {
		return newEnv(b, options{fleet: func(f *config.Fleet) {
			f.RateLimit, f.RateBurst, f.MaxConcurrent = 1e6, 1e6, 1000
		}})
	}
	run := benchRun.Add(1)
	// Each side gets a fresh Vault: Vault slows down as it fills, so the
	// side measured second on a shared one would be measured on a slower
	// Vault.
	e := open()
	bun := e.bundle
	enroll := func(phase string, n, workers int) fleetsim.Result {
		res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &bun, Devices: n,
			Prefix: fmt.Sprintf("bench%d%s", run, phase), Concurrency: workers, Timeout: 30 * time.Minute})
		if err != nil || res.Enrolled != n {
			b.Fatalf("%v: %v", res, err)
		}
		return res
	}
	b.ResetTimer()
	calls0 := vaultCalls(b, e)
	v0, s0 := e.vault.CPUTime(), vaulttest.SelfCPUTime()
	res := enroll("s", b.N, benchWorkers)
	v1, s1 := e.vault.CPUTime(), vaulttest.SelfCPUTime()
	b.StopTimer()
	serverCalls, callDetail := callsPer(calls0, vaultCalls(b, e), b.N)
	alone := enroll("a", min(b.N, 200), 1)
	cpuDevices := min(b.N, 500)
	cpu := e.processCPU(b, cpuDevices, fmt.Sprintf("bench%dp", run))
	e.stop()
	floor := e.measureFloor(b, min(b.N, 300))
	e.vault.Stop()

	d := open()
	d.stop() // the direct side needs no enrollment server
	b.StartTimer()
	v2, s2 := d.vault.CPUTime(), vaulttest.SelfCPUTime()
	direct, _ := d.directSequence(b, b.N, benchWorkers, fmt.Sprintf("direct%d", run))
	v3, s3 := d.vault.CPUTime(), vaulttest.SelfCPUTime()
	b.StopTimer()
	_, directAlone := d.directSequence(b, min(b.N, 200), 1, fmt.Sprintf("directa%d", run))

	through := res.PerSecond()
	ratio := through / direct
	perEnroll := func(d time.Duration) float64 { return msPer(d, b.N) }
	b.ReportMetric(through, "enroll/s")
	b.ReportMetric(direct, "vault-seq/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(alone.Percentile(50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(alone.Percentile(99).Microseconds())/1000, "p99-ms")
	if b.N < 50 {
		return
	}
	ms := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	fmt.Println() // after the benchmark's name, so that every figure starts a line
	fmt.Printf("bench: enrollments through the server: %.1f/s (%d devices, %d at once)\n", through, b.N, benchWorkers)
	fmt.Printf("bench: the same Vault calls made directly: %.1f/s\n", direct)
	fmt.Printf("bench: ratio server/baseline: %.2f (the baseline: the textbook sequence of %d Vault calls, frozen)\n", ratio, baselineVaultCalls)
	fmt.Printf("bench: Vault calls per first enrollment: %.1f by the server (%s), 4 by the device (bootstrap login, wrapping lookup, unwrap, login); %.1f in all against the baseline's %d\n",
		serverCalls, callDetail, serverCalls+4, baselineVaultCalls)
	fmt.Printf("bench: processor time per enrollment, devices in a process of their own (%d devices, %d at once): Vault %.2f ms, server %.2f ms (server/Vault %.2f, target <= 0.2), devices %.2f ms\n",
		cpuDevices, benchWorkers, cpu.vault, cpu.server, cpu.server/cpu.vault, cpu.devices)
	fmt.Printf("bench: the server's floor per first enrollment, each part alone: %.1f Vault requests x %.2f ms (a token lookup, client side) + TLS handshake with a new device %.2f ms (server side) + 3 durable commits %.2f ms = %.2f ms, %.2f of Vault's (HTTP, JSON, logging, scheduling and garbage collection left out)\n",
		serverCalls, floor.vaultCall, floor.handshake, floor.commits, floor.total(serverCalls), floor.total(serverCalls)/cpu.vault)
	fmt.Printf("bench: CPU per enrollment through the server: Vault %.1f ms, server and devices %.1f ms; directly: Vault %.1f ms, minimal client %.1f ms\n",
		perEnroll(v1-v0), perEnroll(s1-s0), perEnroll(v3-v2), perEnroll(s3-s2))
	fmt.Printf("bench: enrollment latency, one at a time: p50 %v, p99 %v (target p99 <= 25ms); Vault calls alone: p50 %v, p99 %v\n",
		ms(alone.Percentile(50)), ms(alone.Percentile(99)), ms(fleetsim.Percentile(directAlone, 50)), ms(fleetsim.Percentile(directAlone, 99)))
	fmt.Printf("bench: enrollment latency, %d at once: p50 %v, p99 %v\n", benchWorkers, ms(res.Percentile(50)), ms(res.Percentile(99)))
}

// directSequence makes, for n devices with benchWorkers at once, the
// textbook broker's eleven Vault calls per enrollment (baselineVaultCalls),
// with no server in between: the same tokens (the server's own AppRole
// token, with its policy), the same parameters, one connection pool for
// the server's calls and one per device. The device's bootstrap login; the
// token's lookup and revocation (revoke-self), the role write, the secret
// ID list (wrapped) and the wrapped mint; the device's wrapping lookup,
// unwrap and login; the token and secret ID accessor lookups. It fails
// when it made any other number of calls, and returns enrollments per
// second and each sequence's duration, sorted.
func (e *env) directSequence(tb testing.TB, n, workers int, prefix string) (float64, []time.Duration) {
	ctx := context.Background()
	fl := e.cfg.Fleets[0]
	mount := vault.DeviceMount(fleet)
	var calls atomic.Int64
	newClient := func() *api.Client {
		c, err := api.NewClient(&api.Config{Address: e.vault.Addr, MaxRetries: 0,
			HttpClient: &http.Client{Transport: countingTransport{http.DefaultTransport.(*http.Transport).Clone(), &calls}}})
		if err != nil {
			tb.Fatal(err)
		}
		c.SetToken("")
		return c
	}
	srv := newClient()
	sl, err := srv.Logical().Write("auth/"+e.layout.EnrollMount+"/login",
		map[string]any{"role_id": e.srvCreds.RoleID, "secret_id": e.srvCreds.SecretID})
	if err != nil {
		tb.Fatal(err)
	}
	srv.SetToken(sl.Auth.ClientToken)
	lister, err := srv.Clone()
	if err != nil {
		tb.Fatal(err)
	}
	lister.SetToken(srv.Token())
	lister.SetWrappingLookupFunc(func(string, string) string { return "30s" })
	calls.Store(0) // the server's own login is not an enrollment's
	seconds := func(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }
	one := func(id string) error {
		dev := newClient()
		defer dev.CloneConfig().HttpClient.CloseIdleConnections()
		login, err := dev.Logical().WriteWithContext(ctx, "auth/"+e.bundle.EnrollMount+"/login",
			map[string]any{"role_id": e.bundle.RoleID, "secret_id": e.bundle.SecretID})
		if err != nil {
			return err
		}
		look, err := srv.Logical().WriteWithContext(ctx, "auth/token/lookup", map[string]any{"token": login.Auth.ClientToken})
		if err != nil {
			return err
		}
		if look == nil || look.Data["accessor"] == nil {
			return fmt.Errorf("token lookup: no accessor")
		}
		// The revocation as the server makes it: the token revokes itself
		// (the server's policy grants no right to revoke other tokens).
		burner, err := dev.Clone()
		if err != nil {
			return err
		}
		burner.SetToken(login.Auth.ClientToken)
		if _, err := burner.Logical().WriteWithContext(ctx, "auth/token/revoke-self", nil); err != nil {
			return err
		}
		role := "auth/" + mount + "/role/" + id
		roleID := uuid.NewString()
		if _, err := srv.Logical().WriteWithContext(ctx, role, map[string]any{
			"role_id": roleID, "bind_secret_id": true, "token_policies": []string{vault.DevicePolicy(fleet)},
			"token_type": "service", "token_ttl": seconds(fl.DeviceTokenTTL), "token_max_ttl": seconds(fl.DeviceTokenMaxTTL),
			"secret_id_ttl": seconds(fl.DeviceSecretIDTTL),
		}); err != nil {
			return err
		}
		// The list, response-wrapped as the server's policy demands; a new
		// role has nothing in it, so the answer is not unwrapped.
		if _, err := lister.Logical().ListWithContext(ctx, role+"/secret-id"); err != nil {
			return err
		}
		meta, _ := json.Marshal(map[string]string{"fleet": fleet, "device_id": id, "enrollment_id": rand.Text(), "generation": "1"})
		wrapped, err := srv.Logical().WriteWithRequest(ctx, api.NewLogicalWriteRequest(role+"/secret-id",
			map[string]any{"metadata": string(meta)}, map[string][]string{"X-Vault-Wrap-Ttl": {seconds(fl.WrapTTL)}}))
		if err != nil {
			return err
		}
		wt := wrapped.WrapInfo.Token
		if _, err := dev.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": wt}); err != nil {
			return err
		}
		unwrapper, err := dev.Clone()
		if err != nil {
			return err
		}
		unwrapper.SetToken(wt)
		sec, err := unwrapper.Logical().UnwrapWithContext(ctx, "")
		if err != nil {
			return err
		}
		dl, err := dev.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role_id": roleID, "secret_id": sec.Data["secret_id"]})
		if err != nil {
			return err
		}
		if _, err := srv.Logical().WriteWithContext(ctx, "auth/token/lookup", map[string]any{"token": dl.Auth.ClientToken}); err != nil {
			return err
		}
		_, err = srv.Logical().WriteWithContext(ctx, role+"/secret-id-accessor/lookup", map[string]any{"secret_id_accessor": sec.Data["secret_id_accessor"]})
		return err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var took []time.Duration
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				t0 := time.Now()
				err := one(fmt.Sprintf("%s-%05d", prefix, i))
				mu.Lock()
				took = append(took, time.Since(t0))
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	rate := float64(n) / time.Since(start).Seconds()
	if len(errs) > 0 {
		tb.Fatalf("direct sequence: %d errors, first: %v", len(errs), errs[0])
	}
	if got := calls.Load(); got != int64(n*baselineVaultCalls) {
		tb.Fatalf("the baseline made %d Vault calls for %d enrollments, want %d each: it is frozen", got, n, baselineVaultCalls)
	}
	slices.Sort(took)
	return rate, took
}

// baselineVaultCalls is how many Vault calls the textbook sequence makes
// per enrollment (directSequence). It is frozen: the ratio measures the
// server against this fixed broker, so calls the server saves are capacity
// the ratio shows, never a baseline that shrinks with them.
const baselineVaultCalls = 11

// countingTransport counts the HTTP requests made through it.
type countingTransport struct {
	*http.Transport
	n *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.Transport.RoundTrip(r)
}
