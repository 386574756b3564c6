package state

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// InUse reports whether a process holds the state file at path open: the
// running daemon holds bbolt's lock on it for as long as it lives, and the
// operating system drops that lock when the process ends however it ends
// (a clean stop, a crash, SIGKILL, a power cut), on Unix and on Windows
// alike. It never waits and never creates the file; a missing file is not
// in use.
//
// Another short-lived command holding the file (check-config, status
// reading a state no daemon published) also counts as in use.
func InUse(path string) (bool, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if err := checkFile(path); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	// A shared lock, given up at once: it conflicts only with a process
	// holding the file for writing, the way the daemon does. bbolt gives up
	// after its first attempt when the timeout is shorter than its retry
	// interval.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Millisecond})
	switch {
	case err == nil:
		db.Close()
		return false, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return true, nil
	}
	return false, fmt.Errorf("%s: %w", path, err)
}
