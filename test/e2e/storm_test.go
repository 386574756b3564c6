package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/test/fleetsim"
)

// A boot storm: many devices at once against one server and the real Vault.
// `make test` runs a few hundred; `make storm` sets STORM_DEVICES=10000.
// Every device ends enrolled with exactly one live secret ID of its own, the
// server sheds load with 429 first, and no request fails because Vault
// could not answer.
func TestStorm(t *testing.T) {
	n := 300
	if v := os.Getenv("STORM_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("STORM_DEVICES=%q", v)
		}
	}
	e := newEnv(t)
	var report fleetsim.Report
	if n > inProcessDevices {
		report = runFleet(t, e, n)
	} else {
		b := e.bundle
		var progress *os.File
		if testing.Verbose() {
			progress = os.Stderr
		}
		res, err := fleetsim.Run(context.Background(), fleetsim.Options{
			Bundle: &b, Devices: n, Prefix: "storm", Timeout: 50 * time.Minute, Progress: progressWriter(progress),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Log(res)
		report = res.Report()
	}
	outcomes := report.Devices
	enrolled := 0
	for _, o := range outcomes {
		if o.Enrolled() {
			enrolled++
		}
	}
	if enrolled != n || len(outcomes) != n {
		t.Fatalf("%d of %d devices enrolled (%d reported)", enrolled, n, len(outcomes))
	}
	seen := map[string]string{}
	for id, o := range outcomes {
		accs := e.deviceSecretIDAccessors(id)
		if len(accs) != 1 || accs[0] != o.SecretIDAccessor {
			t.Fatalf("device %s: live secret IDs %v, want exactly its own %s", id, accs, o.SecretIDAccessor)
		}
		if other, dup := seen[accs[0]]; dup {
			t.Fatalf("devices %s and %s share a secret ID", id, other)
		}
		seen[accs[0]] = id
	}
	metrics := e.metrics()
	count := func(metric, o string) int {
		m := regexp.MustCompile(metric + `\{fleet="acme",outcome="` + o + `"\} (\d+)`).FindStringSubmatch(metrics)
		if m == nil {
			return 0
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	outcome := func(o string) int { return count("enroll_server_enrollments_total", o) }
	admission := func(o string) int { return count("enroll_server_admissions_total", o) }
	if outcome("unavailable") != 0 || outcome("internal") != 0 || vaultErrors(metrics) != 0 {
		logFailures(t, e.logs)
	}
	if outcome("unavailable") != 0 || outcome("internal") != 0 {
		t.Fatalf("requests failed on Vault: %d unavailable, %d internal", outcome("unavailable"), outcome("internal"))
	}
	shed := outcome("rate_limited") + admission("rate_limited")
	if n >= 300 && shed == 0 {
		t.Fatalf("%d devices at once were never shed with 429", n)
	}
	if v := vaultErrors(metrics); v != 0 {
		t.Fatalf("Vault answered %d of the server's requests with 5xx or not at all", v)
	}
	// Nor did any of the devices' own Vault calls (logins, wrapping
	// lookups, unwraps) fail. Their other retries, beyond being shed, are
	// connections the server could not take in time (10,000 TLS handshakes
	// at once on the same processors): listed, not failures of Vault.
	if report.Retries != int64(shed) || report.VaultFailures != 0 {
		for cause, n := range report.RetryCauses {
			t.Logf("%d× %s", n, cause)
		}
	}
	if report.VaultFailures != 0 {
		t.Fatalf("%d of the devices' own Vault calls failed", report.VaultFailures)
	}
	overall, steady := report.Rates()
	t.Logf("storm rate %.1f enrollments/s over the whole run, steady rate %.1f/s (the middle 80%% of devices): ratio %.2f (target >= 0.9)",
		overall, steady, overall/steady)
	t.Logf("server outcomes: %d wrapped; shed with 429: %d at admission, %d at enrollment; Vault 5xx or no answer: %d; devices' Vault calls failed: %d; device retries %d",
		outcome("wrapped"), admission("rate_limited"), outcome("rate_limited"), vaultErrors(metrics), report.VaultFailures, report.Retries)
}

// inProcessDevices is the largest simulated fleet run inside the test
// process. A larger one runs in a process of its own, as devices are
// machines of their own: one process holding both ends of every
// connection of ten thousand devices would need more open files than a
// machine may allow (20,000 here).
const inProcessDevices = 1000

// runFleet enrolls n simulated devices from a fleetsim process of their own
// and returns where each ended.
func runFleet(t *testing.T, e *env, n int) fleetsim.Report {
	t.Helper()
	report, _ := e.fleetProcess(t, "-devices", strconv.Itoa(n), "-prefix", "storm", "-timeout", "50m")
	return report
}

// logFailures logs the distinct causes of the server's failed requests, so
// a failing storm says what Vault answered.
func logFailures(t *testing.T, logs *logBuffer) {
	t.Helper()
	causes := map[string]int{}
	for _, l := range logs.lines("request failed") {
		causes[fmt.Sprintf("%v %v: %v", l["path"], l["code"], l["err"])]++
	}
	for c, n := range causes {
		t.Logf("%d× %s", n, c)
	}
}

// progressWriter keeps a nil *os.File from becoming a non-nil io.Writer.
func progressWriter(f *os.File) interface{ Write([]byte) (int, error) } {
	if f == nil {
		return nil
	}
	return f
}

// vaultErrors counts the server's Vault requests answered 5xx or not at all.
func vaultErrors(metrics string) int {
	n := 0
	for _, class := range []string{"5xx", "error"} {
		m := regexp.MustCompile(`enroll_server_vault_request_duration_seconds_count\{status="` + class + `"\} (\d+)`).FindStringSubmatch(metrics)
		if m != nil {
			v, _ := strconv.Atoi(m[1])
			n += v
		}
	}
	return n
}
