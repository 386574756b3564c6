// Package privatedir creates directories only the service (and, on Windows,
// Administrators) may read: the client's state and token directories.
package privatedir

import "os"

// Make creates dir and its parents. On Unix the directory gets mode; on
// Windows an explicit, protected DACL granting full control to SYSTEM (the
// service account) and Administrators only, whatever the parent allows.
func Make(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	return restrict(dir, mode)
}
