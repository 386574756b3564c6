package e2e

import (
	"testing"

	"github.com/edge-enroll/enroll/pkg/bundle"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// A replica caches the fleet's generations; a rotation made on another
// replica is seen at once by a device of the new generation (its unknown
// generation makes the replica read the record again), and the replica's
// later enrollments read it no more.
func TestReplicaSeesAnotherReplicasRotationAtOnce(t *testing.T) {
	e := newEnv(t, withPostgres(t))
	other, _ := e.startReplica()
	via := func(g bundle.Bundle) func(*bundle.Bundle) {
		return func(b *bundle.Bundle) { *b = g; b.ServerURL = other }
	}
	gen1 := e.bundle
	e.enroll(e.newDevice("warm-1", via(gen1))) // the replica caches generation 1 only

	var rot wire.Rotated
	e.adminJSON("POST", "/v1/admin/fleets/acme/rotate", "", &rot) // on the first server
	e.keep(rot.SecretID)
	gen2 := gen1
	gen2.RoleID, gen2.SecretID, gen2.Generation = rot.RoleID, rot.SecretID, rot.Generation
	st := e.enroll(e.newDevice("new-image", via(gen2)))
	if !st.Acknowledged {
		t.Fatal("the generation 2 device was not enrolled through the other replica")
	}
	if got := e.logs.lines("no longer accepted"); len(got) != 0 {
		t.Fatalf("a replica refused the new generation: %v", got[0])
	}
}
