package e2e

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-client/serverapi"
	clientvault "github.com/edge-enroll/enroll/enroll-client/vault"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/pkg/identity"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/fleetsim"
)

// BenchmarkRefresh measures a device's refresh by identity through the
// real server and Vault, as the client makes it: a nonce, the signed
// refresh (the server checks the token and mints the next secret ID,
// wrapped), the wrapping lookup, unwrap and login, and the acknowledgement
// (the server destroys the old secret ID). It reports refreshes per second
// with benchWorkers devices at once, and Vault calls per refresh: the
// server's, counted by its own metric, and the device's three.
func BenchmarkRefresh(b *testing.B) {
	e := newEnv(b, options{fleet: func(f *config.Fleet) {
		f.RateLimit, f.RateBurst, f.MaxConcurrent = 1e6, 1e6, 1000
	}})
	bun := e.bundle
	n := min(b.N, 200) // devices; each refreshes b.N/n times or so
	res, err := fleetsim.Run(context.Background(), fleetsim.Options{Bundle: &bun, Devices: n, Prefix: "refresh", Concurrency: benchWorkers})
	if err != nil || res.Enrolled != n {
		b.Fatalf("%v: %v", res, err)
	}
	srv := serverapi.New(bun.ServerURL, mustPool(b, bun.ServerCAPEM), 10*time.Second)
	vc := mustClientVault(b, bun)
	states := make(chan lifecycle.State, n)
	for _, st := range res.States {
		states <- st
	}
	refresh := func(st lifecycle.State) (lifecycle.State, error) { return e.refreshOnce(srv, vc, st) }
	before := vaultCalls(b, e)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	work := make(chan struct{}, b.N)
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	for range benchWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				st := <-states
				next, err := refresh(st)
				states <- next
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	perSecond := float64(b.N) / elapsed.Seconds()
	serverCalls, detail := callsPer(before, vaultCalls(b, e), b.N)
	b.ReportMetric(perSecond, "refresh/s")
	b.ReportMetric(serverCalls+3, "vault-calls/refresh")
	if b.N >= 50 {
		fmt.Println()
		fmt.Printf("bench: refreshes by identity: %.1f/s (%d refreshes of %d devices, %d at once); Vault calls per refresh: %.1f by the server (%s), 3 by the device\n",
			perSecond, b.N, n, benchWorkers, serverCalls, detail)
	}
}

// refreshOnce refreshes a device by identity as the client does: a nonce,
// the signed refresh, the wrapping lookup, unwrap and login, and the
// acknowledgement. It returns the device's next state.
func (e *env) refreshOnce(srv *serverapi.Client, vc *clientvault.Client, st lifecycle.State) (lifecycle.State, error) {
	return e.identityOnce(srv, vc, st, identity.PurposeRefresh)
}

// identityOnce is refreshOnce for either purpose: a refresh proves the
// device's token, a rejoin has none to prove.
func (e *env) identityOnce(srv *serverapi.Client, vc *clientvault.Client, st lifecycle.State, purpose string) (lifecycle.State, error) {
	ctx := context.Background()
	ch, err := srv.IdentityChallenge(ctx, wire.IdentityChallengeRequest{Fleet: fleet, DeviceID: st.DeviceID})
	if err != nil {
		return st, err
	}
	call := identityCall{purpose: purpose, device: st.DeviceID, key: ed25519.NewKeyFromSeed(st.DeviceKey), sequence: st.Sequence}
	send := srv.Rejoin
	if purpose == identity.PurposeRefresh {
		call.token, send = st.Token, srv.Refresh
	}
	resp, err := send(ctx, call.signedRequest(wire.IdentityChallengeResponse{ChallengeID: ch.ChallengeID, Nonce: ch.Nonce}))
	if err != nil {
		return st, err
	}
	if _, err := vc.LookupWrapping(ctx, resp.WrappingToken); err != nil {
		return st, err
	}
	sid, err := vc.UnwrapSecretID(ctx, resp.WrappingToken)
	if err != nil {
		return st, err
	}
	a, err := vc.Login(ctx, resp.LoginMount, resp.RoleID, sid.ID)
	if err != nil {
		return st, err
	}
	if _, err := srv.Acknowledge(ctx, wire.AckRequest{Fleet: fleet, DeviceID: st.DeviceID, EnrollmentID: resp.EnrollmentID,
		Token: a.Token, SecretIDAccessor: sid.Accessor}); err != nil {
		return st, err
	}
	e.keep(resp.WrappingToken, sid.ID, a.Token)
	st.Token, st.SecretID, st.Sequence = a.Token, sid.ID, resp.Sequence
	return st, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// metricSum adds up every sample of a metric the server exposes.
func metricSum(tb testing.TB, e *env, name string) float64 {
	tb.Helper()
	body := e.metrics()
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		if f := strings.Fields(line); len(f) == 2 {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum
}
