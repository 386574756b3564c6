// Package boltstore is the embedded bbolt implementation of the server's
// inventory.Store, for a single server. It is the only package on the server
// side that imports bbolt.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// SchemaVersion is the layout this package reads and writes.
const SchemaVersion = 3

var (
	bucketMeta        = []byte("meta")
	bucketDevices     = []byte("devices")
	bucketEnrollments = []byte("enrollments")
	bucketIdempotency = []byte("idempotency")
	bucketTokens      = []byte("consumed_tokens")
	bucketAlerts      = []byte("alerts")
	bucketAwaitingAck = []byte("awaiting_ack")
	bucketAttempts    = []byte("generation_attempts")
	bucketAudit       = []byte("audit")
	bucketChallenges  = []byte("challenges")
	keySchema         = []byte("schema_version")
)

// ErrLocked means another process holds the state file.
var ErrLocked = errors.New("state file is in use by another process (is another enroll-server running?)")

// Store is a bbolt-backed inventory. Writes go through group commit, which
// folds concurrent writers into one transaction and one fsync: without it
// every request waits for the disk in turn.
type Store struct {
	db   *bolt.DB
	w    committer
	jobs sync.Map // name → *sync.Mutex, for Exclusive
	// claims holds the claims on enrollments awaiting acknowledgement
	// (ClaimAwaiting), by enrollment ID: when each was taken.
	claims claims
	// auditKey MACs each audit record; nil: the chain alone.
	auditKey audit.Key
}

// SetAuditKey makes every audit record appended from now on carry an HMAC
// under key. Call it before the store is used.
func (s *Store) SetAuditKey(key audit.Key) { s.auditKey = key }

var _ inventory.Store = (*Store)(nil)

// Open opens or creates the state file (mode 0600) and migrates it to the
// current schema.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// The freelist is rebuilt from the file on open rather than written
	// with every commit: fewer pages per fsync for a write-heavy store.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second,
		NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{db: db, w: committer{db: db}}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

func (s *Store) migrate() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		v := 0
		if raw := meta.Get(keySchema); raw != nil {
			if len(raw) != 8 {
				return errors.New("corrupt schema version")
			}
			v = int(binary.BigEndian.Uint64(raw))
		}
		if v > SchemaVersion {
			return fmt.Errorf("schema version %d is newer than this binary understands (%d)", v, SchemaVersion)
		}
		// Version 0 → 1: create the buckets; 1 → 2: attestation challenges;
		// 2 → 3: the devices' state index. Later versions add steps here.
		for _, b := range [][]byte{bucketDevices, bucketEnrollments, bucketIdempotency, bucketTokens, bucketAlerts,
			bucketAwaitingAck, bucketAttempts, bucketAudit, bucketChallenges, bucketByState, bucketStateOf} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v < 3 {
			if err := indexStates(tx); err != nil {
				return fmt.Errorf("index the devices by state: %w", err)
			}
		}
		return meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion))
	})
}

// Close closes the state file.
func (s *Store) Close() error { return s.db.Close() }

func deviceKey(fleet, id string) []byte { return []byte(fleet + "/" + id) }

func idemKey(e inventory.Enrollment) []byte {
	return []byte(e.Fleet + "/" + e.DeviceID + "/" + e.IdempotencyKey)
}

func get[T any](b *bolt.Bucket, key []byte) (T, error) {
	var v T
	raw := b.Get(key)
	if raw == nil {
		return v, inventory.ErrNotFound
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("decode record %s: %w", key, err)
	}
	return v, nil
}

func put(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

// BeginEnrollment implements inventory.Store.
func (s *Store) BeginEnrollment(_ context.Context, e inventory.Enrollment, staleBefore time.Time, spend *inventory.TokenSpend) (inventory.Enrollment, bool, error) {
	var out inventory.Enrollment
	var claimed, busy bool
	// A write may run more than once: it sets every result afresh.
	err := s.w.write(func(tx *bolt.Tx) error {
		out, claimed, busy = inventory.Enrollment{}, false, false
		if spend != nil {
			if err := consume(tx, *spend); err != nil {
				return err
			}
		}
		enrollments := tx.Bucket(bucketEnrollments)
		if id := tx.Bucket(bucketIdempotency).Get(idemKey(e)); id != nil {
			prev, err := get[inventory.Enrollment](enrollments, id)
			if err != nil {
				return err
			}
			out = prev
			return nil
		}
		devices := tx.Bucket(bucketDevices)
		d, err := get[inventory.Device](devices, deviceKey(e.Fleet, e.DeviceID))
		if err != nil && !errors.Is(err, inventory.ErrNotFound) {
			return err
		}
		if errors.Is(err, inventory.ErrNotFound) {
			d = inventory.Device{Fleet: e.Fleet, ID: e.DeviceID, CreatedAt: e.CreatedAt}
		}
		if d.InFlight != "" && d.InFlight != e.ID && d.InFlightSince.After(staleBefore) {
			// Busy, but the token's consumption (if any) is kept.
			busy = true
			return nil
		}
		d.InFlight, d.InFlightSince, d.UpdatedAt = e.ID, e.CreatedAt, e.CreatedAt
		if err := putDevice(tx, d); err != nil {
			return err
		}
		if err := put(enrollments, []byte(e.ID), e); err != nil {
			return err
		}
		out, claimed = e, true
		return tx.Bucket(bucketIdempotency).Put(idemKey(e), []byte(e.ID))
	})
	if err == nil && busy {
		err = inventory.ErrBusy
	}
	return out, claimed, err
}

// Record implements inventory.Store. A record that decides an enrollment
// (any state but wrapped) ends the claim on it.
func (s *Store) Record(_ context.Context, e inventory.Enrollment, d inventory.Device, rec *audit.Record) error {
	err := s.w.write(func(tx *bolt.Tx) error {
		if rec != nil {
			if _, err := s.appendAudit(tx, *rec); err != nil {
				return err
			}
		}
		if err := put(tx.Bucket(bucketEnrollments), []byte(e.ID), e); err != nil {
			return err
		}
		awaiting := tx.Bucket(bucketAwaitingAck)
		if e.State == inventory.EnrollmentWrapped {
			if k, _ := awaiting.Cursor().Seek([]byte(e.ID)); !bytes.Equal(k, []byte(e.ID)) {
				if err := awaiting.Put([]byte(e.ID), nil); err != nil {
					return err
				}
			}
		} else if err := awaiting.Delete([]byte(e.ID)); err != nil {
			return err
		}
		return putDevice(tx, d)
	})
	if err == nil && e.State != inventory.EnrollmentWrapped {
		s.claims.forget(e.ID)
	}
	return err
}

// ClaimAwaiting implements inventory.Store. The claims live in memory, not
// in the file: one process holds the file (bbolt locks it), so a claim
// needs no other replica to see it, and writing it would cost an
// acknowledgement a commit and an fsync of its own. A claim held by a
// process that stopped ends with it, which is also when it could no longer
// be acted on.
func (s *Store) ClaimAwaiting(_ context.Context, id string, now, staleBefore time.Time) (bool, error) {
	s.claims.mu.Lock()
	defer s.claims.mu.Unlock()
	awaits := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketAwaitingAck).Cursor().Seek([]byte(id))
		awaits = bytes.Equal(k, []byte(id))
		return nil
	}); err != nil {
		return false, err
	}
	if !awaits {
		delete(s.claims.at, id)
		return false, nil
	}
	if at, held := s.claims.at[id]; held && !at.Before(staleBefore) {
		return false, nil
	}
	if s.claims.at == nil {
		s.claims.at = map[string]time.Time{}
	}
	s.claims.at[id] = now
	return true, nil
}

