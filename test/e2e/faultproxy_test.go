package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/pkg/bundle"
)

// A faultLine is the path between one device and its two peers: a proxy in
// front of Vault and one in front of the enrollment server. Both forward
// everything and record each request's step ("vault PUT /v1/sys/wrapping/
// unwrap"); armed with a fault, the line lets the chosen request reach its
// peer, runs the fault's hook (the test kills the device there), and then
// loses the answer, as a dropped connection or a power cut would.
type faultLine struct {
	vault, server *httptest.Server

	mu    sync.Mutex
	trace []string
	fault *fault
	seen  map[string]int // matching steps since the fault was armed
	// log, when set, returns the device's log so far: a request sent
	// while it says the state is not on disk is recorded in unsaved.
	log     func() string
	unsaved []string
}

// logCannotSave is the client's log line for a state it could not save.
const logCannotSave = `"msg":"cannot save the device state`

// watchSaves records each request the device sends while its log says its
// state is not on disk, other than keeping a token it already had alive
// (renewing it, or logging in again with the secret ID it holds): nothing
// single-use may be touched before the state is saved.
func (l *faultLine) watchSaves(log func() string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = log
}

func (l *faultLine) unsavedSteps() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.unsaved...)
}

func (l *faultLine) checkSaved(step string) {
	l.mu.Lock()
	log := l.log
	l.mu.Unlock()
	if log == nil {
		return
	}
	at := time.Now()
	if unsavedAt(log(), at) == "" {
		return
	}
	// The log reaches the test through a pipe: give the lines the client
	// wrote before this request time to arrive, then judge by their times.
	time.Sleep(300 * time.Millisecond)
	switch last := unsavedAt(log(), at); {
	case last == "":
	case step == "vault PUT /v1/auth/token/renew-self", step == "vault GET /v1/auth/token/lookup-self":
	case last == "secret ID on disk" && strings.HasPrefix(step, "vault PUT /v1/auth/edge-devices-") && strings.HasSuffix(step, "/login"):
	default:
		l.mu.Lock()
		l.unsaved = append(l.unsaved, step)
		l.mu.Unlock()
	}
}

// unsavedAt reads the device's JSON log up to at: "" when its state was on
// disk then; else whether the secret ID it holds was ("secret ID on disk",
// so logging in with it is safe) or not ("nothing on disk").
func unsavedAt(log string, at time.Time) string {
	unsaved, secretSaved, safe := false, false, false
	for _, line := range strings.Split(log, "\n") {
		var rec struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Time.After(at) {
			continue
		}
		switch {
		case strings.HasPrefix(rec.Msg, "cannot save the device state"):
			if !unsaved {
				safe = secretSaved
			}
			unsaved = true
		case rec.Msg == "device state saved again":
			unsaved = false
		case rec.Msg == "unwrapped secret ID", rec.Msg == "credential acknowledged":
			secretSaved = true
		}
	}
	switch {
	case !unsaved:
		return ""
	case safe:
		return "secret ID on disk"
	}
	return "nothing on disk"
}

// fault names one request: the n-th (from 0) occurrence of step after the
// fault is armed.
type fault struct {
	step string
	n    int
	// hook runs once the peer has answered and before the answer is lost.
	hook func()
	// deliver hands the answer over after the hook instead of losing it.
	deliver bool
	hit     chan struct{}
}

func (e *env) faultLine() *faultLine {
	e.t.Helper()
	l := &faultLine{}
	vaultURL, _ := url.Parse(e.vault.Addr)
	serverURL, _ := url.Parse(e.serverURL)
	toServer := httputil.NewSingleHostReverseProxy(serverURL)
	toServer.Transport = &http.Transport{TLSClientConfig: tlsTo(e.t, e.caPEM)}
	l.vault = httptest.NewServer(l.handler("vault", httputil.NewSingleHostReverseProxy(vaultURL)))
	l.server = httptest.NewServer(l.handler("server", toServer))
	e.t.Cleanup(l.vault.Close)
	e.t.Cleanup(l.server.Close)
	return l
}

// bundle points a device's bundle at the line instead of its peers.
func (l *faultLine) bundle(b *bundle.Bundle) {
	b.VaultAddr, b.ServerURL, b.ServerCAPEM = l.vault.URL, l.server.URL, ""
}

// arm sets the fault; the steps seen before do not count towards its n.
func (l *faultLine) arm(f *fault) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f.hit = make(chan struct{})
	l.fault, l.seen = f, map[string]int{}
}

// mark returns the length of the trace so far.
func (l *faultLine) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.trace)
}

// since returns the steps recorded after mark.
func (l *faultLine) since(mark int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.trace[mark:]...)
}

func (l *faultLine) handler(hop string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		step := hop + " " + r.Method + " " + r.URL.Path
		l.mu.Lock()
		l.trace = append(l.trace, step)
		f := l.fault
		hit := false
		if f != nil && l.seen != nil {
			hit = f.step == step && l.seen[step] == f.n
			l.seen[step]++
			if hit {
				l.fault = nil
			}
		}
		l.mu.Unlock()
		l.checkSaved(step)
		if !hit {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r) // the peer acts on the request...
		if f.hook != nil {
			f.hook()
		}
		close(f.hit)
		if f.deliver {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		// ...and its answer never arrives.
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		w.WriteHeader(http.StatusBadGateway)
	})
}

// writeBundle rewrites the device's bundle file after mod.
func (d *deviceDir) writeBundle(t testing.TB, mod func(*bundle.Bundle)) {
	t.Helper()
	mod(&d.bundle)
	raw, err := d.bundle.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d.dir, "bundle.json"), raw)
}

// worthBreaking reports whether a step changes anything when its answer is
// lost (health probes do not).
func worthBreaking(step string) bool {
	return step != "vault GET /v1/sys/health" && step != "server GET /readyz" && step != "server GET /healthz"
}

// unwrapsSince reports whether the device unwrapped after mark.
func (l *faultLine) unwrapsSince(mark int) int {
	n := 0
	for _, s := range l.since(mark) {
		if s == "vault PUT /v1/sys/wrapping/unwrap" {
			n++
		}
	}
	return n
}

// positions turns a trace into faults: one per request, named by its step
// and how many times that step came before it.
func positions(trace []string) []fault {
	seen := map[string]int{}
	var out []fault
	for _, s := range trace {
		if worthBreaking(s) {
			out = append(out, fault{step: s, n: seen[s]})
		}
		seen[s]++
	}
	return out
}

func (f fault) String() string { return fmt.Sprintf("%s #%d", f.step, f.n) }

// waitAuthenticated waits until the daemon on d says it holds an
// acknowledged token and done holds.
func waitAuthenticated(t *testing.T, d *deviceDir, dm *daemon, timeout time.Duration, done func(lifecycle.Status) bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := d.status()
		if s.Phase == lifecycle.PhaseAuthenticated && s.Acknowledged && s.DaemonStopped.IsZero() && done(s) {
			return true
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: not authenticated within %s: %+v\n%s", d.id, timeout, s, dm.out)
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
