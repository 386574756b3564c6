//go:build !windows

package privatedir

import "os"

// restrict tightens a directory that already existed with a looser mode.
func restrict(dir string, mode os.FileMode) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&^mode != 0 {
		return os.Chmod(dir, mode)
	}
	return nil
}
