package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/test/fleetsim"
)

const benchWorkers = 8

var benchRun atomic.Int64

// BenchmarkEnrollment measures, in one run on one machine: enrollments per
// second through the server; the same Vault call sequence made directly by
// a minimal client (the physical limit of this design here); their ratio;
// and enrollment latency. Run it with -benchtime=Nx: N devices per phase.
func BenchmarkEnrollment(b *testing.B) {
	e := newEnv(b, options{fleet: func(f *config.Fleet) {
		f.RateLimit, f.RateBurst, f.MaxConcurrent = 1e6, 1e6, 1000
	}})
	bun := e.bundle
	run := benchRun.Add(1)
	b.ResetTimer()
	res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &bun, Devices: b.N,
		Prefix: fmt.Sprintf("bench%d", run), Concurrency: benchWorkers, Timeout: 30 * time.Minute})
	if err != nil || res.Enrolled != b.N {
		b.Fatalf("%v: %v", res, err)
	}
	direct := e.directSequence(b, b.N, fmt.Sprintf("direct%d", run))
	b.StopTimer()
	through := res.PerSecond()
	ratio := through / direct
	b.ReportMetric(through, "enroll/s")
	b.ReportMetric(direct, "vault-seq/s")
	b.ReportMetric(ratio, "ratio")
	b.ReportMetric(float64(res.Percentile(50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.Percentile(99).Microseconds())/1000, "p99-ms")
	if b.N >= 50 {
		fmt.Printf("bench: enrollments through the server: %.1f/s (%d devices, %d at once)\n", through, b.N, benchWorkers)
		fmt.Printf("bench: the same Vault calls made directly: %.1f/s\n", direct)
		fmt.Printf("bench: ratio server/direct: %.2f (target >= 0.9)\n", ratio)
		fmt.Printf("bench: enrollment latency p50 %v, p99 %v (target p99 <= 50ms)\n",
			res.Percentile(50).Round(100*time.Microsecond), res.Percentile(99).Round(100*time.Microsecond))
	}
}

// directSequence makes, for n devices with benchWorkers at once, the Vault
// calls one enrollment costs, with no server in between: the bootstrap
// login; the server's token lookup and revocation, role write, secret ID
// list and wrapped mint; the device's wrapping lookup, unwrap and login;
// the server's token and secret ID accessor lookups. It returns
// enrollments per second.
func (e *env) directSequence(tb testing.TB, n int, prefix string) float64 {
	ctx := context.Background()
	mount := vault.DeviceMount(fleet)
	one := func(id string) error {
		anon := e.clientFor("")
		login, err := anon.Logical().WriteWithContext(ctx, "auth/"+e.bundle.EnrollMount+"/login",
			map[string]any{"role_id": e.bundle.RoleID, "secret_id": e.bundle.SecretID})
		if err != nil {
			return err
		}
		root := e.clientFor(e.vault.RootToken)
		look, err := root.Logical().WriteWithContext(ctx, "auth/token/lookup", map[string]any{"token": login.Auth.ClientToken})
		if err != nil {
			return err
		}
		if _, err := root.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": look.Data["accessor"]}); err != nil {
			return err
		}
		role := "auth/" + mount + "/role/" + id
		if _, err := root.Logical().WriteWithContext(ctx, role, map[string]any{"role_id": id + "-role", "token_policies": []string{vault.DevicePolicy(fleet)}}); err != nil {
			return err
		}
		if _, err := root.Logical().ListWithContext(ctx, role+"/secret-id"); err != nil {
			return err
		}
		wrapped, err := root.Logical().WriteWithRequest(ctx, api.NewLogicalWriteRequest(role+"/secret-id", map[string]any{"metadata": `{"x":"y"}`},
			map[string][]string{"X-Vault-Wrap-Ttl": {"120s"}}))
		if err != nil {
			return err
		}
		wt := wrapped.WrapInfo.Token
		if _, err := anon.Logical().WriteWithContext(ctx, "sys/wrapping/lookup", map[string]any{"token": wt}); err != nil {
			return err
		}
		sec, err := e.clientFor(wt).Logical().UnwrapWithContext(ctx, "")
		if err != nil {
			return err
		}
		dev, err := anon.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role_id": id + "-role", "secret_id": sec.Data["secret_id"]})
		if err != nil {
			return err
		}
		if _, err := root.Logical().WriteWithContext(ctx, "auth/token/lookup", map[string]any{"token": dev.Auth.ClientToken}); err != nil {
			return err
		}
		_, err = root.Logical().WriteWithContext(ctx, role+"/secret-id-accessor/lookup", map[string]any{"secret_id_accessor": sec.Data["secret_id_accessor"]})
		return err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	start := time.Now()
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := one(fmt.Sprintf("%s-%05d", prefix, i)); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		tb.Fatalf("direct sequence: %d errors, first: %v", len(errs), errs[0])
	}
	return float64(n) / time.Since(start).Seconds()
}
