//go:build !windows

package sink

import (
	"fmt"
	"os"

	"github.com/google/renameio/v2"
)

// writeFile replaces path atomically. The new file is made owner-only and
// gets its group and then its mode before the token is written into it,
// so no one outside the intended group can ever open it; the umask does
// not apply (a umask of 027 must not take away the group's read).
func writeFile(path, dir string, data []byte, mode os.FileMode, gid int, hasGID bool) error {
	if hasGID || mode&0o070 != 0 {
		if err := shareDir(dir, gid, hasGID); err != nil {
			return err
		}
	}
	t, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o600), renameio.IgnoreUmask())
	if err != nil {
		return err
	}
	defer t.Cleanup()
	if hasGID {
		if err := t.Chown(-1, gid); err != nil {
			return fmt.Errorf("give the token file group %d (sinks[].group; the service needs to be in that group, or root): %w", gid, err)
		}
	}
	if err := t.Chmod(mode); err != nil {
		return err
	}
	if _, err := t.Write(data); err != nil {
		return err
	}
	return t.CloseAtomicallyReplace()
}

// shareDir lets the file's group enter the sink's directory: the group
// gid (with hasGID) and the group's read and search bits, whatever the
// umask took away when the directory was made (privatedir allows 0750).
func shareDir(dir string, gid int, hasGID bool) error {
	if hasGID {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("give the sink directory %s group %d (sinks[].group): %w", dir, gid, err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o050 != 0o050 {
		return os.Chmod(dir, fi.Mode().Perm()|0o050)
	}
	return nil
}
