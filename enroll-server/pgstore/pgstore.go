// Package pgstore is the PostgreSQL implementation of inventory.Store, for
// several enroll-server replicas sharing one database. It is the only
// package that imports pgx.
//
// Records are JSON documents, as in the bbolt store; what several replicas
// must agree on is serialised with transaction-scoped advisory locks: one
// per device for enrollment claims, one for the audit chain.
package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// Store is a PostgreSQL-backed inventory.
type Store struct {
	db *pgxpool.Pool
	// auditKey MACs each audit record; nil: the chain alone.
	auditKey audit.Key
}

// SetAuditKey makes every audit record appended from now on carry an HMAC
// under key. Call it before the store is used.
func (s *Store) SetAuditKey(key audit.Key) { s.auditKey = key }

var _ inventory.Store = (*Store)(nil)

// migrations, in order; the schema version is the number applied.
var migrations = []string{
	`CREATE TABLE devices (fleet text NOT NULL, id text NOT NULL, data jsonb NOT NULL, PRIMARY KEY (fleet, id));
	 CREATE TABLE enrollments (id text PRIMARY KEY, fleet text NOT NULL, device_id text NOT NULL,
	   idempotency_key text NOT NULL, data jsonb NOT NULL, UNIQUE (fleet, device_id, idempotency_key));
	 CREATE TABLE awaiting_ack (id text PRIMARY KEY);
	 CREATE TABLE consumed_tokens (hash text PRIMARY KEY, expires timestamptz NOT NULL);
	 CREATE TABLE alerts (seq bigserial PRIMARY KEY, data jsonb NOT NULL);
	 CREATE TABLE generation_attempts (fleet text NOT NULL, generation int NOT NULL, attempts int NOT NULL,
	   last timestamptz NOT NULL, PRIMARY KEY (fleet, generation));
	 CREATE TABLE audit (seq bigint PRIMARY KEY, data jsonb NOT NULL);`,
	`CREATE TABLE challenges (id text PRIMARY KEY, expires timestamptz NOT NULL, data jsonb NOT NULL);`,
	`ALTER TABLE awaiting_ack ADD COLUMN claimed_at timestamptz;`,
	// Listings by state or generation in the primary key's order: a
	// thousand quarantined devices among a million are read by index.
	`CREATE INDEX devices_state ON devices (fleet, (data->>'state'), id);
	 CREATE INDEX devices_generation ON devices (fleet, ((data->>'generation')::int), id);`,
}

// Open connects and migrates the schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		// One migrating replica at a time.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7391)`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version int NOT NULL)`); err != nil {
			return err
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM schema_version`).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, err := tx.Exec(ctx, `INSERT INTO schema_version VALUES (0)`); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("postgres schema version %d is newer than this binary understands (%d)", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate to schema %d: %w", v+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE schema_version SET version = $1`, v)
		return err
	})
}

// Close closes the pool.
func (s *Store) Close() error { s.db.Close(); return nil }

func lockKey(parts ...string) int64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return int64(h.Sum64())
}

func scan[T any](row pgx.Row) (T, error) {
	var v T
	var raw []byte
	if err := row.Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return v, inventory.ErrNotFound
		}
		return v, err
	}
	return v, json.Unmarshal(raw, &v)
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func putDevice(ctx context.Context, x execer, d inventory.Device) error {
	_, err := x.Exec(ctx, `INSERT INTO devices (fleet, id, data) VALUES ($1, $2, $3)
		ON CONFLICT (fleet, id) DO UPDATE SET data = EXCLUDED.data`, d.Fleet, d.ID, d)
	return err
}

func putEnrollment(ctx context.Context, x execer, e inventory.Enrollment) error {
	_, err := x.Exec(ctx, `INSERT INTO enrollments (id, fleet, device_id, idempotency_key, data) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data`, e.ID, e.Fleet, e.DeviceID, e.IdempotencyKey, e)
	return err
}

