package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/test/vaulttest"
)

// serverFloor is the processor time, in milliseconds, of the parts of a
// first enrollment the server cannot do without, each measured alone: one
// of its Vault requests (a token lookup, through the server's own Vault
// client), the TLS handshake with a new device (the server's side, with
// the server's certificate and the device's TLS settings), and the
// enrollment's three store commits (claim, wrapped, acknowledged, each
// durable). Everything else the server does (HTTP, JSON, logging,
// scheduling, garbage collection) is left out: the floor is a lower bound.
type serverFloor struct{ vaultCall, handshake, commits float64 }

// total is the floor of an enrollment that makes calls Vault requests.
func (f serverFloor) total(calls float64) float64 {
	return calls*f.vaultCall + f.handshake + f.commits
}

// measureFloor measures each part n times, in this process, with nothing
// else running in it.
func (e *env) measureFloor(tb testing.TB, n int) serverFloor {
	tb.Helper()
	return serverFloor{vaultCall: e.floorVaultCall(tb, n), handshake: e.floorHandshake(tb, n), commits: floorCommits(tb, n)}
}

// cpuOf is the processor time fn costs this process (every thread), per
// time it is called, in milliseconds: n calls, benchWorkers at once as in
// the enrollment benchmark (one at a time would add the cost of a process
// waking up from idle to every call).
func cpuOf(tb testing.TB, n int, fn func(i int) error) float64 {
	tb.Helper()
	var g errgroup.Group
	g.SetLimit(benchWorkers)
	before := vaulttest.SelfCPUTime()
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	if err := g.Wait(); err != nil {
		tb.Fatal(err)
	}
	return msPer(vaulttest.SelfCPUTime()-before, n)
}

// msPer is d shared among n, in milliseconds.
func msPer(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }

func (e *env) floorVaultCall(tb testing.TB, n int) float64 {
	ctx := context.Background()
	srv, err := vault.NewServer(vault.Options{Address: e.cfg.Vault.Address, CAFile: e.cfg.Vault.CAFile, Timeout: 10 * time.Second},
		e.layout, e.srvCreds, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := srv.LoginOnce(ctx); err != nil {
		tb.Fatal(err)
	}
	// An enrollment token to look up, as the server looks up each one; a
	// lookup by the server uses none of the token's uses.
	login, err := e.clientFor("").Logical().Write("auth/"+e.bundle.EnrollMount+"/login",
		map[string]any{"role_id": e.bundle.RoleID, "secret_id": e.bundle.SecretID})
	if err != nil {
		tb.Fatal(err)
	}
	token := login.Auth.ClientToken
	e.keep(token)
	if _, err := srv.LookupToken(ctx, token); err != nil { // the connection, set up once
		tb.Fatal(err)
	}
	return cpuOf(tb, n, func(int) error { _, err := srv.LookupToken(ctx, token); return err })
}

// floorHandshake measures the server's side of a TLS handshake with a new
// device: the server's goroutine is locked to its thread, and that
// thread's processor time is read around the handshake.
func (e *env) floorHandshake(tb testing.TB, n int) float64 {
	cert, err := tls.LoadX509KeyPair(e.cfg.TLS.CertFile, e.cfg.TLS.KeyFile)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(e.caPEM)) {
		tb.Fatal("no CA certificate")
	}
	// The server's settings and the device's (serverapi), defaults aside.
	srvCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	devCfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "localhost"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cpu time.Duration
		err error
	}
	spent := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r result
		defer func() { spent <- r }()
		for range n {
			c, err := ln.Accept()
			if err != nil {
				r.err = err
				return
			}
			var before, after unix.Rusage
			r.err = errors.Join(unix.Getrusage(unix.RUSAGE_THREAD, &before), tls.Server(c, srvCfg).Handshake(),
				unix.Getrusage(unix.RUSAGE_THREAD, &after))
			c.Close()
			if r.err != nil {
				return
			}
			r.cpu += time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
		}
	}()
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	for range n {
		c, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), devCfg)
		if err != nil {
			ln.Close()
			tb.Fatalf("handshake: %v (server side: %v)", err, (<-spent).err)
		}
		c.Close()
	}
	r := <-spent
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return msPer(r.cpu, n)
}

// floorCommits measures the three commits of a first enrollment (benchWorkers
// enrollments at once share commits, as in the server), in a state file of
// its own beside the server's.
func floorCommits(tb testing.TB, n int) float64 {
	ctx := context.Background()
	st, err := boltstore.Open(filepath.Join(tb.TempDir(), "floor.db"))
	if err != nil {
		tb.Fatal(err)
	}
	defer st.Close()
	st.SetAuditKey(audit.Key(make([]byte, audit.MinKeySize)))
	return cpuOf(tb, n, func(i int) error {
		now := time.Now().UTC()
		id := fmt.Sprintf("floor-%06d", i)
		e := inventory.Enrollment{ID: "E" + id, Fleet: fleet, DeviceID: id, IdempotencyKey: "K" + id,
			Kind: inventory.KindBootstrap, State: inventory.EnrollmentMinting, Generation: 1, CreatedAt: now, UpdatedAt: now}
		spend := &inventory.TokenSpend{Hash: "T" + id, Expires: now.Add(time.Minute), Fleet: fleet, Generation: 1}
		e, _, err := st.BeginEnrollment(ctx, e, now.Add(-time.Minute), spend)
		if err != nil {
			return err
		}
		d := inventory.Device{Fleet: fleet, ID: id, State: inventory.DeviceEnrolled, CreatedAt: now, UpdatedAt: now, Enrollments: 1}
		e.State, e.RoleID = inventory.EnrollmentWrapped, "role-"+id
		e.WrappingToken, e.WrappingAccessor, e.MintedAccessor = "hvs.floor-wrapping-token-"+id, "acc-w-"+id, "acc-s-"+id
		e.AckDeadline = now.Add(time.Minute)
		if err := st.Record(ctx, e, d, &audit.Record{Time: now, Actor: "device:" + id, Action: "enroll:wrapped", Fleet: fleet, DeviceID: id,
			Detail: "enrollment " + e.ID + " (bootstrap), generation 1, wrapping accessor " + e.WrappingAccessor}); err != nil {
			return err
		}
		e.State, e.WrappingToken, e.SecretIDAccessor, e.TokenAccessor = inventory.EnrollmentAcknowledged, "", "acc-s-"+id, "acc-t-"+id
		d.EnrolledAt, d.Sequence = now, 1
		return st.Record(ctx, e, d, &audit.Record{Time: now, Actor: "device:" + id, Action: "enroll:acknowledged", Fleet: fleet, DeviceID: id,
			Detail: "enrollment " + e.ID + " (bootstrap), sequence 1, secret ID accessor acc-s-" + id + ", token accessor acc-t-" + id})
	})
}
