package boltstore_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/inventory/inventorytest"
)

func TestConformance(t *testing.T) {
	inventorytest.Run(t, func(t *testing.T) inventory.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestSecondOpenIsLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := boltstore.Open(path); !errors.Is(err, boltstore.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

// A claim on an enrollment awaiting acknowledgement is the holding
// process's own: it blocks others while that process runs, costs the file
// no write, and does not outlive the process (a server restarted after a
// crash decides its enrollments at once, not after the claim went stale).
func TestClaimsEndWithTheProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e := inventory.Enrollment{ID: "e1", Fleet: "acme", DeviceID: "d1", IdempotencyKey: "k1", State: inventory.EnrollmentWrapped}
	if err := s.Record(ctx, e, inventory.Device{Fleet: "acme", ID: "d1"}, nil); err != nil {
		t.Fatal(err)
	}
	if won, err := s.ClaimAwaiting(ctx, "e1", now, now.Add(-time.Minute)); err != nil || !won {
		t.Fatalf("first claim = %v %v", won, err)
	}
	if won, _ := s.ClaimAwaiting(ctx, "e1", now, now.Add(-time.Minute)); won {
		t.Fatal("a held claim was taken")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = boltstore.Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if won, err := s.ClaimAwaiting(ctx, "e1", now, now.Add(-time.Minute)); err != nil || !won {
		t.Fatalf("claim after a restart = %v %v, want won: the claim ended with its process", won, err)
	}
	if aw, _ := s.AwaitingAck(ctx); len(aw) != 1 || aw[0].ID != "e1" {
		t.Fatalf("awaiting after a restart: %+v", aw)
	}
}