// BeginEnrollment implements inventory.Store.
func (s *Store) BeginEnrollment(ctx context.Context, e inventory.Enrollment, staleBefore time.Time, spend *inventory.TokenSpend) (inventory.Enrollment, bool, error) {
	var out inventory.Enrollment
	var claimed, busy bool
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if spend != nil {
			if err := spendToken(ctx, tx, spend.Hash, spend.Expires); err != nil {
				return err
			}
		}
		var err error
		if out, claimed, busy, err = claimIn(ctx, tx, e, staleBefore); err != nil {
			return err
		}
		if spend != nil {
			// Counted last: the fleet's counter row stays locked only at
			// the end of the transaction, not for the whole claim.
			return countSpend(ctx, tx, *spend)
		}
		return nil
	})
	if err == nil && busy {
		err = inventory.ErrBusy
	}
	return out, claimed, err
}

// claimIn is BeginEnrollment's claim in tx: the enrollment that holds the
// key (claimed when it is e), or busy when the device has another one
// minting since after staleBefore (nothing is written then).
func claimIn(ctx context.Context, tx pgx.Tx, e inventory.Enrollment, staleBefore time.Time) (out inventory.Enrollment, claimed, busy bool, err error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("device", e.Fleet, e.DeviceID)); err != nil {
		return out, false, false, err
	}
	prev, err := scan[inventory.Enrollment](tx.QueryRow(ctx,
		`SELECT data FROM enrollments WHERE fleet = $1 AND device_id = $2 AND idempotency_key = $3`, e.Fleet, e.DeviceID, e.IdempotencyKey))
	if err == nil {
		return prev, false, false, nil
	}
	if !errors.Is(err, inventory.ErrNotFound) {
		return out, false, false, err
	}
	d, err := scan[inventory.Device](tx.QueryRow(ctx, `SELECT data FROM devices WHERE fleet = $1 AND id = $2`, e.Fleet, e.DeviceID))
	if errors.Is(err, inventory.ErrNotFound) {
		d, err = inventory.Device{Fleet: e.Fleet, ID: e.DeviceID, CreatedAt: e.CreatedAt}, nil
	}
	if err != nil {
		return out, false, false, err
	}
	if d.InFlight != "" && d.InFlight != e.ID && d.InFlightSince.After(staleBefore) {
		return out, false, true, nil
	}
	d.InFlight, d.InFlightSince, d.UpdatedAt = e.ID, e.CreatedAt, e.CreatedAt
	if err := putDevice(ctx, tx, d); err != nil {
		return out, false, false, err
	}
	if err := putEnrollment(ctx, tx, e); err != nil {
		return out, false, false, err
	}
	return e, true, false, nil
}

// Record implements inventory.Store.
func (s *Store) Record(ctx context.Context, e inventory.Enrollment, d inventory.Device, rec *audit.Record) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if rec != nil {
			if _, err := s.appendAudit(ctx, tx, *rec); err != nil {
				return err
			}
		}
		if err := putEnrollment(ctx, tx, e); err != nil {
			return err
		}
		q := `DELETE FROM awaiting_ack WHERE id = $1`
		if e.State == inventory.EnrollmentWrapped {
			q = `INSERT INTO awaiting_ack (id) VALUES ($1) ON CONFLICT DO NOTHING`
		}
		if _, err := tx.Exec(ctx, q, e.ID); err != nil {
			return err
		}
		return putDevice(ctx, tx, d)
	})
}

// ClaimAwaiting implements inventory.Store.
func (s *Store) ClaimAwaiting(ctx context.Context, id string, now, staleBefore time.Time) (bool, error) {
	tag, err := s.db.Exec(ctx, `UPDATE awaiting_ack SET claimed_at = $2 WHERE id = $1 AND (claimed_at IS NULL OR claimed_at < $3)`,
		id, now, staleBefore)
	return err == nil && tag.RowsAffected() == 1, err
}

