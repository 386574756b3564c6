package tpm

import (
	"encoding/binary"
	"testing"
	"time"
)

type scripted struct {
	codes []uint32
	sent  int
}

func (s *scripted) Send([]byte) ([]byte, error) {
	rc := s.codes[min(s.sent, len(s.codes)-1)]
	s.sent++
	rsp := make([]byte, 10)
	binary.BigEndian.PutUint16(rsp, 0x8001)
	binary.BigEndian.PutUint32(rsp[2:], 10)
	binary.BigEndian.PutUint32(rsp[6:], rc)
	return rsp, nil
}

func (s *scripted) Close() error { return nil }

func TestRetryResendsWhileTheTPMAsks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codes []uint32
		sends int
		rc    uint32
	}{
		{"success at once", []uint32{0}, 1, 0},
		{"retry, yielded, testing, then success", []uint32{rcRetry, rcYielded, rcTesting, 0}, 4, 0},
		{"an error is not retried", []uint32{0x101}, 1, 0x101},
		{"gives up", []uint32{rcRetry}, 20, rcRetry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{codes: tc.codes}
			var slept []time.Duration
			r := &retrying{TPMCloser: s, sleep: func(d time.Duration) { slept = append(slept, d) }, attempts: 20}
			rsp, err := r.Send([]byte{0})
			if err != nil {
				t.Fatal(err)
			}
			if s.sent != tc.sends || binary.BigEndian.Uint32(rsp[6:]) != tc.rc {
				t.Fatalf("sent %d times, answer %#x; want %d, %#x", s.sent, binary.BigEndian.Uint32(rsp[6:]), tc.sends, tc.rc)
			}
			if len(slept) != tc.sends-1 {
				t.Fatalf("slept %d times", len(slept))
			}
			for i := 1; i < len(slept); i++ {
				if slept[i] < slept[i-1] || slept[i] > 500*time.Millisecond {
					t.Fatalf("pauses %v do not grow within bounds", slept)
				}
			}
		})
	}
}
