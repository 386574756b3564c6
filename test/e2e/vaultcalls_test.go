package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	"github.com/edge-enroll/enroll/enroll-server/vault"
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
