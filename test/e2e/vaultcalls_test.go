package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
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

// callsPer describes the Vault calls made between two readings, per one
// of n operations: their total and each kind, most frequent first.
func callsPer(before, after map[string]float64, n int) (float64, string) {
	total := 0.0
	per := map[string]float64{}
	for op, v := range after {
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
}
