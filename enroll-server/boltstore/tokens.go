package boltstore

import (
	"context"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// Consumed enrollment tokens and attestation challenges: single-use
// records, purged once expired.

// ConsumeToken implements inventory.Store.
func (s *Store) ConsumeToken(_ context.Context, t inventory.TokenSpend) error {
	return s.w.write(func(tx *bolt.Tx) error { return consume(tx, t) })
}

// consume records a token's consumption in tx; ErrConsumed when it was
// recorded before.
func consume(tx *bolt.Tx, t inventory.TokenSpend) error {
	b := tx.Bucket(bucketTokens)
	if b.Get([]byte(t.Hash)) != nil {
		return inventory.ErrConsumed
	}
	if err := b.Put([]byte(t.Hash), []byte(t.Expires.UTC().Format(time.RFC3339Nano))); err != nil {
		return err
	}
	if t.Generation > 0 {
		return countAttempt(tx, t.Fleet, t.Generation, time.Now())
	}
	return nil
}

// TokenConsumed implements inventory.Store.
func (s *Store) TokenConsumed(_ context.Context, hash string) (bool, error) {
	var seen bool
	err := s.db.View(func(tx *bolt.Tx) error {
		seen = tx.Bucket(bucketTokens).Get([]byte(hash)) != nil
		return nil
	})
	return seen, err
}

// PurgeTokens implements inventory.Store.
func (s *Store) PurgeTokens(_ context.Context, now time.Time) (int, error) {
	n := 0
	err := s.w.write(func(tx *bolt.Tx) error {
		n = 0
		c := tx.Bucket(bucketTokens).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			exp, err := time.Parse(time.RFC3339Nano, string(v))
			if err != nil || exp.Before(now) {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}

// PutChallenge implements inventory.Store.
func (s *Store) PutChallenge(_ context.Context, c inventory.Challenge) error {
	return s.w.write(func(tx *bolt.Tx) error {
		return put(tx.Bucket(bucketChallenges), []byte(c.ID), c)
	})
}

// TakeChallenge implements inventory.Store.
func (s *Store) TakeChallenge(_ context.Context, id string) (inventory.Challenge, error) {
	var c inventory.Challenge
	err := s.w.write(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChallenges)
		var err error
		if c, err = get[inventory.Challenge](b, []byte(id)); err != nil {
			return err
		}
		return b.Delete([]byte(id))
	})
	return c, err
}

// PurgeChallenges implements inventory.Store.
func (s *Store) PurgeChallenges(_ context.Context, now time.Time) (int, error) {
	n := 0
	err := s.w.write(func(tx *bolt.Tx) error {
		n = 0
		c := tx.Bucket(bucketChallenges).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var ch inventory.Challenge
			if json.Unmarshal(v, &ch) != nil || ch.ExpiresAt.Before(now) {
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
		}
		return nil
	})
	return n, err
}