// ReleaseAwaiting implements inventory.Store.
func (s *Store) ReleaseAwaiting(ctx context.Context, id string) error {
	_, err := s.db.Exec(ctx, `UPDATE awaiting_ack SET claimed_at = NULL WHERE id = $1`, id)
	return err
}

// Enrollment implements inventory.Store.
func (s *Store) Enrollment(ctx context.Context, id string) (inventory.Enrollment, error) {
	return scan[inventory.Enrollment](s.db.QueryRow(ctx, `SELECT data FROM enrollments WHERE id = $1`, id))
}

// Device implements inventory.Store.
func (s *Store) Device(ctx context.Context, fleet, id string) (inventory.Device, error) {
	return scan[inventory.Device](s.db.QueryRow(ctx, `SELECT data FROM devices WHERE fleet = $1 AND id = $2`, fleet, id))
}

// SaveDevice implements inventory.Store.
func (s *Store) SaveDevice(ctx context.Context, d inventory.Device) error {
	return putDevice(ctx, s.db, d)
}

func list[T any](ctx context.Context, db *pgxpool.Pool, q string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var out []T
	for rows.Next() {
		v, err := scan[T](rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Devices implements inventory.Store.
func (s *Store) Devices(ctx context.Context, fleet string) ([]inventory.Device, error) {
	if fleet == "" {
		return list[inventory.Device](ctx, s.db, `SELECT data FROM devices ORDER BY fleet, id`)
	}
	return list[inventory.Device](ctx, s.db, `SELECT data FROM devices WHERE fleet = $1 ORDER BY id`, fleet)
}

// AwaitingAck implements inventory.Store.
func (s *Store) AwaitingAck(ctx context.Context) ([]inventory.Enrollment, error) {
	return list[inventory.Enrollment](ctx, s.db, `SELECT e.data FROM enrollments e JOIN awaiting_ack a ON a.id = e.id ORDER BY e.id`)
}

// ConsumeToken implements inventory.Store.
func (s *Store) ConsumeToken(ctx context.Context, t inventory.TokenSpend) error {
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error { return consume(ctx, tx, t) })
}

// consume records a token's consumption in tx; ErrConsumed when it was
// recorded before.
func consume(ctx context.Context, tx pgx.Tx, t inventory.TokenSpend) error {
	if err := spendToken(ctx, tx, t.Hash, t.Expires); err != nil {
		return err
	}
	return countSpend(ctx, tx, t)
}

// countSpend counts the presentation of t's generation, when it has one.
func countSpend(ctx context.Context, tx pgx.Tx, t inventory.TokenSpend) error {
	if t.Generation > 0 {
		return countAttempt(ctx, tx, t.Fleet, t.Generation, time.Now())
	}
	return nil
}

// spendToken records a token hash until expires; ErrConsumed when it was
// recorded before.
func spendToken(ctx context.Context, tx pgx.Tx, hash string, expires time.Time) error {
	tag, err := tx.Exec(ctx, `INSERT INTO consumed_tokens (hash, expires) VALUES ($1, $2) ON CONFLICT DO NOTHING`, hash, expires)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return inventory.ErrConsumed
	}
	return nil
}

// TokenConsumed implements inventory.Store.
func (s *Store) TokenConsumed(ctx context.Context, hash string) (bool, error) {
	var one int
	err := s.db.QueryRow(ctx, `SELECT 1 FROM consumed_tokens WHERE hash = $1`, hash).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// PurgeTokens implements inventory.Store.
func (s *Store) PurgeTokens(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM consumed_tokens WHERE expires < $1`, now)
	return int(tag.RowsAffected()), err
}

// Exclusive implements inventory.Store with a session advisory lock: the
// replica that holds it runs the job, the others skip this round.
func (s *Store) Exclusive(ctx context.Context, name string, fn func(context.Context) error) (bool, error) {
	conn, err := s.db.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	key := lockKey("job", name)
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&got); err != nil || !got {
		return false, err
	}
	defer func() {
		// Unlock on a fresh context: the job's may have ended.
		unlockCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(unlockCtx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			conn.Conn().Close(unlockCtx) // a closed session drops its locks
		}
	}()
	return true, fn(ctx)
}

// PutChallenge implements inventory.Store.
func (s *Store) PutChallenge(ctx context.Context, c inventory.Challenge) error {
	_, err := s.db.Exec(ctx, `INSERT INTO challenges (id, expires, data) VALUES ($1, $2, $3)`, c.ID, c.ExpiresAt, c)
	return err
}

// TakeChallenge implements inventory.Store.
func (s *Store) TakeChallenge(ctx context.Context, id string) (inventory.Challenge, error) {
	var c inventory.Challenge
	err := s.db.QueryRow(ctx, `DELETE FROM challenges WHERE id = $1 RETURNING data`, id).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, inventory.ErrNotFound
	}
	return c, err
}

// PurgeChallenges implements inventory.Store.
func (s *Store) PurgeChallenges(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.db.Exec(ctx, `DELETE FROM challenges WHERE expires < $1`, now)
	return int(tag.RowsAffected()), err
}

// AddAlert implements inventory.Store.
func (s *Store) AddAlert(ctx context.Context, a inventory.Alert) (inventory.Alert, error) {
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `INSERT INTO alerts (data) VALUES ('{}') RETURNING seq`).Scan(&a.Seq); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE alerts SET data = $2 WHERE seq = $1`, a.Seq, a)
		return err
	})
	return a, err
}

