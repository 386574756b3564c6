package audit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/audit"
)

func chain(n int) []audit.Record {
	var out []audit.Record
	var prev *audit.Record
	for i := range n {
		r := audit.Seal(prev, audit.Record{Time: time.Unix(int64(i), 0), Actor: "server", Action: "enroll", DeviceID: "d"})
		out = append(out, r)
		prev = &out[len(out)-1]
	}
	return out
}

func TestVerify(t *testing.T) {
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
			r[2] = audit.Seal(&r[1], r[2])
			return r
		}, 4, "does not link"},
		{"deleted middle", func(r []audit.Record) []audit.Record { return append(r[:2:2], r[3:]...) }, 4, "deleted"},
		{"deleted first", func(r []audit.Record) []audit.Record { return r[1:] }, 2, "deleted"},
		{"swapped", func(r []audit.Record) []audit.Record { r[1], r[2] = r[2], r[1]; return r }, 3, "deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := audit.Verify(tt.tamper(chain(5)))
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