// ReleaseAwaiting implements inventory.Store.
func (s *Store) ReleaseAwaiting(_ context.Context, id string) error {
	s.claims.forget(id)
	return nil
}

// claims are the claims on enrollments awaiting acknowledgement.
type claims struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (c *claims) forget(id string) {
	c.mu.Lock()
	delete(c.at, id)
	c.mu.Unlock()
}

// AwaitingAck implements inventory.Store.
func (s *Store) AwaitingAck(_ context.Context) ([]inventory.Enrollment, error) {
	var out []inventory.Enrollment
	err := s.db.View(func(tx *bolt.Tx) error {
		enrollments := tx.Bucket(bucketEnrollments)
		return tx.Bucket(bucketAwaitingAck).ForEach(func(k, _ []byte) error {
			e, err := get[inventory.Enrollment](enrollments, k)
			if err != nil {
				return err
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

func attemptKey(fleet string, gen int) []byte {
	return binary.BigEndian.AppendUint64([]byte(fleet+"/"), uint64(gen))
}

func countAttempt(tx *bolt.Tx, fleet string, gen int, at time.Time) error {
	b := tx.Bucket(bucketAttempts)
	u, err := get[inventory.GenerationUse](b, attemptKey(fleet, gen))
	if err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return err
	}
	u.Generation, u.Attempts, u.Last = gen, u.Attempts+1, at.UTC()
	return put(b, attemptKey(fleet, gen), u)
}

// GenerationUse implements inventory.Store.
func (s *Store) GenerationUse(_ context.Context, fleet string) ([]inventory.GenerationUse, error) {
	var out []inventory.GenerationUse
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAttempts).Cursor()
		prefix := []byte(fleet + "/")
		for k, v := c.Seek(prefix); k != nil && hasPrefix(k, prefix); k, v = c.Next() {
			var u inventory.GenerationUse
			if err := json.Unmarshal(v, &u); err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

// Enrollment implements inventory.Store.
func (s *Store) Enrollment(_ context.Context, id string) (inventory.Enrollment, error) {
	var e inventory.Enrollment
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		e, err = get[inventory.Enrollment](tx.Bucket(bucketEnrollments), []byte(id))
		return err
	})
	return e, err
}

// Device implements inventory.Store.
func (s *Store) Device(_ context.Context, fleet, id string) (inventory.Device, error) {
	var d inventory.Device
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		d, err = get[inventory.Device](tx.Bucket(bucketDevices), deviceKey(fleet, id))
		return err
	})
	return d, err
}

// SaveDevice implements inventory.Store.
func (s *Store) SaveDevice(_ context.Context, d inventory.Device) error {
	return s.w.write(func(tx *bolt.Tx) error {
		return putDevice(tx, d)
	})
}

// Devices implements inventory.Store. An empty fleet lists every fleet.
func (s *Store) Devices(_ context.Context, fleet string) ([]inventory.Device, error) {
	var out []inventory.Device
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDevices).Cursor()
		prefix := []byte(fleet + "/")
		k, v := c.First()
		if fleet != "" {
			k, v = c.Seek(prefix)
		}
		for ; k != nil; k, v = c.Next() {
			if fleet != "" && !hasPrefix(k, prefix) {
				break
			}
			var d inventory.Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode device %s: %w", k, err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

func hasPrefix(b, p []byte) bool { return len(b) >= len(p) && string(b[:len(p)]) == string(p) }

// Exclusive implements inventory.Store: a bbolt file has one server, so
// only this process's other runs of the job can be in the way.
func (s *Store) Exclusive(ctx context.Context, name string, fn func(context.Context) error) (bool, error) {
	m, _ := s.jobs.LoadOrStore(name, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	if !mu.TryLock() {
		return false, nil
	}
	defer mu.Unlock()
	return true, fn(ctx)
}
