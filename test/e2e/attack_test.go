package e2e

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// One admission ticket lets one request at a time skip the limits, never a
// crowd: 40 requests sent at once with one ticket cost Vault about what
// 40 without a ticket do.
func TestOneTicketIsNotACrowd(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		rate, burst, conc := 1.0, 1, 100
		f.RateLimit, f.RateBurst, f.MaxConcurrent = rate, burst, conc
	}})
	status, body := e.post(wire.PathAdmit, `{"fleet":"acme","device_id":"sensor-t"}`)
	if status != 200 {
		t.Fatalf("admit: %d %s", status, body)
	}
	var adm wire.AdmitResponse
	if err := json.Unmarshal([]byte(body), &adm); err != nil {
		t.Fatal(err)
	}
	before := metricSum(t, e, "enroll_server_vault_request_duration_seconds_count")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fmt.Sprintf(`{"fleet":"acme","device_id":"sensor-t","enrollment_token":"hvs.bogus","idempotency_key":"key-ticket%010d","ticket":%q,"facts":{}}`, i, adm.Ticket)
			status, _ := e.post(wire.PathEnroll, req)
			mu.Lock()
			codes[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	calls := metricSum(t, e, "enroll_server_vault_request_duration_seconds_count") - before
	t.Logf("answers %v; %v Vault calls", codes, calls)
	if codes[429] < 35 || calls > 5 {
		t.Fatalf("40 requests on one ticket: answers %v and %v Vault calls; want nearly all shed before Vault", codes, calls)
	}
}
