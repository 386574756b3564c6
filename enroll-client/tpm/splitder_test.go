package tpm

import (
	"bytes"
	"testing"
)

func TestSplitDER(t *testing.T) {
	a := []byte{0x30, 0x03, 0x02, 0x01, 0x01}
	b := []byte{0x30, 0x03, 0x02, 0x01, 0x02}
	got := splitDER(append(append(append([]byte{}, a...), b...), 0xff, 0xff))
	if len(got) != 2 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], b) {
		t.Fatalf("split %x", got)
	}
	if got := splitDER([]byte{0x04, 0x01, 0x00}); len(got) != 0 {
		t.Fatalf("an octet string was taken for a certificate: %x", got)
	}
}

// NV contents are the TPM's (or an attacker's on the bus): splitting them
// never panics and only yields whole DER sequences found in the input.
func FuzzSplitDER(f *testing.F) {
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		for _, c := range splitDER(b) {
			if len(c) < 2 || c[0] != 0x30 || !bytes.Contains(b, c) {
				t.Fatalf("bad piece %x", c)
			}
			total += len(c)
		}
		if total > len(b) {
			t.Fatal("pieces longer than the input")
		}
	})
}
