package fleetsim

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/vault"
)

// A device's failed Vault call is counted: the storm's "no Vault failure
// at the devices" rests on it.
func TestCountedVaultCountsFailures(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close() // nothing listens there now
	c, err := vault.New(addr, "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var failures atomic.Int64
	v := countedVault{Client: c, failures: &failures}
	if _, err := v.Login(context.Background(), "edge-enroll", "r", "s"); err == nil {
		t.Fatal("login against nothing succeeded")
	}
	if _, err := v.UnwrapSecretID(context.Background(), "w"); err == nil {
		t.Fatal("unwrap against nothing succeeded")
	}
	if n := failures.Load(); n != 2 {
		t.Fatalf("%d failures counted, want 2", n)
	}
}
