package e2e

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/test/fleetsim"
)

// A storm against a three-node Raft Vault whose active node is stopped
// mid-storm: the server moves to the other nodes (vault.failover_addresses),
// the devices' standby forwards to the new active node, every device ends
// enrolled with exactly one live secret ID of its own, and the pause (the
// longest time without a completed enrollment) is printed. `make test` runs
// a few hundred devices; `make storm` sets STORM_CLUSTER_DEVICES.
func TestStormThroughVaultFailover(t *testing.T) {
	n := 200
	if v := os.Getenv("STORM_CLUSTER_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > inProcessDevices {
			t.Fatalf("STORM_CLUSTER_DEVICES=%q: want 1 to %d", v, inProcessDevices)
		}
	}
	e := newEnv(t, options{cluster: true})
	c := e.cluster
	first, err := c.Active()
	if err != nil {
		t.Fatal(err)
	}

	b := e.bundle
	done := make(chan fleetsim.Result, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &b, Devices: n, Prefix: "raft", Timeout: 10 * time.Minute})
		errc <- err
		done <- res
	}()
	// A quarter of the fleet in, the active node goes.
	waitFor(t, 5*time.Minute, "a quarter of the fleet enrolled", func() bool { return len(e.logs.lines("device enrolled")) >= n/4 })
	stopped := time.Now()
	c.Nodes[first].Stop()
	t.Logf("stopped the active node %d after %d enrollments", first+1, len(e.logs.lines("device enrolled")))

	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	res := <-done
	t.Log(res)
	next, err := c.Active()
	if err != nil || next == first {
		t.Fatalf("no new active node (%d, %v)", next+1, err)
	}
	e.vault = c.Nodes[next].Server
	e.root = e.clientFor(c.RootToken)

	report := res.Report()
	seen := map[string]bool{}
	for id, o := range report.Devices {
		if !o.Enrolled() {
			st := res.States[id]
			for _, l := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(l, `"`+id+`"`) {
					t.Log(l)
				}
			}
			t.Fatalf("device %s ended %s: %s %s (last error %s)", id, o.Phase, st.Refused, st.Reason, st.LastError)
		}
		accs := e.deviceSecretIDAccessors(id)
		if len(accs) != 1 || accs[0] != o.SecretIDAccessor || seen[accs[0]] {
			t.Fatalf("device %s: live secret IDs %v, want exactly its own %s", id, accs, o.SecretIDAccessor)
		}
		seen[accs[0]] = true
	}
	if len(report.Devices) != n {
		t.Fatalf("%d devices reported, want %d", len(report.Devices), n)
	}
	if len(e.logs.lines("vault node cannot serve; requests go to another address")) == 0 {
		t.Error("the server never moved to another Vault node")
	}
	pause, resumed := enrollmentPause(t, e, stopped)
	t.Logf("bench: Vault failover under a storm of %d devices: active node stopped; longest time without an enrollment %v, first enrollment %v after the stop; devices' Vault calls failed and retried %d, device retries %d",
		n, pause.Round(time.Millisecond), resumed.Round(time.Millisecond), report.VaultFailures, report.Retries)
}

// enrollmentPause is the longest gap between two completed enrollments in
// the server's log, and how long after stopped the first one completed.
func enrollmentPause(t *testing.T, e *env, stopped time.Time) (longest, resumed time.Duration) {
	t.Helper()
	var at []time.Time
	for _, l := range e.logs.lines("device enrolled") {
		s, _ := l["time"].(string)
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("log time %q: %v", s, err)
		}
		at = append(at, ts)
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(at); i++ {
		longest = max(longest, at[i].Sub(at[i-1]))
	}
	for _, ts := range at {
		if ts.After(stopped) {
			return longest, ts.Sub(stopped)
		}
	}
	return longest, -1
}
