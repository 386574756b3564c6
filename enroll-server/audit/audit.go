// Package audit is the server's append-only, hash-chained audit log: every
// record carries the hash of the one before it, so an edited, deleted or
// reordered record breaks the chain at that point.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Record is one audited event.
type Record struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Actor    string    `json:"actor"`  // "device:<fleet>/<id>", "admin:<display name> (<accessor>)", "server"
	Action   string    `json:"action"` // enroll, acknowledge, alert:<kind>, admin:<action>…
	Fleet    string    `json:"fleet,omitempty"`
	DeviceID string    `json:"device_id,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Prev     string    `json:"prev"` // hash of the previous record; "" for the first
	Hash     string    `json:"hash"`
}

// digest is the hash of everything in r except Hash.
func digest(r Record) string {
	r.Hash = ""
	r.Time = r.Time.UTC()
	raw, _ := json.Marshal(r) // a struct of plain fields always marshals
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Seal links r after prev (nil for the first record) and sets its hash.
func Seal(prev *Record, r Record) Record {
	r.Seq, r.Prev = 1, ""
	if prev != nil {
		r.Seq, r.Prev = prev.Seq+1, prev.Hash
	}
	r.Time = r.Time.UTC()
	r.Hash = digest(r)
	return r
}

// BrokenError names the first record where the chain breaks.
type BrokenError struct {
	Seq    uint64
	Reason string
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit log broken at record %d: %s", e.Seq, e.Reason)
}

// Verify checks a whole log in order and returns a *BrokenError naming the
// first record that was edited, or that follows a deleted one.
func Verify(records []Record) error {
	var prev *Record
	for i := range records {
		r := records[i]
		switch {
		case prev == nil && r.Seq != 1:
			return &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("the log starts at record %d: records before it were deleted", r.Seq)}
		case prev != nil && r.Seq != prev.Seq+1:
			return &BrokenError{Seq: r.Seq, Reason: fmt.Sprintf("records %d to %d were deleted", prev.Seq+1, r.Seq-1)}
		case prev != nil && r.Prev != prev.Hash:
			return &BrokenError{Seq: r.Seq, Reason: "it does not link to the record before it"}
		case prev == nil && r.Prev != "":
			return &BrokenError{Seq: r.Seq, Reason: "the first record links to a predecessor"}
		case digest(r) != r.Hash:
			return &BrokenError{Seq: r.Seq, Reason: "its content does not match its hash (edited)"}
		}
		prev = &records[i]
	}
	return nil
}
