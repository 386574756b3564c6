package tpm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/edge-enroll/enroll/pkg/wire"
)

func TestReadEventLog(t *testing.T) {
	dir := t.TempDir()
	if raw, err := readEventLog(filepath.Join(dir, "absent")); raw != nil || err != nil {
		t.Fatalf("absent log: %d bytes, %v; want none and no error", len(raw), err)
	}
	if raw, err := readEventLog(""); raw != nil || err != nil {
		t.Fatalf("no path: %d bytes, %v", len(raw), err)
	}
	log := filepath.Join(dir, "binary_bios_measurements")
	if err := os.WriteFile(log, []byte("measurements"), 0o600); err != nil {
		t.Fatal(err)
	}
	if raw, err := readEventLog(log); err != nil || !bytes.Equal(raw, []byte("measurements")) {
		t.Fatalf("log read as %q, %v", raw, err)
	}
	if err := os.WriteFile(log, make([]byte, wire.MaxEventLog+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if raw, err := readEventLog(log); err == nil || raw != nil {
		t.Fatalf("a log over %d bytes was read: %d bytes", wire.MaxEventLog, len(raw))
	}
}