// Alerts implements inventory.Store.
func (s *Store) Alerts(ctx context.Context) ([]inventory.Alert, error) {
	return list[inventory.Alert](ctx, s.db, `SELECT data FROM alerts ORDER BY seq`)
}

func countAttempt(ctx context.Context, x execer, fleet string, gen int, at time.Time) error {
	_, err := x.Exec(ctx, `INSERT INTO generation_attempts (fleet, generation, attempts, last) VALUES ($1, $2, 1, $3)
		ON CONFLICT (fleet, generation) DO UPDATE SET attempts = generation_attempts.attempts + 1, last = EXCLUDED.last`,
		fleet, gen, at.UTC())
	return err
}

// GenerationUse implements inventory.Store.
func (s *Store) GenerationUse(ctx context.Context, fleet string) ([]inventory.GenerationUse, error) {
	rows, err := s.db.Query(ctx, `SELECT generation, attempts, last FROM generation_attempts WHERE fleet = $1 ORDER BY generation`, fleet)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []inventory.GenerationUse
	for rows.Next() {
		var u inventory.GenerationUse
		if err := rows.Scan(&u.Generation, &u.Attempts, &u.Last); err != nil {
			return nil, err
		}
		u.Last = u.Last.UTC()
		out = append(out, u)
	}
	return out, rows.Err()
}

// AppendAudit implements inventory.Store: the chain is sealed under a lock
// that every replica takes, so it never forks.
func (s *Store) AppendAudit(ctx context.Context, r audit.Record) (audit.Record, error) {
	var sealed audit.Record
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		sealed, err = s.appendAudit(ctx, tx, r)
		return err
	})
	return sealed, err
}

func (s *Store) appendAudit(ctx context.Context, tx pgx.Tx, r audit.Record) (audit.Record, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey("audit")); err != nil {
		return r, err
	}
	var prev *audit.Record
	last, err := scan[audit.Record](tx.QueryRow(ctx, `SELECT data FROM audit ORDER BY seq DESC LIMIT 1`))
	if err == nil {
		prev = &last
	} else if !errors.Is(err, inventory.ErrNotFound) {
		return r, err
	}
	r = audit.Seal(prev, r, s.auditKey)
	_, err = tx.Exec(ctx, `INSERT INTO audit (seq, data) VALUES ($1, $2)`, r.Seq, r)
	return r, err
}

// Audit implements inventory.Store.
func (s *Store) Audit(ctx context.Context) ([]audit.Record, error) {
	return list[audit.Record](ctx, s.db, `SELECT data FROM audit ORDER BY seq`)
}
