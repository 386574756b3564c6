package boltstore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// A state file written before the state index existed (schema 2) is
// indexed when it is opened: its devices are listed by state at once.
func TestSchemaTwoFileGetsItsStateIndex(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		d := inventory.Device{Fleet: "acme", ID: fmt.Sprintf("d-%02d", i), State: inventory.DeviceEnrolled}
		if i%10 == 3 {
			d.State = inventory.DeviceQuarantined
		}
		if err := s.SaveDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// Back to what version 2 wrote: no index, schema 2.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"devices_by_state", "device_state"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema_version"), binary.BigEndian.AppendUint64(nil, 2))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, next, err := s.DevicesPage(ctx, inventory.DeviceQuery{Fleet: "acme", State: inventory.DeviceQuarantined})
	if err != nil || next != "" || len(got) != 3 {
		t.Fatalf("quarantined devices after the upgrade: %d (next %q), %v; want 3", len(got), next, err)
	}
}
