// Package audit is the server's append-only, hash-chained audit log: every
// record carries the hash of the one before it, so an edited, deleted or
// reordered record breaks the chain at that point.
//
// A chain alone does not stop whoever can write the database from editing
// a record and sealing every later one again. With an audit key (a file
// the database never holds) each record also carries an HMAC of its hash,
// which nobody without the key can forge. Dropping the newest records
// leaves a shorter chain that is still intact: the log's head (sequence
// number and hash), exported and kept elsewhere, is what catches that
// (VerifyHead).
package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
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
	// MAC is the HMAC-SHA256 of Hash under the audit key; empty in a log
	// written without one.
	MAC string `json:"mac,omitempty"`
}

// digest is the hash of everything in r except Hash and MAC.
func digest(r Record) string {
	r.Hash, r.MAC = "", ""
	r.Time = r.Time.UTC()
	raw, _ := json.Marshal(r) // a struct of plain fields always marshals
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Key is the audit key: HMAC-SHA256 over each record's hash.
type Key []byte

// MinKeySize is the shortest key accepted.
const MinKeySize = 32

func (k Key) mac(hash string) string {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(hash))
	return hex.EncodeToString(m.Sum(nil))
}

// LoadKey reads an audit key file: at least MinKeySize bytes, readable by
// its owner only.
func LoadKey(path string) (Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("audit key %s: mode %v is readable by others, want 0600", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	if len(raw) < MinKeySize {
		return nil, fmt.Errorf("audit key %s: %d bytes, want at least %d", path, len(raw), MinKeySize)
	}
	return Key(raw), nil
}

// Seal links r after prev (nil for the first record), sets its hash, and
// with a key its MAC.
func Seal(prev *Record, r Record, key Key) Record {
	r.Seq, r.Prev = 1, ""
	if prev != nil {
		r.Seq, r.Prev = prev.Seq+1, prev.Hash
	}
	r.Time = r.Time.UTC()
	r.Hash, r.MAC = digest(r), ""
	if key != nil {
		r.MAC = key.mac(r.Hash)
	}
	return r
}

// Head names the newest record of a log: exported and kept elsewhere, it
// proves later that no record up to it was dropped or changed.
type Head struct {
	Seq  uint64
	Hash string
}

func (h Head) String() string { return strconv.FormatUint(h.Seq, 10) + ":" + h.Hash }

// ParseHead reads a head as Head.String writes it.
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || len(hash) != sha256.Size*2 {
		return Head{}, errors.New("audit head: want SEQ:HASH as printed by the server")
	}
	if _, err := hex.DecodeString(hash); err != nil {
		return Head{}, errors.New("audit head: the hash is not hex")
	}
	return Head{Seq: n, Hash: hash}, nil
}

// HeadOf returns the head of a log (zero for an empty one).
func HeadOf(records []Record) Head {
	if len(records) == 0 {
		return Head{}
	}
	last := records[len(records)-1]
	return Head{Seq: last.Seq, Hash: last.Hash}
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
// first record that was edited, or that follows a deleted one. With the
// key, every record from the first one carrying a MAC must carry a valid
// one (records before it predate the key), and at least one must: a record
// edited and sealed again without the key, or added without a MAC, is
// named.
func Verify(records []Record, key Key) error {
	var prev *Record
	keyed := false
	for i := range records {
		r := records[i]
		keyed = keyed || r.MAC != ""
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
		case key != nil && keyed && r.MAC == "":
			return &BrokenError{Seq: r.Seq, Reason: "it carries no MAC after records that do (written without the audit key)"}
		case key != nil && r.MAC != "" && !hmac.Equal([]byte(r.MAC), []byte(key.mac(r.Hash))):
			return &BrokenError{Seq: r.Seq, Reason: "its MAC does not match the audit key (edited and sealed again, or another key)"}
		}
		prev = &records[i]
	}
	if key != nil && len(records) > 0 && !keyed {
		return &BrokenError{Seq: records[0].Seq, Reason: "no record carries a MAC although there is an audit key (written without it, or the MACs stripped)"}
	}
	return nil
}

// VerifyHead checks a log against a head exported earlier: the record at
// the head's sequence number must still be there, with the same hash.
func VerifyHead(records []Record, h Head) error {
	if len(records) == 0 || records[len(records)-1].Seq < h.Seq {
		last := uint64(0)
		if len(records) > 0 {
			last = records[len(records)-1].Seq
		}
		return &BrokenError{Seq: last + 1, Reason: fmt.Sprintf("the log ends at record %d but the exported head is record %d: records %d to %d were dropped", last, h.Seq, last+1, h.Seq)}
	}
	for _, r := range records {
		if r.Seq == h.Seq {
			if r.Hash != h.Hash {
				return &BrokenError{Seq: r.Seq, Reason: "it differs from the exported head: the log was rewritten up to it"}
			}
			return nil
		}
	}
	return &BrokenError{Seq: h.Seq, Reason: "the exported head's record is missing"}
}
