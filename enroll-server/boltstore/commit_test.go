package boltstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openCommitter(t *testing.T) *committer {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &committer{db: db}
}

// Concurrent writers all land.
func TestCommitterGroupsConcurrentWrites(t *testing.T) {
	c := openCommitter(t)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.write(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("k"))
				if err != nil {
					return err
				}
				return b.Put(fmt.Appendf(nil, "%03d", i), []byte("v"))
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var keys int
	_ = c.db.View(func(tx *bolt.Tx) error { keys = tx.Bucket([]byte("k")).Stats().KeyN; return nil })
	if keys != n {
		t.Fatalf("%d keys, want %d", keys, n)
	}
}

// A failing or panicking write gets its own error and rolls back only
// itself; the writes grouped with it still land.
func TestCommitterIsolatesFailures(t *testing.T) {
	c := openCommitter(t)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	results := make([]error, 30)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.write(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists([]byte("k"))
				if err != nil {
					return err
				}
				if err := b.Put(fmt.Appendf(nil, "%02d", i), []byte("v")); err != nil {
					return err
				}
				switch i % 10 {
				case 3:
					return boom
				case 7:
					panic("bad write")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	_ = c.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("k"))
		for i, err := range results {
			got := b != nil && b.Get(fmt.Appendf(nil, "%02d", i)) != nil
			switch i % 10 {
			case 3:
				if !errors.Is(err, boom) || got {
					t.Errorf("write %d: err %v, stored %v; want boom and nothing stored", i, err, got)
				}
			case 7:
				if err == nil || got {
					t.Errorf("write %d: err %v, stored %v; want the panic as an error and nothing stored", i, err, got)
				}
			default:
				if err != nil || !got {
					t.Errorf("write %d: err %v, stored %v; want it stored", i, err, got)
				}
			}
		}
		return nil
	})
}
