package e2e

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/app"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/test/fleetsim"
	"github.com/edge-enroll/enroll/test/pgtest"
)

// startReplica starts another server on the same configuration (and so the
// same PostgreSQL database); stop kills it.
func (e *env) startReplica() (url string, stop func()) {
	e.t.Helper()
	cfg := e.cfg
	cfg.Listen, cfg.MetricsListen = "127.0.0.1:0", "127.0.0.1:0"
	a, err := app.New(cfg, app.Options{}, slog.New(slog.NewJSONHandler(e.logs, nil)))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	e.t.Cleanup(stop)
	u := "https://" + a.Addr().String()
	waitFor(e.t, 10*time.Second, "replica ready", func() bool {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsTo(e.t, e.caPEM)}}
		resp, err := c.Get(u + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return u, stop
}

// balancer is a trivial round-robin over the replicas; like a real load
// balancer's health check, markDown takes a dead backend out of rotation.
type balancer struct {
	*httptest.Server
	down []atomic.Bool
}

func (b *balancer) markDown(i int) { b.down[i].Store(true) }

func (e *env) roundRobin(backends ...string) *balancer {
	var proxies []*httputil.ReverseProxy
	for _, b := range backends {
		u, _ := url.Parse(b)
		p := httputil.NewSingleHostReverseProxy(u)
		p.Transport = &http.Transport{TLSClientConfig: tlsTo(e.t, e.caPEM)}
		p.ErrorLog = nil
		proxies = append(proxies, p)
	}
	var n atomic.Uint64
	lb := &balancer{down: make([]atomic.Bool, len(proxies))}
	lb.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range proxies {
			i := n.Add(1) % uint64(len(proxies))
			if !lb.down[i].Load() {
				proxies[i].ServeHTTP(w, r)
				return
			}
		}
		http.Error(w, "no backend", http.StatusBadGateway)
	}))
	e.t.Cleanup(lb.Close)
	return lb
}

func withPostgres(t *testing.T) options {
	pg := pgtest.Start(t)
	return options{server: func(c *config.File) { c.DatabaseURL = pg.NewDatabase(t) }}
}

// A retry that lands on the other replica gets the same outcome: one
// secret ID, one enrollment.
func TestReplicasShareIdempotency(t *testing.T) {
	e := newEnv(t, withPostgres(t))
	other, _ := e.startReplica()
	const key = "idem-replicas-00000001"
	_, first := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-a", key))
	primary := e.serverURL
	e.serverURL = other
	_, second := e.post("/v1/enroll", enrollBody(e.bootstrapLogin(), "sensor-a", key))
	e.serverURL = primary
	w := jsonField(t, first, "wrapping_token")
	e.keep(w)
	if w == "" || w != jsonField(t, second, "wrapping_token") {
		t.Fatalf("the other replica answered differently:\n%s\n%s", first, second)
	}
	if got := e.deviceSecretIDAccessors("sensor-a"); len(got) != 1 {
		t.Fatalf("%d secret IDs, want 1", len(got))
	}
}

// A storm through a round-robin over two replicas; one replica is killed
// midway. Every device still ends enrolled with exactly one secret ID.
func TestReplicaKilledMidStormLosesNoDevice(t *testing.T) {
	e := newEnv(t, withPostgres(t))
	other, kill := e.startReplica()
	lb := e.roundRobin(e.serverURL, other)
	b := e.bundle
	b.ServerURL, b.ServerCAPEM = lb.URL, ""
	go func() {
		time.Sleep(time.Second) // mid-storm
		kill()
		time.Sleep(2 * time.Second) // the balancer's health check notices
		lb.markDown(1)
	}()
	res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &b, Devices: 150, Prefix: "rr", Timeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Enrolled != 150 {
		t.Fatalf("%d of 150 enrolled (%d failed)", res.Enrolled, res.Failed)
	}
	for id, st := range res.States {
		if accs := e.deviceSecretIDAccessors(id); len(accs) != 1 || accs[0] != st.SecretIDAccessor {
			t.Fatalf("device %s: secret IDs %v, want exactly its own", id, accs)
		}
	}
}
