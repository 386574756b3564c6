package daemon

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Harden makes the process non-dumpable and sets its core size limit to
// zero, so that a crash never writes a token to disk and other processes of
// the same user cannot read its memory through /proc.
func Harden() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("mark process non-dumpable: %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}); err != nil {
		return fmt.Errorf("disable core dumps: %w", err)
	}
	return nil
}
