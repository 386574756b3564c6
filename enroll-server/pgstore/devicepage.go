package pgstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// DevicesPage implements inventory.Store: one query that walks the
// (fleet, id) primary key from the cursor and stops after one row more
// than the page, which says whether there is a next page.
func (s *Store) DevicesPage(ctx context.Context, q inventory.DeviceQuery) ([]inventory.Device, string, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.Fleet != "" {
		where = append(where, "fleet = "+arg(q.Fleet))
	}
	if q.Prefix != "" {
		// The lower bound lets the key's index seek to the prefix (every
		// ID that starts with it sorts at or after it in any collation).
		p := arg(q.Prefix)
		where = append(where, "id >= "+p, "starts_with(id, "+p+")")
	}
	if fleet, id, ok := inventory.SplitCursor(q.After); ok {
		where = append(where, "(fleet, id) > ("+arg(fleet)+", "+arg(id)+")")
	}
	if q.State != "" {
		where = append(where, "data->>'state' = "+arg(q.State))
	}
	if q.Generation != 0 {
		where = append(where, "(data->>'generation')::int = "+arg(q.Generation))
	}
	if !q.SeenSince.IsZero() {
		where = append(where, "(data->>'updated_at')::timestamptz >= "+arg(q.SeenSince.UTC()))
	}
	sql := "SELECT data FROM devices"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY fleet, id LIMIT " + arg(q.Limit+1)
	out, err := list[inventory.Device](ctx, s.db, sql, args...)
	if err != nil || len(out) <= q.Limit {
		return out, "", err
	}
	out = out[:q.Limit]
	return out, inventory.Cursor(out[len(out)-1]), nil
}

// AcknowledgeAlert implements inventory.Store.
func (s *Store) AcknowledgeAlert(ctx context.Context, seq uint64, by string, at time.Time) (inventory.Alert, error) {
	var a inventory.Alert
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if a, err = scan[inventory.Alert](tx.QueryRow(ctx, `SELECT data FROM alerts WHERE seq = $1 FOR UPDATE`, int64(seq))); err != nil {
			return err
		}
		if a.AckedBy != "" {
			return nil
		}
		a.AckedBy, a.AckedAt = by, at.UTC()
		_, err = tx.Exec(ctx, `UPDATE alerts SET data = $2 WHERE seq = $1`, int64(seq), a)
		return err
	})
	return a, err
}

// SaveDevices stores many devices with one COPY: a bulk load (an import,
// a benchmark's inventory). The devices must be new.
func (s *Store) SaveDevices(ctx context.Context, devs []inventory.Device) error {
	rows := make([][]any, len(devs))
	for i, d := range devs {
		rows[i] = []any{d.Fleet, d.ID, d}
	}
	if _, err := s.db.CopyFrom(ctx, pgx.Identifier{"devices"}, []string{"fleet", "id", "data"}, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	// A bulk load changes the table faster than autovacuum notices: the
	// planner gets fresh statistics now, not once it has planned pages
	// on stale ones.
	_, err := s.db.Exec(ctx, `ANALYZE devices`)
	return err
}

// CountDevices implements inventory.Store: the database groups and counts.
func (s *Store) CountDevices(ctx context.Context, since time.Time) ([]inventory.DeviceCount, int, error) {
	rows, err := s.db.Query(ctx, `SELECT fleet, data->>'state', COALESCE((data->>'generation')::int, 0), count(*),
		count(*) FILTER (WHERE COALESCE((data->>'enrollments')::int, 0) > 0 AND COALESCE(data->>'device_key', '') = '')
		FROM devices GROUP BY 1, 2, 3`)
	if err != nil {
		return nil, 0, err
	}
	var out []inventory.DeviceCount
	for rows.Next() {
		var c inventory.DeviceCount
		var state *string
		if err := rows.Scan(&c.Fleet, &state, &c.Generation, &c.N, &c.Keyless); err != nil {
			rows.Close()
			return nil, 0, err
		}
		if state != nil {
			c.State = *state
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	var recent int
	err = s.db.QueryRow(ctx, `SELECT count(*) FROM devices WHERE data ? 'enrolled_at' AND (data->>'enrolled_at')::timestamptz >= $1`, since.UTC()).Scan(&recent)
	return out, recent, err
}
