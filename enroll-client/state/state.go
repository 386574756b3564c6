// Package state is enroll-client's durable store: a bbolt file owned by one
// process, holding opaque values under string keys. It is the only package
// on the client side that imports bbolt.
//
// Every WriteState is one bbolt transaction, fsynced before it returns, so
// a crash or power cut leaves either the old value or the new one.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-enroll/enroll/pkg/privatedir"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the bucket layout this package reads and writes.
const SchemaVersion = 1

// Errors callers branch on.
var (
	// ErrNotFound: ReadState found no value under the key.
	ErrNotFound = errors.New("no state under that key")
	// ErrLocked: another process holds the state file.
	ErrLocked = errors.New("state file is in use by another process (is enroll-client already running?)")
	// ErrCorrupt: the file cannot be read as a state file.
	ErrCorrupt = errors.New("state file is corrupt")
)

var (
	bucketMeta  = []byte("meta")
	bucketState = []byte("state")
	keySchema   = []byte("schema_version")
)

// Store is an open state file.
type Store struct{ db *bolt.DB }

// Open opens or creates the state file with mode 0600 in a 0700 directory.
// A file held by another process fails after a short wait with ErrLocked; a
// damaged file fails with ErrCorrupt and is never replaced silently.
func Open(path string) (s *Store, err error) {
	if err := privatedir.Make(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if err := checkFile(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() {
		// bbolt panics on some kinds of damage instead of returning an error.
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		switch {
		case errors.Is(err, bolterrors.ErrTimeout):
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
			return nil, fmt.Errorf("open %s: %w: %v", path, ErrCorrupt, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s = &Store{db: db}
	if err := s.check(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// check runs bbolt's own consistency check over the whole (small) file.
func (s *Store) check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		return nil
	})
}

func (s *Store) migrate() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		v := uint64(0)
		if raw := meta.Get(keySchema); raw != nil {
			if len(raw) != 8 {
				return fmt.Errorf("%w: bad schema version record", ErrCorrupt)
			}
			v = binary.BigEndian.Uint64(raw)
		}
		if v > SchemaVersion {
			return fmt.Errorf("state schema version %d is newer than this binary understands (%d); upgrade enroll-client", v, SchemaVersion)
		}
		// 0 → 1: the state bucket. Later versions add their steps here.
		if _, err := tx.CreateBucketIfNotExists(bucketState); err != nil {
			return err
		}
		return meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion))
	})
}

// ReadState returns a copy of the value under key, or ErrNotFound.
func (s *Store) ReadState(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketState).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		out = append([]byte(nil), v...) // bbolt's slice dies with the transaction
		return nil
	})
	return out, err
}

// WriteState stores value under key durably.
func (s *Store) WriteState(key string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Put([]byte(key), value)
	})
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }
