package inventory

import (
	"strings"
	"time"
)

// DeviceQuery selects one page of devices.
type DeviceQuery struct {
	Fleet string // empty: every fleet
	// Prefix keeps devices whose ID starts with it.
	Prefix     string
	State      string
	Generation int
	// SeenSince keeps devices heard from (any change) at or after it.
	SeenSince time.Time
	// After is the cursor of the page before: Cursor of its last device.
	After string
	Limit int
}

// Match reports whether d is one of the devices q selects (the cursor and
// the limit aside).
func (q DeviceQuery) Match(d Device) bool {
	return (q.Fleet == "" || d.Fleet == q.Fleet) && strings.HasPrefix(d.ID, q.Prefix) &&
		(q.State == "" || d.State == q.State) && (q.Generation == 0 || d.Generation == q.Generation) &&
		(q.SeenSince.IsZero() || !d.UpdatedAt.Before(q.SeenSince))
}

// Cursor names d's place in a listing: "fleet/id" (a fleet name has no
// slash).
func Cursor(d Device) string { return d.Fleet + "/" + d.ID }

// SplitCursor reads a cursor back; ok is false for one Cursor never made.
func SplitCursor(c string) (fleet, id string, ok bool) {
	fleet, id, ok = strings.Cut(c, "/")
	return fleet, id, ok && fleet != ""
}

// DeviceCount is how many devices of a fleet are in one state with one
// generation.
type DeviceCount struct {
	Fleet      string
	State      string
	Generation int
	N          int
	// Keyless of them enrolled at least once and hold no registered
	// device key: the bootstrap generation is still their way back.
	Keyless int
}

// Tally adds devices to counts (keyed by fleet, state and generation), for
// stores that count in Go.
func Tally(counts map[DeviceCount]*DeviceCount, fleet, state string, generation, enrollments int, deviceKey string) {
	k := DeviceCount{Fleet: fleet, State: state, Generation: generation}
	c := counts[k]
	if c == nil {
		c = &k
		counts[k] = c
	}
	c.N++
	if enrollments > 0 && deviceKey == "" {
		c.Keyless++
	}
}
