package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/health"
	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
)

// diagnosticsURL is the address the daemon's diagnostics listener bound
// (the configuration asks for any free port), from its log.
func (dm *daemon) diagnosticsURL() string {
	dm.t.Helper()
	var addr string
	waitFor(dm.t, 30*time.Second, "the diagnostics listener", func() bool {
		if l := dm.out.lines("serving diagnostics"); len(l) > 0 {
			addr, _ = l[0]["listen"].(string)
		}
		return addr != ""
	})
	return "http://" + addr
}

func probe(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// The real daemon serves /livez, /readyz and /metrics; `enroll-client
// status` says it runs and is ready, and after a SIGKILL says it is not
// running, with a non-zero exit.
func TestDiagnosticsAndStatusOfTheRealDaemon(t *testing.T) {
	e := newEnv(t)
	bin := clientBinary(t)
	d := e.deviceDirWith("sensor-diag", "tpm:\n  mode: off\ndiagnostics:\n  listen: 127.0.0.1:0\n")
	dm := e.startDaemon(bin, d)
	url := dm.diagnosticsURL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("diagnostics on %s, want loopback", url)
	}
	if code, body := probe(t, url+"/livez"); code != 200 || body != "ok" {
		t.Fatalf("/livez = %d %q", code, body)
	}
	waitFor(t, 30*time.Second, "/readyz to answer 200", func() bool { code, _ := probe(t, url+"/readyz"); return code == 200 })
	waitFor(t, 30*time.Second, "the acknowledgement", func() bool { return d.status().Acknowledged })
	st, err := readStatusFile(d)
	if err != nil {
		t.Fatal(err)
	}
	code, metrics := probe(t, url+"/metrics")
	if code != 200 || !strings.Contains(metrics, `enroll_client_phase{phase="authenticated"} 1`) {
		t.Fatalf("/metrics = %d:\n%s", code, grepLines(metrics, "enroll_client_phase"))
	}
	// The token was obtained at login: the gauge says when, not 0.
	if line := grepLines(metrics, "enroll_client_last_renewal_timestamp_seconds "); line == "" || strings.HasSuffix(strings.TrimSpace(line), " 0") {
		t.Errorf("the last renewal is not set after the login:\n%s", line)
	}
	token := readToken(d.sinkPath)
	e.keep(token)
	for _, path := range []string{"/livez", "/readyz", "/metrics"} {
		_, body := probe(t, url+path)
		for _, secret := range []string{token, st.TokenAccessor, st.SecretIDAccessor} {
			if secret != "" && strings.Contains(body, secret) {
				t.Errorf("%s shows a token or an accessor", path)
			}
		}
	}

	code, out, errOut := e.cli("status", "-config", d.config)
	if code != health.ExitReady || !strings.Contains(out, "daemon:                running") || !strings.Contains(out, "ready:                 yes") {
		t.Fatalf("status of the running daemon: exit %d\n%s%s", code, out, errOut)
	}

	// The daemon dies without a word.
	if err := dm.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dm.done
	code, out, errOut = e.cli("status", "-config", d.config)
	if code != health.ExitNotRunning || !strings.Contains(out, "NOT RUNNING") || !strings.Contains(out, "ready:                 no: daemon not running") {
		t.Fatalf("status after SIGKILL: exit %d, want %d\n%s%s", code, health.ExitNotRunning, out, errOut)
	}
	if _, err := http.Get(url + "/livez"); err == nil {
		t.Fatal("/livez still answers after the daemon was killed")
	}
	code, out, _ = e.cli("status", "-json", "-config", d.config)
	var r health.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != health.ExitNotRunning || r.DaemonRunning || r.Ready || r.Phase != lifecycle.PhaseAuthenticated {
		t.Fatalf("status -json after SIGKILL: exit %d, %+v, %v\n%s", code, r, err, out)
	}
}

// A daemon killed while it waits to retry leaves a "next retry" behind;
// status marks it stale once it has passed. Meanwhile /readyz says why
// the device is not ready.
func TestStatusMarksARetryLeftByADeadDaemonStale(t *testing.T) {
	e := newEnv(t)
	bin := clientBinary(t)
	d := e.deviceDirWith("sensor-gone", "tpm:\n  mode: off\ndiagnostics:\n  listen: 127.0.0.1:0\n")
	d.bundle.ServerURL = "https://127.0.0.1:1" // nothing listens there
	raw, err := d.bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d.dir, "bundle.json"), raw)
	dm := e.startDaemon(bin, d)
	url := dm.diagnosticsURL()
	waitFor(t, 30*time.Second, "a retry to be scheduled", func() bool { return !d.status().NextRetry.IsZero() })
	if code, body := probe(t, url+"/readyz"); code != 503 || !strings.HasPrefix(body, "not enrolled yet: ") {
		t.Fatalf("/readyz of a device that cannot reach its server = %d %q", code, body)
	}
	code, out, _ := e.cli("status", "-config", d.config)
	if code != health.ExitNotReady || !strings.Contains(out, "daemon:                running") || strings.Contains(out, "stale") {
		t.Fatalf("status while retrying: exit %d, want %d\n%s", code, health.ExitNotReady, out)
	}
	if err := dm.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-dm.done
	next := d.status().NextRetry
	waitFor(t, 5*time.Minute, "the retry time to pass", func() bool { return time.Now().After(next) })
	code, out, _ = e.cli("status", "-config", d.config)
	if code != health.ExitNotRunning || !strings.Contains(out, "NOT RUNNING") ||
		!strings.Contains(out, "(stale: in the past, and no daemon is running to retry)") {
		t.Fatalf("status after the daemon died mid-retry: exit %d\n%s", code, out)
	}
}
