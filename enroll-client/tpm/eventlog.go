package tpm

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// SetEventLog names the file the firmware's TCG event log is read from
// (Linux: /sys/kernel/security/tpm0/binary_bios_measurements); it is sent
// with every quote so that the server can replay the boot. Empty: none.
func (d *Device) SetEventLog(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.eventLog = path
}

// readEventLog reads the event log at path: nil when there is none (no
// path, or a kernel that exposes none: not an error, the server decides
// whether it needs one), an error when it is unreadable or larger than
// the server accepts.
func readEventLog(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("event log: %w", err)
	}
	defer f.Close()
	// securityfs reports a size of 0: read up to the bound instead.
	raw, err := io.ReadAll(io.LimitReader(f, wire.MaxEventLog+1))
	if err != nil {
		return nil, fmt.Errorf("event log %s: %w", path, err)
	}
	if len(raw) > wire.MaxEventLog {
		return nil, fmt.Errorf("event log %s is larger than the %d bytes a server accepts", path, wire.MaxEventLog)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	return raw, nil
}
