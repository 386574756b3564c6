package pgstore_test

import (
	"context"
	"testing"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/inventory/inventorytest"
	"github.com/edge-enroll/enroll/enroll-server/pgstore"
	"github.com/edge-enroll/enroll/test/pgtest"
)

func TestConformance(t *testing.T) {
	pg := pgtest.Start(t)
	inventorytest.Run(t, func(t *testing.T) inventory.Store {
		s, err := pgstore.Open(context.Background(), pg.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// Two replicas migrating the same database at once both end up working.
func TestConcurrentMigration(t *testing.T) {
	pg := pgtest.Start(t)
	dsn := pg.NewDatabase(t)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			s, err := pgstore.Open(context.Background(), dsn)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
