package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// DevicesPage implements inventory.Store. The devices bucket is keyed
// "fleet/id", so a page seeks to its cursor (or to the fleet and ID
// prefix) and reads on from there; the ID prefix is checked on the key
// before a record is decoded. A listing by state walks the state index
// instead, in the same order, and reads only the devices it names.
func (s *Store) DevicesPage(_ context.Context, q inventory.DeviceQuery) ([]inventory.Device, string, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var lo []byte // every device key of the query starts with lo when q.Fleet is set
	if q.Fleet != "" {
		lo = deviceKey(q.Fleet, q.Prefix)
	}
	var out []inventory.Device
	next := ""
	err := s.db.View(func(tx *bolt.Tx) error {
		devices := tx.Bucket(bucketDevices)
		c, base := devices.Cursor(), []byte(nil) // index keys are base + device key
		if q.State != "" {
			c, base = tx.Bucket(bucketByState).Cursor(), stateKey(q.State, nil)
		}
		start, after := lo, []byte(q.After)
		if q.After != "" && bytes.Compare(after, lo) >= 0 {
			start = after
		}
		k, v := c.Seek(append(bytes.Clone(base), start...))
		if q.After != "" && bytes.Equal(k, append(bytes.Clone(base), after...)) {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			if !bytes.HasPrefix(k, base) {
				break
			}
			key := k[len(base):]
			if q.Fleet != "" && !bytes.HasPrefix(key, lo) {
				break
			}
			if _, id, _ := bytes.Cut(key, []byte("/")); !bytes.HasPrefix(id, []byte(q.Prefix)) {
				continue
			}
			if base != nil {
				if v = devices.Get(key); v == nil {
					return fmt.Errorf("the state index names device %s, which is not stored", key)
				}
			}
			var d inventory.Device
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode device %s: %w", key, err)
			}
			if !q.Match(d) {
				continue
			}
			if len(out) == q.Limit {
				next = inventory.Cursor(out[len(out)-1])
				return nil
			}
			out = append(out, d)
		}
		return nil
	})
	return out, next, err
}

// AcknowledgeAlert implements inventory.Store.
func (s *Store) AcknowledgeAlert(_ context.Context, seq uint64, by string, at time.Time) (inventory.Alert, error) {
	var a inventory.Alert
	err := s.w.write(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAlerts)
		key := binary.BigEndian.AppendUint64(nil, seq)
		var err error
		if a, err = get[inventory.Alert](b, key); err != nil {
			return err
		}
		if a.AckedBy != "" {
			return nil
		}
		a.AckedBy, a.AckedAt = by, at
		return put(b, key, a)
	})
	return a, err
}

// SaveDevices stores many devices in one transaction: a bulk load (an
// import, a benchmark's inventory) without a disk sync per device.
func (s *Store) SaveDevices(_ context.Context, devs []inventory.Device) error {
	return s.w.write(func(tx *bolt.Tx) error {
		for _, d := range devs {
			if err := putDevice(tx, d); err != nil {
				return err
			}
		}
		return nil
	})
}

// deviceTally is the part of a stored device the counts need: decoding
// only it skips the rest of each record's fields.
type deviceTally struct {
	Fleet       string    `json:"fleet"`
	State       string    `json:"state"`
	Generation  int       `json:"generation"`
	Enrollments int       `json:"enrollments"`
	DeviceKey   string    `json:"device_key"`
	EnrolledAt  time.Time `json:"enrolled_at"`
}

// CountDevices implements inventory.Store.
func (s *Store) CountDevices(_ context.Context, since time.Time) ([]inventory.DeviceCount, int, error) {
	counts := map[inventory.DeviceCount]*inventory.DeviceCount{}
	recent := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
			var d deviceTally
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode device %s: %w", k, err)
			}
			inventory.Tally(counts, d.Fleet, d.State, d.Generation, d.Enrollments, d.DeviceKey)
			if !d.EnrolledAt.IsZero() && !d.EnrolledAt.Before(since) {
				recent++
			}
			return nil
		})
	})
	out := make([]inventory.DeviceCount, 0, len(counts))
	for _, c := range counts {
		out = append(out, *c)
	}
	return out, recent, err
}
