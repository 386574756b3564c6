package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/test/fleetsim"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

// BenchmarkFootprint measures the real, stripped binaries: the client's
// size and idle memory once enrolled, and the server's peak memory while a
// few hundred devices enroll through it.
func BenchmarkFootprint(b *testing.B) {
	e := newEnv(b, options{fleet: func(f *config.Fleet) { f.RateLimit, f.RateBurst = 1e6, 1e6 }})
	dir := b.TempDir()
	build := func(name string) string {
		out := filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/"+name)
		cmd.Dir = vaulttest.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("build %s: %v\n%s", name, err, o)
		}
		return out
	}
	clientBin, serverBin := build("enroll-client"), build("enroll-server")

	// The real server binary, on its own state, next to the test's.
	cfg := e.cfg
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	cfg.Listen = l.Addr().String()
	l.Close()
	// The test's server holds the listeners it was given: this one takes
	// its own.
	cfg.MetricsListen, cfg.Console.Listen = "127.0.0.1:0", ""
	cfg.StatePath = filepath.Join(dir, "server.db")
	cfg.Log.Level = "warn"
	raw, _ := yaml.Marshal(cfg)
	writeFile(b, filepath.Join(dir, "server.yaml"), raw)
	server := exec.Command(serverBin, "run", "-config", filepath.Join(dir, "server.yaml"))
	server.Stderr = os.Stderr // why it did not start, if it did not
	if err := server.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: tlsTo(b, e.caPEM)}}
	waitFor(b, 20*time.Second, "server binary ready", func() bool {
		resp, err := probe.Get("https://" + cfg.Listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})

	bun := e.bundle
	bun.ServerURL = "https://" + cfg.Listen
	b.ResetTimer()
	res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &bun, Devices: 300, Prefix: fmt.Sprintf("fp%d", benchRun.Add(1)), Concurrency: 16})
	b.StopTimer()
	if err != nil || res.Enrolled != 300 {
		b.Fatalf("%v %v", res, err)
	}
	serverPeak := procKB(b, server.Process.Pid, "VmHWM")

	// One real client, enrolled, then idle.
	d := e.deviceDir("footprint")
	d.bundle = bun
	raw, _ = d.bundle.Marshal()
	writeFile(b, filepath.Join(d.dir, "bundle.json"), raw)
	client := exec.Command(clientBin, "run", "-config", d.config)
	if err := client.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = client.Process.Kill(); _ = client.Wait() }()
	waitFor(b, 30*time.Second, "client enrolled", func() bool {
		st, _ := os.ReadFile(filepath.Join(d.dir, "status.json"))
		return strings.Contains(string(st), `"acknowledged": true`)
	})
	time.Sleep(3 * time.Second) // idle: nothing to do until renewal
	clientIdle := procKB(b, client.Process.Pid, "VmRSS")
	fi, _ := os.Stat(clientBin)

	b.ReportMetric(float64(clientIdle)/1024, "client-idle-MiB")
	b.ReportMetric(float64(fi.Size())/(1<<20), "client-binary-MiB")
	b.ReportMetric(float64(serverPeak)/1024, "server-peak-MiB")
	fmt.Printf("bench: client idle RSS: %.1f MiB (target <= 20 MiB)\n", float64(clientIdle)/1024)
	fmt.Printf("bench: client binary, linux/%s stripped: %.1f MiB (target <= 20 MiB)\n", goarch(), float64(fi.Size())/(1<<20))
	fmt.Printf("bench: server peak RSS enrolling 300 devices: %.1f MiB\n", float64(serverPeak)/1024)
}

func goarch() string {
	out, _ := exec.Command("go", "env", "GOARCH").Output()
	return strings.TrimSpace(string(out))
}

// procKB reads a memory figure (kB) of a process from /proc.
func procKB(tb testing.TB, pid int, field string) int {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
