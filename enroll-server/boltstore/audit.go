package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// The audit log and the alerts: append-only records.

// AppendAudit implements inventory.Store. Sealing happens inside the write
// transaction, so concurrent appends cannot fork the chain.
func (s *Store) AppendAudit(_ context.Context, r audit.Record) (audit.Record, error) {
	var sealed audit.Record
	err := s.w.write(func(tx *bolt.Tx) error {
		var err error
		sealed, err = s.appendAudit(tx, r)
		return err
	})
	return sealed, err
}

func (s *Store) appendAudit(tx *bolt.Tx, r audit.Record) (audit.Record, error) {
	b := tx.Bucket(bucketAudit)
	var prev *audit.Record
	if k, v := b.Cursor().Last(); k != nil {
		var last audit.Record
		if err := json.Unmarshal(v, &last); err != nil {
			return r, fmt.Errorf("decode last audit record: %w", err)
		}
		prev = &last
	}
	r = audit.Seal(prev, r, s.auditKey)
	return r, put(b, binary.BigEndian.AppendUint64(nil, r.Seq), r)
}

// Audit implements inventory.Store.
func (s *Store) Audit(_ context.Context) ([]audit.Record, error) {
	var out []audit.Record
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			var r audit.Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// AddAlert implements inventory.Store.
func (s *Store) AddAlert(_ context.Context, a inventory.Alert) (inventory.Alert, error) {
	err := s.w.write(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAlerts)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		a.Seq = seq
		return put(b, binary.BigEndian.AppendUint64(nil, seq), a)
	})
	return a, err
}

// Alerts implements inventory.Store.
func (s *Store) Alerts(_ context.Context) ([]inventory.Alert, error) {
	var out []inventory.Alert
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAlerts).ForEach(func(_, v []byte) error {
			var a inventory.Alert
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			out = append(out, a)
			return nil
		})
	})
	return out, err
}
