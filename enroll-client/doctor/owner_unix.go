//go:build !windows

package doctor

import (
	"os"
	"syscall"
)

// owner returns a file's user and group IDs.
func owner(fi os.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
