package e2e

import (
	"bufio"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/tpmsim"
)

// vaultCalls reads the server's count of its Vault requests by operation
// (enroll_server_vault_requests_total), whatever their status.
func vaultCalls(tb testing.TB, e *env) map[string]float64 {
	tb.Helper()
	const name = "enroll_server_vault_requests_total{"
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(e.metrics()))
	for sc.Scan() {
		labels, ok := strings.CutPrefix(sc.Text(), name)
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(labels, "} ")
		if !ok {
			continue
		}
		op := ""
		for l := range strings.SplitSeq(labels, ",") {
			if v, ok := strings.CutPrefix(l, `op="`); ok {
				op = strings.TrimSuffix(v, `"`)
			}
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			out[op] += v
		}
	}
	return out
}

// ownUpkeep are the server's Vault calls for its own token (renewing it,
// logging in again), made on their own schedule: a reading that happens to
// span one does not make it an enrollment's.
var ownUpkeep = map[string]bool{"PUT auth/token/renew-self": true, "PUT auth/*/login": true}

// callsPer describes the Vault calls made between two readings, per one
// of n operations: their total and each kind, most frequent first. The
// server's upkeep of its own token is left out.
func callsPer(before, after map[string]float64, n int) (float64, string) {
	total := 0.0
	per := map[string]float64{}
	for op, v := range after {
		if ownUpkeep[op] {
			continue
		}
		if d := (v - before[op]) / float64(n); d > 0 {
			per[op], total = d, total+d
		}
	}
	ops := slices.SortedFunc(maps.Keys(per), func(a, b string) int {
		if per[a] != per[b] {
			if per[a] > per[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(ops))
	for _, op := range ops {
		parts = append(parts, fmt.Sprintf("%.2g %s", per[op], op))
	}
	return total, strings.Join(parts, ", ")
}

// A first enrollment's Vault calls are counted by operation in the
// server's own metrics, each one of the operations the server knows.
func TestVaultCallsAreCountedByOperation(t *testing.T) {
	e := newEnv(t)
	before := vaultCalls(t, e)
	e.enroll(e.newDevice("sensor-a", nil))
	after := vaultCalls(t, e)
	total, detail := callsPer(before, after, 1)
	t.Logf("Vault calls by the server for one first enrollment: %.0f (%s)", total, detail)
	if total < 4 {
		t.Fatalf("counted %.0f Vault calls for an enrollment (%s): the token lookup, its revocation, the role write and the mint at least", total, detail)
	}
	for _, op := range []string{"PUT auth/token/lookup", "PUT auth/token/revoke-self", "PUT auth/*/role/*", "PUT auth/*/role/*/secret-id"} {
		if after[op]-before[op] < 1 {
			t.Errorf("no %q counted for an enrollment: %s", op, detail)
		}
	}
	if after["other"] > before["other"] {
		t.Errorf("an enrollment made Vault calls the server cannot name: %s", detail)
	}
	// The role was created by this enrollment: nothing to list at its
	// acknowledgement (two calls, the wrapped list and its unwrap).
	if n := after["LIST auth/*/role/*/secret-id"] - before["LIST auth/*/role/*/secret-id"]; n != 0 {
		t.Errorf("the first enrollment listed its new role's secret IDs (%.0f times): %s", n, detail)
	}
	if total > 7 {
		t.Errorf("a first enrollment cost %.0f Vault calls by the server, want at most 7: %s", total, detail)
	}
}

// pathCounter reads the server's Vault calls for one device at a time,
// each request apart from its acknowledgement: a proxy in front of the
// server reads the server's own counts as the acknowledgement passes.
type pathCounter struct {
	t      *testing.T
	e      *env
	url    string // the proxy's
	caPEM  string // its certificate
	mu     sync.Mutex
	atAck  map[string]float64
	counts map[string][2]float64 // request, acknowledgement
}

func newPathCounter(t *testing.T, e *env) *pathCounter {
	p := &pathCounter{t: t, e: e, counts: map[string][2]float64{}}
	target, _ := url.Parse(e.serverURL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: tlsTo(t, e.caPEM)}
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.PathAck {
			p.mu.Lock()
			p.atAck = vaultCalls(t, e)
			p.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	p.url = front.URL
	p.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}))
	return p
}

// via points a device's bundle at the proxy.
func (p *pathCounter) via(b *bundle.Bundle) { b.ServerURL, b.ServerCAPEM = p.url, p.caPEM }

// measure runs one path and records its Vault calls, printed as `make
// bench` shows them (-test.v). The fleet's generations, read once per
// fleet every few seconds, are no one request's and are not counted.
func (p *pathCounter) measure(path string, run func() error) {
	t, e := p.t, p.e
	t.Helper()
	p.mu.Lock()
	p.atAck = nil
	p.mu.Unlock()
	before := vaultCalls(t, e)
	if err := run(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	after := vaultCalls(t, e)
	p.mu.Lock()
	mid := p.atAck
	p.mu.Unlock()
	if mid == nil {
		t.Fatalf("%s: no acknowledgement went through the proxy", path)
	}
	req, reqDetail := callsPer(before, mid, 1)
	ack, ackDetail := callsPer(mid, after, 1)
	p.counts[path] = [2]float64{req - (mid[generationsOp] - before[generationsOp]), ack - (after[generationsOp] - mid[generationsOp])}
	line := fmt.Sprintf("bench: Vault calls by the server, %s: %.0f for the request (%s), %.0f for the acknowledgement (%s)", path, req, reqDetail, ack, ackDetail)
	t.Log(line)
	if testing.Verbose() {
		fmt.Println(line)
	}
}

// want checks a path's counts: what the design needs, no more.
func (p *pathCounter) want(path string, request, ack float64) {
	p.t.Helper()
	if got := p.counts[path]; got != [2]float64{request, ack} {
		p.t.Errorf("%s: %.0f + %.0f Vault calls, want %.0f + %.0f", path, got[0], got[1], request, ack)
	}
}

// The server's Vault calls by path: a first enrollment (the enrollment
// token's lookup and revocation, the role write and the mint; at the
// acknowledgement the device's token and secret ID accessor looked up), a
// refresh (the device's token looked up, the mint) and a rejoin (its
// credentials dead, it proves its key: the mint), each acknowledged with
// the older secret ID found and destroyed as well. Re-enrollment by TPM is
// TestVaultCallsTPMReenrollment.
func TestVaultCallsByPath(t *testing.T) {
	e := newEnv(t)
	p := newPathCounter(t, e)
	e.enroll(e.newDevice("paths-warm", nil)) // the generations are read and cached
	d := e.newDevice("paths", p.via)
	var st lifecycle.State
	p.measure("first enrollment", func() error { st = e.enroll(d); return nil })
	srv := serverapi.New(p.url, mustPool(t, p.caPEM), 10*time.Second)
	vc := mustClientVault(t, e.bundle)
	var err error
	p.measure("refresh", func() error { st, err = e.identityOnce(srv, vc, st, identity.PurposeRefresh); return err })
	p.measure("rejoin", func() error { st, err = e.identityOnce(srv, vc, st, identity.PurposeRejoin); return err })
	p.want("first enrollment", 4, 2)
	p.want("refresh", 2, 5)
	p.want("rejoin", 1, 5)
}

// A device bound to its TPM that lost its state enrolls again (attestation
// and the bootstrap credential): the enrollment token's lookup and
// revocation and the mint (its role unchanged); at the acknowledgement,
// the lookups and its older secret ID found and destroyed.
func TestVaultCallsTPMReenrollment(t *testing.T) {
	e, ca := tpmEnv(t, wire.TPMOptional)
	sim := tpmsim.Open(t)
	ca.ProvisionEKCert(t, sim, tpmsim.ECCEK)
	p := newPathCounter(t, e)
	first, err := e.tpmDevice("paths-tpm", sim, p.via, "")
	if err != nil {
		t.Fatal(err)
	}
	p.measure("first enrollment with a TPM", func() error { e.enroll(first); return nil })
	again, err := e.tpmDevice("paths-tpm", sim, p.via, "")
	if err != nil {
		t.Fatal(err)
	}
	p.measure("re-enrollment with a TPM, state lost", func() error { e.enroll(again); return nil })
	p.want("first enrollment with a TPM", 4, 2)
	p.want("re-enrollment with a TPM, state lost", 3, 5)
}

// The fleet's generation record is read from Vault once for many
// enrollments, not once per enrollment.
func TestVaultCallsGenerationsReadOnce(t *testing.T) {
	e := newEnv(t)
	e.enroll(e.newDevice("gen-warm", nil))
	const n = 3
	before := vaultCalls(t, e)
	for i := range n {
		e.enroll(e.newDevice(fmt.Sprintf("gen-%d", i), nil))
	}
	after := vaultCalls(t, e)
	_, detail := callsPer(before, after, n)
	if got := after[generationsOp] - before[generationsOp]; got != 0 {
		t.Errorf("%d enrollments read the fleet's generations %.0f times within the cache's life: %s", n, got, detail)
	}
}

const generationsOp = "GET */data/enroll/fleets/*/generations"

// A refresh writes the device's role no more when its parameters did not
// change, and still destroys the device's older secret ID at the
// acknowledgement.
func TestVaultCallsRefreshSkipsTheRoleWrite(t *testing.T) {
	e := newEnv(t)
	st := e.enroll(e.newDevice("refresh-calls", nil))
	srv := serverapi.New(e.bundle.ServerURL, mustPool(t, e.bundle.ServerCAPEM), 10*time.Second)
	vc := mustClientVault(t, e.bundle)
	before := vaultCalls(t, e)
	st, err := e.refreshOnce(srv, vc, st)
	if err != nil {
		t.Fatal(err)
	}
	after := vaultCalls(t, e)
	total, detail := callsPer(before, after, 1)
	t.Logf("Vault calls by the server for one refresh: %.0f (%s)", total, detail)
	if n := after[roleWriteOp] - before[roleWriteOp]; n != 0 {
		t.Errorf("a refresh with the same role parameters wrote the role %.0f times: %s", n, detail)
	}
	if n := after[listOp] - before[listOp]; n != 1 {
		t.Errorf("a refresh's acknowledgement listed the role's secret IDs %.0f times, want 1: %s", n, detail)
	}
	if accs := e.deviceSecretIDAccessors("refresh-calls"); len(accs) != 1 {
		t.Errorf("after a refresh the device has %d secret IDs, want 1", len(accs))
	}
	if _, err := e.refreshOnce(srv, vc, st); err != nil {
		t.Fatalf("a second refresh: %v", err)
	}
}

// A device role gone from Vault (its mount set up again) is written again
// when the mint finds it missing, and the refresh goes through.
func TestVaultCallsRefreshRewritesAMissingRole(t *testing.T) {
	e := newEnv(t)
	st := e.enroll(e.newDevice("role-gone", nil))
	if _, err := e.root.Logical().Delete("auth/" + vault.DeviceMount(fleet) + "/role/role-gone"); err != nil {
		t.Fatal(err)
	}
	srv := serverapi.New(e.bundle.ServerURL, mustPool(t, e.bundle.ServerCAPEM), 10*time.Second)
	before := vaultCalls(t, e)
	if _, err := e.refreshOnce(srv, mustClientVault(t, e.bundle), st); err != nil {
		t.Fatalf("a refresh after the role was deleted: %v", err)
	}
	after := vaultCalls(t, e)
	_, detail := callsPer(before, after, 1)
	if n := after[roleWriteOp] - before[roleWriteOp]; n != 1 {
		t.Errorf("the missing role was written %.0f times, want 1: %s", n, detail)
	}
	if n := after[mintOp] - before[mintOp]; n != 2 {
		t.Errorf("%.0f mints, want 2 (the one that found no role, and its retry): %s", n, detail)
	}
}

const (
	roleWriteOp = "PUT auth/*/role/*"
	mintOp      = "PUT auth/*/role/*/secret-id"
	listOp      = "LIST auth/*/role/*/secret-id"
)

// The bench's baseline makes its eleven Vault calls per enrollment,
// whatever the server makes: directSequence counts them and fails on any
// other number.
func TestBaselineSequenceIsFrozen(t *testing.T) {
	e := newEnv(t)
	rate, took := e.directSequence(t, 2, 1, "baseline")
	if rate <= 0 || len(took) != 2 {
		t.Fatalf("baseline: rate %.1f, %d sequences timed", rate, len(took))
	}
}
