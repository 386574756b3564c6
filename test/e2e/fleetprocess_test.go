package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/test/fleetsim"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

// fleetProcess runs simulated devices of the env's fleet in a fleetsim
// process of their own (args are fleetsim's flags, bundle and results
// aside), and returns where each ended and the processor time that process
// used.
func (e *env) fleetProcess(tb testing.TB, args ...string) (fleetsim.Report, time.Duration) {
	tb.Helper()
	dir := tb.TempDir()
	bin := filepath.Join(dir, "fleetsim")
	build := exec.Command("go", "build", "-o", bin, "./test/fleetsim/cmd/fleetsim")
	build.Dir = vaulttest.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build fleetsim: %v\n%s", err, out)
	}
	raw, err := e.bundle.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	bundlePath, results := filepath.Join(dir, "bundle.json"), filepath.Join(dir, "results.json")
	writeFile(tb, bundlePath, raw)
	cmd := exec.Command(bin, append([]string{"-bundle", bundlePath, "-results", results}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	} else {
		cmd.Stderr = &out
	}
	runErr := cmd.Run()
	tb.Log(strings.TrimSpace(out.String()))
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var report fleetsim.Report
	if err := json.Unmarshal([]byte(readFile(tb, results)), &report); err != nil {
		tb.Fatalf("fleetsim results: %v (fleetsim: %v)", err, runErr)
	}
	return report, cpu
}

// enrollCPU is processor time per enrollment, in milliseconds.
type enrollCPU struct{ vault, server, devices float64 }

// processCPU enrolls n devices from a fleetsim process of their own,
// benchWorkers at once, and returns what each process spent per
// enrollment: Vault, the server (this process, which runs nothing else
// meanwhile) and the devices. Read from /proc (utime + stime).
func (e *env) processCPU(tb testing.TB, n int, prefix string) enrollCPU {
	tb.Helper()
	v0, s0 := e.vault.CPUTime(), vaulttest.SelfCPUTime()
	report, devices := e.fleetProcess(tb, "-devices", strconv.Itoa(n), "-prefix", prefix,
		"-concurrency", strconv.Itoa(benchWorkers), "-timeout", "30m")
	v1, s1 := e.vault.CPUTime(), vaulttest.SelfCPUTime()
	enrolled := 0
	for _, o := range report.Devices {
		if o.Acknowledged {
			enrolled++
		}
	}
	if enrolled != n {
		tb.Fatalf("%d of %d devices enrolled from their own process", enrolled, n)
	}
	per := func(d time.Duration) float64 { return msPer(d, n) }
	return enrollCPU{vault: per(v1 - v0), server: per(s1 - s0), devices: per(devices)}
}
