//go:build !windows

package privatedir

import (
	"fmt"
	"os"
)

// restrict tightens a directory that already existed with a looser mode.
// A shared directory (world-writable or sticky, like /tmp) is refused, never
// changed: it is a configuration mistake, not the service's to fix.
func restrict(dir string, mode os.FileMode) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSticky != 0 || fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s is a shared directory (mode %v); use a directory of the service's own", dir, fi.Mode())
	}
	if fi.Mode().Perm()&^mode != 0 {
		return os.Chmod(dir, mode)
	}
	return nil
}
