package audit_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/audit"
)

var key = audit.Key(bytes.Repeat([]byte{7}, audit.MinKeySize))

func chain(n int, k audit.Key) []audit.Record {
	var out []audit.Record
	var prev *audit.Record
	for i := range n {
		r := audit.Seal(prev, audit.Record{Time: time.Unix(int64(i), 0), Actor: "server", Action: "enroll", DeviceID: "d"}, k)
		out = append(out, r)
		prev = &out[len(out)-1]
	}
	return out
}

// resealFrom edits record i and seals it and every later record again, as
// someone with write access to the database would, with key k.
func resealFrom(r []audit.Record, i int, k audit.Key) []audit.Record {
	r[i].Detail = "changed"
	for j := i; j < len(r); j++ {
		r[j] = audit.Seal(&r[j-1], r[j], k)
	}
	return r
}

func TestVerify(t *testing.T) {
	other := audit.Key(bytes.Repeat([]byte{8}, audit.MinKeySize))
	tests := []struct {
		name    string
		tamper  func([]audit.Record) []audit.Record
		wantSeq uint64
		reason  string
	}{
		{"intact", func(r []audit.Record) []audit.Record { return r }, 0, ""},
		{"edited detail", func(r []audit.Record) []audit.Record { r[2].Detail = "changed"; return r }, 3, "edited"},
		{"edited and rehashed", func(r []audit.Record) []audit.Record {
			r[2].Detail = "changed"
			r[2] = audit.Seal(&r[1], r[2], key)
			return r
		}, 4, "does not link"},
		{"edited, the rest sealed again without the key", func(r []audit.Record) []audit.Record { return resealFrom(r, 2, nil) }, 3, "no MAC"},
		{"edited, the rest sealed again with another key", func(r []audit.Record) []audit.Record { return resealFrom(r, 2, other) }, 3, "MAC does not match"},
		{"appended without the key", func(r []audit.Record) []audit.Record {
			return append(r, audit.Seal(&r[len(r)-1], audit.Record{Actor: "x", Action: "y"}, nil))
		}, 6, "no MAC"},
		{"deleted middle", func(r []audit.Record) []audit.Record { return append(r[:2:2], r[3:]...) }, 4, "deleted"},
		{"deleted first", func(r []audit.Record) []audit.Record { return r[1:] }, 2, "deleted"},
		{"swapped", func(r []audit.Record) []audit.Record { r[1], r[2] = r[2], r[1]; return r }, 3, "deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := audit.Verify(tt.tamper(chain(5, key)), key)
			if tt.wantSeq == 0 {
				if err != nil {
					t.Fatalf("Verify = %v", err)
				}
				return
			}
			var be *audit.BrokenError
			if !errors.As(err, &be) || be.Seq != tt.wantSeq || !strings.Contains(be.Reason, tt.reason) {
				t.Fatalf("Verify = %v, want broken at %d (%s)", err, tt.wantSeq, tt.reason)
			}
		})
	}
}

// A log written before the server had a key verifies, and keeps verifying
// once keyed records follow it.
func TestUnkeyedThenKeyed(t *testing.T) {
	r := chain(3, nil)
	r = append(r, audit.Seal(&r[2], audit.Record{Actor: "server", Action: "enroll"}, key))
	if err := audit.Verify(r, key); err != nil {
		t.Fatal(err)
	}
	if err := audit.Verify(chain(3, key), nil); err != nil {
		t.Fatalf("a keyed log without the key to check MACs: %v", err)
	}
	var be *audit.BrokenError
	if err := audit.Verify(chain(3, nil), key); !errors.As(err, &be) || be.Seq != 1 || !strings.Contains(be.Reason, "no record carries a MAC") {
		t.Fatalf("a log with every MAC stripped: %v", err)
	}
}

// Dropping the newest records leaves an intact chain: only the head
// exported earlier shows it.
func TestDroppedTailAgainstTheExportedHead(t *testing.T) {
	full := chain(6, key)
	head, err := audit.ParseHead(audit.HeadOf(full).String())
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.VerifyHead(full, head); err != nil {
		t.Fatalf("the full log against its own head: %v", err)
	}
	cut := full[:4]
	if err := audit.Verify(cut, key); err != nil {
		t.Fatalf("the cut chain is intact by itself, got %v", err)
	}
	var be *audit.BrokenError
	if err := audit.VerifyHead(cut, head); !errors.As(err, &be) || be.Seq != 5 || !strings.Contains(be.Reason, "records 5 to 6 were dropped") {
		t.Fatalf("VerifyHead = %v, want records 5 to 6 dropped", err)
	}
	rewritten := resealFrom(chain(6, nil), 2, nil)
	if err := audit.VerifyHead(rewritten, audit.HeadOf(chain(6, nil))); !errors.As(err, &be) || be.Seq != 6 {
		t.Fatalf("VerifyHead of a rewritten log = %v", err)
	}
}

func TestParseHead(t *testing.T) {
	for _, bad := range []string{"", "1", "0:" + strings.Repeat("a", 64), "x:" + strings.Repeat("a", 64), "3:abc", "3:" + strings.Repeat("z", 64)} {
		if _, err := audit.ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}
